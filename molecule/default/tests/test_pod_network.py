"""The pod network on the lab after `site.yml` converged (crosssubnet: host-gw inside rack A,
VXLAN to rack B), checked with real packets and independent tools.

Read-only tests come first; the tests at the end of the file re-converge the lab (check mode,
a pod removed, a routing-mode switch, a node restart) and always leave it converged as the
inventory says.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labcheck import ip_json

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
import inventory as labinventory  # noqa: E402  (lab/inventory.py: variants of inventories/lab)

REPO = Path(__file__).resolve().parents[3]
PODS = {  # pod -> node, as inventories/lab/group_vars/k8s_cluster.yml declares them
    "web-1": "node1", "web-2": "node2", "web-3": "node3", "tools-1": "node1", "tools-3": "node3",
}


def netns(pod):
    return "pod-default-%s" % pod


def in_pod(host, pod, cmd):
    return host(PODS[pod]).run("ip netns exec %s %s" % (netns(pod), cmd))


def pod_ip(host, pod):
    addrs = ip_json(host(PODS[pod]), "-n", netns(pod), "-4", "addr", "show", "eth0")
    return addrs[0]["addr_info"][0]["local"]


def pod_cidr(lab, host, node):
    cni0 = ip_json(host(node), "-4", "addr", "show", "cni0")[0]["addr_info"][0]
    return str(ipaddress.ip_interface("%s/%s" % (cni0["local"], cni0["prefixlen"])).network)


def http(host, pod, ip, port=8080):
    """GET from inside a pod; returns the workload's one-line answer as a dict."""
    out = in_pod(host, pod, "curl -s -m 5 http://%s:%d/" % (ip, port))
    assert out.rc == 0, "curl from %s to %s:%d failed: %s" % (pod, ip, port, out.stderr)
    return dict(kv.split("=", 1) for kv in out.stdout.split())


def converge(*extra, check=False, inventory=None, limit=None):
    """Run site.yml against this lab (or a variant inventory of it); returns
    (rc, {host: changed count}, output)."""
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (REPO / ".venv" / "bin", env.get("PATH", ""))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    cmd = ["ansible-playbook", "-i", str(inventory or REPO / "inventories" / "lab"), str(REPO / "playbooks" / "site.yml")]
    if inventory:
        cmd += ["-e", "lab_state_dir=%s" % labinventory.state_dir(env.get("PODNET_LAB", "podnet"))]
    if limit:
        cmd += ["--limit", limit]
    cmd += list(extra)
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    try:
        stats = json.loads(proc.stdout)["stats"]
    except (ValueError, KeyError):
        stats = {}
    return proc.returncode, dict((h, s.get("changed", 0)) for h, s in stats.items()), proc.stdout[-6000:] + proc.stderr[-3000:]


# --- pods exist as declared ------------------------------------------------------------------------

@pytest.mark.parametrize("pod", sorted(PODS))
def test_pod_is_wired_on_its_node(host, lab, pod):
    node = host(PODS[pod])
    assert node.run("test -e /run/netns/%s" % netns(pod)).rc == 0
    cidr = ipaddress.ip_network(pod_cidr(lab, host, PODS[pod]))
    eth0 = ip_json(node, "-n", netns(pod), "-d", "link", "show", "eth0")[0]
    assert eth0["mtu"] == 1450 and eth0.get("ifalias") == "podnet.fabric:pod_network"
    assert ipaddress.ip_address(pod_ip(host, pod)) in cidr
    default = ip_json(node, "-n", netns(pod), "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in default] == [(str(cidr.network_address + 1), "eth0")]
    # its host end hangs on cni0 in hairpin mode
    ports = ip_json(node, "-d", "link", "show", "master", "cni0")
    assert any(lk["linkinfo"]["info_slave_data"]["hairpin"] for lk in ports)


def test_fixed_pod_ip_is_honoured(host):
    assert pod_ip(host, "tools-3") == "10.244.2.100"


def ipam_files(node):
    """The allocation files of the pod network (host-local also keeps `lock` and
    `last_reserved_ip.0` there)."""
    return [n for n in node.run("ls /var/lib/cni/networks/podnet").stdout.split() if n[0].isdigit()]


def test_ipam_records_like_host_local(host):
    files = ipam_files(host("node1"))
    # and the DNS pod of manifests/dns.yaml, kube-system/dns-1
    dns_1 = ip_json(host("node1"), "-n", "pod-kube-system-dns-1", "-4", "addr", "show", "eth0")[0]["addr_info"][0]["local"]
    assert sorted(files) == sorted([pod_ip(host, "web-1"), pod_ip(host, "tools-1"), dns_1])
    record = host("node1").file("/var/lib/cni/networks/podnet/%s" % pod_ip(host, "web-1")).content_string
    # CNI host-local's format: container id CRLF ifname; the id carries the owner.
    assert record == "podnet.fabric:pod_network:%s\r\neth0" % netns("web-1")


# --- pod to pod, without NAT ---------------------------------------------------------------------

def test_same_node_pod_to_pod_keeps_the_source(host):
    answer = http(host, "tools-1", pod_ip(host, "web-1"))
    assert answer["pod"] == "default/web-1"
    assert answer["client"].split(":")[0] == pod_ip(host, "tools-1")


def routes_to(h, prefix):
    """The routes for ``prefix`` but BIRD's (role bgp: learned routes sit at metric 32, beneath
    pod_routing's; test_bgp.py checks them)."""
    return [r for r in ip_json(h, "route", "show", prefix) if r.get("protocol") != "bird"]


def test_same_rack_uses_host_gw_routes(host, lab):
    routes = routes_to(host("node1"), pod_cidr(lab, host, "node2"))
    assert [(r.get("gateway"), r["dev"], r["protocol"]) for r in routes] == [(lab.var("node2", "node_ip"), "eth0", "pod_routing")]
    answer = http(host, "tools-1", pod_ip(host, "web-2"))
    assert answer["pod"] == "default/web-2" and answer["node"] == "node2"
    assert answer["client"].split(":")[0] == pod_ip(host, "tools-1"), "pod-to-pod traffic was NATed"


def test_other_rack_goes_through_vxlan(host, lab):
    routes = routes_to(host("node1"), pod_cidr(lab, host, "node3"))
    assert len(routes) == 1 and routes[0]["dev"] == "flannel.1" and "onlink" in routes[0]["flags"]
    vtep = ip_json(host("node1"), "-d", "link", "show", "flannel.1")[0]
    assert vtep["linkinfo"]["info_data"]["id"] == 1 and vtep["mtu"] == 1450
    fdb = json.loads(host("node1").check_output("bridge -json fdb show dev flannel.1"))
    assert sorted(e["dst"] for e in fdb if e.get("dst")) == [lab.var("node3", "node_ip")], "crosssubnet tunnels only to the other rack"
    for client, server in (("tools-1", "web-3"), ("tools-3", "web-1")):
        answer = http(host, client, pod_ip(host, server))
        assert answer["pod"] == "default/" + server
        assert answer["client"].split(":")[0] == pod_ip(host, client), "pod-to-pod traffic was NATed"


def test_full_size_packet_with_df_crosses_vxlan(host):
    # 1450 MTU - 20 IP - 8 ICMP = 1422 bytes of payload, DF set: must pass through the tunnel.
    ok = in_pod(host, "tools-1", "ping -n -c 2 -W 2 -M do -s 1422 %s" % pod_ip(host, "tools-3"))
    assert ok.rc == 0, ok.stdout + ok.stderr
    too_big = in_pod(host, "tools-1", "ping -n -c 1 -W 2 -M do -s 1423 %s" % pod_ip(host, "tools-3"))
    assert too_big.rc != 0


# --- egress ------------------------------------------------------------------------------------------

@pytest.fixture
def source_echo(host, lab):
    """A one-shot TCP server on the internet host that answers with the source address it saw."""
    inet = host("inet")
    unit = "podnet-test-echo"
    inet.run("systemctl stop %s 2>/dev/null; systemctl reset-failed %s 2>/dev/null" % (unit, unit))
    script = ("import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
              "s.bind(('0.0.0.0',9000));s.listen(4);s.settimeout(60)\n"
              "for _ in range(4):\n c,a=s.accept();c.sendall((a[0]+'\\n').encode());c.close()")
    inet.check_output("systemd-run --unit %s --property RuntimeMaxSec=90 /usr/bin/python3 -c %s" % (unit, _quote(script)))
    # wait (bounded) until it listens
    inet.check_output("for i in $(seq 50); do ss -ltn | grep -q ':9000 ' && exit 0; sleep 0.1; done; exit 1")
    yield lab.var("inet", "lab_ip")
    inet.run("systemctl stop %s" % unit)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.mark.parametrize("pod", ["tools-1", "tools-3"])
def test_egress_is_masqueraded_to_the_node_ip(host, lab, source_echo, pod):
    out = in_pod(host, pod, "nc -w 5 %s 9000" % source_echo)
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == lab.var(PODS[pod], "node_ip")


def test_internet_host_cannot_reach_pods(host):
    inet = host("inet")
    for pod in ("web-1", "web-3"):
        assert inet.run("ping -n -c 1 -W 1 %s" % pod_ip(host, pod)).rc != 0
        assert inet.run("curl -s -m 2 http://%s:8080/" % pod_ip(host, pod)).rc != 0


def test_egress_chains_are_owned_and_hooked_once(host):
    rules = host("node1").check_output("iptables-save -t nat")
    assert rules.count("-j PODNET-EGRESS") == 1
    assert "-A PODNET-EGRESS -s 10.244.0.0/16 -d 10.244.0.0/16" in rules


# --- re-converging: these change the lab and put it back ------------------------------------------
# One converge per state, several checks per state (CI time): A (as the inventory says: check
# mode), B (a node inserted in the middle, a pod removed, VXLAN everywhere), a refused host-gw
# run, node2 rebooted and converged alone with --limit, and A again (which must find node2 as a
# full run would have left it). The tests share the state in LAB_STATE and must run in order.

LAB_STATE: dict = {}
ORIGINAL_NODES = ("node1", "node2", "node3")


def snapshot(host, lab):
    """Each original node's pod CIDR and each of its pods' IP."""
    return {"cidrs": dict((n, pod_cidr(lab, host, n)) for n in ORIGINAL_NODES),
            "pods": dict((p, pod_ip(host, p)) for p in PODS)}


def bring_up(variant_dir, limit):
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (REPO / ".venv" / "bin", env.get("PATH", ""))
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    cmd = ["ansible-playbook", "-i", str(variant_dir), str(REPO / "lab" / "up.yml"), "--limit", limit,
           "-e", "lab_state_dir=%s" % labinventory.state_dir(env.get("PODNET_LAB", "podnet"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_state_a_check_mode_on_the_converged_cluster_reports_no_change(host, lab):
    rc, changed, out = converge(check=True)
    assert rc == 0, out
    assert changed and all(v == 0 for v in changed.values()), changed
    LAB_STATE["before"] = snapshot(host, lab)
    LAB_STATE["links_node1"] = sorted(lk["ifname"] for lk in ip_json(host("node1"), "link"))


@pytest.fixture(scope="module")
def variant_b(tmp_path_factory):
    """inventories/lab with node1b inserted between node1 and node2 (rack A, pod web-1b), and
    without the pod tools-1."""
    variant = labinventory.Variant()
    variant.add_node("node1b", "a", after="node1", pod="web-1b")
    variant.drop_pod("tools-1")
    return variant.write(tmp_path_factory.mktemp("lab-b") / "inventory")


def test_state_b_converge_inserted_node_removed_pod_vxlan(host, lab, variant_b):
    assert "before" in LAB_STATE, "runs after the state A test"
    bring_up(variant_b, "localhost,node1b")
    rc, changed, out = converge("-e", "pod_routing_mode=vxlan", inventory=variant_b)
    assert rc == 0, out
    LAB_STATE["b"] = True
    assert changed["node1b"] > 0


def test_state_b_inserted_node_renumbered_nobody(host, lab):
    assert LAB_STATE.get("b")
    before = LAB_STATE["before"]
    after = dict((n, pod_cidr(lab, host, n)) for n in ORIGINAL_NODES)
    assert after == before["cidrs"], "a node inserted in the middle renumbered others"
    for pod, ip in before["pods"].items():
        if pod != "tools-1":
            assert pod_ip(host, pod) == ip, pod
    new = ipaddress.ip_network(pod_cidr(lab, host, "node1b"))
    assert not any(new.overlaps(ipaddress.ip_network(c)) for c in after.values())
    web1b = ip_json(host("node1b"), "-n", netns("web-1b"), "-4", "addr", "show", "eth0")[0]["addr_info"][0]["local"]
    assert ipaddress.ip_address(web1b) in new
    for client in ("web-1", "tools-3"):  # from its rack and from the other one, source kept
        out = in_pod(host, client, "curl -s -m 5 http://%s:8080/" % web1b)
        assert out.rc == 0, out.stderr
        answer = dict(kv.split("=", 1) for kv in out.stdout.split())
        assert answer["pod"] == "default/web-1b" and answer["client"].split(":")[0] == pod_ip(host, client)


def test_state_b_removed_pod_took_exactly_its_objects(host, lab):
    assert LAB_STATE.get("b")
    node1 = host("node1")
    assert node1.run("test -e /run/netns/%s" % netns("tools-1")).rc != 0
    links = sorted(lk["ifname"] for lk in ip_json(node1, "link"))
    gone = set(LAB_STATE["links_node1"]) - set(links)
    assert len(gone) == 1 and next(iter(gone)).startswith("veth"), gone
    assert set(links) - set(LAB_STATE["links_node1"]) == set()  # vxlan mode: flannel.1 was there already
    files = ipam_files(node1)
    dns_1 = ip_json(node1, "-n", "pod-kube-system-dns-1", "-4", "addr", "show", "eth0")[0]["addr_info"][0]["local"]
    assert sorted(files) == sorted([LAB_STATE["before"]["pods"]["web-1"], dns_1])   # tools-1's is gone
    assert http(host, "tools-3", pod_ip(host, "web-1"))["pod"] == "default/web-1"


def test_state_b_vxlan_everywhere_and_never_the_management_interface(host, lab):
    assert LAB_STATE.get("b")
    for name in ("node1", "node1b", "node3"):
        routes = ip_json(host(name), "route", "show", "proto", "pod_routing")
        assert len(routes) == 3 and all(r["dev"] == "flannel.1" for r in routes), (name, routes)
    fdb = json.loads(host("node1").check_output("bridge -json fdb show dev flannel.1"))
    assert sorted(e["dst"] for e in fdb if e.get("dst")) == sorted(
        [lab.var("node2", "node_ip"), lab.var("node3", "node_ip"), "172.31.1.14"])
    vtep = ip_json(host("node1"), "-d", "link", "show", "flannel.1")[0]
    assert vtep["linkinfo"]["info_data"]["link"] == "eth0" and vtep["linkinfo"]["info_data"]["local"] == lab.var("node1", "node_ip")
    assert http(host, "web-1", pod_ip(host, "web-2"))["client"].split(":")[0] == pod_ip(host, "web-1")


def test_state_b_host_gw_across_racks_is_refused(variant_b):
    assert LAB_STATE.get("b")
    rc, _changed, out = converge("-e", "pod_routing_mode=host-gw", inventory=variant_b, limit="node1")
    assert rc != 0 and "host-gw needs L2 adjacency" in out, "host-gw across racks must be refused"


def test_limit_node2_after_a_reboot_converges_node2_alone(host, lab):
    assert LAB_STATE.get("b")
    container = lab.container("node2")
    node2 = host("node2")
    # A node that comes back empty (its restore state lost; test_restore.py proves the restorer):
    # --limit must converge it alone.
    node2.check_output("rm -f /var/lib/podnet-fabric/restore/*.json")
    subprocess.run(["podman", "restart", "-t", "2", container], check=True, capture_output=True)
    node2.check_output("for i in $(seq 100); do systemctl is-system-running --quiet && exit 0; "
                       "[ \"$(systemctl is-system-running)\" = degraded ] && exit 0; sleep 0.1; done; exit 1")
    assert node2.run("test -e /run/netns/%s" % netns("web-2")).rc != 0, "a reboot should have dropped the pods"
    rc, changed, out = converge(limit="node2")  # the inventory as it is: crosssubnet
    assert rc == 0, out
    assert list(changed) == ["node2"] and changed["node2"] > 0, changed
    LAB_STATE["limit"] = True
    assert pod_cidr(lab, host, "node2") == LAB_STATE["before"]["cidrs"]["node2"]
    assert pod_ip(host, "web-2") == LAB_STATE["before"]["pods"]["web-2"]
    routes = dict((r["dst"], r) for r in ip_json(node2, "route", "show", "proto", "pod_routing"))
    assert sorted(routes) == sorted([LAB_STATE["before"]["cidrs"]["node1"], LAB_STATE["before"]["cidrs"]["node3"]])
    assert (routes[LAB_STATE["before"]["cidrs"]["node1"]].get("gateway"), routes[LAB_STATE["before"]["cidrs"]["node1"]]["dev"]) == \
        (lab.var("node1", "node_ip"), "eth0")
    assert routes[LAB_STATE["before"]["cidrs"]["node3"]]["dev"] == "flannel.1"
    assert http(host, "tools-3", pod_ip(host, "web-2"))["pod"] == "default/web-2"
    assert http(host, "web-1", pod_ip(host, "web-2"))["pod"] == "default/web-2"


def test_state_a_again_restores_everything_and_finds_node2_done(host, lab):
    assert LAB_STATE.get("b")
    subprocess.run(["podman", "rm", "--force", "--time", "2", lab.var("node1", "lab_name") + "-node1b"],
                   check=True, capture_output=True)
    rc, changed, out = converge()
    assert rc == 0, out
    if LAB_STATE.get("limit"):
        assert changed["node2"] == 0, "--limit node2 left node2 differently from a full run: %s" % changed
    now = snapshot(host, lab)
    # tools-1 was removed in state b and comes back as a new pod: like host-local, IPAM hands out
    # addresses round robin (last_reserved_ip), so it may get a new one from node1's block.
    # Every other pod and every node's CIDR is exactly as before.
    assert ipaddress.ip_address(now["pods"].pop("tools-1")) in ipaddress.ip_network(LAB_STATE["before"]["cidrs"]["node1"])
    before = dict(LAB_STATE["before"], pods=dict((p, ip) for p, ip in LAB_STATE["before"]["pods"].items() if p != "tools-1"))
    assert now == before
    assert http(host, "tools-1", pod_ip(host, "web-3"))["pod"] == "default/web-3"
    routes = routes_to(host("node1"), LAB_STATE["before"]["cidrs"]["node2"])
    assert [(r.get("gateway"), r["dev"]) for r in routes] == [(lab.var("node2", "node_ip"), "eth0")]
    fdb = json.loads(host("node1").check_output("bridge -json fdb show dev flannel.1"))
    assert sorted(e["dst"] for e in fdb if e.get("dst")) == [lab.var("node3", "node_ip")]
    assert len(ip_json(host("node1"), "route", "show", "proto", "pod_routing")) == 2  # node1b's route is gone
