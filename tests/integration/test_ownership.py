"""Ownership across modules on the real kernel: two owners in one namespace purge only their own;
foreign objects (a Docker-like bridge with veths, routes with proto static/boot in main and table
100, a user's static FDB entry and permanent neighbour on an owned VTEP) survive every module's
purge byte for byte; release 0.1's objects are adopted in place and never purged.

Everything lives in throw-away namespaces; checked with `ip -json`, `bridge -json fdb` and
`ip monitor`, never with the code under test.
"""
from __future__ import annotations

import glob
import json
import os
import select
import subprocess
import time

import pytest

from conftest import _clean_link, ip_json, sh, unique

# Fixed owner names: route protocols are registered host-wide and the registry is small.
A, B = "itest-a", "itest-b"
STATE_DIR = "/var/lib/podnet-fabric"
FOREIGN_LINKS = ("docker0", "vethd0", "vethd0p", "vethd1", "vethd1p")
USER_MAC, USER_NEIGH = "0a:58:00:00:0e:01", "10.244.14.0"


@pytest.fixture
def ns(netns_factory):
    """A namespace with an underlay link eth1 (192.168.88.1/24) and no IPv6 link-local addresses
    (their routes would appear whenever DAD ends and race the comparisons)."""
    name = netns_factory("pnt-own-")
    sh("sysctl", "-q", "-w", "net.ipv6.conf.default.addr_gen_mode=1", netns=name)
    sh("ip", "-n", name, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    sh("ip", "-n", name, "addr", "add", "192.168.88.1/24", "dev", "eth1")
    for dev in ("eth1", "eth1p"):
        sh("ip", "-n", name, "link", "set", dev, "up")
    try:
        yield name
    finally:
        for path in glob.glob(os.path.join(STATE_DIR, "*", "vxlan-netns-%s:*" % name)):
            os.unlink(path)


def fdb(ns):
    out = sh("bridge", "-n", ns, "-json", "fdb", "show")
    return json.loads(out) if out.strip() else []


def objects_of(ns, owner):
    """An owner's links (by alias), routes (by protocol name), with every attribute `ip` prints."""
    mark = "podnet.fabric:%s" % owner
    links = [_clean_link(lk) for lk in ip_json("-d", "link", "show", netns=ns) if lk.get("ifalias") == mark]
    return {
        "links": sorted(links, key=lambda lk: lk["ifname"]),
        "routes": [r for r in ip_json("route", "show", "table", "all", netns=ns) if r.get("protocol") == owner],
    }


def foreign(ns):
    """Everything that is not podnet.fabric's: Docker's links and addresses, routes with proto
    static/boot (ip prints no protocol for boot) and the kernel's routes of Docker's links, the
    user's FDB entries and permanent neighbours on the owned VTEP (FDB sorted: a dump walks a
    hash table)."""
    links = [_clean_link(lk) for lk in ip_json("-d", "link", "show", netns=ns) if lk["ifname"] in FOREIGN_LINKS]
    routes = [r for r in ip_json("route", "show", "table", "all", netns=ns)
              if r.get("protocol") in (None, "static") or r.get("dev") in FOREIGN_LINKS]
    return {
        "links": links,
        "addrs": [a.get("addr_info") for a in ip_json("addr", "show", netns=ns) if a["ifname"] in FOREIGN_LINKS],
        "routes": [r for r in routes if not r["dst"].startswith("fe80:")],
        "fdb": sorted((e for e in fdb(ns) if e["mac"] in (USER_MAC, "00:00:00:00:00:00")), key=lambda e: json.dumps(e, sort_keys=True)),
        "neigh": ip_json("neigh", "show", "nud", "permanent", "dev", "vxa", netns=ns) if "vxa" in link_names(ns) else None,
    }


def link_names(ns):
    return [lk["ifname"] for lk in ip_json("link", netns=ns)]


def ifindex(ns, name):
    return ip_json("link", "show", name, netns=ns)[0]["ifindex"]


def owner_tasks(ns, owner, n, purge=True, extra=False):
    """Owner number n's (1: a, 2: b) bridge, routes and VTEP in ``ns`` (with ``extra`` one more of each)."""
    bridges = [{"name": "br%s" % "xab"[n], "addresses": ["10.%d.0.1/24" % (60 + n)]}]
    routes = [{"dest": "10.%d.1.0/24" % (60 + n), "gateway": "192.168.88.%d" % (10 + n)},
              {"dest": "10.%d.2.0/24" % (60 + n), "type": "blackhole", "table": "100"}]
    vxlans = [{"name": "vx%s" % "xab"[n], "vni": 100 + n, "dev": "eth1", "local": "192.168.88.1",
               "peers": [{"mac": "0a:58:00:00:%02x:01" % n, "remote": "192.168.88.%d" % (20 + n), "ip": "10.244.%d.0" % n}]}]
    if extra:
        bridges.append({"name": "br%sx" % "xab"[n]})
        routes.append({"dest": "10.%d.3.0/24" % (60 + n), "gateway": "192.168.88.%d" % (10 + n)})
        vxlans.append({"name": "vx%sx" % "xab"[n], "vni": 110 + n, "dev": "eth1"})
    common = {"netns": ns, "owner": owner, "purge": purge}
    return [
        {"podnet.fabric.bridge": dict(common, bridges=bridges)},
        {"podnet.fabric.vxlan": dict(common, vxlans=vxlans)},
        {"podnet.fabric.route": dict(common, routes=routes)},
    ]


def test_two_owners_converging_with_purge_in_turn_lose_nothing_of_each_other(playbook, ns):
    r = playbook(owner_tasks(ns, A, 1, extra=True))
    assert not r.failed and all(res["changed"] for res in r.results), r
    a_full = objects_of(ns, A)
    r = playbook(owner_tasks(ns, B, 2, extra=True))
    assert not r.failed and all(res["changed"] for res in r.results), r
    assert objects_of(ns, A) == a_full
    b_full = objects_of(ns, B)
    # each drops its extra objects with purge, in turn: only its own go
    r = playbook(owner_tasks(ns, A, 1))
    assert not r.failed and all(res["changed"] for res in r.results), r
    assert objects_of(ns, B) == b_full
    names = link_names(ns)
    assert "bra" in names and "brax" not in names and "vxax" not in names and "brbx" in names and "vxbx" in names
    a_now = objects_of(ns, A)
    r = playbook(owner_tasks(ns, B, 2))
    assert not r.failed and all(res["changed"] for res in r.results), r
    assert objects_of(ns, A) == a_now
    b_now = objects_of(ns, B)
    assert sorted(r["dst"] for r in b_now["routes"]) == ["10.62.1.0/24", "10.62.2.0/24"]
    # and converging again changes nothing, A then B (one playbook: each task is its own module run)
    r = playbook(owner_tasks(ns, A, 1) + owner_tasks(ns, B, 2))
    assert not r.failed and not r.changed and len(r.results) == 6, r
    assert objects_of(ns, A) == a_now and objects_of(ns, B) == b_now


def test_foreign_objects_survive_every_modules_purge_byte_for_byte(playbook, ns):
    r = playbook(owner_tasks(ns, A, 1, extra=True))
    assert not r.failed, r
    # Docker: docker0 with an address and two veths enslaved, up
    sh("ip", "-n", ns, "link", "add", "docker0", "type", "bridge")
    sh("ip", "-n", ns, "addr", "add", "172.17.0.1/16", "dev", "docker0")
    sh("ip", "-n", ns, "link", "set", "docker0", "up")
    for i in (0, 1):
        sh("ip", "-n", ns, "link", "add", "vethd%d" % i, "type", "veth", "peer", "name", "vethd%dp" % i)
        sh("ip", "-n", ns, "link", "set", "vethd%d" % i, "master", "docker0", "up")
    # routes of the user: proto static and boot, in main and in table 100 (which owner A purges)
    for argv in (["10.90.0.0/24", "via", "192.168.88.5", "proto", "static"], ["10.91.0.0/24", "via", "192.168.88.5"],
                 ["blackhole", "10.92.0.0/24", "table", "100", "proto", "static"], ["blackhole", "10.93.0.0/24", "table", "100"]):
        sh("ip", "-n", ns, "route", "add", *argv)
    # the user's static FDB entries (a unicast peer and a flood entry) and permanent neighbour on A's VTEP
    sh("bridge", "-n", ns, "fdb", "append", USER_MAC, "dev", "vxa", "dst", "192.168.88.40", "self", "permanent")
    sh("bridge", "-n", ns, "fdb", "append", "00:00:00:00:00:00", "dev", "vxa", "dst", "192.168.88.41", "self", "permanent")
    sh("ip", "-n", ns, "neigh", "replace", USER_NEIGH, "lladdr", USER_MAC, "dev", "vxa", "nud", "permanent")
    before = foreign(ns)
    assert len(before["links"]) == 5 and len(before["fdb"]) == 2 and len(before["neigh"]) == 2

    # every module purges owner A's undeclared objects (its extra bridge, VTEP, route and the
    # VTEP's peer it no longer declares) in this namespace; nothing foreign may change
    tasks = owner_tasks(ns, A, 1)
    tasks[1]["podnet.fabric.vxlan"]["vxlans"][0]["peers"] = []
    tasks[2]["podnet.fabric.route"]["purge_tables"] = ["main", "100"]
    tasks += [
        {"podnet.fabric.veth": {"netns": ns, "owner": A, "veths": [], "purge": True}},
        {"podnet.fabric.netns": {"owner": unique("itest-ns-"), "namespaces": [], "purge": True}},
    ]
    r = playbook(tasks)
    assert not r.failed, r
    assert [res["changed"] for res in r.results] == [True, True, True, False, False], r
    assert "remove fdb entry 0a:58:00:00:01:01 dst 192.168.88.21 from vxlan vxa" in r.results[1]["actions"]
    after = foreign(ns)
    assert len(after["neigh"]) == 1      # A's own neighbour went; the user's stayed
    before["neigh"] = [n for n in before["neigh"] if n["dst"] == USER_NEIGH]
    assert after == before
    assert os.path.exists(os.path.join("/run/netns", ns))   # made with `ip netns add`: not the netns module's


class RouteMonitor(object):
    """`ip monitor route` in a namespace; marker routes (added and deleted by hand) bracket what
    it saw, so that no event of the run in between is missed, without sleeping."""

    def __init__(self, ns):
        self.ns = ns
        self.proc = subprocess.Popen(["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE)
        self.buffer = b""
        self.lines = []
        self.count = 0
        for _attempt in range(20):  # the monitor subscribes asynchronously: mark until it sees a marker
            if self.mark(wait=0.5):
                break
        else:
            raise AssertionError("ip monitor saw none of the marker routes: %s" % self.lines)

    def mark(self, wait=10.0):
        self.count += 1
        dst = "10.254.%d.0" % (self.count % 250)
        sh("ip", "-n", self.ns, "route", "add", "blackhole", dst + "/24", "proto", "static")
        sh("ip", "-n", self.ns, "route", "del", "blackhole", dst + "/24", "proto", "static")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                self.buffer += os.read(self.proc.stdout.fileno(), 65536)
                *done, self.buffer = self.buffer.split(b"\n")
                self.lines += [line.decode() for line in done]
            if [line for line in self.lines if line.startswith("Deleted") and (dst + "/24") in line]:
                return True
        return False

    def stop(self):
        try:
            assert self.mark(), "ip monitor missed the closing marker: %s" % self.lines
        finally:
            self.proc.terminate()
            self.proc.wait()
        return self.lines


def test_release_0_1_objects_are_adopted_in_place_and_never_purged(playbook, ns):
    # made the old way: plain alias podnet.fabric, route proto 149
    for name in ("brold", "brkeep"):
        sh("ip", "-n", ns, "link", "add", name, "type", "bridge")
        sh("ip", "-n", ns, "link", "set", name, "alias", "podnet.fabric", "up")
    for name, vni in (("vxold", 301), ("vxkeep", 302)):
        sh("ip", "-n", ns, "link", "add", name, "type", "vxlan", "id", str(vni), "dstport", "4789", "dev", "eth1", "local", "192.168.88.1",
           "nolearning")
        sh("ip", "-n", ns, "link", "set", name, "alias", "podnet.fabric", "up")
    sh("bridge", "-n", ns, "fdb", "append", "0a:58:00:00:30:01", "dev", "vxold", "dst", "192.168.88.30", "self", "permanent")
    sh("bridge", "-n", ns, "fdb", "append", "0a:58:00:00:31:01", "dev", "vxold", "dst", "192.168.88.31", "self", "permanent")
    sh("ip", "-n", ns, "route", "add", "10.80.0.0/24", "via", "192.168.88.8", "proto", "149")
    sh("ip", "-n", ns, "route", "add", "10.81.0.0/24", "via", "192.168.88.8", "proto", "149")
    vx_mac = ip_json("link", "show", "vxold", netns=ns)[0]["address"]
    indexes = dict((n, ifindex(ns, n)) for n in ("brold", "vxold"))
    keep = [_clean_link(lk) for lk in ip_json("-d", "link", "show", netns=ns) if lk["ifname"] in ("brkeep", "vxkeep")]
    keep_route = [r for r in ip_json("route", netns=ns) if r["dst"] == "10.81.0.0/24"]
    keep_fdb = [e for e in fdb(ns) if e["mac"] == "0a:58:00:00:31:01"]

    tasks = [
        {"podnet.fabric.bridge": {"netns": ns, "owner": A, "purge": True, "bridges": [{"name": "brold"}]}},
        {"podnet.fabric.vxlan": {"netns": ns, "owner": A, "purge": True, "vxlans": [
            {"name": "vxold", "vni": 301, "dev": "eth1", "local": "192.168.88.1", "mac": vx_mac,
             "peers": [{"mac": "0a:58:00:00:30:01", "remote": "192.168.88.30"}]}]}},
        {"podnet.fabric.route": {"netns": ns, "owner": A, "purge": True, "routes": [{"dest": "10.80.0.0/24", "gateway": "192.168.88.8"}]}},
    ]
    monitor = RouteMonitor(ns)
    try:
        r = playbook(tasks, diff=True)
    finally:
        lines = monitor.stop()
    assert not r.failed and all(res["changed"] for res in r.results), r
    # adopted in place: same ifindex, the owner's alias; the route replaced, never deleted
    assert dict((n, ifindex(ns, n)) for n in indexes) == indexes
    for name in indexes:
        assert ip_json("link", "show", name, netns=ns)[0]["ifalias"] == "podnet.fabric:" + A
    assert r.results[2]["actions"] == [
        "adopt route 10.80.0.0/24 via 192.168.88.8 dev eth1 of podnet.fabric 0.1 (proto 149) for owner itest-a: replace in place"]
    assert not [line for line in lines if line.startswith("Deleted") and "10.80.0.0/24" in line], lines
    assert [line for line in lines if line.startswith("10.80.0.0/24") and "proto " + A in line], lines
    route = [x for x in ip_json("route", netns=ns) if x["dst"] == "10.80.0.0/24"]
    assert [(x["gateway"], x["protocol"]) for x in route] == [("192.168.88.8", A)]
    assert r.results[2]["diff"]["before"]["10.80.0.0/24"]["protocol"] == 149
    # the undeclared legacy objects stay exactly as they were, also the adopted VTEP's peer that
    # nothing records as the owner's
    assert [_clean_link(lk) for lk in ip_json("-d", "link", "show", netns=ns) if lk["ifname"] in ("brkeep", "vxkeep")] == keep
    assert [x for x in ip_json("route", netns=ns) if x["dst"] == "10.81.0.0/24"] == keep_route
    assert [e for e in fdb(ns) if e["mac"] == "0a:58:00:00:31:01"] == keep_fdb
    # adopted once: the next run has nothing to do
    r = playbook(tasks)
    assert not r.failed and not r.changed, r
