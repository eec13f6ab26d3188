"""route core: normalization, the gateway check, ownership, purge and rollback (no kernel)."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import route
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, PlanFailed

OURS, OTHER = 150, 151          # owner "a" and owner "b" in the registry below
NAMES = {OURS: "a", OTHER: "b"}

from .fake_netlink import FakeIPR


def norm(**spec):
    return route.normalize(spec)


def node():
    """A node: eth0 192.168.1.11/24 (uplink), flannel.1 with 10.244.1.0/32, a down link."""
    ipr = FakeIPR()
    lo = ipr.add_link("lo")
    ipr.add_addr(lo, "127.0.0.1/8")
    eth0 = ipr.add_link("eth0", kind="veth")
    ipr.add_addr(eth0, "192.168.1.11/24")
    ipr.add_addr(eth0, "fd00:1::11/64")
    eth1 = ipr.add_link("eth1", kind="veth")
    ipr.add_addr(eth1, "192.168.2.11/24")
    fl = ipr.add_link("flannel.1", kind="vxlan", alias="podnet.fabric")
    ipr.add_addr(fl, "10.244.1.0/32")
    ipr.add_link("down0", kind="veth", up=False)
    return ipr


def plan(ipr, *specs, **kw):
    kw.setdefault("names", NAMES)
    protocol = kw.pop("protocol", OURS)
    return route.plan(ipr, [route.normalize(s) for s in specs], protocol, **kw)


# --- normalize ------------------------------------------------------------------------------------

def test_normalize_defaults_and_canonical_forms():
    r = norm(dest="default", gateway="192.168.1.1")
    assert (r["dest"], r["family"], r["table"], r["metric"], r["scope"], r["type"]) == ("0.0.0.0/0", 2, 254, 0, 0, "unicast")
    r6 = norm(dest="FD00:10:244:2::/64", dev="eth0")
    assert (r6["dest"], r6["family"], r6["metric"], r6["scope"]) == ("fd00:10:244:2::/64", 10, 1024, 0)
    assert norm(dest="10.244.2.0/24", dev="eth0")["scope"] == 253            # no gateway: link
    assert norm(dest="10.244.2.0/24", type="blackhole")["scope"] == 0
    assert norm(dest="10.244.2.0/24", dev="eth0", type="local")["scope"] == 254
    assert norm(dest="10.0.0.0/8", dev="eth0", table="100")["table"] == 100
    assert norm(dest="10.0.0.0/8", dev="eth0", table="local")["table"] == 255
    assert norm(dest="10.0.0.0/8", dev="eth0", scope="host")["scope"] == 254


def test_nexthops_are_sorted_and_weighted():
    r = norm(dest="10.96.0.10/32", nexthops=[{"gateway": "192.168.1.13", "weight": 3}, {"gateway": "192.168.1.12"}])
    assert [(h["gateway"], h["weight"]) for h in r["nexthops"]] == [("192.168.1.12", 1), ("192.168.1.13", 3)]


@pytest.mark.parametrize("spec,message", [
    ({"dest": "10.244.2.0/33", "dev": "eth0"}, "route 10.244.2.0/33: '10.244.2.0/33' is not a valid network"),
    ({"dest": "10.244.2.1/24", "dev": "eth0"}, "has host bits set"),
    ({"dest": "nonsense", "dev": "eth0"}, "route nonsense: 'nonsense' is not a valid network"),
    ({"dest": "", "dev": "eth0"}, "route: dest is required"),
    ({"dest": "10.244.2.0/24", "gateway": "10.0.0.300"}, "route 10.244.2.0/24: gateway: '10.0.0.300' is not a valid IP address"),
    ({"dest": "10.244.2.0/24", "gateway": "fd00::1"}, "route 10.244.2.0/24: gateway fd00::1 is not of the destination's address family"),
    ({"dest": "10.244.2.0/24", "dev": "a-very-long-ifname0"}, "route 10.244.2.0/24: dev a-very-long-ifname0: name is 19 characters"),
    ({"dest": "10.244.2.0/24"}, "route 10.244.2.0/24: a unicast route needs a gateway, a dev or nexthops"),
    ({"dest": "10.244.2.0/24", "type": "blackhole", "dev": "eth0"}, "a blackhole route takes no gateway, dev, onlink or nexthops"),
    ({"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "onlink": True}, "onlink needs both gateway and dev"),
    ({"dest": "10.244.2.0/24", "gateway": "10.0.0.1", "dev": "eth0", "scope": "link"}, "a route with a gateway must have scope universe"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "scope": "moon"}, "scope 'moon' is neither one of host/link/site/universe nor a number"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "table": "0"}, "route 10.244.2.0/24: table 0 is outside 1..4294967295"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "metric": -1}, "metric -1 is outside"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "mtu": 20}, "mtu 20 is outside 68..65535"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "src": "fd00::1"}, "src fd00::1 is not of the destination's address family"),
    ({"dest": "10.244.2.0/24", "dev": "eth0", "type": "bogus"}, "type 'bogus' is not one of"),
    ({"dest": "fd00::/64", "dev": "eth0", "scope": "link"}, "IPv6 routes have no scope"),
    ({"dest": "fd00::/64", "gateway": "fe80::1"}, "link-local gateway fe80::1 needs a dev"),
    ({"dest": "10.1.0.0/16", "nexthops": [{"gateway": "10.0.0.1"}]}, "nexthops needs at least two entries"),
    ({"dest": "10.1.0.0/16", "gateway": "10.0.0.1", "nexthops": [{"gateway": "10.0.0.1"}, {"gateway": "10.0.0.2"}]},
     "give either nexthops or gateway/dev/onlink, not both"),
    ({"dest": "10.1.0.0/16", "nexthops": [{"gateway": "10.0.0.1", "weight": 0}, {"gateway": "10.0.0.2"}]},
     "route 10.1.0.0/16 nexthop 1: nexthop weight 0 is outside 1..256"),
    ({"dest": "10.1.0.0/16", "nexthops": [{"gateway": "10.0.0.1"}, {"gateway": "10.0.0.1"}]}, "the same nexthop is listed twice"),
    ({"dest": "10.1.0.0/16", "nexthops": [{"weight": 2}, {"gateway": "10.0.0.1"}]}, "route 10.1.0.0/16 nexthop 1: needs a gateway or a dev"),
])
def test_normalize_rejects_bad_input_naming_the_route(spec, message):
    with pytest.raises(FabricError) as err:
        route.normalize(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value,ok", [(150, True), (179, True), (200, True), (255, True), (149, False), (4, False), (12, False),
                                      (3, False), (2, False), (0, False), (256, False), ("x", False)])
def test_protocol_range(value, ok):
    if ok:
        assert route.check_protocol(value) == value
    else:
        with pytest.raises(FabricError, match="protocol"):
            route.check_protocol(value)


# --- the gateway check ----------------------------------------------------------------------------

def test_connected_dev_longest_prefix_scope_and_dev():
    routes = [
        {"family": 2, "table": 254, "type": "unicast", "dest": "10.0.0.0/8", "gateway": None, "nexthops": [], "dev": "eth0", "scope": 253},
        {"family": 2, "table": 254, "type": "unicast", "dest": "10.1.0.0/16", "gateway": None, "nexthops": [], "dev": "eth1", "scope": 253},
        {"family": 2, "table": 254, "type": "unicast", "dest": "10.1.2.0/24", "gateway": "10.0.0.1", "nexthops": [], "dev": "eth0", "scope": 0},
        {"family": 2, "table": 254, "type": "unicast", "dest": "10.1.3.0/24", "gateway": None, "nexthops": [], "dev": "eth2", "scope": 0},
    ]
    assert route.connected_dev(routes, 2, "10.1.2.5", 254) == "eth1"       # via-gateway route does not count
    assert route.connected_dev(routes, 2, "10.1.2.5", 254, "eth0") == "eth0"
    assert route.connected_dev(routes, 2, "10.1.3.5", 254) == "eth1"       # scope universe does not count
    assert route.connected_dev(routes, 2, "10.9.9.9", 254, "eth1") is None
    assert route.connected_dev(routes, 2, "11.0.0.1", 254) is None
    assert route.connected_dev(routes, 10, "fe80::1", 254, "eth0") == "eth0"


def test_gateway_not_connected_is_an_error_that_suggests_onlink():
    with pytest.raises(FabricError) as err:
        plan(node(), {"dest": "10.244.2.0/24", "gateway": "10.9.9.9", "dev": "eth0"})
    assert str(err.value) == ("route 10.244.2.0/24: gateway 10.9.9.9 is not on a connected network of dev eth0; "
                              "set onlink: true if it is reachable on that link anyway")
    with pytest.raises(FabricError, match="not on a connected network of any link; set dev and onlink: true"):
        plan(node(), {"dest": "10.244.2.0/24", "gateway": "10.9.9.9"})
    with pytest.raises(FabricError, match="gateway 192.168.2.1 is not on a connected network of dev eth0"):
        plan(node(), {"dest": "10.244.2.0/24", "gateway": "192.168.2.1", "dev": "eth0"})


def test_gateway_without_dev_gets_the_connected_link():
    p = plan(node(), {"dest": "10.244.2.0/24", "gateway": "192.168.2.12"})
    assert p.descriptions == ["add route 10.244.2.0/24 via 192.168.2.12 dev eth1"]
    assert p.after["10.244.2.0/24"]["dev"] == "eth1"


def test_onlink_skips_the_gateway_check():
    p = plan(node(), {"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "onlink": True})
    assert p.descriptions == ["add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]


def test_ptp_pattern_gateway_made_reachable_by_an_earlier_route_of_the_same_task():
    p = plan(node(), {"dest": "10.244.1.1/32", "dev": "eth0"}, {"dest": "default", "gateway": "10.244.1.1", "dev": "eth0"})
    assert p.descriptions == ["add route 10.244.1.1/32 dev eth0", "add route default via 10.244.1.1 dev eth0"]


def test_missing_or_down_dev_and_foreign_src():
    with pytest.raises(FabricError, match="route 10.244.2.0/24: dev nosuch0 does not exist"):
        plan(node(), {"dest": "10.244.2.0/24", "dev": "nosuch0"})
    with pytest.raises(FabricError, match="route 10.244.2.0/24: dev down0 is down"):
        plan(node(), {"dest": "10.244.2.0/24", "dev": "down0"})
    with pytest.raises(FabricError, match="route 10.244.2.0/24: src 10.9.9.9 is not an address of this namespace"):
        plan(node(), {"dest": "10.244.2.0/24", "dev": "eth0", "src": "10.9.9.9"})
    assert plan(node(), {"dest": "10.244.2.0/24", "dev": "eth0", "src": "192.168.1.11"}).changed


def test_check_mode_assumes_links_an_earlier_task_creates():
    p = plan(node(), {"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "vxlan.new", "onlink": True}, assume_links=True)
    assert p.changed
    # a namespace that does not exist yet (ipr None): everything is planned, nothing checked
    p = route.plan(None, [norm(dest="default", gateway="10.244.1.1")], OURS, assume_links=True, names=NAMES)
    assert p.descriptions == ["add route default via 10.244.1.1"]


# --- ownership, identity, replace, purge ----------------------------------------------------------

def test_identical_owned_route_is_no_change():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="10.244.2.0", oif=4, flags=4)
    ipr.add_route("10.96.0.10/32", multipath=[{"gateway": "192.168.1.13", "oif": 2, "hops": 2},
                                              {"gateway": "192.168.1.12", "oif": 2, "hops": 0}])
    p = plan(ipr, {"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "onlink": True},
             {"dest": "10.96.0.10/32", "nexthops": [{"gateway": "192.168.1.12"}, {"gateway": "192.168.1.13", "weight": 3}]})
    assert not p.changed, p.descriptions


def test_owned_route_with_other_attributes_is_replaced_and_undo_restores_it():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="192.168.1.12", oif=2, mtu=1400)
    p = plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.13"})
    assert p.descriptions == ["replace route 10.244.2.0/24 via 192.168.1.13 dev eth0 (was 10.244.2.0/24 via 192.168.1.12 dev eth0 mtu 1400)"]
    p.actions[0].do()
    p.actions[0].undo()
    (cmd1, new), (cmd2, old) = ipr.requests("route")
    assert (cmd1, new["gateway"], new["proto"], new["oif"], new["priority"]) == ("replace", "192.168.1.13", OURS, 2, 0)
    assert "metrics" not in new
    assert (cmd2, old["gateway"], old["metrics"], old["proto"]) == ("replace", "192.168.1.12", {"mtu": 1400}, OURS)


def test_route_not_podnet_fabrics_with_the_same_identity_is_an_error_naming_both():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="192.168.1.12", oif=2, proto=4)
    with pytest.raises(FabricError) as err:
        plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.12"})
    assert str(err.value) == ("route 10.244.2.0/24: an existing route with this destination, table and metric is not podnet.fabric's "
                              "(proto static: 10.244.2.0/24 via 192.168.1.12 dev eth0) and owner a does not take it over; "
                              "remove it or pick another metric or table")
    # the kernel's connected route too
    with pytest.raises(FabricError, match=r"route 192.168.1.0/24: .* not podnet.fabric's \(proto kernel"):
        plan(node(), {"dest": "192.168.1.0/24", "dev": "eth0"})
    # ... but another metric is another route
    assert plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.12", "metric": 10}).changed


def test_route_of_another_owner_is_an_error_naming_both_owners():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="192.168.1.12", oif=2, proto=OTHER)
    for spec in ({"dest": "10.244.2.0/24", "gateway": "192.168.1.12"}, {"dest": "10.244.2.0/24", "state": "absent"}):
        with pytest.raises(FabricError) as err:
            plan(ipr, spec)
        assert str(err.value) == ("route 10.244.2.0/24: belongs to owner b (proto 151: 10.244.2.0/24 via 192.168.1.12 dev eth0), "
                                  "not to owner a; refusing to take it over")
    # ... and for owner b it is its own route
    assert not plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.12"}, protocol=OTHER).changed


def test_legacy_route_is_adopted_by_replacing_it_in_place_and_undo_puts_149_back():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="10.244.2.0", oif=4, flags=4, proto=owners.LEGACY_ROUTE_PROTO)
    ipr.add_route("10.244.3.0/24", gateway="10.244.3.0", oif=4, flags=4, proto=owners.LEGACY_ROUTE_PROTO)
    p = plan(ipr, {"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "onlink": True}, purge=True)
    assert p.descriptions == ["adopt route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink of podnet.fabric 0.1 (proto 149) "
                              "for owner a: replace in place"]
    assert (p.before["10.244.2.0/24"]["protocol"], p.after["10.244.2.0/24"]["protocol"]) == (149, OURS)
    p.actions[0].do()
    p.actions[0].undo()
    assert [(c, kw["dst"], kw["proto"]) for c, kw in ipr.requests("route")] == [
        ("replace", "10.244.2.0", OURS), ("replace", "10.244.2.0", 149)]
    # 10.244.3.0/24 (legacy, not declared) is never purged; a legacy route declared with other
    # attributes is adopted and changed in the same replace
    p = plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.12"})
    assert p.descriptions == ["adopt route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink of podnet.fabric 0.1 (proto 149) "
                              "for owner a: replace in place with 10.244.2.0/24 via 192.168.1.12 dev eth0"]


def test_purge_deletes_only_the_owners_routes_in_the_declared_tables_last():
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="10.244.2.0", oif=4, flags=4)           # declared
    ipr.add_route("10.244.3.0/24", gateway="10.244.3.0", oif=4, flags=4)           # owned, stale
    ipr.add_route("10.244.4.0/24", type=6, table=100)                                # owned, stale, table 100 (declared)
    ipr.add_route("10.244.5.0/24", type=6, table=200)                                # owned, undeclared table
    ipr.add_route("10.50.0.0/24", gateway="192.168.1.1", oif=2, proto=4)            # user's static
    ipr.add_route("10.51.0.0/24", gateway="192.168.1.1", oif=2, proto=OTHER)        # another owner
    ipr.add_route("10.52.0.0/24", gateway="192.168.1.1", oif=2, proto=149)          # legacy, undeclared
    ipr.add_route("fd00:9::/64", oif=2)                                              # owned IPv6, stale
    p = plan(ipr, {"dest": "10.244.6.0/24", "type": "blackhole", "table": "100"},
             {"dest": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "onlink": True}, purge=True)
    assert p.descriptions == [
        "add route blackhole 10.244.6.0/24 table 100",
        "delete route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
        "delete route blackhole 10.244.4.0/24 table 100",
        "delete route fd00:9::/64 dev eth0",
    ]
    assert p.irreversible_last() and [a.irreversible for a in p.actions] == [False, True, True, True]
    for action in p.actions:
        action.do()
    deleted = [kw for m, c, kw in ipr.changes("route") if c == "del"]
    assert all(kw["proto"] == OURS for kw in deleted)
    assert [(kw["dst"], kw["table"], kw["type"], kw["scope"]) for kw in deleted][:2] == [("10.244.3.0", 254, 1, 0), ("10.244.4.0", 100, 6, 0)]
    assert p.after["10.244.3.0/24"] == {"dest": "10.244.3.0/24", "state": "absent"}


def test_purge_covers_main_only_when_declared_or_listed():
    ipr = node()
    ipr.add_route("10.244.3.0/24", gateway="10.244.3.0", oif=4, flags=4)           # owned, main
    ipr.add_route("10.244.4.0/24", type=6, table=100)                                # owned, table 100
    ipr.add_route("10.244.5.0/24", type=6, table=200)                                # owned, table 200
    only_100 = plan(ipr, {"dest": "10.244.6.0/24", "type": "blackhole", "table": "100"}, purge=True)
    assert only_100.descriptions == ["add route blackhole 10.244.6.0/24 table 100", "delete route blackhole 10.244.4.0/24 table 100"]
    listed = plan(ipr, {"dest": "10.244.6.0/24", "type": "blackhole", "table": "100"}, purge=True, purge_tables=[254, 200])
    assert listed.descriptions[1:] == ["delete route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
                                       "delete route blackhole 10.244.4.0/24 table 100", "delete route blackhole 10.244.5.0/24 table 200"]
    assert plan(ipr, purge=True).descriptions == []
    assert len(plan(ipr, purge=True, purge_tables=[254]).descriptions) == 1


def test_absent_deletes_an_owned_route_and_refuses_a_foreign_one():
    ipr = node()
    ipr.add_route("10.244.3.0/24", gateway="192.168.1.13", oif=2)
    ipr.add_route("10.50.0.0/24", gateway="192.168.1.1", oif=2, proto=4)
    p = plan(ipr, {"dest": "10.244.3.0/24", "state": "absent"}, {"dest": "10.244.9.0/24", "state": "absent"})
    assert p.descriptions == ["delete route 10.244.3.0/24 via 192.168.1.13 dev eth0"]
    with pytest.raises(FabricError, match="route 10.50.0.0/24: .*not podnet.fabric's \\(proto static"):
        plan(ipr, {"dest": "10.50.0.0/24", "state": "absent"})


def test_absent_comes_after_adds_even_when_listed_first():
    ipr = node()
    ipr.add_route("10.244.3.0/24", gateway="192.168.1.13", oif=2)
    p = plan(ipr, {"dest": "10.244.3.0/24", "state": "absent"}, {"dest": "10.244.4.0/24", "gateway": "192.168.1.13"})
    assert p.descriptions == ["add route 10.244.4.0/24 via 192.168.1.13 dev eth0", "delete route 10.244.3.0/24 via 192.168.1.13 dev eth0"]
    assert p.irreversible_last()


def test_declared_twice_is_an_error():
    with pytest.raises(FabricError, match="route 10.244.2.0/24: declared twice"):
        plan(node(), {"dest": "10.244.2.0/24", "dev": "eth0"}, {"dest": "10.244.2.0/24", "gateway": "192.168.1.1"})


def test_multipath_kwargs_and_ipv6_metric():
    ipr = node()
    p = plan(ipr, {"dest": "10.96.0.10/32", "nexthops": [{"gateway": "192.168.1.12", "weight": 2},
                                                         {"gateway": "10.9.9.9", "dev": "eth1", "onlink": True}]},
             {"dest": "fd00:2::/64", "gateway": "fd00:1::12"})
    for action in p.actions:
        action.do()
    mp, v6 = [kw for cmd, kw in ipr.requests("route")]
    assert sorted((h["gateway"], h["oif"], h["hops"], h.get("flags", 0)) for h in mp["multipath"]) == [
        ("10.9.9.9", 3, 0, 4), ("192.168.1.12", 2, 1, 0)]
    assert (v6["family"], v6["priority"], v6["gateway"], v6["oif"]) == (10, 1024, "fd00:1::12", 2)


def test_a_kernel_error_rolls_back_what_was_done():
    ipr = node()
    ipr.add_route("10.244.5.0/24", gateway="192.168.1.5", oif=2)
    ipr.fail("route", "replace", 22, when=lambda kw: kw["dst"] == "10.244.3.0")
    p = plan(ipr, {"dest": "10.244.2.0/24", "gateway": "192.168.1.12"}, {"dest": "10.244.5.0/24", "gateway": "192.168.1.6"},
             {"dest": "10.244.3.0/24", "gateway": "192.168.1.13"})
    with pytest.raises(PlanFailed) as err:
        p.apply()
    assert str(err.value) == "add route 10.244.3.0/24 via 192.168.1.13 dev eth0: Invalid argument (errno 22) (rolled back: 2 actions undone)"
    assert not err.value.changed
    assert [(c, kw["dst"], kw.get("gateway")) for m, c, kw in ipr.changes("route")] == [
        ("replace", "10.244.2.0", "192.168.1.12"), ("replace", "10.244.5.0", "192.168.1.6"),
        ("replace", "10.244.5.0", "192.168.1.5"), ("del", "10.244.2.0", None)]


def test_delete_of_a_route_already_gone_is_success():
    ipr = node()
    ipr.fail("route", "del", 3)
    r = dict(norm(dest="10.244.2.0/24", dev="eth0"), protocol=OURS)
    route.delete_quietly(ipr, r)  # ESRCH: no exception


# --- the owner's protocol from the registry --------------------------------------------------------

def test_plan_for_owner_registers_a_new_owner_only_when_routes_change(tmp_path):
    registry = owners.ProtocolRegistry(str(tmp_path))
    registry.register("b", 150)
    spec = [norm(dest="10.244.2.0/24", gateway="192.168.1.12")]
    p, number = route.plan_for_owner(node(), spec, "a", registry=registry)
    assert number == 151
    assert p.descriptions[0] == "register route protocol 151 for owner a in %s" % registry.path
    assert p.after["10.244.2.0/24"]["protocol"] == 151
    # check mode: the same actions, and the registry is only read
    c, _number = route.plan_for_owner(node(), spec, "a", registry=registry, check_mode=True)
    assert c.descriptions == p.descriptions
    assert registry.read() == {"b": 150}
    p.apply()
    assert registry.read() == {"b": 150, "a": 151}
    # nothing to do: no registering either
    p, number = route.plan_for_owner(node(), [], "c", registry=registry, purge=True)
    assert (p.descriptions, number) == ([], 152)
    assert "c" not in registry.read()


def test_plan_for_owner_names_owners_from_the_registry_and_pins_must_agree(tmp_path):
    registry = owners.ProtocolRegistry(str(tmp_path))
    registry.register("b", 150)
    ipr = node()
    ipr.add_route("10.244.2.0/24", gateway="192.168.1.12", oif=2, proto=150)
    with pytest.raises(FabricError, match="belongs to owner b .*not to owner a;"):
        route.plan_for_owner(ipr, [norm(dest="10.244.2.0/24", gateway="192.168.1.12")], "a", registry=registry)
    with pytest.raises(FabricError, match="route protocol 150 is registered for owner b"):
        route.plan_for_owner(ipr, [], "a", pinned=150, registry=registry)
    with pytest.raises(FabricError, match="route protocol 170 was asked for, but .* registers it as 150"):
        route.plan_for_owner(ipr, [], "b", pinned=170, registry=registry)
