"""vxlan and neigh cores: normalization, the default MAC, reconcile/recreate, peers, purge (no kernel)."""
from __future__ import annotations

import os

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import neigh, vxlan
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, PlanFailed

from .fake_netlink import FakeIPR

PEER = {"mac": "0a:00:00:00:00:02", "remote": "192.168.1.12", "ip": "10.244.2.0"}
FLANNEL = {"name": "flannel.1", "vni": 1, "port": 8472, "local": "192.168.1.11", "dev": "eth0",
           "addresses": ["10.244.1.0/32"], "peers": [PEER]}
VXDATA = {"IFLA_VXLAN_ID": 1, "IFLA_VXLAN_PORT": 8472, "IFLA_VXLAN_LOCAL": "192.168.1.11",
          "IFLA_VXLAN_LINK": 2, "IFLA_VXLAN_LEARNING": 0}


def node(mtu=1500):
    ipr = FakeIPR()
    ipr.add_link("lo")
    eth0 = ipr.add_link("eth0", kind="veth", mtu=mtu)
    ipr.add_addr(eth0, "192.168.1.11/24")
    return ipr


OWNED = "podnet.fabric:a"
RECORD = {"fdb": {"0a:00:00:00:00:02": "192.168.1.12"}, "neighbours": {"10.244.2.0": "0a:00:00:00:00:02"}}


class MemStore(vxlan.PeerStore):
    """The peer record without files (PeerStore's own file handling is tested below)."""

    def __init__(self, records=None):
        vxlan.PeerStore.__init__(self, "a", base="/nonexistent")
        self.records = dict(records or {})

    def read(self, dev):
        return dict(self.records.get(dev, {}))

    def write(self, dev, record):
        if record:
            self.records[dev] = record
        else:
            self.records.pop(dev, None)


def with_flannel(ipr, data=None, mac=None, alias=OWNED, fdb=(("0a:00:00:00:00:02", "192.168.1.12"),),
                 neighbours=(("10.244.2.0", "0a:00:00:00:00:02"),)):
    mac = mac or vxlan.default_mac("flannel.1", 1, "192.168.1.11")
    idx = ipr.add_link("flannel.1", kind="vxlan", alias=alias, mtu=1450, mac=mac, data=dict(VXDATA, **(data or {})))
    ipr.add_addr(idx, "10.244.1.0/32")
    for m, dst in fdb:
        ipr.add_fdb(idx, m, dst)
    for ip, m in neighbours:
        ipr.add_neigh(idx, ip, m)
    return idx


def plan(ipr, *specs, **kw):
    kw.setdefault("store", MemStore({"flannel.1": RECORD}))
    owner = kw.pop("owner", "a")
    return vxlan.plan(ipr, [vxlan.normalize(s) for s in specs], owner, **kw)


# --- normalize ------------------------------------------------------------------------------------

def test_defaults():
    v = vxlan.normalize({"name": "vxlan.calico", "vni": 4096})
    assert (v["port"], v["learning"], v["purge_peers"], v["local"], v["dev"], v["mtu"]) == (4789, False, True, None, None, None)


def test_default_mac_is_stable_unicast_and_locally_administered():
    a = vxlan.default_mac("flannel.1", 1, "192.168.1.11")
    assert a == vxlan.default_mac("flannel.1", 1, "192.168.1.11")
    assert a != vxlan.default_mac("flannel.1", 1, "192.168.1.12")
    assert a != vxlan.default_mac("flannel.1", 2, "192.168.1.11")
    first = int(a[:2], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2
    assert vxlan.normalize(dict(FLANNEL))["mac"] == a
    assert vxlan.normalize(dict(FLANNEL, mac="0A:58:C0:A8:01:0B"))["mac"] == "0a:58:c0:a8:01:0b"


@pytest.mark.parametrize("spec,message", [
    ({"vni": 0}, "vxlan flannel.1: vni 0 is outside 1..16777215"),
    ({"vni": 16777216}, "vxlan flannel.1: vni 16777216 is outside 1..16777215"),
    ({"vni": None}, "vxlan flannel.1: vni is required (1..16777215)"),
    ({"name": "flannel-is-too-long"}, "vxlan flannel-is-too-long: name is 19 characters, the kernel allows at most 15"),
    ({"port": 0}, "vxlan flannel.1: port 0 is outside 1..65535"),
    ({"local": "192.168.1.300"}, "vxlan flannel.1: local: '192.168.1.300' is not a valid IP address"),
    ({"dev": "flannel.1"}, "vxlan flannel.1: cannot be its own uplink"),
    ({"mtu": 10}, "vxlan flannel.1: mtu 10 is outside 68..65535"),
    ({"mac": "01:00:5e:00:00:01"}, "vxlan flannel.1: mac: 01:00:5e:00:00:01 is a multicast MAC address"),
    ({"addresses": ["10.244.1.0/33"]}, "vxlan flannel.1: '10.244.1.0/33' is not a valid IP address with prefix"),
    ({"peers": [dict(PEER, mac="zz")]}, "vxlan flannel.1 peer zz: 'zz' is not a MAC address"),
    ({"peers": [dict(PEER, mac="00:00:00:00:00:00")]}, "the all-zeros MAC is a flood entry, not a peer"),
    ({"peers": [dict(PEER, remote=None)]}, "vxlan flannel.1 peer 0a:00:00:00:00:02: remote (the remote node's underlay IP) is required"),
    ({"peers": [dict(PEER, remote="239.1.1.1")]}, "vxlan flannel.1 peer 0a:00:00:00:00:02: remote 239.1.1.1 is not a unicast node address"),
    ({"peers": [dict(PEER, remote="0.0.0.0")]}, "remote 0.0.0.0 is not a unicast node address"),
    ({"peers": [dict(PEER, remote="fd00::12")]}, "remote fd00::12 is IPv6 but the underlay (local) is IPv4"),
    ({"peers": [dict(PEER, ip="10.244.2.300")]}, "vxlan flannel.1 peer 0a:00:00:00:00:02: ip: '10.244.2.300' is not a valid IP address"),
    ({"peers": [PEER, dict(PEER, remote="192.168.1.13", ip=None)]}, "vxlan flannel.1 peer 0a:00:00:00:00:02: listed twice"),
    ({"peers": [PEER, dict(PEER, mac="0a:00:00:00:00:03")]}, "tunnel ip 10.244.2.0 is also given for peer 0a:00:00:00:00:02"),
])
def test_normalize_rejects_bad_input_naming_the_device(spec, message):
    with pytest.raises(FabricError) as err:
        vxlan.normalize(dict(FLANNEL, **spec))
    assert message in str(err.value)


# --- plan -----------------------------------------------------------------------------------------

def test_create_everything_in_order():
    ipr = node()
    store = MemStore()
    p = plan(ipr, FLANNEL, store=store)
    mac = vxlan.default_mac("flannel.1", 1, "192.168.1.11")
    assert p.descriptions == [
        "create vxlan flannel.1 (vni 1, port 8472, local 192.168.1.11, dev eth0, nolearning)",
        "set vxlan flannel.1 alias podnet.fabric:a, mtu 1450, mac %s" % mac,
        "set vxlan flannel.1 up",
        "add address 10.244.1.0/32 to vxlan flannel.1",
        "add fdb entry 0a:00:00:00:00:02 dst 192.168.1.12 to vxlan flannel.1",
        "add permanent neighbour 10.244.2.0 lladdr 0a:00:00:00:00:02 to vxlan flannel.1",
        "record 1 fdb entries and 1 neighbours of vxlan flannel.1 in /nonexistent/a/vxlan-host:flannel.1.json",
    ]
    assert p.before["flannel.1"] == {"name": "flannel.1", "state": "absent"}
    assert p.after["flannel.1"]["peers"] == [PEER]
    assert p.after["flannel.1"]["mtu"] == 1450
    p.apply()
    assert store.records == {"flannel.1": RECORD}
    cmd, kw = ipr.requests("link")[0]
    assert cmd == "add" and kw == {"ifname": "flannel.1", "kind": "vxlan", "vxlan_id": 1, "vxlan_port": 8472,
                                   "vxlan_learning": 0, "vxlan_local": "192.168.1.11", "vxlan_link": 2}
    (cmd, kw), = ipr.requests("fdb")
    assert (cmd, kw["lladdr"], kw["dst"], kw["state"], kw["flags"]) == ("replace", "0a:00:00:00:00:02", "192.168.1.12", 0xC0, 2)
    (cmd, kw), = ipr.requests("neigh")
    assert (cmd, kw["dst"], kw["lladdr"], kw["state"]) == ("replace", "10.244.2.0", "0a:00:00:00:00:02", 0x80)


def test_matching_device_is_no_change():
    ipr = node()
    with_flannel(ipr)
    p = plan(ipr, FLANNEL)
    assert not p.changed, p.descriptions
    assert p.before["flannel.1"] == p.after["flannel.1"]


def test_mtu_follows_the_uplink_or_the_link_holding_local():
    ipr = node(mtu=9000)
    assert plan(ipr, FLANNEL).after["flannel.1"]["mtu"] == 8950
    assert plan(ipr, dict(FLANNEL, dev=None)).after["flannel.1"]["mtu"] == 8950
    assert plan(ipr, dict(FLANNEL, dev=None, local=None)).after["flannel.1"]["mtu"] is None
    with pytest.raises(FabricError) as err:
        plan(node(), dict(FLANNEL, mtu=1500))
    assert str(err.value) == ("vxlan flannel.1: mtu 1500 is more than uplink eth0's MTU 1500 minus 50 bytes of VXLAN overhead (at most 1450)")


def test_drift_is_reconciled_in_place_and_only_recorded_peers_are_purged():
    ipr = node()
    idx = with_flannel(ipr, mac="0a:00:00:00:00:99", fdb=(("0a:00:00:00:00:02", "192.168.1.99"), ("0a:00:00:00:00:07", "192.168.1.17"),
                                                          ("0a:00:00:00:00:0a", "192.168.1.20")),
                       neighbours=(("10.244.2.0", "0a:00:00:00:00:99"), ("10.244.7.0", "0a:00:00:00:00:07"), ("10.244.10.0", "0a:00:00:00:00:0a")))
    ipr.add_fdb(idx, "0a:00:00:00:00:08", "192.168.1.18", state=0x02)  # learned (reachable): not ours
    ipr.add_fdb(idx, "33:33:00:00:00:01")                                # the device's own address list
    ipr.add_neigh(idx, "10.244.8.8", "0a:00:00:00:00:08", state=0x02)     # resolved by the kernel
    # the owner added 02 and 07 (a node that left); 0a is the user's own, as is the neighbour 10.244.10.0
    record = {"fdb": {"0a:00:00:00:00:02": "192.168.1.12", "0a:00:00:00:00:07": "192.168.1.17"},
              "neighbours": {"10.244.2.0": "0a:00:00:00:00:02", "10.244.7.0": "0a:00:00:00:00:07"}}
    store = MemStore({"flannel.1": record})
    p = plan(ipr, FLANNEL, store=store)
    mac = vxlan.default_mac("flannel.1", 1, "192.168.1.11")
    assert p.descriptions == [
        "set vxlan flannel.1 mac %s" % mac,
        "remove fdb entry 0a:00:00:00:00:07 dst 192.168.1.17 from vxlan flannel.1",
        "change fdb entry 0a:00:00:00:00:02 on vxlan flannel.1: dst 192.168.1.99 -> 192.168.1.12",
        "remove permanent neighbour 10.244.7.0 lladdr 0a:00:00:00:00:07 from vxlan flannel.1",
        "change permanent neighbour 10.244.2.0 on vxlan flannel.1: lladdr 0a:00:00:00:00:99 -> 0a:00:00:00:00:02",
        "record 1 fdb entries and 1 neighbours of vxlan flannel.1 in /nonexistent/a/vxlan-host:flannel.1.json",
    ]
    peers = p.after["flannel.1"]["peers"]
    assert {"mac": "0a:00:00:00:00:0a", "remote": "192.168.1.20", "ip": "10.244.10.0"} in peers
    assert not [x for x in peers if x["mac"] == "0a:00:00:00:00:07"]
    p.apply()
    assert store.records["flannel.1"] == RECORD
    kept = plan(ipr, dict(FLANNEL, purge_peers=False), store=MemStore({"flannel.1": record}))
    assert not [d for d in kept.descriptions if d.startswith("remove")]
    assert {"mac": "0a:00:00:00:00:07", "remote": "192.168.1.17", "ip": "10.244.7.0"} in kept.after["flannel.1"]["peers"]
    assert not [d for d in kept.descriptions if d.startswith("record")]   # 07 stays recorded, 02 is declared


def test_without_a_record_nothing_undeclared_is_removed():
    ipr = node()
    with_flannel(ipr, fdb=(("0a:00:00:00:00:07", "192.168.1.17"),), neighbours=(("10.244.7.0", "0a:00:00:00:00:07"),))
    p = plan(ipr, FLANNEL, store=MemStore())
    assert not [d for d in p.descriptions if d.startswith("remove")]
    # an entry that changed since it was recorded is somebody else's now: not removed
    p = plan(ipr, FLANNEL, store=MemStore({"flannel.1": {"fdb": {"0a:00:00:00:00:07": "192.168.1.99"}, "neighbours": {}}}))
    assert not [d for d in p.descriptions if d.startswith("remove")]


def test_peer_store_files_are_root_only_and_undo_puts_the_old_record_back(tmp_path):
    store = vxlan.PeerStore("a", netns="pod-1", base=str(tmp_path))
    assert store.path("flannel.1") == str(tmp_path / "a" / "vxlan-netns-pod-1:flannel.1.json")
    assert vxlan.PeerStore("a", base=str(tmp_path)).path("flannel.1").endswith("/a/vxlan-host:flannel.1.json")
    assert store.read("flannel.1") == {}
    p = Plan()
    store.plan_write(p, "flannel.1", {}, RECORD, "vxlan flannel.1")
    p.apply()
    assert store.read("flannel.1") == RECORD
    assert oct(os.stat(store.path("flannel.1")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(str(tmp_path / "a")).st_mode & 0o777) == "0o700"
    p = Plan()
    store.plan_write(p, "flannel.1", RECORD, {}, "vxlan flannel.1")
    assert p.descriptions == ["forget the peers of vxlan flannel.1 (%s)" % store.path("flannel.1")]
    p.actions[0].do()
    assert not os.path.exists(store.path("flannel.1"))
    p.actions[0].undo()
    assert store.read("flannel.1") == RECORD
    with open(store.path("flannel.1"), "w") as handle:
        handle.write("not json")
    assert store.read("flannel.1") == {}   # unreadable: nothing is removed on its account
    p = Plan()
    store.plan_write(p, "flannel.1", RECORD, RECORD, "vxlan flannel.1")
    assert not p.changed


@pytest.mark.parametrize("change,why", [
    ({"vni": 2}, "vni 1 -> 2"),
    ({"port": 4789}, "port 8472 -> 4789"),
    ({"local": "192.168.1.99"}, "local 192.168.1.11 -> 192.168.1.99"),
    ({"learning": True}, "learning off -> on"),
])
def test_immutable_settings_recreate_the_device(change, why):
    ipr = node()
    idx = with_flannel(ipr)
    ipr.add_route("10.244.2.0/24", gateway="10.244.2.0", oif=idx, flags=4)        # ours, dropped with the link
    ipr.add_route("10.244.9.0/24", gateway="10.244.9.0", oif=idx, flags=4, proto=4)  # the user's, dropped too
    spec = dict(FLANNEL, mac=vxlan.default_mac("flannel.1", 1, "192.168.1.11"), **change)
    p = plan(ipr, spec)
    assert p.descriptions[0] == "delete vxlan flannel.1 to recreate it (%s: cannot change in place)" % why
    assert p.actions[0].irreversible
    assert p.descriptions[1].startswith("create vxlan flannel.1 (")
    assert "add address 10.244.1.0/32 to vxlan flannel.1" in p.descriptions
    assert "add fdb entry 0a:00:00:00:00:02 dst 192.168.1.12 to vxlan flannel.1" in p.descriptions
    assert p.descriptions[-1] == ("re-add 2 route(s) through vxlan flannel.1 that the kernel dropped with the old link: "
                                  "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink; 10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink")
    p.apply()
    readd = [kw for m, c, kw in ipr.changes("route")]
    assert [(kw["dst"], kw["proto"], kw["flags"]) for kw in readd] == [("10.244.2.0", 150, 4), ("10.244.9.0", 4, 4)]


def test_recreate_puts_back_the_entries_an_in_place_run_would_keep():
    def three_peers():
        # 02 declared; 07 the owner's (recorded) but no longer declared; 0a the user's
        ipr = node()
        with_flannel(ipr, fdb=(("0a:00:00:00:00:02", "192.168.1.12"), ("0a:00:00:00:00:07", "192.168.1.17"), ("0a:00:00:00:00:0a", "192.168.1.20")),
                     neighbours=(("10.244.2.0", "0a:00:00:00:00:02"), ("10.244.7.0", "0a:00:00:00:00:07"), ("10.244.10.0", "0a:00:00:00:00:0a")))
        return ipr
    record = {"fdb": {"0a:00:00:00:00:02": "192.168.1.12", "0a:00:00:00:00:07": "192.168.1.17"},
              "neighbours": {"10.244.2.0": "0a:00:00:00:00:02", "10.244.7.0": "0a:00:00:00:00:07"}}
    ipr = three_peers()
    p = plan(ipr, dict(FLANNEL, vni=2), store=MemStore({"flannel.1": record}))
    assert "put back 1 fdb entries and 1 permanent neighbours the old vxlan flannel.1 had" in p.descriptions
    assert [x["mac"] for x in p.after["flannel.1"]["peers"]] == ["0a:00:00:00:00:02", "0a:00:00:00:00:0a"]
    p.apply()
    assert sorted(kw["lladdr"] for c, kw in ipr.requests("fdb")) == ["0a:00:00:00:00:02", "0a:00:00:00:00:0a"]
    kept = plan(three_peers(), dict(FLANNEL, vni=2, purge_peers=False), store=MemStore({"flannel.1": record}))
    assert "put back 2 fdb entries and 2 permanent neighbours the old vxlan flannel.1 had" in kept.descriptions


def test_recreate_is_reported_honestly_when_a_later_action_fails():
    ipr = node()
    with_flannel(ipr)
    ipr.fail("fdb", "replace", 22)
    p = plan(ipr, dict(FLANNEL, vni=2))
    with pytest.raises(PlanFailed) as err:
        p.apply()
    assert str(err.value).startswith("add fdb entry 0a:00:00:00:00:02 dst 192.168.1.12 to vxlan flannel.1: Invalid argument (errno 22) "
                                     "(NOT fully rolled back: done and kept: delete vxlan flannel.1 to recreate it (vni 1 -> 2")
    assert err.value.changed
    adds = [kw for m, c, kw in ipr.changes("link") if c == "add"]
    assert [kw["vxlan_id"] for kw in adds] == [2]
    assert [c for m, c, kw in ipr.changes("link")][-1] == "del"   # the new device is undone


def test_other_devices_come_before_a_recreate_and_deletes_last():
    ipr = node()
    with_flannel(ipr)
    ipr.add_link("old.9", kind="vxlan", alias=OWNED, data=dict(VXDATA, IFLA_VXLAN_ID=9))
    other = {"name": "vx.7", "vni": 7, "dev": "eth0"}
    p = plan(ipr, dict(FLANNEL, vni=2), other, purge=True)
    first_recreate = p.descriptions.index("delete vxlan flannel.1 to recreate it (vni 1 -> 2: cannot change in place)")
    assert p.descriptions[0].startswith("create vxlan vx.7")
    assert all("vx.7" not in d for d in p.descriptions[first_recreate:])
    assert p.descriptions[-1] == "delete vxlan old.9"
    assert not p.irreversible_last()   # the recreate's delete must precede its create: PlanFailed says so if later ones fail


@pytest.mark.parametrize("setup,message", [
    (lambda ipr: ipr.add_link("flannel.1", kind="bridge"), "vxlan flannel.1: the name is taken by a link of kind bridge, not vxlan"),
    (lambda ipr: with_flannel(ipr, alias=None), "vxlan flannel.1: a vxlan link of that name exists and is not podnet.fabric's"),
    (lambda ipr: with_flannel(ipr, alias="podnet.fabric:b"), "vxlan flannel.1: belongs to owner b, not to owner a; refusing to take it over"),
    (lambda ipr: ipr.add_link("vxuser", kind="vxlan", data=dict(VXDATA)),
     "vxlan flannel.1: VNI 1 on port 8472 is already used by vxlan vxuser in this namespace"),
])
def test_conflicts_are_errors(setup, message):
    ipr = node()
    setup(ipr)
    with pytest.raises(FabricError) as err:
        plan(ipr, FLANNEL)
    assert message in str(err.value)


def test_legacy_device_is_adopted_in_place():
    ipr = node()
    with_flannel(ipr, alias="podnet.fabric")
    p = plan(ipr, FLANNEL, store=MemStore())
    assert p.descriptions == ["set vxlan flannel.1 alias podnet.fabric:a",
                              "record 1 fdb entries and 1 neighbours of vxlan flannel.1 in /nonexistent/a/vxlan-host:flannel.1.json"]
    # and never purged, nor deleted by another owner's purge
    assert not plan(ipr, purge=True).changed
    assert not plan(ipr, purge=True, owner="b").changed


def test_uplink_must_exist_except_in_check_mode():
    with pytest.raises(FabricError, match="vxlan flannel.1: uplink dev eth9 does not exist"):
        plan(node(), dict(FLANNEL, dev="eth9"))
    assert plan(node(), dict(FLANNEL, dev="eth9"), assume_links=True).changed
    assert plan(None, FLANNEL, assume_links=True).descriptions[0].startswith("create vxlan flannel.1")


def test_same_vni_declared_twice_and_name_twice():
    with pytest.raises(FabricError, match="vxlan b: VNI 1 on port 8472 is also declared for vxlan flannel.1"):
        plan(node(), FLANNEL, dict(FLANNEL, name="b", peers=[]))
    with pytest.raises(FabricError, match="vxlan flannel.1: declared twice"):
        plan(node(), FLANNEL, FLANNEL)


def test_purge_and_absent_delete_only_the_owners_vxlans_last_unless_a_vni_must_move():
    ipr = node()
    ipr.add_link("old.1", kind="vxlan", alias=OWNED, data=dict(VXDATA))                    # same VNI, moves to flannel.1
    ipr.add_link("old.5", kind="vxlan", alias=OWNED, data=dict(VXDATA, IFLA_VXLAN_ID=5))   # just stale
    ipr.add_link("vxb", kind="vxlan", alias="podnet.fabric:b", data=dict(VXDATA, IFLA_VXLAN_ID=43))  # owner b's
    ipr.add_link("vxuser", kind="vxlan", data=dict(VXDATA, IFLA_VXLAN_ID=42))      # the user's
    ipr.add_link("br0", kind="bridge", alias=OWNED)                                 # ours, but not a vxlan
    store = MemStore({"old.1": RECORD})
    p = plan(ipr, FLANNEL, purge=True, store=store)
    assert p.descriptions[:2] == ["forget the peers of vxlan old.1 (/nonexistent/a/vxlan-host:old.1.json)",
                                  "delete vxlan old.1 first (a declared device needs its VNI and port)"]
    assert p.descriptions[2].startswith("create vxlan flannel.1")
    assert p.descriptions[-1] == "delete vxlan old.5"
    assert not [d for d in p.descriptions if "vxuser" in d or "br0" in d or "vxb" in d]
    p = plan(ipr, {"name": "old.5", "state": "absent"})
    assert p.descriptions == ["delete vxlan old.5"] and p.irreversible_last()
    with pytest.raises(FabricError, match="vxlan vxuser: a vxlan link of that name exists and is not podnet.fabric's"):
        plan(ipr, {"name": "vxuser", "state": "absent"})
    with pytest.raises(FabricError, match="vxlan vxb: belongs to owner b, not to owner a"):
        plan(ipr, {"name": "vxb", "state": "absent"})
    assert not plan(ipr, {"name": "gone.1", "state": "absent"}).changed


def test_ipv6_underlay():
    ipr = node()
    ipr.add_addr(2, "fd00:1::11/64")
    spec = dict(FLANNEL, local="fd00:1::11", peers=[dict(PEER, remote="fd00:1::12")])
    p = plan(ipr, spec)
    assert p.after["flannel.1"]["mtu"] == 1430
    p.apply()
    assert ipr.changes("link")[0][2]["vxlan_local6"] == "fd00:1::11"


# --- neigh helpers --------------------------------------------------------------------------------

def test_fdb_and_neighbour_observers_keep_only_static_entries_with_a_remote():
    ipr = FakeIPR()
    ipr.add_link("vx0", kind="vxlan")
    ipr.add_fdb(1, "0A:00:00:00:00:02", "192.168.1.12")
    ipr.add_fdb(1, "0a:00:00:00:00:03", "192.168.1.13", state=0x02)
    ipr.add_fdb(1, "33:33:00:00:00:01")
    ipr.add_fdb(9, "0a:00:00:00:00:04", "192.168.1.14")
    ipr.add_neigh(1, "10.244.2.0", "0a:00:00:00:00:02")
    ipr.add_neigh(1, "10.244.3.0", "0a:00:00:00:00:03", state=0x02)
    assert neigh.fdb_entries(ipr, 1) == {"0a:00:00:00:00:02": "192.168.1.12"}
    assert neigh.neighbours(ipr, 1) == {"10.244.2.0": ("0a:00:00:00:00:02", True), "10.244.3.0": ("0a:00:00:00:00:03", False)}
    assert neigh.fdb_entries(None, 1) == {} and neigh.neighbours(None, 1) == {}


def test_dynamic_neighbour_for_a_declared_ip_becomes_permanent_and_undo_deletes_it():
    ipr = FakeIPR()
    ipr.add_link("vx0", kind="vxlan")
    p = Plan()
    neigh.plan_neighbours(p, ipr, "vx0", {"10.244.2.0": ("0a:00:00:00:00:02", False)}, {"10.244.2.0": "0a:00:00:00:00:02"}, {}, "vxlan vx0")
    assert p.descriptions == ["add permanent neighbour 10.244.2.0 lladdr 0a:00:00:00:00:02 to vxlan vx0"]
    p.actions[0].do()
    p.actions[0].undo()
    assert [(c, kw["dst"]) for m, c, kw in ipr.changes("neigh")] == [("replace", "10.244.2.0"), ("del", "10.244.2.0")]


def test_deleting_entries_already_gone_is_success():
    ipr = FakeIPR()
    ipr.add_link("vx0", kind="vxlan")
    ipr.fail("fdb", "del", 2)
    ipr.fail("neigh", "del", 2)
    neigh.fdb_delete(ipr, "vx0", "0a:00:00:00:00:02", "192.168.1.12")
    neigh.neigh_delete(ipr, "vx0", "10.244.2.0")
    neigh.fdb_delete(ipr, "nosuch", "0a:00:00:00:00:02", "192.168.1.12")
