"""vxlan module on the real kernel: flannel-style VTEPs in two "node" namespaces joined by a veth
underlay, checked with `ip -json -d link`, `bridge -json fdb`, `ip -json neigh` and pings."""
from __future__ import annotations

import glob
import json
import os
import stat
import subprocess

import pytest

from conftest import ip_json, netns_pool, run_cases, sh, snapshot

MAC = {1: "0a:58:00:00:01:01", 2: "0a:58:00:00:02:01"}
UNDERLAY = {1: "192.168.77.1", 2: "192.168.77.2"}
# Fixed owner names (the route tasks register route protocols host-wide); the VTEPs and peer
# records live in the tests' own namespaces (records are per namespace and removed at teardown).
OWNER, OTHER = "itest-a", "itest-b"
STATE_DIR = "/var/lib/podnet-fabric"


def record_path(ns, dev="flannel.1", owner=OWNER):
    return os.path.join(STATE_DIR, owner, "vxlan-netns-%s:%s.json" % (ns, dev))


def read_record(ns, dev="flannel.1", owner=OWNER):
    with open(record_path(ns, dev, owner)) as handle:
        return json.load(handle)


def remove_records(*namespaces):
    for ns in namespaces:
        for path in glob.glob(os.path.join(STATE_DIR, "*", "vxlan-netns-%s:*" % ns)):
            os.unlink(path)


def vx(ns, vxlans, owner=OWNER, **kw):
    args = {"netns": ns, "owner": owner, "vxlans": vxlans}
    args.update(kw)
    return {"podnet.fabric.vxlan": args}


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
            # every entry with all its attributes; sorted, since a dump lists a hash table's
            # buckets (an entry removed and put back may come in another place)
            state[ns]["fdb"] = sorted(json.loads(sh("bridge", "-n", ns, "-json", "fdb", "show") or "[]"), key=lambda e: json.dumps(e, sort_keys=True))
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
    try:
        yield _underlay(n1, n2)
    finally:
        remove_records(n1, n2)


def _underlay(n1, n2):
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
        vx(nodes[i], [v]),
        {"podnet.fabric.route": {"netns": nodes[i], "owner": OWNER, "routes": [
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
        assert (dev["mtu"], dev["address"], dev["ifalias"]) == (1450, MAC[i], "podnet.fabric:" + OWNER)
        assert "UP" in dev["flags"]
        assert [a["local"] + "/%d" % a["prefixlen"] for a in ip_json("addr", "show", "flannel.1", netns=nodes[i])[0]["addr_info"]] == [
            "10.244.%d.0/32" % i]
        assert peers(nodes[i]) == ({MAC[j]: UNDERLAY[j]}, {"10.244.%d.0" % j: MAC[j]})
        route = [r for r in ip_json("route", netns=nodes[i]) if r["dst"] == "10.244.%d.0/24" % j][0]
        assert (route["gateway"], route["dev"], route["flags"], route["protocol"]) == ("10.244.%d.0" % j, "flannel.1", ["onlink"], OWNER)
        assert read_record(nodes[i]) == {"fdb": {MAC[j]: UNDERLAY[j]}, "neighbours": {"10.244.%d.0" % j: MAC[j]}}
        mode = os.stat(record_path(nodes[i])).st_mode
        assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(record_path(nodes[i]))).st_mode) == 0o700
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

    # VNI change on both nodes: the VTEPs are recreated, peers and the routes through them come
    # back, and so does a static FDB entry the user had added on one
    sh("bridge", "-n", nodes[1], "fdb", "append", "0a:58:00:00:0e:01", "dev", "flannel.1", "dst", "192.168.77.50", "self", "permanent")
    tasks2 = node_tasks(nodes, 1, vni=2) + node_tasks(nodes, 2, vni=2)
    r = playbook(tasks2)
    assert not r.failed, r
    vx_actions = r.results[0]["actions"]
    assert vx_actions[0] == "delete vxlan flannel.1 to recreate it (vni 1 -> 2: cannot change in place)"
    assert vx_actions[1] == "create vxlan flannel.1 (vni 2, port 8472, local 192.168.77.1, dev eth1, nolearning)"
    assert vx_actions[-1] == ("re-add 1 route(s) through vxlan flannel.1 that the kernel dropped with the old link: "
                              "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink")
    assert not r.results[1]["changed"]  # the route module finds its route already back
    assert "put back 1 fdb entries and 0 permanent neighbours the old vxlan flannel.1 had" in vx_actions
    assert [e["dst"] for e in fdb(nodes[1]) if e["mac"] == "0a:58:00:00:0e:01"] == ["192.168.77.50"]
    for i in (1, 2):
        assert vtep(nodes[i])["linkinfo"]["info_data"]["id"] == 2 and vtep(nodes[i])["address"] == MAC[i]
        assert peers(nodes[i])[1] == {"10.244.%d.0" % (3 - i): MAC[3 - i]}
        assert peers(nodes[i])[0][MAC[3 - i]] == UNDERLAY[3 - i]
    assert pings(nodes[1], "-I", "10.244.1.5", "10.244.2.5")
    r = playbook(tasks2)
    assert not r.failed and not r.changed, r


def vtep_packets(ns, direction):
    return ip_json("-s", "link", "show", "flannel.1", netns=ns)[0]["stats64"][direction]["packets"]


def test_peers_are_reconciled_and_only_the_owners_are_purged(playbook, nodes):
    ns = nodes[1]
    p2 = {"mac": MAC[2], "remote": UNDERLAY[2], "ip": "10.244.2.0"}
    p3 = {"mac": "0a:58:00:00:03:01", "remote": "192.168.77.3", "ip": "10.244.3.0"}
    base = {"name": "flannel.1", "vni": 1, "port": 8472, "local": UNDERLAY[1], "dev": "eth1"}
    r = playbook([vx(ns, [dict(base, peers=[p2, p3])])])
    assert not r.failed and r.changed, r
    assert peers(ns) == ({MAC[2]: UNDERLAY[2], p3["mac"]: p3["remote"]}, {"10.244.2.0": MAC[2], "10.244.3.0": p3["mac"]})
    kernel_entries = [e for e in fdb(ns) if "dst" not in e]  # the device's own address list
    # entries made by hand: a dynamic neighbour, the user's static FDB entry and permanent
    # neighbour on the same device (never ours), a stale peer's node IP change
    sh("ip", "-n", ns, "neigh", "add", "10.244.9.9", "lladdr", "0a:58:00:00:09:01", "dev", "flannel.1", "nud", "reachable")
    sh("bridge", "-n", ns, "fdb", "append", "0a:58:00:00:0a:01", "dev", "flannel.1", "dst", "192.168.77.10", "self", "permanent")
    sh("bridge", "-n", ns, "fdb", "append", "00:00:00:00:00:00", "dev", "flannel.1", "dst", "192.168.77.11", "self", "permanent")
    sh("ip", "-n", ns, "neigh", "replace", "10.244.10.0", "lladdr", "0a:58:00:00:0a:01", "dev", "flannel.1", "nud", "permanent")
    sh("bridge", "-n", ns, "fdb", "replace", MAC[2], "dev", "flannel.1", "dst", "192.168.77.99")
    users = [e for e in fdb(ns) if e["mac"] in ("0a:58:00:00:0a:01", "00:00:00:00:00:00")]
    user_neigh = ip_json("neigh", "show", "10.244.10.0", "dev", "flannel.1", netns=ns)

    # node 3 left the cluster, node 2's entry drifted: one run puts both right
    r = playbook([vx(ns, [dict(base, peers=[p2])])])
    assert not r.failed and r.changed, r
    assert r.last["actions"] == [
        "remove fdb entry 0a:58:00:00:03:01 dst 192.168.77.3 from vxlan flannel.1",
        "change fdb entry 0a:58:00:00:02:01 on vxlan flannel.1: dst 192.168.77.99 -> 192.168.77.2",
        "remove permanent neighbour 10.244.3.0 lladdr 0a:58:00:00:03:01 from vxlan flannel.1",
        "record 1 fdb entries and 1 neighbours of vxlan flannel.1 in %s" % record_path(ns),
    ]
    assert peers(ns)[0][MAC[2]] == UNDERLAY[2] and p3["mac"] not in peers(ns)[0]
    assert [e for e in fdb(ns) if "dst" not in e] == kernel_entries
    assert [e for e in fdb(ns) if e["mac"] in ("0a:58:00:00:0a:01", "00:00:00:00:00:00")] == users
    assert ip_json("neigh", "show", "10.244.10.0", "dev", "flannel.1", netns=ns) == user_neigh
    assert [n["dst"] for n in ip_json("neigh", "show", "dev", "flannel.1", netns=ns) if n["dst"] == "10.244.9.9"] == ["10.244.9.9"]
    assert read_record(ns) == {"fdb": {MAC[2]: UNDERLAY[2]}, "neighbours": {"10.244.2.0": MAC[2]}}
    r = playbook([vx(ns, [dict(base, peers=[p2])])])
    assert not r.failed and not r.changed, r

    # purge_peers: false keeps the owner's undeclared entries too (and goes on recording them)
    r = playbook([vx(ns, [dict(base, peers=[p3], purge_peers=False)])])
    assert not r.failed and r.changed, r
    r = playbook([vx(ns, [dict(base, peers=[], purge_peers=False)])])
    assert not r.failed and not r.changed, r
    assert read_record(ns)["fdb"] == {MAC[2]: UNDERLAY[2], p3["mac"]: p3["remote"]}
    r = playbook([vx(ns, [dict(base, peers=[])])])
    assert not r.failed and r.changed, r
    assert not os.path.exists(record_path(ns))
    assert peers(ns) == ({"0a:58:00:00:0a:01": "192.168.77.10", "00:00:00:00:00:00": "192.168.77.11"},
                         {"10.244.10.0": "0a:58:00:00:0a:01"})


def test_default_mac_is_stable_across_recreation(playbook, nodes):
    ns = nodes[1]
    v = {"name": "vxlan.calico", "vni": 4096, "local": UNDERLAY[1], "dev": "eth1"}
    r = playbook([vx(ns, [v])])
    assert not r.failed and r.changed, r
    dev = vtep(ns, "vxlan.calico")
    mac = dev["address"]
    assert int(mac[:2], 16) & 0x03 == 0x02  # unicast, locally administered
    assert dev["linkinfo"]["info_data"]["port"] == 4789 and dev["mtu"] == 1450
    assert r.last["vxlans"][0]["mac"] == mac
    r = playbook([vx(ns, [dict(v, state="absent")])])
    assert not r.failed and r.changed and "vxlan.calico" not in link_names(ns), r
    r = playbook([vx(ns, [dict(v, state="absent")])])
    assert not r.failed and not r.changed, r
    r = playbook([vx(ns, [v])])
    assert not r.failed and vtep(ns, "vxlan.calico")["address"] == mac


def test_purge_removes_only_the_owners_vxlans(playbook, nodes):
    ns = nodes[1]
    sh("ip", "-n", ns, "link", "add", "vxuser", "type", "vxlan", "id", "42", "dstport", "4789", "dev", "eth1")  # not ours
    r = playbook([vx(ns, [{"name": "flannel.1", "vni": 1, "local": UNDERLAY[1], "dev": "eth1"},
                          {"name": "vxold", "vni": 7, "local": UNDERLAY[1], "dev": "eth1"}]),
                  vx(ns, [{"name": "vxother", "vni": 8, "local": UNDERLAY[1], "dev": "eth1"}], owner=OTHER)])
    assert not r.failed, r
    user, other = vtep(ns, "vxuser"), vtep(ns, "vxother")
    r = playbook([vx(ns, [{"name": "flannel.1", "vni": 1, "local": UNDERLAY[1], "dev": "eth1"}], purge=True)])
    assert not r.failed and r.changed and r.last["actions"] == ["delete vxlan vxold"], r
    names = link_names(ns)
    assert "flannel.1" in names and "vxold" not in names
    assert vtep(ns, "vxuser") == user and vtep(ns, "vxother") == other
    # another owner's device cannot be declared (nor deleted) by this owner
    r = playbook([vx(ns, [{"name": "vxother", "state": "absent"}])])
    assert r.failed and r.last["msg"] == "vxlan vxother: belongs to owner itest-b, not to owner itest-a; refusing to take it over", r
    assert vtep(ns, "vxother") == other


def test_kernel_refusal_mid_plan_is_rolled_back_byte_for_byte(playbook, nodes):
    """The n-th device gets an IPv6 address the kernel refuses (IPv6 is off for new links in this
    namespace) after earlier devices were created and changed: all of it is undone."""
    ns = nodes[1]
    p2 = {"mac": MAC[2], "remote": UNDERLAY[2], "ip": "10.244.2.0"}
    base = {"name": "flannel.1", "vni": 1, "port": 8472, "local": UNDERLAY[1], "dev": "eth1", "addresses": ["10.244.1.0/32"]}
    r = playbook([vx(ns, [dict(base, peers=[p2]), {"name": "vxstale", "vni": 9, "dev": "eth1"}])])
    assert not r.failed, r
    sh("bridge", "-n", ns, "fdb", "append", "0a:58:00:00:0a:01", "dev", "flannel.1", "dst", "192.168.77.10", "self", "permanent")
    sh("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", netns=ns)
    before, record = snap(ns), read_record(ns)
    p3 = {"mac": "0a:58:00:00:03:01", "remote": "192.168.77.3", "ip": "10.244.3.0"}
    r = playbook([vx(ns, [dict(base, peers=[p3], mtu=1400, addresses=["10.244.1.0/32", "10.244.1.1/32"]),
                          {"name": "vx.new", "vni": 5, "dev": "eth1"},
                          {"name": "vx.bad", "vni": 6, "dev": "eth1", "addresses": ["fd00:77::1/64"]}], purge=True)])
    assert r.failed, r
    assert r.last["msg"].startswith("add address fd00:77::1/64 to vxlan vx.bad: ")
    assert r.last["msg"].endswith(" actions undone)") and "rolled back" in r.last["msg"], r
    assert r.last["changed"] is False and r.last["not_undone"] == [], r
    assert "delete vxlan vxstale" in r.last["actions"] and "delete vxlan vxstale" not in r.last["done"]
    assert snap(ns) == before
    assert read_record(ns) == record


def test_a_vni_freed_first_is_reported_honestly_when_a_later_action_fails(playbook, nodes):
    """Moving a VNI to a new device name needs the old device deleted first (irreversible); a
    refusal after that is reported as not fully rolled back, with changed=true."""
    ns = nodes[1]
    r = playbook([vx(ns, [{"name": "vxold", "vni": 1, "port": 8472, "dev": "eth1"}])])
    assert not r.failed, r
    sh("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", netns=ns)
    r = playbook([vx(ns, [{"name": "flannel.1", "vni": 1, "port": 8472, "dev": "eth1"},
                          {"name": "vx.bad", "vni": 6, "dev": "eth1", "addresses": ["fd00:77::1/64"]}], purge=True)])
    assert r.failed and r.last["changed"] is True, r
    assert r.last["actions"][0] == "delete vxlan vxold first (a declared device needs its VNI and port)"
    assert r.last["msg"].startswith("add address fd00:77::1/64 to vxlan vx.bad: ")
    assert r.last["msg"].endswith("(NOT fully rolled back: done and kept: delete vxlan vxold first (a declared device needs its VNI and port))"), r
    assert r.last["not_undone"] == ["delete vxlan vxold first (a declared device needs its VNI and port)"]
    names = link_names(ns)
    assert "vxold" not in names and "flannel.1" not in names and "vx.bad" not in names


BAD = [
    ({"vni": 0}, None, "vxlan flannel.1: vni 0 is outside 1..16777215"),
    ({"vni": 16777216}, None, "vxlan flannel.1: vni 16777216 is outside 1..16777215"),
    ({"name": "flannel-vtep-0001"}, None, "vxlan flannel-vtep-0001: name is 17 characters, the kernel allows at most 15"),
    ({}, [["link", "add", "flannel.1", "type", "veth", "peer", "name", "fpeer"]],
     "vxlan flannel.1: the name is taken by a link of kind veth, not vxlan"),
    ({}, [["link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472"]],
     "vxlan flannel.1: a vxlan link of that name exists and is not podnet.fabric's (alias None); remove it or pick another name"),
    ({}, [["link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472"], ["link", "set", "flannel.1", "alias", "podnet.fabric:itest-b"]],
     "vxlan flannel.1: belongs to owner itest-b, not to owner itest-a; refusing to take it over"),
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


def compute_batched_cases(target_python, tmp_path_factory):
    """Each BAD case on a node pair of its own (the ``nodes`` set-up), the module called once per
    case on node 1, all the calls in one playbook (conftest.run_cases): [(task result, snap
    before, after)]."""
    with netns_pool() as make:
        pairs = []
        try:
            prepared = []
            for change, setup, _message in BAD:
                nodes = _underlay(make("pnt-n1-"), make("pnt-n2-"))
                pairs.append(nodes)
                for argv in setup or []:
                    sh("ip", "-n", nodes[1], *argv)
                ok = {"name": "vx.ok", "vni": 77, "local": UNDERLAY[1], "dev": "eth1"}  # valid, listed first
                bad = dict({"name": "flannel.1", "vni": 1, "port": 8472, "local": UNDERLAY[1], "dev": "eth1"}, **change)
                prepared.append((nodes[1], vx(nodes[1], [ok, bad])))
            return run_cases(prepared, snap, target_python, tmp_path_factory.mktemp("vxlan-bad-input") / "play.yml")
        finally:
            for nodes in pairs:
                remove_records(nodes[1], nodes[2])


@pytest.mark.xdist_group("vxlan-bad-input")
@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_fails_with_one_line_and_changes_nothing(batched_cases, case):
    result, before, after = batched_cases[case]
    assert result.get("failed"), result
    assert result["msg"] == BAD[case][2]
    assert after == before


def test_missing_netns_is_an_error(playbook):
    missing = "pnt-no-such-ns"
    r = playbook([vx(missing, [{"name": "flannel.1", "vni": 1}])])
    assert r.failed and r.last["msg"] == "netns %s: does not exist" % missing
    assert snapshot(missing) == {missing: None}
