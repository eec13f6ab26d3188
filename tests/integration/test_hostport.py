"""hostPorts (kubeproxy.hostport) applied with nat_rule on real iptables, proven with real packets.

Every test builds its own node: a "node" namespace with the bridge cni0 (10.247.7.1/24, the pod
CIDR) and an uplink 10.248.0.1/24 (+ a second address 10.248.0.3) to a "client" namespace
(10.248.0.2, no route to the pods: it can only reach them through the node's hostPorts), and two
pod namespaces on the bridge, as the bridge plugin wires them (veth, hairpin mode on, default
route via the bridge). The pods run a TCP and UDP server that answers "<its address> <the peer
it sees>". Kernel state is read with iptables-save, never through the module; packets go only
between these namespaces.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, sh

# Only nat_rule runs through Ansible here (pyroute2=False; the node is wired with `ip`): one target
# interpreter, the nodes' own, is enough.
pytestmark = pytest.mark.single_target

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.hostport import (  # noqa: E402
    build_hostports, dnat_chain_name,
)

OWNER = "hostport-test"
NETWORK = "podnet"
BRIDGE_IP, NODE_IP, NODE_IP2, CLIENT_IP = "10.247.7.1", "10.248.0.1", "10.248.0.3", "10.248.0.2"
WEB_IP, API_IP = "10.247.7.5", "10.247.7.6"
WEB_PORTS = [{"containerPort": 80, "hostPort": 8080},
             {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
             {"containerPort": 443, "hostPort": 8443, "hostIP": NODE_IP}]
API_PORTS = [{"containerPort": 80, "hostPort": 9090}]
PORTMAP = "/usr/lib/cni/portmap"

SERVER = textwrap.dedent("""
    import socket, sys, threading
    ip, tcp_ports, udp_ports = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    def tcp(s):
        while True:
            c, peer = s.accept()
            c.sendall(("%s %s\\n" % (c.getsockname()[0], peer[0])).encode())
            c.close()
    def udp(s):
        while True:
            data, peer = s.recvfrom(512)
            s.sendto(("%s %s\\n" % (s.getsockname()[0], peer[0])).encode(), peer)
    for port in tcp_ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, int(port)))
        s.listen(64)
        threading.Thread(target=tcp, args=(s,), daemon=True).start()
    for port in udp_ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, int(port)))
        threading.Thread(target=udp, args=(s,), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
""")

TCP_CLIENT = textwrap.dedent("""
    import json, socket, sys
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        print(json.dumps(c.makefile().readline().split()))
    except OSError as exc:
        print(json.dumps(type(exc).__name__))
""")

UDP_CLIENT = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
    try:
        data, peer = s.recvfrom(512)
        print(json.dumps([data.decode().split(), list(peer)]))
    except OSError as exc:
        print(json.dumps(type(exc).__name__))
""")


def tcp(ns, host, port):
    """What the server said (["its address", "the peer it saw"]) or the client's error name."""
    return json.loads(sh(sys.executable, "-c", TCP_CLIENT, host, str(port), netns=ns))


def udp(ns, host, port):
    return json.loads(sh(sys.executable, "-c", UDP_CLIENT, host, str(port), netns=ns))


def veth(ns_a, name_a, addr_a, ns_b, name_b, addr_b=None):
    sh("ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        if addr:
            sh("ip", "-n", ns, "addr", "add", addr, "dev", name)
        sh("ip", "-n", ns, "link", "set", name, "up")


def nat_dump(ns):
    """iptables-save -t nat without timestamps, counters and nat_rule's ownership records."""
    out = []
    for line in sh("iptables-nft-save", "-t", "nat", netns=ns).splitlines():
        if line.startswith("#") or "PODNET-OWN-" in line:
            continue
        out.append(re.sub(r"^(:\S+ \S+) \[\d+:\d+\]$", r"\1", line.replace(' -m comment --comment "podnet.fabric:%s"' % OWNER, "")))
    return out


def chain_rules(ns, chain):
    return [line for line in nat_dump(ns) if line.startswith("-A %s " % chain)]


class Node(object):
    """The namespaces of one test node and what runs in them."""

    def __init__(self, netns_factory, servers):
        self.node, self.client = netns_factory("pnt-hpn"), netns_factory("pnt-hpc")
        self.web, self.api = netns_factory("pnt-hpw"), netns_factory("pnt-hpa")
        sh("ip", "-n", self.node, "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", self.node, "addr", "add", BRIDGE_IP + "/24", "dev", "cni0")
        sh("ip", "-n", self.node, "link", "set", "cni0", "up")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        veth(self.node, "eth0", NODE_IP + "/24", self.client, "eth0", CLIENT_IP + "/24")
        sh("ip", "-n", self.node, "addr", "add", NODE_IP2 + "/24", "dev", "eth0")
        for pod, ip, host_end in ((self.web, WEB_IP, "vethweb"), (self.api, API_IP, "vethapi")):
            veth(pod, "eth0", ip + "/24", self.node, host_end)
            sh("ip", "-n", self.node, "link", "set", host_end, "master", "cni0")
            # the bridge plugin's hairpinMode: a pod's own packets may go back out of its port
            sh("ip", "-n", self.node, "link", "set", host_end, "type", "bridge_slave", "hairpin", "on")
            sh("ip", "-n", pod, "route", "add", "default", "via", BRIDGE_IP)
        servers(self.web, WEB_IP, "80,443", "53")
        servers(self.api, API_IP, "80", "53")

    def pods(self, api_ports=tuple(API_PORTS)):
        """The pods as cluster.node_model lists them; our CNI container id is the netns name."""
        return [{"id": "default/web", "netns": self.web, "podIP": WEB_IP, "ports": WEB_PORTS},
                {"id": "default/api", "netns": self.api, "podIP": API_IP, "ports": api_ports}]

    def hostports(self, api_ports=tuple(API_PORTS)):
        return build_hostports(self.pods(api_ports), {"bridge": "cni0", "network": NETWORK, "pod_cidr": "10.247.7.0/24"})

    def set_sysctls(self, hostports):
        for key, value in hostports.sysctls.items():
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "%s=%s" % (key, value))


def apply_task(ns, hostports, as_ruleset=False):
    args = dict(netns=ns, owner=OWNER, purge=True, iptables_flavour="nft")
    if as_ruleset:
        args["ruleset"] = hostports.nat_rule_ruleset()
    else:
        args.update(hostports.nat_rule_params())
    return {"name": "hostports", "podnet.fabric.nat_rule": args}


@pytest.fixture
def servers():
    procs = []

    def start(ns, ip, tcp_ports, udp_ports):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ip, tcp_ports, udp_ports],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def node(netns_factory, servers):
    return Node(netns_factory, servers)


# --- the rules are the ones the real portmap plugin writes ---------------------------------------

@pytest.mark.skipif(not os.path.exists(PORTMAP), reason="Debian's containernetworking-plugins is not installed")
def test_rules_are_what_the_portmap_plugin_writes(playbook, netns_factory, node):
    """Debian's portmap (1.1.1) run for the same pods in a twin node: the same nat table."""
    hostports = node.hostports()
    r = playbook([apply_task(node.node, hostports, as_ruleset=True)])
    assert not r.failed, r
    assert r.last["changed"], r
    node.set_sysctls(hostports)

    twin = netns_factory("pnt-hpt")       # a node with the same bridge, where portmap runs
    sh("ip", "-n", twin, "link", "add", "cni0", "type", "bridge")
    sh("ip", "-n", twin, "addr", "add", BRIDGE_IP + "/24", "dev", "cni0")
    sh("ip", "-n", twin, "link", "set", "cni0", "up")
    for pod in node.pods():               # one CNI ADD per pod, in the same order
        config = {"cniVersion": "1.0.0", "name": NETWORK, "type": "portmap",
                  "runtimeConfig": {"portMappings": [
                      {"hostPort": p["hostPort"], "containerPort": p["containerPort"],
                       "protocol": p.get("protocol", "TCP").lower(), "hostIP": p.get("hostIP", "")} for p in pod["ports"]]},
                  "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/" + pod["netns"]}],
                                 "ips": [{"address": pod["podIP"] + "/24", "interface": 0}]}}
        env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID=pod["netns"], CNI_NETNS="/run/netns/" + pod["netns"],
                   CNI_IFNAME="eth0", CNI_PATH=os.path.dirname(PORTMAP))
        proc = subprocess.run(["ip", "netns", "exec", twin, PORTMAP], input=json.dumps(config), env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    assert nat_dump(node.node) == nat_dump(twin)
    assert any(line.startswith(":" + dnat_chain_name(NETWORK, node.web)) for line in nat_dump(twin))
    for ns in (node.node, twin):
        assert sh("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.conf.cni0.route_localnet").strip() == "1"

    again = playbook([apply_task(node.node, hostports, as_ruleset=True)])
    assert not again.failed and not again.changed, again


# --- packets ------------------------------------------------------------------------------------

def test_hostports_carry_real_traffic(playbook, node):
    hostports = node.hostports()
    r = playbook([apply_task(node.node, hostports)])
    assert not r.failed, r

    # from outside: TCP and UDP reach the pod, which sees the client's own address (no SNAT)
    assert tcp(node.client, NODE_IP, 8080) == [WEB_IP, CLIENT_IP]
    assert udp(node.client, NODE_IP, 5353) == [[WEB_IP, CLIENT_IP], [NODE_IP, 5353]]
    assert tcp(node.client, NODE_IP, 9090) == [API_IP, CLIENT_IP]
    # hairpin: the pod through its own hostPort, masqueraded to the bridge address (else the
    # pod would answer itself directly and the connection would never complete)
    assert tcp(node.web, NODE_IP, 8080) == [WEB_IP, BRIDGE_IP]
    # portmap marks the pod's whole subnet (-s podIP/24): a neighbour pod is masqueraded too
    assert tcp(node.api, NODE_IP, 8080) == [WEB_IP, BRIDGE_IP]
    # the node itself through its own address: DNAT in OUTPUT, source kept
    assert tcp(node.node, NODE_IP, 8080) == [WEB_IP, NODE_IP]


def test_localhost_needs_route_localnet_and_is_masqueraded(playbook, node):
    hostports = node.hostports()
    r = playbook([apply_task(node.node, hostports)])
    assert not r.failed, r
    assert hostports.sysctls == {"net.ipv4.conf.cni0.route_localnet": "1"}
    # without route_localnet the kernel will not route 127.0.0.1 out of cni0
    assert tcp(node.node, "127.0.0.1", 8080) in ("TimeoutError", "OSError")
    node.set_sysctls(hostports)
    assert tcp(node.node, "127.0.0.1", 8080) == [WEB_IP, BRIDGE_IP]
    assert udp(node.node, "127.0.0.1", 5353) == [[WEB_IP, BRIDGE_IP], ["127.0.0.1", 5353]]


def test_host_ip_binds_the_port_to_that_address_only(playbook, node):
    r = playbook([apply_task(node.node, node.hostports())])
    assert not r.failed, r
    assert tcp(node.client, NODE_IP, 8443) == [WEB_IP, CLIENT_IP]
    # the node's other address: no rule matches, the node itself has nothing on 8443
    assert tcp(node.client, NODE_IP2, 8443) == "ConnectionRefusedError"
    # while a hostPort without hostIP answers there too
    assert tcp(node.client, NODE_IP2, 8080) == [WEB_IP, CLIENT_IP]


def test_removing_a_pods_hostport_removes_exactly_its_chain(playbook, node):
    web_chain, api_chain = dnat_chain_name(NETWORK, node.web), dnat_chain_name(NETWORK, node.api)
    r = playbook([apply_task(node.node, node.hostports())])
    assert not r.failed, r
    before = nat_dump(node.node)
    assert tcp(node.client, NODE_IP, 9090) == [API_IP, CLIENT_IP]

    r = playbook([apply_task(node.node, node.hostports(api_ports=[{"containerPort": 80}]))])
    assert not r.failed, r
    assert r.last["chains_deleted"] == ["nat/" + api_chain], r
    assert r.last["chains_updated"] == ["nat/CNI-HOSTPORT-DNAT"], r
    assert r.last["chains_created"] == [] and r.last["jumps_removed"] == [], r
    after = nat_dump(node.node)
    # exactly the api pod's chain, its rules and its entry rule are gone; nothing else moved
    assert [line for line in before if line not in after] == [
        line for line in before if line.startswith(":%s " % api_chain) or api_chain in line]
    assert [line for line in after if line not in before] == []
    assert chain_rules(node.node, web_chain) == [line for line in before if line.startswith("-A %s " % web_chain)]
    assert tcp(node.client, NODE_IP, 9090) == "ConnectionRefusedError"
    assert tcp(node.client, NODE_IP, 8080) == [WEB_IP, CLIENT_IP]
