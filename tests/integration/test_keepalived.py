"""The load balancer's keepalived configuration (plugins/module_utils/keepalived.py, from
load_balancer.node_plan) run by the real keepalived in throw-away namespaces: two nodes and a
client on one bridge. The client's ARP view shows exactly one owner, MetalLB's first choice;
cutting the owner's link moves the VIP, and the client learns the new MAC from keepalived's
gratuitous ARP alone; the old owner coming back does not take the VIP back (nopreempt)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, ip_json, sh

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils import load_balancer  # noqa: E402

# keepalived comes with scripts/setup.sh (requirements-apt.txt): missing, the test fails, not skips
assert shutil.which("keepalived"), "keepalived is not installed (run scripts/setup.sh)"

NODES = {"node-a": "10.45.0.11", "node-b": "10.45.0.12"}
CLIENT = "10.45.0.100"
VIP = "10.45.0.240"


def objects():
    out = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}} for name, ip in NODES.items()]
    out += [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-%s" % name, "namespace": "default", "labels": {"app": "web"},
                          "annotations": {"cni.projectcalico.org/ipAddrs": '["10.244.%d.5"]' % i}},
             "spec": {"nodeName": name, "containers": [{"name": "web", "ports": [{"containerPort": 80}]}]}}
            for i, name in enumerate(NODES)]
    out += [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "test"},
             "spec": {"addresses": ["10.45.0.240/30"]}},
            {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "all"}, "spec": {}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-lb", "namespace": "default"},
             "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}}]
    return out


def macs_answering(client):
    proc = subprocess.run(["ip", "netns", "exec", client, "arping", "-c", "2", "-w", "2", "-I", "eth0", VIP],
                          capture_output=True, text=True, check=False)
    return sorted(set(m.lower() for m in re.findall(r"reply from %s \[([0-9A-Fa-f:]+)\]" % re.escape(VIP), proc.stdout)))


def holds_vip(ns):
    info = ip_json("addr", "show", "dev", "eth0", netns=ns)[0]["addr_info"]
    return any(a.get("local") == VIP for a in info)


def client_neighbour(client):
    entries = ip_json("neigh", "show", VIP, netns=client)
    return entries[0].get("lladdr") if entries else None


def wait_for(condition, timeout, step=0.02):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(step)
    return None


@pytest.fixture(name="segment")
def fixture_segment(netns_factory):
    """A bridge namespace joining node-a, node-b and the client (eth0 in each)."""
    bridge = netns_factory("pnt-br-")
    sh("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", bridge, "link", "set", "br0", "up")
    names = {}
    for i, (name, ip) in enumerate(list(NODES.items()) + [("client", CLIENT)]):
        ns = netns_factory("pnt-ka%d-" % i)
        sh("ip", "-n", bridge, "link", "add", "p%d" % i, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", bridge, "link", "set", "p%d" % i, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        names[name] = ns
    sh("sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_accept=1", netns=names["client"])
    return names


def test_vrrp_failover_follows_metallbs_order_and_does_not_flap_back(segment, tmp_path):
    plans = dict((name, load_balancer.node_plan(objects(), name, list(NODES), {}, {"interface": "eth0"}))
                 for name in NODES)
    # a VIP only one node may announce (Local policy, one endpoint): keepalived accepts that too
    local = objects()
    local[-1]["spec"]["externalTrafficPolicy"] = "Local"
    local[-1]["spec"]["selector"] = {"app": "web", "only": "a"}
    local[2]["metadata"]["labels"]["only"] = "a"
    alone = load_balancer.node_plan(local, "node-a", list(NODES), {}, {"interface": "eth0"})
    assert len(alone["instances"]) == 1 and alone["instances"][0]["nodes"] == ["node-a"]
    (tmp_path / "alone.conf").write_text(alone["keepalived"][0]["config"])
    check = subprocess.run(["keepalived", "-t", "-f", str(tmp_path / "alone.conf")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, (alone["keepalived"], check.stdout, check.stderr)
    # both nodes are in the one instance of web-lb; the standby's keepalived starts later
    assert [len(plans[name]["keepalived"]) for name in NODES] == [1, 1]
    order = plans["node-a"]["announcements"][0]["nodes"]
    owner, standby = order
    procs = []
    try:
        # the standby is started first, a second before the owner: its startup delay (2 s, its
        # position in MetalLB's order) still lets the owner win the first election
        for name in (standby, owner):
            if procs:
                time.sleep(1)
            conf = tmp_path / ("%s.conf" % name)
            conf.write_text(plans[name]["keepalived"][0]["config"])
            check = subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True, text=True, check=False)
            assert check.returncode == 0, (plans[name]["keepalived"], check.stdout, check.stderr)
            procs.append(subprocess.Popen(
                ["keepalived", "-n", "-l", "-P", "-f", str(conf), "-s", segment[name],
                 "-p", str(tmp_path / ("%s.pid" % name)), "-r", str(tmp_path / ("%s.vrrp.pid" % name))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_for(lambda: holds_vip(segment[owner]), 10) is not None, "the first in MetalLB's order took no VIP"
        time.sleep(1)
        assert not holds_vip(segment[standby])
        owner_mac = ip_json("link", "show", "eth0", netns=segment[owner])[0]["address"]
        standby_mac = ip_json("link", "show", "eth0", netns=segment[standby])[0]["address"]
        assert macs_answering(segment["client"]) == [owner_mac]
        # the owner is cut off (its link, not a clean stop): the standby takes the VIP and its
        # gratuitous ARP alone moves the client's entry (the client sends nothing meanwhile)
        sh("ip", "-n", segment[owner], "link", "set", "eth0", "down")
        moved = wait_for(lambda: client_neighbour(segment["client"]) == standby_mac, 5)
        assert moved is not None and holds_vip(segment[standby]), "no takeover within 5 s"
        assert moved < 2.0, "takeover took %.2f s" % moved
        # the old owner returns: the VIP stays where it is
        sh("ip", "-n", segment[owner], "link", "set", "eth0", "up")
        time.sleep(2)
        assert holds_vip(segment[standby]) and not holds_vip(segment[owner])
        assert macs_answering(segment["client"]) == [standby_mac]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
