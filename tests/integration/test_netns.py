"""netns module on the real kernel: in-thread creation checked with iproute2, ownership, purge,
legacy adoption, rollback, bad input.

Purge is host-wide for namespaces, so every test uses its own owner (no route protocols are
registered here): no test can purge another's namespaces, and none needs serialising.
"""
from __future__ import annotations

import os
import subprocess

from conftest import sh, snapshot, unique


def netns_list():
    """What `ip netns list` prints (names only)."""
    return set(line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip())


def lo(ns):
    return sh("ip", "-n", ns, "-d", "link", "show", "lo")


def lo_alias(ns):
    for line in lo(ns).splitlines():
        if line.strip().startswith("alias "):
            return line.strip()[len("alias "):]
    return None


def cleanup(*names):
    for n in names:
        if os.path.lexists(os.path.join("/run/netns", n)):
            subprocess.run(["ip", "netns", "del", n], capture_output=True, check=False)
        if os.path.islink(os.path.join("/run/netns", n)):
            os.unlink(os.path.join("/run/netns", n))


def owner():
    return unique("itest-ns-")


def test_create_four_runs_iproute2_sees_them_and_absent(four_runs, playbook):
    me = owner()
    a, b = unique("pnt-ns-"), unique("pnt-ns-")
    try:
        tasks = [{"podnet.fabric.netns": {"owner": me, "namespaces": [a, b]}}]
        check, real, _check2, _real2 = four_runs(tasks, lambda: snapshot(a, b))
        assert {a, b} <= netns_list()
        for ns in (a, b):
            assert "UP" in lo(ns).split(">")[0]
            assert lo_alias(ns) == "podnet.fabric:" + me
        assert check.last["diff"]["before"][a] == {"state": "absent"}
        assert real.last["namespaces"][a] == {"state": "present", "owner": me, "loopback_up": True}
        # A namespace of its own, not the host's: a link made in it is not on the host.
        sh("ip", "-n", a, "link", "add", "pntx0", "type", "veth", "peer", "name", "pntx1")
        assert "pntx0" not in sh("ip", "link", "show")
        gone = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [{"name": a, "state": "absent"}, b]}}])
        assert not gone.failed and gone.changed, gone
        assert a not in netns_list() and b in netns_list()
        # ip netns del works on what the module made.
        sh("ip", "netns", "del", b)
        assert b not in netns_list() and not os.path.exists("/run/netns/" + b)
    finally:
        cleanup(a, b)


def test_purge_removes_only_the_owners_namespaces(playbook, netns_factory):
    me, other = owner(), owner()
    foreign = netns_factory("pnt-usr-")  # made with `ip netns add`: not ours
    keep, stale, theirs, legacy = unique("pnt-ns-"), unique("pnt-ns-"), unique("pnt-ns-"), unique("pnt-ns-")
    try:
        assert not playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [keep, stale]}},
                             {"podnet.fabric.netns": {"owner": other, "namespaces": [theirs]}}]).failed
        sh("ip", "netns", "add", legacy)
        sh("ip", "-n", legacy, "link", "set", "lo", "alias", "podnet.fabric")
        survivors = snapshot(foreign, theirs, legacy)
        r = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [keep], "purge": True}}], diff=True)
        assert not r.failed and r.changed, r
        assert r.last["actions"] == ["delete netns %s" % stale], r
        assert r.last["diff"]["after"] == {stale: {"state": "absent"}}
        names = netns_list()
        assert keep in names and stale not in names
        assert snapshot(foreign, theirs, legacy) == survivors, "purge touched a namespace that is not the owner's"
        # The other owner purges in turn and loses nothing; neither does this one.
        r = playbook([{"podnet.fabric.netns": {"owner": other, "namespaces": [theirs], "purge": True}}])
        assert not r.failed and not r.changed, r
        assert keep in netns_list()
    finally:
        cleanup(keep, stale, theirs, legacy)


def test_foreign_and_other_owners_namespaces_are_refused_naming_both(playbook, netns_factory):
    me, other = owner(), owner()
    foreign = netns_factory("pnt-usr-")
    theirs = unique("pnt-ns-")
    try:
        assert not playbook([{"podnet.fabric.netns": {"owner": other, "namespaces": [theirs]}}]).failed
        before = snapshot(foreign, theirs)
        r = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [theirs]}}])
        assert r.failed and r.last["msg"] == "netns %s: belongs to owner %s, not to owner %s; refusing to take it over" % (theirs, other, me), r
        r = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [foreign], "state": "absent"}}])
        assert r.failed and r.last["msg"].startswith("netns %s: exists and is not podnet.fabric's" % foreign), r
        assert snapshot(foreign, theirs) == before
    finally:
        cleanup(theirs)


def test_release_0_1_namespace_is_adopted_in_place(playbook):
    me = owner()
    legacy = unique("pnt-ns-")
    try:
        sh("ip", "netns", "add", legacy)
        sh("ip", "-n", legacy, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
        sh("ip", "-n", legacy, "link", "set", "lo", "alias", "podnet.fabric")
        r = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [legacy]}}])
        assert not r.failed and r.changed, r
        assert lo_alias(legacy) == "podnet.fabric:" + me
        assert "keep0" in sh("ip", "-n", legacy, "link", "show"), "adopting recreated the namespace"
        assert "UP" in lo(legacy).split(">")[0]
    finally:
        cleanup(legacy)


def test_kernel_refusal_mid_plan_rolls_back(playbook):
    me = owner()
    a, b, blocked = unique("pnt-ns-"), unique("pnt-ns-"), unique("pnt-ns-")
    path = os.path.join("/run/netns", blocked)
    try:
        # A dangling symlink: the name looks free, but creating it is refused (EEXIST).
        os.symlink("/nonexistent-pnt-target", path)
        r = playbook([{"podnet.fabric.netns": {"owner": me, "namespaces": [a, b, blocked]}}])
        assert r.failed, r
        msg = r.last["msg"]
        assert "\n" not in msg and msg.startswith("create netns %s: " % blocked), msg
        assert "rolled back: 2 actions undone" in msg and r.last["changed"] is False, r
        assert not {a, b} & netns_list()
        assert not os.path.exists("/run/netns/" + a) and not os.path.exists("/run/netns/" + b)
    finally:
        cleanup(a, b, blocked)


BAD_NAMES = ("a/b", "", "x" * 200)


def test_bad_names_and_purge_without_owner_fail_cleanly(playbook):
    # one playbook, each task on its own (ignore_errors): a purge without an owner first (had it
    # purged anything, it could not hide a namespace a later task left behind), then each bad name
    # after a good one, with an owner of its own
    oks = [unique("pnt-ns-") for _bad in BAD_NAMES]
    r = playbook([{"podnet.fabric.netns": {"namespaces": [], "purge": True}, "ignore_errors": True}] +
                 [{"podnet.fabric.netns": {"owner": owner(), "namespaces": [ok, bad]}, "ignore_errors": True}
                  for ok, bad in zip(oks, BAD_NAMES)])
    assert len(r.results) == 1 + len(BAD_NAMES), r
    assert r[0].get("failed") and r[0]["msg"].startswith("purge needs an explicit owner"), r
    for result in r.results[1:]:
        assert result.get("failed"), r
        assert "invalid name" in result["msg"] and result["msg"].startswith("netns "), result["msg"]
    assert not set(oks) & netns_list(), "a failed run left a namespace behind"
