"""netns module on the real kernel: create, idempotence, ownership, purge, bad input."""
from __future__ import annotations

import os

import pytest

from conftest import sh, snapshot, unique

# purge deletes every podnet.fabric namespace not declared, host-wide: the tests that create
# owned namespaces run on one xdist worker, one after the other (test.sh uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("owned-netns")


def netns_list():
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def lo_alias(ns):
    out = sh("ip", "-n", ns, "-d", "link", "show", "lo")
    return "alias podnet.fabric" in out


def cleanup(*names):
    for n in names:
        if n in netns_list():
            sh("ip", "netns", "del", n, check=False)


def test_create_four_runs_and_absent(four_runs, playbook):
    a, b = unique("pnt-ns-"), unique("pnt-ns-")
    try:
        tasks = [{"podnet.fabric.netns": {"namespaces": [a, b]}}]
        _check, real, _check2, _real2 = four_runs(tasks, lambda: snapshot(a, b))
        assert {a, b} <= netns_list()
        for ns in (a, b):
            lo = sh("ip", "-n", ns, "link", "show", "lo")
            assert "UP" in lo.split(">")[0], lo
            assert lo_alias(ns)
        assert real.last["namespaces"][a]["state"] == "present"
        gone = playbook([{"podnet.fabric.netns": {"namespaces": [{"name": a, "state": "absent"}, b]}}])
        assert not gone.failed and gone.changed, gone
        assert a not in netns_list() and b in netns_list()
    finally:
        cleanup(a, b)


def test_purge_removes_only_owned(playbook, netns_factory):
    foreign = netns_factory("pnt-usr-")  # made with `ip netns add`: not ours
    keep, stale = unique("pnt-ns-"), unique("pnt-ns-")
    try:
        r = playbook([{"podnet.fabric.netns": {"namespaces": [keep, stale]}}])
        assert not r.failed, r
        r = playbook([{"podnet.fabric.netns": {"namespaces": [keep], "purge": True}}])
        assert not r.failed and r.changed, r
        names = netns_list()
        assert keep in names and stale not in names
        assert foreign in names, "purge removed a namespace podnet.fabric did not create"
        assert "delete netns %s" % stale in r.last["actions"]
        assert all(foreign not in a for a in r.last["actions"])
    finally:
        cleanup(keep, stale)


def test_foreign_namespace_present_is_left_unowned_and_absent_is_refused(playbook, netns_factory):
    foreign = netns_factory("pnt-usr-")
    sh("ip", "-n", foreign, "link", "set", "lo", "down")
    r = playbook([{"podnet.fabric.netns": {"namespaces": [foreign]}}])
    assert not r.failed and r.changed, r
    assert "UP" in sh("ip", "-n", foreign, "link", "show", "lo").split(">")[0]
    assert not lo_alias(foreign)
    before = snapshot(foreign)
    r = playbook([{"podnet.fabric.netns": {"namespaces": [foreign], "state": "absent"}}])
    assert r.failed
    assert r.last["msg"] == "netns %s: exists but was not created by podnet.fabric (no alias on its loopback); refusing to delete it" % foreign
    assert snapshot(foreign) == before


def test_bad_names_fail_cleanly(playbook):
    for bad, reason in (("a/b", "invalid name"), ("", "invalid name"), ("x" * 200, "invalid name")):
        ok = unique("pnt-ns-")
        r = playbook([{"podnet.fabric.netns": {"namespaces": [ok, bad]}}])
        assert r.failed, r
        assert reason in r.last["msg"] and r.last["msg"].startswith("netns "), r.last["msg"]
        assert ok not in netns_list(), "a failed run left a namespace behind"
