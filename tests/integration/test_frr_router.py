"""frr_router against a real FRR 8.4 and real BIRD 2 nodes, all in throw-away namespaces.

A router namespace runs FRR's zebra, bgpd, bfdd and staticd by hand (no watchfrr, no systemd:
the module runs with ``service: false``), with their vty sockets, pid files, logs and the
configuration directory the module writes in a temp dir of their own, so that nothing of the
host's FRR (``/etc/frr``, ``/var/run/frr``) is touched. Two node namespaces, each on its own
veth to the router (rack A, rack B), run BIRD 2 configured by podnet.fabric.calico_bgp_peer.
Everything is killed and removed at teardown, pass or fail.

Results are checked with independent tools: vtysh's own JSON, ``ip -json route`` in the
router's namespace (the kernel's view of what zebra installed), ``ss`` (the kernel's MD5 keys)
and ``birdc`` on the nodes.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, ip_json, sh, unique

# setup.sh installs frr and frr-pythontools (requirements-apt.txt): missing is a failure.
pytestmark = pytest.mark.single_target

ROUTER_AS, RACK_AS = 65000, {"a": 65001, "b": 65002}
ROUTER_IPS = {"a": "10.253.1.254", "b": "10.253.2.254"}
NODE_IPS = {"a": "10.253.1.11", "b": "10.253.2.12"}
POD_CIDRS = {"a": "10.244.1.0/24", "b": "10.244.2.0/24"}
VIP = "172.31.240.10"            # a LoadBalancer IP both nodes announce (MetalLB's BGP mode)
STRAY = "192.168.99.0/24"        # announced by node A, outside every range the router accepts
PASSWORD = "tor-Md5-s3cret"
FRR = "/usr/lib/frr"
DAEMONS = ("zebra", "bgpd", "bfdd", "staticd")


def eventually(get, ok, timeout=30.0, interval=0.2):
    """Poll ``get()`` until ``ok(value)``, at most ``timeout`` seconds; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def alive(pid):
    """The process exists and is not a zombie (daemons are reparented to whatever reaps here)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pidfile(path):
    """SIGTERM the process of a pid file, then SIGKILL if it lingers (bounded)."""
    try:
        with open(path) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if not eventually(lambda: alive(pid), lambda up: not up, timeout=5, interval=0.05):
            return


class Router(object):
    """FRR's daemons started by hand in ``netns``; ``dir`` is their vty socket directory and the
    configuration directory the module writes."""

    def __init__(self, root, netns):
        self.netns = netns
        self.dir = os.path.join(root, "frr")
        os.makedirs(self.dir)
        os.chown(self.dir, pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid)
        os.chmod(self.dir, 0o750)

    def start(self):
        for name in DAEMONS:
            argv = [os.path.join(FRR, name), "-d", "-A", "127.0.0.1", "-z", os.path.join(self.dir, "zserv.api"),
                    "--vty_socket", self.dir, "-i", self.pidfile(name), "-f", "/dev/null",
                    "--log", "file:%s" % os.path.join(self.dir, name + ".log")]
            if name == "zebra":
                argv += ["-s", "90000000"]
            if name == "bfdd":
                argv += ["--bfdctl", os.path.join(self.dir, "bfdd.sock")]
            sh(*argv, netns=self.netns)
        up = eventually(lambda: subprocess.run(["vtysh", "--vty_socket", self.dir, "-c", "show version"],
                                               capture_output=True, check=False).returncode, lambda rc: rc == 0, timeout=10)
        assert up == 0, "FRR's daemons did not answer vtysh"

    def pidfile(self, name):
        return os.path.join(self.dir, name + ".pid")

    def vtysh(self, *commands):
        argv = ["vtysh", "--vty_socket", self.dir]
        for command in commands:
            argv += ["-c", command]
        return sh(*argv)

    def json(self, command):
        return json.loads(self.vtysh(command) or "{}")

    def neighbor(self, address):
        return self.json("show bgp neighbors %s json" % address).get(address) or {}

    def sessions_up(self):
        """{address: (state, sessions established so far)}: a session reset shows as a new count."""
        return dict((ip, (n.get("bgpState"), n.get("connectionsEstablished")))
                    for ip, n in self.json("show bgp neighbors json").items())

    def stop(self):
        for name in reversed(DAEMONS):
            stop_pidfile(self.pidfile(name))


class Node(object):
    """BIRD 2 in ``netns``: a main configuration of its own (pod CIDR, the VIP, a stray prefix as
    static blackhole routes, BFD at 100 ms x 3), peers through calico_bgp_peer."""

    def __init__(self, root, netns, rack):
        self.netns, self.rack = netns, rack
        self.ip, self.asn = NODE_IPS[rack], RACK_AS[rack]
        self.dir = os.path.join(root, "bird-" + rack)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "bird.conf")
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.pidfile = os.path.join(self.dir, "bird.pid")
        routes = "route %s blackhole; route %s/32 blackhole;" % (POD_CIDRS[rack], VIP)
        if rack == "a":
            routes += " route %s blackhole;" % STRAY
        with open(self.conf, "w") as handle:
            handle.write('log "%s/bird.log" all;\nrouter id %s;\nprotocol device {}\nprotocol static { ipv4; %s }\n'
                         'protocol bfd { interface "*" { interval 100 ms; multiplier 3; }; }\n' % (self.dir, self.ip, routes))

    def start(self):
        sh("bird", "-c", self.conf, "-s", self.sock, "-P", self.pidfile, netns=self.netns)

    def task(self, password=PASSWORD, **extra):
        peer = dict(peer_ip=ROUTER_IPS[self.rack], as_number=ROUTER_AS, password=password, bfd=True, export_filter="all")
        args = dict(owner="t1", netns=self.netns, node_ip=self.ip, as_number=self.asn, config=self.conf,
                    config_dir=os.path.join(self.dir, "podnet.d"), socket=self.sock, peers=[peer])
        args.update(extra)
        return {"name": "BIRD of rack %s" % self.rack, "podnet.fabric.calico_bgp_peer": args}

    def birdc(self, *args):
        return sh("birdc", "-s", self.sock, *args)

    def stop(self):
        stop_pidfile(self.pidfile)


class Fabric(object):
    def __init__(self, root, router, nodes):
        self.root, self.router, self.nodes = root, router, nodes

    def task(self, neighbors=None, check_password=None, **extra):
        """The frr_router task for this router (both nodes, MD5, BFD; the VIP's range accepted)."""
        if neighbors is None:
            neighbors = [dict(name="node-" + n.rack, address=n.ip, as_number=n.asn, password=PASSWORD, rack=n.rack)
                         for n in self.nodes]
        args = dict(owner="t1", config_dir=self.router.dir, vty_socket=self.router.dir, service=False,
                    router=dict(hostname="tor1", as_number=ROUTER_AS, router_id=ROUTER_IPS["a"]),
                    neighbors=neighbors,
                    settings=dict(cluster_cidr="10.244.0.0/16", service_cidrs=["10.96.0.0/12"],
                                  load_balancer_cidrs=["172.31.240.0/24"], keepalive_time="3", hold_time="9"))
        args.update(extra)
        return {"name": "the top-of-rack router", "podnet.fabric.frr_router": args}

    @property
    def config(self):
        return os.path.join(self.router.dir, "frr.conf")


@pytest.fixture(scope="module")
def fabric():
    """A router namespace with FRR, two node namespaces with BIRD, one veth per rack."""
    names, daemons = [], []
    root = tempfile.mkdtemp(prefix="pnt-frr-")
    os.chmod(root, 0o755)     # FRR's daemons run as user frr
    try:
        for _number in range(3):
            name = unique("pnt-")
            sh("ip", "netns", "add", name)
            names.append(name)
            sh("ip", "link", "set", "lo", "up", netns=name)
        r_ns, a_ns, b_ns = names
        for rack, ns in (("a", a_ns), ("b", b_ns)):
            veth = unique("pfr")
            sh("ip", "link", "add", veth + "r", "netns", r_ns, "type", "veth", "peer", "name", veth + "n", "netns", ns)
            sh("ip", "-n", r_ns, "addr", "add", ROUTER_IPS[rack] + "/24", "dev", veth + "r")
            sh("ip", "-n", ns, "addr", "add", NODE_IPS[rack] + "/24", "dev", veth + "n")
            sh("ip", "-n", r_ns, "link", "set", veth + "r", "up")
            sh("ip", "-n", ns, "link", "set", veth + "n", "up")
        router = Router(root, r_ns)
        nodes = [Node(root, a_ns, "a"), Node(root, b_ns, "b")]
        for daemon in [router] + nodes:
            daemons.append(daemon)      # stopped at teardown even when its start fails half-way
            daemon.start()
        yield Fabric(root, router, nodes)
    finally:
        for daemon in daemons:
            daemon.stop()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def converge(playbook, fabric):
    """Both nodes' BIRD peer with the router, the router waits until both are Established."""
    run = playbook([n.task() for n in fabric.nodes] + [fabric.task(wait=True, wait_timeout=40)])
    assert not run.failed, (run.last.get("msg"), run.last.get("sessions"), run)
    return run


def kernel_route(fabric, prefix):
    routes = ip_json("route", "show", prefix, netns=fabric.router.netns)
    return routes[0] if routes else None


def test_sessions_md5_bfd_routes_ecmp_check_mode_idempotence(playbook, fabric):
    router = fabric.router
    running_before = router.vtysh("show running-config")
    check = playbook([fabric.task()], check=True, diff=True)
    assert not check.failed and check.changed, check
    after = check.last["diff"]["after"][fabric.config]
    assert after.splitlines()[0].startswith("! podnet.fabric:t1: ") and " neighbor 10.253.2.12 password ********" in after
    assert PASSWORD not in json.dumps(check.results), "the password shows in the check-mode result"
    assert not os.path.exists(fabric.config) and router.vtysh("show running-config") == running_before, "check mode changed something"

    first = playbook([fabric.task()], diff=True)
    assert not first.failed and first.changed and first.last["reloaded"], first
    assert PASSWORD not in json.dumps(first.results)
    st = os.stat(fabric.config)
    assert oct(st.st_mode & 0o777) == "0o640" and (st.st_uid, st.st_gid) == (pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid)
    assert "router bgp 65000" in router.vtysh("show running-config"), "frr-reload.py did not apply the file"

    run = converge(playbook, fabric)
    sessions = dict((s["name"], s) for s in run.last["sessions"])
    assert set(sessions) == {"node-a", "node-b"} and all(s["state"] == "Established" for s in sessions.values()), sessions
    assert isinstance(sessions["node-a"]["uptime"], int) and sessions["node-a"]["bfd"] == "Up", sessions
    # The nodes' UPDATEs follow Established: the next run reports them (the stray prefix dropped).
    counts = eventually(lambda: [router.neighbor(ip)["addressFamilyInfo"]["ipv4Unicast"].get("acceptedPrefixCounter")
                                 for ip in sorted(NODE_IPS.values())], lambda c: c == [2, 2])
    assert counts == [2, 2], counts

    # Independent views: FRR's summary and BFD peers, the kernel's MD5 keys and routes.
    summary = router.json("show bgp summary json")["ipv4Unicast"]["peers"]
    assert all(summary[n.ip]["state"] == "Established" for n in fabric.nodes), summary
    bfd = eventually(lambda: router.json("show bfd peers json"),
                     lambda peers: sorted(p["peer"] for p in peers if p.get("status") == "up") == sorted(NODE_IPS.values()))
    assert sorted(p["peer"] for p in bfd if p.get("status") == "up") == sorted(NODE_IPS.values()), bfd
    ss = sh("ss", "-tnie", netns=router.netns)
    assert all("md5keys:%s/32" % ip in ss for ip in NODE_IPS.values()), ss
    for rack, node in zip("ab", fabric.nodes):
        route = eventually(lambda: kernel_route(fabric, POD_CIDRS[rack]), lambda r: r is not None)
        assert route and route["protocol"] == "bgp" and route["gateway"] == node.ip, route
    ecmp = eventually(lambda: kernel_route(fabric, VIP), lambda r: r is not None and len(r.get("nexthops", [])) == 2)
    assert ecmp and ecmp["protocol"] == "bgp" and sorted(h["gateway"] for h in ecmp["nexthops"]) == sorted(NODE_IPS.values()), ecmp
    assert kernel_route(fabric, STRAY) is None, "the router accepted a prefix outside the cluster's ranges"
    # The router relays rack A's pod CIDR to rack B (and only pod CIDRs: no VIP back to the nodes).
    relayed = eventually(lambda: fabric.nodes[1].birdc("show", "route", POD_CIDRS["a"], "all"), lambda out: "BGP.as_path" in out)
    assert "BGP.as_path: %d %d" % (ROUTER_AS, RACK_AS["a"]) in relayed, relayed
    from_router = fabric.nodes[1].birdc("show", "route", "protocol", "Node_10_253_2_254")
    assert POD_CIDRS["a"] in from_router and VIP not in from_router, from_router

    epoch = router.sessions_up()
    check_again = playbook([fabric.task()], check=True)
    assert not check_again.failed and not check_again.changed, check_again
    assert [s["prefixes_received"] for s in check_again.last["sessions"]] == [2, 2], check_again
    again = playbook([fabric.task()], diff=True)
    assert not again.failed and not again.changed and again.last["drift"] == [] and not again.last["diff"]["before"], again
    assert router.sessions_up() == epoch, "an unchanged run reset a session"

    # Drift: a line added with vtysh (not in the file) is found and removed by the next run.
    router.vtysh("configure terminal", "ip prefix-list PODNET-SERVICE-IPS seq 99 permit 192.0.2.0/24")
    fixed = playbook([fabric.task()])
    assert not fixed.failed and fixed.changed and fixed.last["drift"] == ["no ip prefix-list PODNET-SERVICE-IPS seq 99 permit 192.0.2.0/24"], fixed
    assert "seq 99" not in router.vtysh("show running-config")
    assert router.sessions_up() == epoch, "the drift repair reset a session"


def test_rejected_candidate_changes_nothing_and_wrong_md5_is_named(playbook, fabric):
    router = fabric.router
    converge(playbook, fabric)
    before = open(fabric.config).read()
    epochs = router.sessions_up()

    # Both refusals in one playbook, each task on its own (ignore_errors).
    # Only vtysh knows this is not FRR (a typo in a line given as it is).
    # Bad input the module sees itself: one line naming the neighbor.
    bad, bad_as = playbook([dict(task, ignore_errors=True) for task in (
        fabric.task(settings=dict(cluster_cidr="10.244.0.0/16", extra_config=["ip routee 0.0.0.0/0 10.253.1.1"])),
        fabric.task(neighbors=[dict(name="node-a", address=NODE_IPS["a"], as_number=ROUTER_AS)]))]).results
    assert bad.get("failed") and not bad["changed"], bad
    msg = bad["msg"]
    assert msg.startswith("frr.conf candidate: vtysh rejects line ") and "% Unknown command: `ip routee 0.0.0.0/0 10.253.1.1`" in msg, msg
    assert msg.endswith("(nothing was changed)") and "\n" not in msg, msg
    assert bad_as.get("failed") and bad_as["msg"] == (
        "neighbor node-a (10.253.1.11): as_number 65000 is the router's own AS (the ToR peers eBGP only)"), bad_as
    assert open(fabric.config).read() == before
    assert router.sessions_up() == epochs, "a rejected candidate reset a session"

    # A wrong MD5 password on node B: its session stays down, node A's stays up, and wait says so.
    wrong = playbook([fabric.nodes[1].task(password="not-the-password"), fabric.task(wait=True, wait_timeout=4)])
    assert wrong.failed and not wrong.last["changed"], wrong
    msg = wrong.last["msg"]
    assert msg.startswith("neighbors not Established after 4 s: node-b (10.253.2.12) "), msg
    assert "TCP MD5 passwords differ" in msg and "node-a" not in msg and "\n" not in msg, msg
    assert "not-the-password" not in json.dumps(wrong.results) and PASSWORD not in json.dumps(wrong.results)
    assert router.sessions_up()[NODE_IPS["a"]] == epochs[NODE_IPS["a"]], "node A's session was reset"
    assert router.neighbor(NODE_IPS["b"])["bgpState"] != "Established"


def test_ownership_one_line_refusals_and_force(playbook, fabric, tmp_path):
    """Another owner's file, and a file written by hand, are refused before anything else (FRR
    not even asked); force adopts. A directory of its own, no daemons answering it."""
    conf_dir = tmp_path / "etc-frr"
    conf_dir.mkdir()
    conf = conf_dir / "frr.conf"
    task = fabric.task(config_dir=str(conf_dir), vty_socket=str(tmp_path))
    conf.write_text("! podnet.fabric:other: frr.conf of owner other\nrouter bgp 65000\n")
    other = playbook([task])
    assert other.failed and other.last["msg"] == (
        "%s: belongs to owner other, not to owner t1; refusing to take it over (force: true adopts it)" % conf), other
    conf.write_text("router bgp 65000\n neighbor 10.0.0.1 remote-as 65001\n")
    hand = playbook([task])
    assert hand.failed and hand.last["msg"].startswith("%s: was written by hand or by another tool (no podnet.fabric mark)" % conf), hand
    assert conf.read_text() == "router bgp 65000\n neighbor 10.0.0.1 remote-as 65001\n"
    task["podnet.fabric.frr_router"]["force"] = True
    adopted = playbook([task])
    assert not adopted.failed and adopted.changed and adopted.last["actions"][1].startswith("adopt %s" % conf), adopted
    assert conf.read_text().startswith("! podnet.fabric:t1: ")
    assert any("FRR is not running" in w for w in adopted.last.get("warnings", [])), adopted


def test_vtysh_parses_everything_the_renderer_emits(tmp_path):
    """FRR 8.4's own parser (vtysh --dryrun needs no daemons) on every option frr.render has."""
    import sys
    if str(REPO / ".collections") not in sys.path:
        sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.podnet.fabric.plugins.module_utils import frr

    neighbors = [dict(name="n%d" % i, address="10.0.%d.%d" % (i // 200, i % 200 + 1), as_number=4200000000 + i,
                      password="k" * 80 if i % 2 else "P@ss!w0rd#%d" % i, bfd=i % 3 != 0, rack="r%d" % (i % 4))
                 for i in range(40)]
    variants = [
        dict(cluster_cidr="10.244.0.0/16"),
        dict(cluster_cidr="10.244.0.0/16", cluster_node_prefix=16, pod_prefix_max=32, service_cidrs=["10.96.0.0/12", "10.96.0.10/32"],
             load_balancer_cidrs=["172.31.240.0/24"], announce_default=True, maximum_paths=256, keepalive_time="1", hold_time="3",
             restart_time="4095", graceful_restart=True, ipv6_forwarding=True,
             bfd=dict(detect_multiplier=255, receive_interval=10, transmit_interval=60000), extra_config=["ip route 0.0.0.0/0 10.0.0.254"]),
        dict(cluster_cidr="10.0.0.0/8", cluster_node_prefix=26, maximum_paths=1, graceful_restart=False, keepalive_time="0", hold_time="0"),
    ]
    for number, settings in enumerate(variants):
        path = tmp_path / ("frr%d.conf" % number)
        path.write_text(frr.render({"hostname": "tor-1.rack", "as_number": 4294967295, "router_id": "10.255.255.254"},
                                   neighbors, settings, owner="t1"))
        proc = subprocess.run(frr.check_command(str(path)), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (settings, proc.stderr, proc.stdout)
