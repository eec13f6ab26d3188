"""calico_bgp_peer against real BIRD 2 daemons and real BGP sessions.

Two throw-away network namespaces joined by a veth pair, a BIRD daemon in each (its own config,
socket, pid file and log under a temp dir; killed at teardown, pass or fail); nothing of BIRD
runs in the host's namespace. Each side originates a /24 "pod CIDR" as a static blackhole route,
as Calico does. Results are checked with ``birdc`` (its text, not the module's parser), ``ss``
(the kernel's TCP MD5 keys) and the files themselves.
"""
from __future__ import annotations

import grp
import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from conftest import sh, unique

# setup.sh installs bird2 (requirements-apt.txt): a missing bird is a failure, not a skip.
# calico_bgp_peer never imports pyroute2: one target interpreter is enough.
pytestmark = pytest.mark.single_target

AS_A, AS_B = 65001, 65002
IP_A, IP_B = "10.253.0.1", "10.253.0.2"
NAME_A, NAME_B = "Node_10_253_0_2", "Node_10_253_0_1"   # the protocol each side has for the other
PASSWORD = "pod-s3cret-md5"


class Daemon(object):
    def __init__(self, root, netns, ip, asn, pod_cidr):
        self.dir = os.path.join(root, netns)
        os.makedirs(self.dir)
        self.netns, self.ip, self.asn = netns, ip, asn
        self.conf = os.path.join(self.dir, "bird.conf")
        self.peers_dir = os.path.join(self.dir, "podnet.d")
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.pidfile = os.path.join(self.dir, "bird.pid")
        self.log = os.path.join(self.dir, "bird.log")
        with open(self.conf, "w") as handle:
            handle.write('log "%s" all;\nrouter id %s;\nprotocol device {}\nprotocol direct { ipv4; interface "*"; }\n'
                         "protocol static { ipv4; route %s blackhole; }\nprotocol bfd {}\n" % (self.log, ip, pod_cidr))
        sh("bird", "-c", self.conf, "-s", self.sock, "-P", self.pidfile, netns=netns)

    def birdc(self, *args):
        return sh("birdc", "-s", self.sock, *args)

    def protocol_line(self, name):
        """The protocol's line of `birdc show protocols` (name proto table state since info)."""
        for line in self.birdc("show", "protocols").splitlines():
            if line.split()[:1] == [name]:
                return line.split()
        return None

    def reconfigurations(self):
        with open(self.log) as handle:
            return handle.read().count("Reconfigured")

    def task(self, peers, owner="t1", **extra):
        args = dict(owner=owner, netns=self.netns, node_ip=self.ip, as_number=self.asn, config=self.conf,
                    config_dir=self.peers_dir, socket=self.sock, peers=peers)
        args.update(extra)
        return {"name": "peers of %s" % self.netns, "podnet.fabric.calico_bgp_peer": args}

    def stop(self):
        """SIGTERM, then wait (bounded) until the daemon is gone; SIGKILL if it lingers."""
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if not eventually(lambda: os.path.exists("/proc/%d" % pid), lambda alive: not alive, timeout=10):
                return   # gone


@pytest.fixture
def pair(netns_factory):
    """Two namespaces on one veth, a BIRD in each; (a, b) Daemons."""
    ns_a, ns_b = netns_factory(), netns_factory()
    veth = unique("pbg")
    sh("ip", "link", "add", veth + "a", "netns", ns_a, "type", "veth", "peer", "name", veth + "b", "netns", ns_b)
    for ns, dev, ip in ((ns_a, veth + "a", IP_A), (ns_b, veth + "b", IP_B)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    root = tempfile.mkdtemp(prefix="pnt-bird-")
    daemons = []
    try:
        daemons.append(Daemon(root, ns_a, IP_A, AS_A, "10.244.1.0/24"))
        daemons.append(Daemon(root, ns_b, IP_B, AS_B, "10.244.2.0/24"))
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def eventually(get, ok, timeout=30.0):
    """Poll ``get()`` until ``ok(value)``, at most ``timeout`` seconds; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def peer_of(daemon, **extra):
    # Two Calico nodes: Calico's rule makes A (10.253.0.1 < 10.253.0.2) the passive side.
    peer = dict(peer_ip=daemon.ip, as_number=daemon.asn, password=PASSWORD, export_filter="all", bfd=True, max_restart_time="90s",
                calico_node=True)
    peer.update(extra)
    return peer


def converge(playbook, a, b):
    """Both sides peer with each other (MD5); returns the run of B's side, which waits."""
    run = playbook([a.task([peer_of(b)]), b.task([peer_of(a)], wait=True, wait_timeout=60)])
    assert not run.failed, run
    return run


def test_ebgp_md5_sessions_routes_check_mode_idempotence(playbook, pair):
    a, b = pair
    check = playbook([a.task([peer_of(b)])], check=True, diff=True)
    assert not check.failed and check.changed, check
    text = check.last["diff"]["after"][os.path.join(a.peers_dir, "t1.conf")]
    assert "neighbor %s as %d;" % (IP_B, AS_B) in text and 'password "********";' in text
    assert PASSWORD not in str(check.results), "the password shows in the check-mode result"
    assert not os.path.exists(a.peers_dir) and "podnet.d" not in open(a.conf).read(), "check mode wrote files"
    assert a.protocol_line(NAME_A) is None

    first = playbook([a.task([peer_of(b)])])
    assert not first.failed and first.changed, first
    line = eventually(lambda: a.protocol_line(NAME_A), lambda line: line and line[-1] == "Passive")
    assert line[-1] == "Passive", line
    run = playbook([b.task([peer_of(a)], wait=True, wait_timeout=60)])
    assert not run.failed, run
    assert PASSWORD not in str(first.results) + str(run.results)
    # B connected to A's port 179, not the other way round.
    assert re.search(r"\s%s:179\s+%s:\d+\s" % (re.escape(IP_A), re.escape(IP_B)), sh("ss", "-tn", "state", "established", netns=a.netns))
    # Independent views: birdc's own text on both sides, BIRD's table, the kernel's MD5 key.
    for daemon, name in ((a, NAME_A), (b, NAME_B)):
        line = daemon.protocol_line(name)
        assert line and line[1] == "BGP" and line[3] == "up" and line[-1] == "Established", line
    # A's pod CIDR reaches B's table in the UPDATE that follows Established: poll, bounded.
    route = eventually(lambda: b.birdc("show", "route", "10.244.1.0/24", "all"), lambda out: NAME_B in out)
    assert re.search(r"10\.244\.1\.0/24\s+unicast \[%s " % NAME_B, route) and "as_path: %d" % AS_A in route, route
    assert "md5keys:%s/32" % IP_B in sh("ss", "-tnie", netns=a.netns)
    assert "Restart time: 90" in a.birdc("show", "protocols", "all", NAME_A)   # max_restart_time
    bfd = eventually(lambda: a.birdc("show", "bfd", "sessions"), lambda out: re.search(r"^%s\s.*\sUp\s" % re.escape(IP_B), out, re.M))
    assert re.search(r"^%s\s.*\sUp\s" % re.escape(IP_B), bfd, re.M), bfd
    sessions = {s["name"]: s for s in run.last["sessions"]}
    assert sessions[NAME_B]["state"] == "Established" and isinstance(sessions[NAME_B]["uptime"], int), sessions
    assert set(sessions[NAME_B]["routes"]) == {"imported", "exported", "preferred", "filtered"}, sessions
    mode = os.stat(os.path.join(a.peers_dir, "t1.conf"))
    assert oct(mode.st_mode & 0o777) == "0o640"
    if "bird" in [group.gr_name for group in grp.getgrall()]:
        assert mode.st_gid == grp.getgrnam("bird").gr_gid

    reconfigured = a.reconfigurations()
    since = a.protocol_line(NAME_A)[4]
    check_again = playbook([a.task([peer_of(b)])], check=True)
    assert not check_again.failed and not check_again.changed, check_again
    again = playbook([a.task([peer_of(b)])], diff=True)
    assert not again.failed and not again.changed and not again.last["diff"]["before"], again
    assert a.reconfigurations() == reconfigured, "an unchanged run ran birdc configure"
    assert a.protocol_line(NAME_A)[4] == since


def test_config_bird_rejects_changes_nothing(playbook, pair):
    a, b = pair
    converge(playbook, a, b)
    path = os.path.join(a.peers_dir, "t1.conf")
    before, since, reconfigured = open(path).read(), a.protocol_line(NAME_A)[4], a.reconfigurations()

    # Both refusals in one playbook, each task on its own (ignore_errors).
    # Only BIRD knows the keepalive time must not exceed the (default, 240 s) hold time.
    # Bad input the module sees itself: one line naming the peer, before anything is done.
    bad, bad_as = playbook([dict(task, ignore_errors=True) for task in (
        a.task([peer_of(b), dict(peer_ip="10.253.0.9", as_number=65009, keepalive_time="300s", password="x-secret")]),
        a.task([peer_of(b, as_number=4294967296)]))]).results
    assert bad.get("failed"), bad
    msg = bad["msg"]
    assert msg.startswith("peer 10.253.0.9 (Node_10_253_0_9): BIRD rejects it: %s:" % path), msg
    # BIRD names the line where it noticed (for this check, the protocol's closing brace): quoted.
    assert re.search(r"t1\.conf:\d+:\d+ Keepalive time must be at most hold time: `.+`$", msg) and "\n" not in msg, msg
    assert bad_as.get("failed") and bad_as["msg"] == "peer %s (%s): as_number 4294967296 is not 1-4294967295" % (IP_B, NAME_A), bad_as

    assert open(path).read() == before
    assert a.reconfigurations() == reconfigured
    line = a.protocol_line(NAME_A)
    assert line[-1] == "Established" and line[4] == since, line
    assert a.protocol_line("Node_10_253_0_9") is None

    # A valid change BIRD takes, but the peer disagrees (wrong MD5 password): the module says so.
    wrong = playbook([a.task([peer_of(b, password="not-the-password")], wait=True, wait_timeout=4)])
    assert wrong.failed and wrong.last["changed"], wrong
    assert wrong.last["msg"].startswith("sessions not Established after 4 s: %s " % NAME_A), wrong.last["msg"]
    assert "not-the-password" not in str(wrong.results)


def test_purge_removes_only_the_owners_peers(playbook, pair):
    a = pair[0]
    os.makedirs(a.peers_dir)
    hand = os.path.join(a.peers_dir, "hand.conf")
    with open(hand, "w") as handle:
        handle.write("protocol bgp Hand_10_253_0_7 { local as 65001; neighbor 10.253.0.7 as 65007; ipv4 { import none; export none; }; }\n")
    run = playbook([a.task([dict(peer_ip="10.253.0.5", as_number=65005, source_address="None")], owner="t2"),
                    a.task([dict(peer_ip="10.253.0.6", as_number=65006), dict(peer_ip="10.253.0.8", as_number=65008)])])
    assert not run.failed, run
    # Check mode before the namespace exists (an earlier task would create it): a prediction.
    ahead = playbook([a.task([dict(peer_ip="10.253.0.4", as_number=65004)], owner="t3", netns=unique("pnt-"))], check=True)
    assert not ahead.failed and ahead.changed and ahead.last["added"] == ["Node_10_253_0_4"], ahead
    # The refusals in one playbook, each task on its own (ignore_errors).
    missing = unique("pnt-")
    taken, real, no_owner = playbook([dict(task, ignore_errors=True) for task in (
        a.task([dict(peer_ip="10.253.0.5", as_number=65005)]),
        a.task([dict(peer_ip="10.253.0.4", as_number=65004)], owner="t3", netns=missing),
        a.task([], owner=None, purge=True))]).results
    assert taken.get("failed") and "already defined by owner t2" in taken["msg"], taken
    assert real.get("failed") and real["msg"] == "netns %s: does not exist" % missing, real
    assert not os.path.exists(os.path.join(a.peers_dir, "t3.conf"))
    assert no_owner.get("failed") and "purge needs an explicit owner" in no_owner["msg"], no_owner

    purged = playbook([a.task([dict(peer_ip="10.253.0.8", as_number=65008)], purge=True)])
    assert not purged.failed and purged.last["removed"] == ["Node_10_253_0_6"], purged
    names = [line.split()[0] for line in a.birdc("show", "protocols").splitlines()[2:] if line.strip()]
    assert "Node_10_253_0_6" not in names
    assert {"Node_10_253_0_5", "Node_10_253_0_8", "Hand_10_253_0_7"} <= set(names), names
    assert os.path.exists(hand) and os.path.exists(os.path.join(a.peers_dir, "t2.conf"))

    gone = playbook([a.task([], purge=True)])
    assert not gone.failed and gone.changed and not os.path.exists(os.path.join(a.peers_dir, "t1.conf")), gone
    names = [line.split()[0] for line in a.birdc("show", "protocols").splitlines()[2:] if line.strip()]
    assert "Node_10_253_0_8" not in names and {"Node_10_253_0_5", "Hand_10_253_0_7"} <= set(names), names
