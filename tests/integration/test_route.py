"""route module on the real kernel: checked with `ip -json route` and with pings between namespaces.

Every route lives in a throw-away namespace; "nodes" are namespaces joined by veths the tests
create with `ip`, with test addresses that exist only inside those namespaces.
"""
from __future__ import annotations

import subprocess

import pytest

from conftest import ip_json, netns_pool, run_cases, sh, snapshot, unique

# Fixed owner names: route protocols are registered host-wide (/etc/iproute2/rt_protos.d), and
# the registry has only 30 numbers. Their routes live only in the tests' own namespaces.
OWNER, OTHER = "itest-a", "itest-b"


def routes_with_proto(ns, proto=OWNER):
    """`ip -json route show table all` entries with this protocol, volatile keys dropped."""
    out = []
    for r in ip_json("route", "show", "table", "all", netns=ns):
        if r.get("protocol") == proto:
            r.pop("pref", None)
            out.append(r)
    return sorted(out, key=lambda r: (r.get("table", "main"), r["dst"]))


def by_dst(ns, proto=OWNER):
    return dict((r["dst"], r) for r in routes_with_proto(ns, proto))


def no_link_local(*namespaces):
    """New links get no IPv6 link-local address: its local route would appear whenever DAD ends,
    racing the before/after comparisons."""
    for ns in namespaces:
        sh("sysctl", "-q", "-w", "net.ipv6.conf.default.addr_gen_mode=1", netns=ns)


def lab(ns):
    """Inside ``ns``: va (10.0.0.1/24, fd00:1::1/64) and vb (10.0.1.1/24), a veth pair, both up."""
    no_link_local(ns)
    sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
    sh("ip", "-n", ns, "addr", "add", "10.0.0.1/24", "dev", "va")
    sh("ip", "-n", ns, "addr", "add", "fd00:1::1/64", "dev", "va", "nodad")
    sh("ip", "-n", ns, "addr", "add", "10.0.1.1/24", "dev", "vb")
    sh("ip", "-n", ns, "link", "set", "va", "up")
    sh("ip", "-n", ns, "link", "set", "vb", "up")


def connect(a, a_if, a_addr, b, b_if, b_addr):
    """A veth between namespaces a and b (created inside a, the peer moved to b), addressed, up."""
    no_link_local(a, b)
    sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
    sh("ip", "-n", a, "addr", "add", a_addr, "dev", a_if)
    sh("ip", "-n", b, "addr", "add", b_addr, "dev", b_if)
    sh("ip", "-n", a, "link", "set", a_if, "up")
    sh("ip", "-n", b, "link", "set", b_if, "up")


def pings(ns, dst):
    """One ping from ``ns`` answered within a second (a bounded failure, not a sleep)."""
    proc = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst], capture_output=True, check=False)
    return proc.returncode == 0


def task(ns, routes, **kw):
    args = {"netns": ns, "routes": routes, "owner": OWNER}
    args.update(kw)
    return {"podnet.fabric.route": args}


ROUTES = [
    {"dest": "10.5.0.0/24", "gateway": "10.0.0.2"},
    {"dest": "10.6.0.0/24", "nexthops": [{"gateway": "10.0.0.2", "weight": 2}, {"gateway": "10.0.1.9", "dev": "vb", "onlink": True}]},
    {"dest": "10.7.0.0/24", "type": "blackhole", "table": "100"},
    {"dest": "10.8.0.0/24", "gateway": "10.9.9.9", "dev": "vb", "onlink": True, "mtu": 1400, "src": "10.0.1.1", "metric": 20},
    {"dest": "10.0.5.5/32", "dev": "va"},
    {"dest": "default", "gateway": "10.0.5.5", "dev": "va"},
    {"dest": "fd00:2::/64", "gateway": "fd00:1::2"},
]


def test_routes_four_runs_and_ip_json(four_runs, playbook, netns):
    lab(netns)
    check, real, _check2, _real2 = four_runs([task(netns, ROUTES)], lambda: snapshot(netns))
    got = by_dst(netns)
    assert set(got) == {"10.5.0.0/24", "10.6.0.0/24", "10.7.0.0/24", "10.8.0.0/24", "10.0.5.5", "default", "fd00:2::/64"}
    assert (got["10.5.0.0/24"]["gateway"], got["10.5.0.0/24"]["dev"]) == ("10.0.0.2", "va")
    assert sorted((h["gateway"], h["dev"], h["weight"], h["flags"]) for h in got["10.6.0.0/24"]["nexthops"]) == [
        ("10.0.0.2", "va", 2, []), ("10.0.1.9", "vb", 1, ["onlink"])]
    assert (got["10.7.0.0/24"]["type"], got["10.7.0.0/24"]["table"]) == ("blackhole", "100")
    r8 = got["10.8.0.0/24"]
    assert (r8["gateway"], r8["dev"], r8["flags"], r8["metric"], r8["prefsrc"]) == ("10.9.9.9", "vb", ["onlink"], 20, "10.0.1.1")
    assert r8["metrics"] == [{"mtu": 1400}]
    assert (got["10.0.5.5"]["dev"], got["10.0.5.5"]["scope"]) == ("va", "link")
    assert (got["default"]["gateway"], got["default"]["dev"]) == ("10.0.5.5", "va")
    assert (got["fd00:2::/64"]["gateway"], got["fd00:2::/64"]["dev"], got["fd00:2::/64"]["metric"]) == ("fd00:1::2", "va", 1024)
    assert check.last["diff"]["before"]["10.5.0.0/24"] == {"dest": "10.5.0.0/24", "state": "absent"}
    assert real.last["diff"]["after"]["default"]["gateway"] == "10.0.5.5"
    assert "add route 10.6.0.0/24 nexthop via 10.0.0.2 dev va weight 2 nexthop via 10.0.1.9 dev vb weight 1 onlink" in real.last["actions"]

    # Drift made by hand is reconciled: another gateway, a lost route, an extra mtu.
    sh("ip", "-n", netns, "route", "replace", "10.5.0.0/24", "via", "10.0.0.3", "proto", OWNER)
    sh("ip", "-n", netns, "route", "del", "default")
    sh("ip", "-n", netns, "route", "replace", "10.0.5.5/32", "dev", "va", "proto", OWNER, "mtu", "1300")
    r = playbook([task(netns, ROUTES)])
    assert not r.failed and r.changed, r
    assert sorted(a.split(" ")[0] for a in r.last["actions"]) == ["add", "replace", "replace"]
    got = by_dst(netns)
    assert got["10.5.0.0/24"]["gateway"] == "10.0.0.2" and got["default"]["gateway"] == "10.0.5.5"
    assert "metrics" not in got["10.0.5.5"]

    # state=absent removes exactly the named routes, once
    absent = [{"dest": "10.8.0.0/24", "metric": 20, "state": "absent"}, {"dest": "10.7.0.0/24", "table": "100", "state": "absent"}]
    r = playbook([task(netns, absent)])
    assert not r.failed and r.changed, r
    assert set(by_dst(netns)) == {"10.5.0.0/24", "10.6.0.0/24", "10.0.5.5", "default", "fd00:2::/64"}
    r = playbook([task(netns, absent)])
    assert not r.failed and not r.changed, r


def test_routes_carry_pings_between_node_namespaces_and_from_a_pod(playbook, netns_factory):
    """pod --(default route)--> node1 --(route to node2's pod subnet)--> node2, and back."""
    node1, node2, pod = netns_factory("pnt-n1-"), netns_factory("pnt-n2-"), netns_factory("pnt-pod-")
    connect(node1, "n1eth0", "192.168.50.1/24", node2, "n2eth0", "192.168.50.2/24")
    connect(node1, "vpod", "10.244.1.1/24", pod, "eth0", "10.244.1.2/24")
    sh("ip", "-n", node2, "addr", "add", "10.244.2.5/32", "dev", "lo")   # a pod address on node 2
    sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", netns=node1)
    assert not pings(pod, "10.244.2.5")  # no route yet
    tasks = [
        task(pod, [{"dest": "default", "gateway": "10.244.1.1"}]),
        task(node1, [{"dest": "10.244.2.0/24", "gateway": "192.168.50.2"}]),
        task(node2, [{"dest": "10.244.1.0/24", "gateway": "192.168.50.1"}]),
    ]
    r = playbook(tasks)
    assert not r.failed and all(res["changed"] for res in r.results), r
    assert by_dst(pod)["default"]["gateway"] == "10.244.1.1"
    sh("ping", "-c", "2", "-W", "2", "10.244.2.5", netns=node1)
    sh("ping", "-c", "2", "-W", "2", "10.244.2.5", netns=pod)
    # and without the module's route on node 2 the pod gets no answer: the routes carry the traffic
    r = playbook([task(node2, [{"dest": "10.244.1.0/24", "state": "absent"}])])
    assert not r.failed and r.changed, r
    assert not pings(pod, "10.244.2.5")


def test_ecmp_multipath_is_a_set_and_carries_pings(playbook, netns_factory):
    node1, node2 = netns_factory("pnt-n1-"), netns_factory("pnt-n2-")
    connect(node1, "up1", "192.168.51.1/24", node2, "dn1", "192.168.51.2/24")
    connect(node1, "up2", "192.168.52.1/24", node2, "dn2", "192.168.52.2/24")
    sh("ip", "-n", node2, "addr", "add", "10.96.0.10/32", "dev", "lo")
    hops = [{"gateway": "192.168.51.2", "weight": 1}, {"gateway": "192.168.52.2", "weight": 3}]
    r = playbook([task(node1, [{"dest": "10.96.0.10/32", "nexthops": hops}])])
    assert not r.failed and r.changed, r
    nh = by_dst(node1)["10.96.0.10"]["nexthops"]
    assert sorted((h["gateway"], h["dev"], h["weight"]) for h in nh) == [("192.168.51.2", "up1", 1), ("192.168.52.2", "up2", 3)]
    # the same set in another order is no change; another weight is a replace
    r = playbook([task(node1, [{"dest": "10.96.0.10/32", "nexthops": list(reversed(hops))}])])
    assert not r.failed and not r.changed, r
    r = playbook([task(node1, [{"dest": "10.96.0.10/32", "nexthops": [hops[0], dict(hops[1], weight=1)]}])])
    assert not r.failed and r.changed and r.last["actions"][0].startswith("replace route 10.96.0.10/32"), r
    nh = by_dst(node1)["10.96.0.10"]["nexthops"]
    assert sorted(h["weight"] for h in nh) == [1, 1]
    sh("ping", "-c", "3", "-W", "2", "10.96.0.10", netns=node1)


def test_purge_removes_only_the_owners_routes_in_declared_tables_and_two_owners_coexist(playbook, netns):
    lab(netns)
    foreign = [
        ["10.50.0.0/24", "via", "10.0.0.2", "proto", "static"],           # the user's
        ["10.52.0.0/24", "via", "10.0.0.2"],                               # plain `ip route add` (proto boot)
        ["10.51.0.0/24", "via", "10.0.0.2", "proto", "149"],              # podnet.fabric 0.1's, not declared
        ["blackhole", "10.54.0.0/24", "table", "200", "proto", OWNER],    # ours, in a table this task does not use
        ["blackhole", "10.56.0.0/24", "table", "100", "proto", "static"],  # the user's, in table 100
    ]
    for argv in foreign:
        sh("ip", "-n", netns, "route", "add", *argv)
    sh("ip", "-n", netns, "route", "add", "10.53.0.0/24", "via", "10.0.0.2", "proto", OWNER)  # ours, stale
    before = [r for r in ip_json("route", "show", "table", "all", netns=netns) if r["dst"] != "10.53.0.0/24"]
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], purge=True)])
    assert not r.failed and r.changed, r
    assert r.last["actions"] == ["add route 10.5.0.0/24 via 10.0.0.2 dev va", "delete route 10.53.0.0/24 via 10.0.0.2 dev va"]
    after = ip_json("route", "show", "table", "all", netns=netns)
    # everything that was there and not ours survives byte for byte (kernel connected/local routes too)
    assert [r for r in after if r["dst"] != "10.5.0.0/24"] == before
    assert {"10.0.0.0/24", "10.0.1.0/24"} <= set(r["dst"] for r in after if r.get("protocol") == "kernel")
    assert by_dst(netns)["10.5.0.0/24"]["protocol"] == OWNER   # `ip` prints the owner's name

    # a second owner purges its own routes in its own table only; ours and the user's stay
    r = playbook([task(netns, [{"dest": "10.55.0.0/24", "gateway": "10.0.0.2", "table": "100"}], owner=OTHER, purge=True)])
    assert not r.failed and r.changed, r
    assert set(by_dst(netns, OTHER)) == {"10.55.0.0/24"}
    assert set(by_dst(netns, OWNER)) == {"10.5.0.0/24", "10.54.0.0/24"}
    assert set(by_dst(netns, "static")) == {"10.50.0.0/24", "10.56.0.0/24"}
    assert set(by_dst(netns, "149")) == {"10.51.0.0/24"}
    assert [r["dst"] for r in ip_json("route", netns=netns) if "protocol" not in r] == ["10.52.0.0/24"]  # boot: ip prints none
    # and our own run does not see the other owner's route as stale, even when purging its table
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], purge=True, purge_tables=["100"])])
    assert not r.failed and not r.changed, r
    # purge_tables: the owner's route in table 200 goes only when that table is listed
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], purge=True, purge_tables=["200"])])
    assert not r.failed and r.last["actions"] == ["delete route blackhole 10.54.0.0/24 table 200"], r
    assert set(by_dst(netns, OWNER)) == {"10.5.0.0/24"} and set(by_dst(netns, OTHER)) == {"10.55.0.0/24"}


def test_purge_without_an_owner_is_an_error(playbook, netns):
    lab(netns)
    before = snapshot(netns)
    r = playbook([{"podnet.fabric.route": {"netns": netns, "routes": [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], "purge": True}}])
    assert r.failed and r.last["msg"].startswith("purge needs an explicit owner"), r
    assert snapshot(netns) == before


ROLLBACK = [
    # the kernel refuses an onlink gateway that is a local address
    ({"dest": "10.64.0.0/24", "gateway": "10.0.0.1", "dev": "va", "onlink": True},
     "add route 10.64.0.0/24 via 10.0.0.1 dev va onlink: Invalid argument (errno 22)"),
    # ... and an ECMP route with such a nexthop
    ({"dest": "10.65.0.0/24", "nexthops": [{"gateway": "10.0.0.2"}, {"gateway": "10.0.0.1", "dev": "va", "onlink": True}]},
     "add route 10.65.0.0/24 nexthop via 10.0.0.1 dev va weight 1 onlink nexthop via 10.0.0.2 dev va weight 1: Invalid argument (errno 22)"),
]


@pytest.mark.parametrize("bad,message", ROLLBACK, ids=["onlink-local", "ecmp-nexthop"])
def test_kernel_refusal_mid_plan_is_rolled_back_byte_for_byte(playbook, netns, bad, message):
    lab(netns)
    sh("ip", "-n", netns, "route", "add", "10.5.0.0/24", "via", "10.0.0.3", "proto", OWNER)           # ours, drifted: replaced
    sh("ip", "-n", netns, "route", "add", "10.9.0.0/24", "via", "10.0.0.3", "proto", OWNER)           # ours, stale: purged last
    sh("ip", "-n", netns, "route", "add", "10.8.0.0/24", "via", "10.0.0.3", "proto", "149")           # 0.1's: adopted
    sh("ip", "-n", netns, "route", "add", "10.50.0.0/24", "via", "10.0.0.2", "proto", "static")       # the user's
    snap = snapshot(netns)
    routes = [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}, {"dest": "10.8.0.0/24", "gateway": "10.0.0.3"},
              {"dest": "10.6.0.0/24", "gateway": "10.0.0.2"}, bad, {"dest": "10.7.0.0/24", "gateway": "10.0.0.2"}]
    r = playbook([task(netns, routes, purge=True)])
    assert r.failed, r
    assert r.last["msg"] == message + " (rolled back: 3 actions undone)"
    assert r.last["changed"] is False and r.last["not_undone"] == [] and r.last["undo_errors"] == []
    assert snapshot(netns) == snap  # every route of every table, the kernel's own noise aside


BAD = [
    ([{"dest": "10.244.2.0/24", "gateway": "10.9.9.9", "dev": "va"}], None,
     "route 10.244.2.0/24: gateway 10.9.9.9 is not on a connected network of dev va; set onlink: true if it is reachable on that link anyway"),
    ([{"dest": "10.244.2.0/24", "gateway": "10.9.9.9"}], None,
     "route 10.244.2.0/24: gateway 10.9.9.9 is not on a connected network of any link; set dev and onlink: true if it is reachable on that link anyway"),
    ([{"dest": "10.244.2.0/33", "dev": "va"}], None,
     "route 10.244.2.0/33: '10.244.2.0/33' is not a valid network: '10.244.2.0/33' does not appear to be an IPv4 or IPv6 network"),
    ([{"dest": "10.244.2.1/24", "dev": "va"}], None, "route 10.244.2.1/24: '10.244.2.1/24' is not a valid network: 10.244.2.1/24 has host bits set"),
    ([{"dest": "10.244.2.0/24", "gateway": "10.0.0.300"}], None, "route 10.244.2.0/24: gateway: '10.0.0.300' is not a valid IP address"),
    ([{"dest": "10.244.2.0/24", "dev": "flannel-vtep-0001"}], None,
     "route 10.244.2.0/24: dev flannel-vtep-0001: name is 17 characters, the kernel allows at most 15"),
    ([{"dest": "10.244.2.0/24", "dev": "nosuch0"}], None, "route 10.244.2.0/24: dev nosuch0 does not exist"),
    ([{"dest": "10.244.2.0/24", "dev": "vd"}], [["link", "add", "vc", "type", "veth", "peer", "name", "vd"]],
     "route 10.244.2.0/24: dev vd is down; the kernel takes no route through a link that is not up"),
    ([{"dest": "10.0.0.0/24", "dev": "va"}], None,
     "route 10.0.0.0/24: an existing route with this destination, table and metric is not podnet.fabric's "
     "(proto kernel: 10.0.0.0/24 dev va src 10.0.0.1) and owner itest-a does not take it over; remove it or pick another metric or table"),
    ([{"dest": "10.50.0.0/24", "gateway": "10.0.0.3"}], [["route", "add", "10.50.0.0/24", "via", "10.0.0.2", "proto", "static"]],
     "route 10.50.0.0/24: an existing route with this destination, table and metric is not podnet.fabric's "
     "(proto static: 10.50.0.0/24 via 10.0.0.2 dev va) and owner itest-a does not take it over; remove it or pick another metric or table"),
    ([{"dest": "10.50.0.0/24", "state": "absent"}], [["route", "add", "10.50.0.0/24", "via", "10.0.0.2", "proto", "static"]],
     "route 10.50.0.0/24: an existing route with this destination, table and metric is not podnet.fabric's "
     "(proto static: 10.50.0.0/24 via 10.0.0.2 dev va) and owner itest-a does not take it over; remove it or pick another metric or table"),
    ([{"dest": "10.50.0.0/24", "gateway": "10.0.0.2"}], [["route", "add", "10.50.0.0/24", "via", "10.0.0.2", "proto", OTHER]],
     "route 10.50.0.0/24: belongs to owner itest-b (proto %s: 10.50.0.0/24 via 10.0.0.2 dev va), not to owner itest-a; "
     "refusing to take it over"),
    # (a kernel refusal while applying: see test_kernel_refusal_mid_plan_is_rolled_back_byte_for_byte)
]


def compute_batched_cases(target_python, tmp_path_factory):
    """Each BAD case in a namespace of its own, the module called once per case, all the calls in
    one playbook (conftest.run_cases): [(task result, snapshot before, after)]."""
    with netns_pool() as make:
        prepared = []
        for bad, setup, _message in BAD:
            ns = make()
            lab(ns)
            for argv in setup or []:
                sh("ip", "-n", ns, *argv)
            # A valid route first in the list proves nothing is left behind when a later entry is bad.
            prepared.append((ns, task(ns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}] + bad)))
        return run_cases(prepared, snapshot, target_python, tmp_path_factory.mktemp("route-bad-input") / "play.yml")


@pytest.mark.xdist_group("route-bad-input")
@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_fails_with_one_line_and_changes_nothing(batched_cases, case):
    message = BAD[case][2]
    result, before, after = batched_cases[case]
    assert result.get("failed"), result
    assert result["msg"] == (message % registered(OTHER) if "%s" in message else message)
    assert after == before


def registered(owner):
    """The owner's number as the registry file has it (read independently of the module)."""
    with open("/etc/iproute2/rt_protos.d/podnet-fabric.conf") as handle:
        for line in handle:
            parts = line.split("#")[0].split()
            if len(parts) == 2 and parts[1] == owner:
                return int(parts[0])
    raise AssertionError("owner %s is not registered" % owner)


def test_protocol_pins_must_agree_with_the_registry(playbook, netns):
    lab(netns)
    before = snapshot(netns)
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], protocol=2, purge=True)])
    assert r.failed and r.last["msg"].startswith("protocol 2 (kernel): cannot mark ownership"), r
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], protocol=149)])
    assert r.failed and r.last["msg"].startswith("protocol 149: is release 0.1's unowned protocol"), r
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}])], check=True)
    number = r.last["protocol"]
    other = number + 1 if number < 179 else number - 1
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], protocol=other)])
    assert r.failed and "route protocol %d" % other in r.last["msg"] and OWNER in r.last["msg"], r
    assert snapshot(netns) == before
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], protocol=number)])
    assert not r.failed and r.changed and r.last["protocol"] == registered(OWNER) == number, r


def test_check_mode_plans_registering_a_new_owner_but_never_writes_the_registry(playbook, netns):
    lab(netns)
    owner = unique("itest-ck-")   # never registered: check mode only
    path = "/etc/iproute2/rt_protos.d/podnet-fabric.conf"
    r = playbook([task(netns, [{"dest": "10.5.0.0/24", "gateway": "10.0.0.2"}], owner=owner)], check=True)
    with open(path, "rb") as handle:
        after = handle.read()
    assert not r.failed and r.changed, r
    assert r.last["actions"][0] == "register route protocol %d for owner %s in %s" % (r.last["protocol"], owner, path)
    assert owner.encode() not in after   # (other owners may register meanwhile: only this one is checked)


def test_missing_netns_is_an_error_and_is_not_created(playbook):
    missing = "pnt-no-such-ns"
    r = playbook([task(missing, [{"dest": "default", "gateway": "10.0.0.1"}])])
    assert r.failed and r.last["msg"] == "netns %s: does not exist" % missing
    # check mode plans against an empty namespace (an earlier task would create it)
    r = playbook([task(missing, [{"dest": "default", "gateway": "10.0.0.1"}])], check=True)
    assert not r.failed and r.changed and r.last["actions"][-1] == "add route default via 10.0.0.1", r
    assert snapshot(missing) == {missing: None}
