"""vxlan module on the real kernel: flannel-style VTEPs in two "node" namespaces joined by a veth
underlay, checked with `ip -json -d link`, `bridge -json fdb`, `ip -json neigh` and pings."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import ip_json, sh, snapshot

MAC = {1: "0a:58:00:00:01:01", 2: "0a:58:00:00:02:01"}
UNDERLAY = {1: "192.168.77.1", 2: "192.168.77.2"}


def no_link_local(*namespaces):
    """New links (the VTEPs too) get no IPv6 link-local address, whose local route would appear
    whenever DAD ends and race the before/after comparisons."""
    for ns in namespaces:
        sh("sysctl", "-q", "-w", "net.ipv6.conf.default.addr_gen_mode=1", netns=ns)


def fdb(ns, dev="flannel.1"):
    out = sh("bridge", "-n", ns, "-json", "fdb", "show", "dev", dev)
    return json.loads(out) if out.strip() else []


def snap(*namespaces):
    state = snapshot(*namespaces)
    for ns in namespaces:
        if state.get(ns) is not None:
            state[ns]["fdb"] = json.loads(sh("bridge", "-n", ns, "-json", "fdb", "show") or "[]")
    return state


def vtep(ns, name="flannel.1"):
    return ip_json("-d", "link", "show", name, netns=ns)[0]


def link_names(ns):
    return [lk["ifname"] for lk in ip_json("link", netns=ns)]


def peers(ns, dev="flannel.1"):
    """(fdb {mac: dst} with a dst, permanent neighbours {ip: mac}) as ip/bridge print them."""
    entries = dict((e["mac"], e["dst"]) for e in fdb(ns, dev) if "dst" in e)
    neigh = dict((n["dst"], n["lladdr"]) for n in ip_json("neigh", "show", "dev", dev, "nud", "permanent", netns=ns))
    return entries, neigh


def pings(ns, *args):
    proc = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2"] + list(args), capture_output=True, text=True, check=False)
    return proc.returncode == 0


@pytest.fixture
def nodes(netns_factory):
    """Two node namespaces on a veth underlay 192.168.77.0/24 (MTU 1500), a pod address on each lo."""
    n1, n2 = netns_factory("pnt-n1-"), netns_factory("pnt-n2-")
    no_link_local(n1, n2)
    sh("ip", "-n", n1, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", n2)
    for i, ns in ((1, n1), (2, n2)):
        sh("ip", "-n", ns, "addr", "add", UNDERLAY[i] + "/24", "dev", "eth1")
        sh("ip", "-n", ns, "link", "set", "eth1", "up")
        sh("ip", "-n", ns, "addr", "add", "10.244.%d.5/32" % i, "dev", "lo")
    return {1: n1, 2: n2}


def node_tasks(nodes, i, vni=1, **extra):
    """flannel's setup on node i: the VTEP with the other node as its peer, and the onlink route."""
    j = 3 - i
    v = {"name": "flannel.1", "vni": vni, "port": 8472, "local": UNDERLAY[i], "dev": "eth1", "mac": MAC[i],
         "addresses": ["10.244.%d.0/32" % i],
         "peers": [{"mac": MAC[j], "remote": UNDERLAY[j], "ip": "10.244.%d.0" % j}]}
    v.update(extra)
    return [
        {"podnet.fabric.vxlan": {"netns": nodes[i], "vxlans": [v]}},
        {"podnet.fabric.route": {"netns": nodes[i], "routes": [
            {"dest": "10.244.%d.0/24" % j, "gateway": "10.244.%d.0" % j, "dev": "flannel.1", "onlink": True}]}},
    ]


def test_flannel_vxlan_four_runs_pings_and_full_size_df(four_runs, playbook, nodes):
    tasks = node_tasks(nodes, 1) + node_tasks(nodes, 2)
    check, real, _c2, _r2 = four_runs(tasks, lambda: snap(nodes[1], nodes[2]))
    assert check.results[0]["actions"][0] == "create vxlan flannel.1 (vni 1, port 8472, local 192.168.77.1, dev eth1, nolearning)"
    for i in (1, 2):
        j = 3 - i
        dev = vtep(nodes[i])
        data = dev["linkinfo"]["info_data"]
        assert dev["linkinfo"]["info_kind"] == "vxlan"
        assert (data["id"], data["port"], data["local"], data["link"], data["learning"]) == (1, 8472, UNDERLAY[i], "eth1", False)
        assert (dev["mtu"], dev["address"], dev["ifalias"]) == (1450, MAC[i], "podnet.fabric")
        assert "UP" in dev["flags"]
        assert [a["local"] + "/%d" % a["prefixlen"] for a in ip_json("addr", "show", "flannel.1", netns=nodes[i])[0]["addr_info"]] == [
            "10.244.%d.0/32" % i]
        assert peers(nodes[i]) == ({MAC[j]: UNDERLAY[j]}, {"10.244.%d.0" % j: MAC[j]})
        route = [r for r in ip_json("route", netns=nodes[i]) if r["dst"] == "10.244.%d.0/24" % j][0]
        assert (route["gateway"], route["dev"], route["flags"], route["protocol"]) == ("10.244.%d.0" % j, "flannel.1", ["onlink"], "149")
    assert real.results[0]["diff"]["after"]["flannel.1"]["peers"] == [{"mac": MAC[2], "remote": UNDERLAY[2], "ip": "10.244.2.0"}]

    # packets: pod address to pod address across the tunnel, both ways
    tx = vtep_packets(nodes[1], "tx")
    assert pings(nodes[1], "-I", "10.244.1.5", "10.244.2.5")
    assert pings(nodes[2], "-I", "10.244.2.5", "10.244.1.5")
    assert vtep_packets(nodes[1], "tx") > tx  # they went through flannel.1
    # a full-size packet with DF set fits: VTEP MTU 1450 = underlay 1500 - 50 (1422 + 8 ICMP + 20 IP)
    assert pings(nodes[1], "-M", "do", "-s", "1422", "-I", "10.244.1.5", "10.244.2.5")
    # one byte more does not leave the node (local "message too long", no traffic)
    assert not pings(nodes[1], "-M", "do", "-s", "1423", "-I", "10.244.1.5", "10.244.2.5")

    # VNI change on both nodes: the VTEPs are recreated, peers and the routes through them come back
    tasks2 = node_tasks(nodes, 1, vni=2) + node_tasks(nodes, 2, vni=2)
    r = playbook(tasks2)
    assert not r.failed, r
    vx_actions = r.results[0]["actions"]
    assert vx_actions[0] == "recreate vxlan flannel.1 (vni 1 -> 2: cannot change in place)"
    assert vx_actions[-1] == ("re-add 1 route(s) through vxlan flannel.1 that the kernel dropped with the old link: "
                              "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink")
    assert not r.results[1]["changed"]  # the route module finds its route already back
    for i in (1, 2):
        assert vtep(nodes[i])["linkinfo"]["info_data"]["id"] == 2 and vtep(nodes[i])["address"] == MAC[i]
        assert peers(nodes[i]) == ({MAC[3 - i]: UNDERLAY[3 - i]}, {"10.244.%d.0" % (3 - i): MAC[3 - i]})
    assert pings(nodes[1], "-I", "10.244.1.5", "10.244.2.5")
    r = playbook(tasks2)
    assert not r.failed and not r.changed, r


def vtep_packets(ns, direction):
    return ip_json("-s", "link", "show", "flannel.1", netns=ns)[0]["stats64"][direction]["packets"]


def test_peers_are_reconciled_and_purged_only_on_the_device(playbook, nodes):
    ns = nodes[1]
    p2 = {"mac": MAC[2], "remote": UNDERLAY[2], "ip": "10.244.2.0"}
    p3 = {"mac": "0a:58:00:00:03:01", "remote": "192.168.77.3", "ip": "10.244.3.0"}
    base = {"name": "flannel.1", "vni": 1, "port": 8472, "local": UNDERLAY[1], "dev": "eth1"}
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [dict(base, peers=[p2, p3])]}}])
    assert not r.failed and r.changed, r
    assert peers(ns) == ({MAC[2]: UNDERLAY[2], p3["mac"]: p3["remote"]}, {"10.244.2.0": MAC[2], "10.244.3.0": p3["mac"]})
    kernel_entries = [e for e in fdb(ns) if "dst" not in e]  # the device's own address list
    # entries made by hand: a dynamic neighbour (never ours), a stale peer's node IP change
    sh("ip", "-n", ns, "neigh", "add", "10.244.9.9", "lladdr", "0a:58:00:00:09:01", "dev", "flannel.1", "nud", "reachable")
    sh("bridge", "-n", ns, "fdb", "replace", MAC[2], "dev", "flannel.1", "dst", "192.168.77.99")

    # node 3 left the cluster, node 2's entry drifted: one run puts both right
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [dict(base, peers=[p2])]}}])
    assert not r.failed and r.changed, r
    assert r.last["actions"] == [
        "remove fdb entry 0a:58:00:00:03:01 dst 192.168.77.3 from vxlan flannel.1",
        "change fdb entry 0a:58:00:00:02:01 on vxlan flannel.1: dst 192.168.77.99 -> 192.168.77.2",
        "remove permanent neighbour 10.244.3.0 lladdr 0a:58:00:00:03:01 from vxlan flannel.1",
    ]
    assert peers(ns) == ({MAC[2]: UNDERLAY[2]}, {"10.244.2.0": MAC[2]})
    assert [e for e in fdb(ns) if "dst" not in e] == kernel_entries
    assert [n["dst"] for n in ip_json("neigh", "show", "dev", "flannel.1", netns=ns) if n["dst"] == "10.244.9.9"] == ["10.244.9.9"]

    # purge_peers: false keeps undeclared entries
    sh("ip", "-n", ns, "neigh", "replace", "10.244.8.0", "lladdr", "0a:58:00:00:08:01", "dev", "flannel.1", "nud", "permanent")
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [dict(base, peers=[p2], purge_peers=False)]}}])
    assert not r.failed and not r.changed, r
    assert peers(ns)[1] == {"10.244.2.0": MAC[2], "10.244.8.0": "0a:58:00:00:08:01"}


def test_default_mac_is_stable_across_recreation(playbook, nodes):
    ns = nodes[1]
    v = {"name": "vxlan.calico", "vni": 4096, "local": UNDERLAY[1], "dev": "eth1"}
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [v]}}])
    assert not r.failed and r.changed, r
    dev = vtep(ns, "vxlan.calico")
    mac = dev["address"]
    assert int(mac[:2], 16) & 0x03 == 0x02  # unicast, locally administered
    assert dev["linkinfo"]["info_data"]["port"] == 4789 and dev["mtu"] == 1450
    assert r.last["vxlans"][0]["mac"] == mac
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [dict(v, state="absent")]}}])
    assert not r.failed and r.changed and "vxlan.calico" not in link_names(ns), r
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [dict(v, state="absent")]}}])
    assert not r.failed and not r.changed, r
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [v]}}])
    assert not r.failed and vtep(ns, "vxlan.calico")["address"] == mac


def test_purge_removes_only_owned_vxlans(playbook, nodes):
    ns = nodes[1]
    sh("ip", "-n", ns, "link", "add", "vxuser", "type", "vxlan", "id", "42", "dstport", "4789", "dev", "eth1")  # not ours
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [
        {"name": "flannel.1", "vni": 1, "local": UNDERLAY[1], "dev": "eth1"},
        {"name": "vxold", "vni": 7, "local": UNDERLAY[1], "dev": "eth1"}]}}])
    assert not r.failed, r
    user = vtep(ns, "vxuser")
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "purge": True, "vxlans": [
        {"name": "flannel.1", "vni": 1, "local": UNDERLAY[1], "dev": "eth1"}]}}])
    assert not r.failed and r.changed and r.last["actions"] == ["delete vxlan vxold"], r
    names = link_names(ns)
    assert "flannel.1" in names and "vxold" not in names
    assert vtep(ns, "vxuser") == user


BAD = [
    ({"vni": 0}, None, "vxlan flannel.1: vni 0 is outside 1..16777215"),
    ({"vni": 16777216}, None, "vxlan flannel.1: vni 16777216 is outside 1..16777215"),
    ({"name": "flannel-vtep-0001"}, None, "vxlan flannel-vtep-0001: name is 17 characters, the kernel allows at most 15"),
    ({}, [["link", "add", "flannel.1", "type", "veth", "peer", "name", "fpeer"]],
     "vxlan flannel.1: the name is taken by a link of kind veth, not vxlan"),
    ({}, [["link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472"]],
     "vxlan flannel.1: a vxlan link of that name exists and is not owned by podnet.fabric (alias None); remove it or pick another name"),
    ({}, [["link", "add", "vxuser", "type", "vxlan", "id", "1", "dstport", "8472"]],
     "vxlan flannel.1: VNI 1 on port 8472 is already used by vxlan vxuser in this namespace"),
    ({"mtu": 1500}, None, "vxlan flannel.1: mtu 1500 is more than uplink eth1's MTU 1500 minus 50 bytes of VXLAN overhead (at most 1450)"),
    ({"dev": "eth9"}, None, "vxlan flannel.1: uplink dev eth9 does not exist"),
    ({"local": "192.168.77.300"}, None, "vxlan flannel.1: local: '192.168.77.300' is not a valid IP address"),
    ({"peers": [{"mac": "0a:58:00:00:02:zz", "remote": "192.168.77.2"}]}, None,
     "vxlan flannel.1 peer 0a:58:00:00:02:zz: '0a:58:00:00:02:zz' is not a MAC address (aa:bb:cc:dd:ee:ff)"),
    ({"peers": [{"mac": "0a:58:00:00:02:01", "remote": "192.168.77.256"}]}, None,
     "vxlan flannel.1 peer 0a:58:00:00:02:01: remote: '192.168.77.256' is not a valid IP address"),
    ({"peers": [{"mac": "0a:58:00:00:02:01", "remote": "fd00::2"}]}, None,
     "vxlan flannel.1 peer 0a:58:00:00:02:01: remote fd00::2 is IPv6 but the underlay (local) is IPv4"),
]


@pytest.mark.parametrize("change,setup,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_fails_with_one_line_and_changes_nothing(playbook, nodes, change, setup, message):
    ns = nodes[1]
    for argv in setup or []:
        sh("ip", "-n", ns, *argv)
    before = snap(ns)
    ok = {"name": "vx.ok", "vni": 77, "local": UNDERLAY[1], "dev": "eth1"}  # valid, listed first
    bad = dict({"name": "flannel.1", "vni": 1, "port": 8472, "local": UNDERLAY[1], "dev": "eth1"}, **change)
    r = playbook([{"podnet.fabric.vxlan": {"netns": ns, "vxlans": [ok, bad]}}])
    assert r.failed, r
    assert r.last["msg"] == message
    assert snap(ns) == before


def test_missing_netns_is_an_error(playbook):
    missing = "pnt-no-such-ns"
    r = playbook([{"podnet.fabric.vxlan": {"netns": missing, "vxlans": [{"name": "flannel.1", "vni": 1}]}}])
    assert r.failed and r.last["msg"] == "netns %s: does not exist" % missing
    assert snapshot(missing) == {missing: None}
