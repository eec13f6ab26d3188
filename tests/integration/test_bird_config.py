"""bird_config (with calico_bgp_peer) against real BIRD 2 daemons in throw-away namespaces.

Nodes are namespaces on one bridge (in a namespace of its own); each node's BIRD is started by
the test (``bird -c FILE -s SOCKET``, ``manage_service: false``) with the main file the module
wrote, and killed at teardown, pass or fail. Results are checked with ``ip -json route`` (the
kernel) and ``birdc`` text, never with the module's own parsers.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from conftest import ip_json, sh, unique
from test_calico_bgp_peer import Daemon, eventually

pytestmark = pytest.mark.single_target

AS = 64512
POOL = "10.244.0.0/16"
SERVICES = "10.96.0.0/12"
LB_RANGE, LB_ADDR = "10.97.0.0/24", "10.97.0.10"
LB_IP = LB_ADDR + "/32"


class Node(Daemon):
    """A node namespace whose main file bird_config writes; BIRD started by :meth:`start`."""

    def __init__(self, root, netns, ip, block):   # pylint: disable=super-init-not-called
        self.dir = os.path.join(root, netns)
        os.makedirs(self.dir)
        self.netns, self.ip, self.asn, self.block = netns, ip, AS, block
        self.conf = os.path.join(self.dir, "bird.conf")
        self.peers_dir = os.path.join(self.dir, "podnet.d")
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.pidfile = os.path.join(self.dir, "bird.pid")
        self.log = os.path.join(self.dir, "bird.log")

    def start(self):
        sh("bird", "-c", self.conf, "-s", self.sock, "-P", self.pidfile, netns=self.netns)

    def config(self, owner="t1", **args):
        params = dict(owner=owner, netns=self.netns, router_id=self.ip, originate=[self.block, SERVICES], export=[POOL, SERVICES],
                      kernel={"program": [POOL]}, bfd={"interval_ms": 100, "multiplier": 3}, log=self.log, manage_service=False,
                      config=self.conf, config_dir=self.peers_dir, socket=self.sock)
        params.update(args)
        return {"name": "bird_config %s" % self.netns, "podnet.fabric.bird_config": params}

    def peers(self, others, **extra):
        each = extra.pop("each", {})
        peers = [dict(peer_ip=o.ip, as_number=AS, calico_node=True, name_prefix="Mesh", export_filter="podnet_export", **each)
                 for o in others]
        return self.task(peers, owner="t1", **extra)

    def kernel(self):
        """{dst: route} of BIRD's routes in the node's kernel (ip -json)."""
        return dict((r["dst"], r) for r in ip_json("route", "show", netns=self.netns) if r.get("protocol") == "bird")

    def established(self, names):
        return all((self.protocol_line(n) or [""])[-1] == "Established" for n in names)


def mesh_name(node):
    return "Mesh_" + node.ip.replace(".", "_")


@pytest.fixture
def lan(netns_factory):
    """``lan(n)``: n node namespaces on one bridge (10.252.x.1..n/24); Nodes, BIRD not started."""
    root = tempfile.mkdtemp(prefix="pnt-birdcfg-")
    nodes = []

    def make(count, subnet):
        switch = netns_factory()
        sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", switch, "link", "set", "br0", "up")
        made = []
        for i in range(1, count + 1):
            ns, veth = netns_factory(), unique("pbc")
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", veth, "netns", switch)
            sh("ip", "-n", switch, "link", "set", veth, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", "%s.%d/24" % (subnet, i), "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            node = Node(root, ns, "%s.%d" % (subnet, i), "10.244.%d.0/24" % i)
            nodes.append(node)
            made.append(node)
        return made

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def start_all(nodes, names):
    for node in nodes:
        node.start()
    for node in nodes:
        up = eventually(lambda node=node: node.established(names[node]), bool, timeout=30)
        assert up, (node.netns, node.birdc("show", "protocols"))


def test_mesh_blocks_ecmp_no_blackholes_program_and_absent(playbook, lan):
    n1, n2, n3 = nodes = lan(3, "10.252.0")
    tasks = []
    for node in nodes:
        originate = [node.block, SERVICES] + ([LB_IP] if node is not n3 else [])
        tasks += [node.config(originate=originate, kernel={"program": [POOL, LB_RANGE]}),
                  node.peers([o for o in nodes if o is not node])]
    run = playbook(tasks)
    assert not run.failed, run.last
    assert run[0]["export_filter"] == "podnet_export" and not run[0]["reconfigured"], run[0]
    start_all(nodes, dict((node, [mesh_name(o) for o in nodes if o is not node]) for node in nodes))

    # (a) every node's kernel: the other two blocks via their node, proto bird; nothing of its own.
    for node in nodes:
        want = set(o.block for o in nodes if o is not node)
        routes = eventually(node.kernel, lambda r, want=want: want <= set(r), timeout=15)
        for other in nodes:
            if other is not node:
                route = routes[other.block]
                assert route["gateway"] == other.ip and route["dev"] == "eth0" and route["protocol"] == "bird", route
        assert node.block not in routes and SERVICES not in routes, routes
        every = ip_json("route", "show", "table", "all", netns=node.netns)
        assert not [r for r in every if r.get("type") == "blackhole"], every
    # (b) the /32 n1 and n2 both originate: one ECMP route in n3's kernel, none in theirs.
    ecmp = eventually(n3.kernel, lambda r: len(r.get(LB_ADDR, {}).get("nexthops", [])) == 2, timeout=15)
    hops = sorted(h["gateway"] for h in ecmp[LB_ADDR]["nexthops"])
    assert hops == [n1.ip, n2.ip], ecmp
    assert LB_ADDR not in n1.kernel() and LB_ADDR not in n2.kernel()

    # (e) n3 programs nothing: BIRD's routes leave its kernel; its sessions stay up.
    since = n3.protocol_line(mesh_name(n1))[4:6]
    empty = playbook([n3.config(kernel={"program": []})])
    assert not empty.failed and empty.changed and empty.last["reconfigured"], empty
    assert empty.last["routes"]["master4"]["networks"] >= 6, empty    # birdc's count: BIRD still has them all
    assert eventually(n3.kernel, lambda r: not r, timeout=10) == {}
    assert n3.protocol_line(mesh_name(n1))[4:6] == since and n3.established([mesh_name(n1), mesh_name(n2)])
    # n2's BIRD stops (persist: its routes stay); state=absent removes them and its file.
    n2.stop()
    assert n1.block in n2.kernel()
    check = playbook([n2.config(state="absent"), n1.config(state="absent")], check=True, diff=True)
    assert check.failed and check[0]["changed"] and n1.block in n2.kernel(), check
    assert sorted(check[0]["removed_routes"]) == sorted(check[0]["diff"]["before"]["kernel routes (proto bird)"])
    assert check.last["msg"].startswith("BIRD still runs (answers on %s)" % n1.sock), check.last   # n1's BIRD still runs
    gone = playbook([n2.config(state="absent")])
    assert not gone.failed and gone.changed and len(gone.last["removed_routes"]) == 2, gone
    assert n2.kernel() == {} and not os.path.exists(n2.conf)
    again = playbook([n2.config(state="absent")])
    assert not again.failed and not again.changed, again


def test_route_reflector_relays_between_clients(playbook, lan):
    rr, c1, c2 = lan(3, "10.251.0")
    clients = dict(each=dict(rr_client=True, rr_cluster_id="244.0.0.1"))
    tasks = [rr.config(originate=[], kernel={"program": []}), rr.peers([c1, c2], **clients)]
    for client in (c1, c2):
        tasks += [client.config(), client.peers([rr])]   # clients do not peer each other
    run = playbook(tasks)
    assert not run.failed, run.last
    text = open(os.path.join(rr.peers_dir, "t1.conf")).read()
    assert text.count("  rr client;\n") == 2 and text.count("  rr cluster id 244.0.0.1;\n") == 2, text
    start_all([rr, c1, c2], {rr: [mesh_name(c1), mesh_name(c2)], c1: [mesh_name(rr)], c2: [mesh_name(rr)]})
    for me, other in ((c1, c2), (c2, c1)):
        routes = eventually(me.kernel, lambda r, other=other: other.block in r, timeout=15)
        assert routes[other.block]["gateway"] == other.ip, routes   # reflected: the next hop is kept
    assert rr.kernel() == {}                                        # the reflector programs nothing
    shown = c1.birdc("show", "route", c2.block, "all")
    assert "BGP.cluster_list: 244.0.0.1" in shown and "BGP.originator_id: %s" % c2.ip in shown, shown


def test_check_mode_idempotence_rejected_config_owners(playbook, four_runs, lan):
    a, b = lan(2, "10.250.0")
    run = playbook([a.config(), a.peers([b]), b.config(), b.peers([a])])
    assert not run.failed, run.last
    start_all([a, b], {a: [mesh_name(b)], b: [mesh_name(a)]})
    eventually(a.kernel, lambda r: b.block in r, timeout=15)
    line = a.protocol_line(mesh_name(b))

    def snap():
        return open(a.conf).read(), sorted(a.kernel()), a.reconfigurations()

    reconfigured = a.reconfigurations()
    check, real, check2, real2 = four_runs([a.config(originate=[a.block, SERVICES, LB_IP])], snap)
    after = check.last["diff"]["after"][a.conf]
    assert "  route %s blackhole;\n" % LB_IP in after and LB_IP not in check.last["diff"]["before"][a.conf], check
    assert check.last["reconfigured"] and real.last["reconfigured"] and not check2.last["reconfigured"] and not real2.last["reconfigured"]
    assert a.reconfigurations() == reconfigured + 1
    assert eventually(lambda: b.birdc("show", "route", LB_IP), lambda out: mesh_name(a) in out)
    assert a.protocol_line(mesh_name(b))[4:] == line[4:], "the session was restarted by a change that does not touch it"

    # The refusals in one playbook, each task on its own (ignore_errors): a configuration BIRD
    # rejects changes nothing (BIRD's message and line, sessions untouched); bad input is refused
    # before BIRD sees it; another owner's main file is never replaced; a foreign file only with force.
    before = open(a.conf).read()
    foreign = os.path.join(a.dir, "foreign.conf")
    with open(foreign, "w") as handle:
        handle.write("router id 10.250.0.1;\nprotocol device {}\n")
    bad, bad_net, other, refused = playbook([dict(task, ignore_errors=True) for task in (
        a.config(originate=[a.block, SERVICES, LB_IP], extra="filter broken {\n  if net ~ 10.0.0.0/8 then accep;\n}"),
        a.config(originate=["10.244.1.1/24"]),
        a.config(owner="other"),
        a.config(config=foreign, socket=os.path.join(a.dir, "none.ctl")))]).results
    assert bad.get("failed"), bad
    msg = bad["msg"]
    assert msg.startswith("BIRD rejects the configuration: %s:" % a.conf) and msg.endswith("`if net ~ 10.0.0.0/8 then accep;`"), msg
    assert "\n" not in msg
    assert bad_net.get("failed") and bad_net["msg"].startswith("originate 10.244.1.1/24: not a network:"), bad_net
    assert open(a.conf).read() == before and a.reconfigurations() == reconfigured + 1
    assert a.protocol_line(mesh_name(b))[4:] == line[4:]
    assert other.get("failed") and other["msg"] == "%s: belongs to owner t1, not to owner other; refusing to take it over" % a.conf, other
    assert refused.get("failed") and "is not podnet.fabric's (no owner mark) nor Debian's untouched example" in refused["msg"], refused
    forced = playbook([a.config(config=foreign, socket=os.path.join(a.dir, "none.ctl"), force=True)])
    assert not forced.failed and forced.changed and open(foreign).read().startswith("# podnet.fabric:t1: "), forced
    assert a.protocol_line(mesh_name(b))[4:] == line[4:]
