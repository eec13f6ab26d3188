"""BGP on the lab (inventories/lab/manifests/bgp.yaml): BIRD on every node as Calico runs it, AS
per rack (rack A 65001, rack B 65002), eBGP with the top-of-rack router (FRR, AS 65000, MD5, BFD),
iBGP between the nodes of rack A. Seen with the daemons' own tools (birdc, vtysh) and with real
packets (curl from the internet host, ping between pods, tcpdump on the router).

Read-only tests first (the lab as site.yml left it: pod_routing crosssubnet, BIRD announcing and
its learned routes at metric 32 beneath pod_routing's); then the tests that switch pod routing to
bgp and back, remove a peer, break a password, feed BIRD a bad peer, cut a node's link - each puts
the lab back as the inventory says.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labcheck import ip_json
from test_pod_network import PODS, in_pod, netns, pod_ip

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
import inventory as labinventory  # noqa: E402  (lab/inventory.py: variants of inventories/lab)

REPO = Path(__file__).resolve().parents[3]
NODES = ("node1", "node2", "node3")
NODE_IP = {"node1": "172.31.1.11", "node2": "172.31.1.12", "node3": "172.31.2.13"}
TOR = {"node1": "172.31.1.254", "node2": "172.31.1.254", "node3": "172.31.2.254"}
REPORT = "/etc/ansible/facts.d/podnet_fabric_services.fact"
CLUSTER = ipaddress.ip_network("10.244.0.0/16")
_PROTO_RE = re.compile(r"^(\S+)\s+BGP\s+\S+\s+(\S+)\s+(\S+(?: \S+)?)\s+(\w+)", re.M)


# --- what the daemons say ---------------------------------------------------------------------------

def bird_sessions(host, node):
    """{protocol: state} of the BGP protocols BIRD runs on ``node`` (``birdc show protocols``)."""
    out = host(node).check_output("birdc -s /run/bird/bird.ctl show protocols")
    return dict((m.group(1), m.group(4)) for m in _PROTO_RE.finditer(out))


def bird_since(host, node, name):
    """BIRD's stamp of the last state change of protocol ``name`` (unchanged = no reset)."""
    out = host(node).check_output("birdc -s /run/bird/bird.ctl show protocols %s" % name)
    m = _PROTO_RE.search(out)
    return m.group(3) if m else None


def frr_peers(host):
    """{neighbor address: summary} from FRR on the router."""
    out = json.loads(host("router").check_output("vtysh -c 'show bgp summary json'"))
    return (out.get("ipv4Unicast") or {}).get("peers") or {}


def router_route(host, prefix):
    routes = ip_json(host("router"), "route", "show", prefix)
    return routes[0] if routes else None


def nexthops(route):
    if route is None:
        return []
    hops = route.get("nexthops") or [route]
    return sorted(h["gateway"] for h in hops if h.get("gateway"))


def kernel_routes(host, node, proto=None):
    args = ["route", "show", "table", "main"] + (["proto", proto] if proto else [])
    return ip_json(host(node), *args)


def lb_ip(host, name):
    seen = set(json.loads(host(n).file(REPORT).content_string)["services"]["default/" + name].get("loadBalancerIP")
               for n in NODES)
    assert len(seen) == 1 and None not in seen, "nodes disagree on %s's LoadBalancer IP: %s" % (name, seen)
    return seen.pop()


def node_cidrs(host):
    out = {}
    for node in NODES:
        cni0 = ip_json(host(node), "-4", "addr", "show", "cni0")[0]["addr_info"][0]
        out[node] = str(ipaddress.ip_interface("%s/%s" % (cni0["local"], cni0["prefixlen"])).network)
    return out


def wait_for(what, check, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, "%s: not within %.0f s" % (what, timeout)
            return value
        time.sleep(interval)


def all_established(host):
    return all(set(bird_sessions(host, n).values()) == {"Established"} for n in NODES) and \
        all(p.get("state") == "Established" for p in frr_peers(host).values())


def play(inventory, roles_by_group, workdir, *extra):
    """Run a play of ``{group: [roles]}`` against ``inventory``; returns (rc, output)."""
    path = Path(workdir) / "bgp-play.yml"
    plays = [{"hosts": group, "gather_facts": False, "roles": ["podnet.fabric." + r for r in roles]}
             for group, roles in roles_by_group]
    path.write_text(yaml.safe_dump(plays), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH="%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(path), "-e",
                           "lab_state_dir=%s" % labinventory.state_dir(env.get("PODNET_LAB", "podnet"))] + list(extra),
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    return proc.returncode, proc.stdout[-5000:] + proc.stderr[-2000:]


def variant_with(tmp_path, edit):
    """A copy of inventories/lab whose manifests/bgp.yaml items went through ``edit(items)``."""
    inventory = labinventory.Variant().write(tmp_path / "inventory")
    path = inventory / "manifests" / "bgp.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["items"] = edit(doc["items"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return inventory


# --- the lab as site.yml left it -----------------------------------------------------------------------

def test_every_session_is_established_on_the_nodes_and_on_the_router(host):
    assert bird_sessions(host, "node1") == {"Node_172_31_1_12": "Established", "Node_172_31_1_254": "Established"}
    assert bird_sessions(host, "node2") == {"Node_172_31_1_11": "Established", "Node_172_31_1_254": "Established"}
    assert bird_sessions(host, "node3") == {"Node_172_31_2_254": "Established"}
    peers = frr_peers(host)
    assert sorted(peers) == sorted(NODE_IP.values())
    assert {p["state"] for p in peers.values()} == {"Established"}
    assert {p["remoteAs"] for a, p in peers.items() if a.startswith("172.31.1.")} == {65001}
    assert peers["172.31.2.13"]["remoteAs"] == 65002
    # MD5 and BFD as the BGPPeers say, checked on the router's side
    neighbors = json.loads(host("router").check_output("vtysh -c 'show bgp neighbors json'"))
    bfd = json.loads(host("router").check_output("vtysh -c 'show bfd peers json'"))
    assert sorted(p["peer"] for p in bfd if p.get("status") == "up") == sorted(NODE_IP.values())
    for address in NODE_IP.values():
        assert neighbors[address]["bgpState"] == "Established"


def test_the_router_learns_each_pod_cidr_from_its_node_and_the_cluster_ip_range_from_all(host):
    for node, cidr in node_cidrs(host).items():
        route = router_route(host, cidr)
        assert route and route.get("protocol") == "bgp", (cidr, route)
        assert nexthops(route) == [NODE_IP[node]], (cidr, route)
    assert nexthops(router_route(host, "10.96.0.0/12")) == sorted(NODE_IP.values())


def test_load_balancer_ips_ecmp_over_the_nodes_that_serve_them(host):
    cluster_ip, local_ip = lb_ip(host, "web-bgp"), lb_ip(host, "web-bgp-local")
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("172.31.150.0/28")
    assert nexthops(router_route(host, cluster_ip + "/32")) == sorted(NODE_IP.values())
    # externalTrafficPolicy Local: web-1 (node1) and web-3 (node3) only
    assert nexthops(router_route(host, local_ip + "/32")) == [NODE_IP["node1"], NODE_IP["node3"]]


def test_the_internet_host_reaches_load_balancer_ips_through_the_router(host):
    inet = host("inet")
    answers = []
    for name in ("web-bgp", "web-bgp-local"):
        out = inet.run("curl -s -m 5 http://%s/" % lb_ip(host, name))
        assert out.rc == 0, out.stderr
        answers.append(dict(kv.split("=", 1) for kv in out.stdout.split()))
    assert answers[0]["pod"].startswith("default/web-")
    # Local: the pod sees the internet host's own address (no SNAT on the way)
    assert answers[1]["pod"] in ("default/web-1", "default/web-3")
    assert answers[1]["client"].split(":")[0] == "172.31.100.10"


def test_nodes_install_learned_routes_beneath_pod_routings_and_no_blackholes(host):
    cidrs = node_cidrs(host)
    for node in NODES:
        bird = dict((r["dst"], r) for r in kernel_routes(host, node, "bird"))
        others = sorted(c for n, c in cidrs.items() if n != node)
        assert sorted(bird) == others, (node, bird)
        for dst, route in bird.items():
            assert route.get("metric") == 32 and route.get("type", "unicast") == "unicast", route
        # nothing originated reaches the kernel: no blackhole for its own block or a service range
        assert not [r for r in kernel_routes(host, node) if r.get("type") in ("blackhole", "unreachable")], node
    # rack A learns rack A directly (iBGP), rack B through the router
    assert [r["gateway"] for r in kernel_routes(host, "node1", "bird") if r["dst"] == cidrs["node2"]] == [NODE_IP["node2"]]
    assert [r["gateway"] for r in kernel_routes(host, "node3", "bird") if r["dst"] == cidrs["node1"]] == [TOR["node3"]]


# --- pod routing over BGP, and back ------------------------------------------------------------------

class Pinger:
    """A ping every 50 ms from a pod, in the background on its node, for the gap a switch makes."""

    def __init__(self, host, pod, target):
        self.node = host(PODS[pod])
        self.log = "/tmp/podnet-gap-%s.log" % pod
        self.node.check_output(
            "rm -f %s; setsid nohup timeout 400 ip netns exec %s ping -D -n -i 0.05 -W 1 %s > %s 2>&1 &"
            % (self.log, netns(pod), target, self.log))

    def stop(self):
        self.node.run("pkill -f 'ping -D -n -i 0.05' || true")
        times = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", self.node.check_output("cat %s" % self.log), re.M)]
        assert len(times) > 10, "the ping answered %d times" % len(times)
        return max(b - a for a, b in zip(times, times[1:]))


def no_stale_objects(host, mode):
    """What a mode leaves on the nodes: VTEPs only for vxlan/crosssubnet, pod_routing's routes only
    where it routes, BIRD's sessions always the same."""
    for node in NODES:
        vtep = host(node).run("ip -d link show flannel.1")
        own = kernel_routes(host, node, "pod_routing")
        if mode == "bgp":
            assert vtep.rc != 0, "%s: flannel.1 left behind" % node
            assert own == [], "%s: pod_routing routes left behind: %s" % (node, own)
            assert host(node).check_output("bridge fdb show | grep -c 'dst ' || true").strip() == "0"
        if mode == "vxlan":
            assert vtep.rc == 0 and len(own) == 2, (node, own)
        assert sorted(bird_sessions(host, node)) == {"node1": ["Node_172_31_1_12", "Node_172_31_1_254"],
                                                     "node2": ["Node_172_31_1_11", "Node_172_31_1_254"],
                                                     "node3": ["Node_172_31_2_254"]}[node]


@pytest.mark.parametrize("mode", ["bgp", "vxlan", "bgp", "crosssubnet"])
def test_switching_pod_routing_modes_keeps_pods_talking(host, record_property, tmp_path, mode):
    # The switch is pod_routing's alone (BIRD's routes stay beneath in every mode): its play, not
    # all of site.yml; molecule's converge and idempotence cover the whole.
    target = pod_ip(host, "web-3")
    pinger = Pinger(host, "tools-1", target)
    rc, out = play(REPO / "inventories" / "lab", [("nodes", ["pod_routing"])], tmp_path, "-e", "pod_routing_mode=%s" % mode)
    gap = pinger.stop()
    assert rc == 0, out
    record_property("switch_to_%s_longest_gap_s" % mode, round(gap, 3))
    no_stale_objects(host, mode)
    assert in_pod(host, "tools-1", "curl -s -m 5 http://%s:8080/" % target).rc == 0
    # the switch itself may drop a few packets; the pods keep talking
    assert gap < 3.0, "%s: %.2f s without an answer" % (mode, gap)
    if mode == "bgp":
        # native routes: node1 -> router -> node3, the packet on the wire is the pod's own
        cidr3 = node_cidrs(host)["node3"]
        assert [(r["gateway"], r["dev"]) for r in kernel_routes(host, "node1") if r["dst"] == cidr3] == [(TOR["node1"], "eth0")]
        router = host("router")
        router.check_output("rm -f /tmp/podnet-bgp.pcap; setsid nohup timeout 20 tcpdump -ni eth1 -c 3 -w /tmp/podnet-bgp.pcap "
                            "'icmp and host %s' > /dev/null 2>&1 &" % target)
        time.sleep(1)   # let tcpdump open the capture (not a check)
        src = pod_ip(host, "tools-1")
        assert in_pod(host, "tools-1", "ping -c 3 -i 0.2 -W 1 %s" % target).rc == 0
        wait_for("tcpdump's 3 packets", lambda: router.run("tcpdump -nr /tmp/podnet-bgp.pcap 2>/dev/null | wc -l").stdout.strip() == "3", 10)
        seen = router.check_output("tcpdump -nr /tmp/podnet-bgp.pcap 2>/dev/null")
        assert "%s > %s: ICMP echo request" % (src, target) in seen, seen
        assert "UDP" not in seen and "VXLAN" not in seen


# --- Calico's other layouts: full mesh, route reflector --------------------------------------------------

def calico_layout(tmp_path, layout):
    """A variant of the lab in Calico's ``mesh`` (every node one AS, node-to-node mesh, no router)
    or ``reflector`` layout (node1 reflects for node2 and node3, mesh off)."""
    variant = labinventory.Variant()
    for node in variant.nodes:
        node["metadata"]["annotations"].pop("projectcalico.org/ASNumber", None)
        if layout == "reflector" and node["metadata"]["name"] == "node1":
            node["metadata"]["annotations"]["projectcalico.org/RouteReflectorClusterID"] = "244.0.0.1"
            node["metadata"]["labels"]["route-reflector"] = "true"
    inventory = variant.write(tmp_path / "inventory")
    path = inventory / "manifests" / "bgp.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = [o for o in doc["items"] if o["kind"] != "BGPPeer"]
    for o in items:
        if o["kind"] == "BGPConfiguration":
            o["spec"]["nodeToNodeMeshEnabled"] = layout == "mesh"
    if layout == "reflector":
        items.append({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "peer-with-reflectors"},
                      "spec": {"nodeSelector": "!has(route-reflector)", "peerSelector": "has(route-reflector)"}})
    doc["items"] = items
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return inventory


def test_full_mesh_then_route_reflector_then_back_to_as_per_rack(host, tmp_path):
    cidrs = node_cidrs(host)
    try:
        rc, out = play(calico_layout(tmp_path / "mesh", "mesh"), [("routers", ["tor_router"]), ("nodes", ["bgp"])], tmp_path)
        assert rc == 0, out
        for node in NODES:
            want = sorted("Mesh_%s" % NODE_IP[n].replace(".", "_") for n in NODES if n != node)
            assert sorted(bird_sessions(host, node)) == want and set(bird_sessions(host, node).values()) == {"Established"}
        assert frr_peers(host) == {}
        # iBGP across the router's segments: node3 learns node1's block with node1 as next hop
        assert [r["dst"] for r in kernel_routes(host, "node3", "bird")] == sorted([cidrs["node1"], cidrs["node2"]])

        rc, out = play(calico_layout(tmp_path / "rr", "reflector"), [("routers", ["tor_router"]), ("nodes", ["bgp"])], tmp_path)
        assert rc == 0, out
        assert bird_sessions(host, "node1") == {"Node_172_31_1_12": "Established", "Node_172_31_2_13": "Established"}
        conf = host("node1").check_output("cat /etc/bird/podnet.d/bgp_speaker.conf")
        assert conf.count("rr client;") == 2 and conf.count("rr cluster id 244.0.0.1;") == 2
        for node in ("node2", "node3"):
            assert bird_sessions(host, node) == {"Node_172_31_1_11": "Established"}, node
        # node2 and node3 do not peer; each learns the other's block through the reflector
        wait_for("routes reflected", lambda: sorted(r["dst"] for r in kernel_routes(host, "node3", "bird"))
                 == sorted([cidrs["node1"], cidrs["node2"]]), 10)
        assert cidrs["node3"] in [r["dst"] for r in kernel_routes(host, "node2", "bird")]
    finally:
        rc, out = play(REPO / "inventories" / "lab", [("routers", ["tor_router"]), ("nodes", ["bgp"])], tmp_path)
    assert rc == 0, out
    assert all_established(host) and sorted(frr_peers(host)) == sorted(NODE_IP.values())
    assert bird_sessions(host, "node3") == {"Node_172_31_2_254": "Established"}


# --- peers: removed, refused, wrong password ----------------------------------------------------------

def test_a_peer_removed_from_the_inventory_disappears_from_bird(host, tmp_path):
    inventory = variant_with(tmp_path, lambda items: [o for o in items if o["metadata"]["name"] != "rack-a-nodes"])
    try:
        rc, out = play(inventory, [("nodes", ["bgp"])], tmp_path)
        assert rc == 0, out
        assert bird_sessions(host, "node1") == {"Node_172_31_1_254": "Established"}
        assert bird_sessions(host, "node2") == {"Node_172_31_1_254": "Established"}
        assert "Node_172_31_1_12" not in host("node1").check_output("cat /etc/bird/podnet.d/bgp_speaker.conf")
    finally:
        rc, out = play(REPO / "inventories" / "lab", [("nodes", ["bgp"])], tmp_path)
    assert rc == 0, out
    assert bird_sessions(host, "node1") == {"Node_172_31_1_12": "Established", "Node_172_31_1_254": "Established"}


def test_a_wrong_md5_password_keeps_that_session_down_and_the_task_says_so(host, tmp_path):
    def wrong(items):
        for o in items:
            if o["metadata"]["name"] == "rack-b-tor":
                o["metadata"]["annotations"]["podnet.fabric/password"] = "not-the-routers"
        return items
    inventory = variant_with(tmp_path, wrong)
    since = bird_since(host, "node1", "Node_172_31_1_254")
    try:
        # only the node's side changes: the router keeps the inventory's password
        rc, out = play(inventory, [("nodes", ["bgp"])], tmp_path, "-e", "bgp_wait_timeout=10", "--limit", "node3")
        assert rc != 0
        assert "Node_172_31_2_254" in out and "not Established" in out, out
        assert bird_sessions(host, "node3")["Node_172_31_2_254"] != "Established"
        assert frr_peers(host)["172.31.2.13"]["state"] != "Established"
    finally:
        rc, out = play(REPO / "inventories" / "lab", [("nodes", ["bgp"])], tmp_path, "--limit", "node3")
    assert rc == 0, out
    assert bird_sessions(host, "node3") == {"Node_172_31_2_254": "Established"}
    assert bird_since(host, "node1", "Node_172_31_1_254") == since     # other nodes untouched


@pytest.mark.parametrize("field, value, message", [
    ("asNumber", 4294967296, "asNumber"),          # refused by the cluster model, on the controller
    ("keepaliveTime", "70000s", "eepalive"),       # passes the model, refused by BIRD itself
])
def test_a_bad_peer_fails_with_the_reason_and_running_sessions_stay_up(host, tmp_path, field, value, message):
    def bad(items):
        for o in items:
            if o["metadata"]["name"] == "rack-a-tor":
                o["spec"][field] = value
        return items
    inventory = variant_with(tmp_path, bad)
    since = dict((n, bird_since(host, n, "Node_%s" % TOR[n].replace(".", "_"))) for n in ("node1", "node2"))
    before = dict((n, host(n).check_output("cat /etc/bird/podnet.d/bgp_speaker.conf")) for n in ("node1", "node2"))
    rc, out = play(inventory, [("nodes", ["bgp"])], tmp_path, "--limit", "node1,node2")
    assert rc != 0 and message in out, out
    for n in ("node1", "node2"):
        assert host(n).check_output("cat /etc/bird/podnet.d/bgp_speaker.conf") == before[n]
        assert bird_sessions(host, n)["Node_%s" % TOR[n].replace(".", "_")] == "Established"
        assert bird_since(host, n, "Node_%s" % TOR[n].replace(".", "_")) == since[n], "%s's session was reset" % n


# --- a dead node ------------------------------------------------------------------------------------

def test_cutting_a_nodes_link_withdraws_its_routes_at_the_router_within_a_second(host, record_property):
    cidr3 = node_cidrs(host)["node3"]
    assert nexthops(router_route(host, cidr3)) == [NODE_IP["node3"]]
    router, node3 = host("router"), host("node3")
    # the router polls its own table; the node's link goes down (no TCP reset, no BGP notification)
    router.check_output("rm -f /tmp/podnet-withdraw; setsid nohup sh -c 'while ip route show %s | grep -q via; do sleep 0.01; done; "
                        "date +%%s.%%N > /tmp/podnet-withdraw' > /dev/null 2>&1 &" % cidr3)
    try:
        cut = float(node3.check_output("date +%s.%N; ip link set eth0 down").split()[0])

        def withdrawn():
            return router.run("cat /tmp/podnet-withdraw").stdout.strip()
        gone = float(wait_for("node3's block withdrawn at the router", withdrawn, 5, 0.05))
        record_property("withdrawal_s", round(gone - cut, 3))
        assert gone - cut < 1.0, "the router kept node3's routes %.2f s" % (gone - cut)
        assert nexthops(router_route(host, lb_ip(host, "web-bgp") + "/32")) == [NODE_IP["node1"], NODE_IP["node2"]]
    finally:
        node3.run("ip link set eth0 up; systemctl reset-failed podnet-lab-net.service; systemctl restart podnet-lab-net.service")
    wait_for("sessions Established again", lambda: all_established(host), 30, 0.5)
    assert nexthops(router_route(host, cidr3)) == [NODE_IP["node3"]]
