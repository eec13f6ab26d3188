"""The BIRD layer without a daemon: Calico's semantics in the renderer, the owner's file, the
``birdc show protocols all`` parser (on BIRD 2.0.12's own output) and how BIRD's errors are
quoted. bird/birdc are replaced by a recording runner."""
from __future__ import annotations

import os

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import bird
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError


def peer(**params):
    params.setdefault("peer_ip", "10.0.0.2")
    params.setdefault("as_number", 65002)
    return bird.normalize(params, node_ip=params.pop("node_ip", "10.0.0.1"), as_number=params.pop("node_as", 64512))


def block(**params):
    return bird.render_peer(peer(**params), "bgp").splitlines()


def test_default_peer_is_calicos_block():
    lines = block()
    assert lines[:5] == ["# peer Node_10_0_0_2", "protocol bgp Node_10_0_0_2 {", '  description "podnet.fabric:bgp peer 10.0.0.2";',
                         "  local as 64512;", "  neighbor 10.0.0.2 as 65002;"]
    for line in ("  source address 10.0.0.1;", "  ttl security off;", "  multihop;", "  graceful restart on;",
                 "  connect delay time 2;", "  connect retry time 5;", "  error wait time 5,30;", "  ipv4 {",
                 "    gateway recursive;", "    add paths on;", "    import all;", "    export none;"):
        assert line in lines
    for absent in ("passive on;", "keepalive time", "hold time", "password", "bfd on;", "next hop", "graceful restart time"):
        assert not any(absent in line for line in lines), absent


def test_port_name_and_ipv6():
    assert peer(peer_ip="10.0.0.2:1179")["name"] == "Node_10_0_0_2_port_1179"
    assert "  neighbor 10.0.0.2 port 1179 as 65002;" in block(peer_ip="10.0.0.2:1179")
    v6 = peer(peer_ip="[fd00::2]:1179", node_ip="fd00::1", name_prefix="Global")
    assert (v6["name"], v6["port"], v6["family"]) == ("Global_fd00__2_port_1179", 1179, "ipv6")
    assert "  ipv6 {" in bird.render_peer(v6, "bgp")


def test_keepalive_hold_and_restart_times():
    # Calico sets only the keepalive (BIRD keeps its 240 s hold time); durations are Calico's.
    lines = block(keepalive_time="20s", max_restart_time="2m")
    assert "  keepalive time 20;" in lines and "  graceful restart time 120;" in lines
    assert not any("hold time" in line for line in lines)
    assert "  hold time 9;" in block(hold_time="9", keepalive_time="3")
    assert bird.parse_duration("1m30s") == 90 and bird.parse_duration("1500ms") == 2 and bird.parse_duration("2.5s") == 3 and bird.parse_duration(None) is None
    off = block(graceful_restart=False, max_restart_time="60s")
    assert "  graceful restart off;" in off and not any("restart time" in line for line in off)


def test_ttl_security_next_hop_bfd_password_allow_local_as():
    lines = block(ttl_security=2, next_hop_mode="Self", bfd=True, password="pw", num_allowed_local_as_numbers=1, local_as_number=65010)
    for line in ("  ttl security on;", "  multihop 2;", "    next hop self;", "  bfd on;", '  password "pw";',
                 "  allow local as 1;", "  local as 65010;"):
        assert line in lines
    assert "  multihop;" not in lines
    assert "    next hop keep;" in block(next_hop_mode="Keep")
    assert "    export filter calico_export;" in block(export_filter="calico_export")


def test_route_reflector_client_and_listen_port():
    lines = block(as_number=64512, rr_client=True, rr_cluster_id="244.0.0.1")
    assert lines.index("  rr client;") + 1 == lines.index("  rr cluster id 244.0.0.1;")
    assert "  rr client;" in block(as_number=64512, rr_client=True) and not any(line.startswith("  rr ") for line in block())
    assert "  local port 1179;" in bird.render_peer(bird.normalize(dict(peer_ip="10.0.0.2", as_number=65002), "10.0.0.1", listen_port=1179), "bgp")
    default = bird.render_peer(bird.normalize(dict(peer_ip="10.0.0.2", as_number=65002), "10.0.0.1", listen_port=179), "bgp")
    assert "local port" not in default


@pytest.mark.parametrize("node_ip, peer_ip, passive", [
    ("10.0.0.5", "10.0.0.8", True),     # the peer's address is greater: it connects, we wait
    ("10.0.0.5", "10.0.0.2", False),
    ("10.0.0.5", "10.0.0.10", False),   # compared as strings, as Calico does: "10.0.0.10" < "10.0.0.5"
    ("10.0.0.10", "10.0.0.5", True),
])
def test_passive_side_between_calico_nodes(node_ip, peer_ip, passive):
    assert peer(peer_ip=peer_ip, node_ip=node_ip, calico_node=True)["passive"] is passive
    # Of each pair exactly one side is passive.
    assert peer(peer_ip=node_ip, node_ip=peer_ip, calico_node=True)["passive"] is (not passive)


def test_passive_only_for_calico_nodes_unless_forced():
    assert peer(peer_ip="10.0.0.8", node_ip="10.0.0.5")["passive"] is False   # an external router
    assert peer(peer_ip="10.0.0.2", node_ip="10.0.0.5", calico_node=True, passive=True)["passive"] is True
    assert peer(peer_ip="10.0.0.8", node_ip="10.0.0.5", calico_node=True, passive=False)["passive"] is False


def test_source_address_none():
    assert peer(source_address="None", node_ip=None)["source_address"] is None
    assert not any("source address" in line for line in block(source_address="None"))


@pytest.mark.parametrize("params, reason", [
    (dict(peer_ip="10.0.0.300"), r"^peer 10\.0\.0\.300: "),
    (dict(peer_ip="10.0.0.2:0"), r"^peer 10\.0\.0\.2:0: port '0' is not 1-65535"),
    (dict(as_number=None), r"^peer 10\.0\.0\.2 \(Node_10_0_0_2\): as_number is required$"),
    (dict(as_number=2 ** 32), r"as_number 4294967296 is not 1-4294967295$"),
    (dict(keepalive_time="soon"), r"^peer 10\.0\.0\.2: 'soon' is not a duration"),
    (dict(password='a"b'), r"password must be at most 80 characters without quotes"),
    (dict(password="x" * 81), r"password must be at most 80"),
    (dict(node_ip=None), r"source_address UseNodeIP needs node_ip"),
    (dict(node_ip="fd00::1"), r"node_ip fd00::1 is not of the peer's address family"),
    (dict(node_ip="10.0.0.2"), r"is the node's own address$"),
    (dict(node_ip="node1"), r"^node_ip 'node1': not an IP address$"),
    (dict(name="has-dash"), r"name must be a BIRD symbol"),
    (dict(export_filter="x;y"), r"export_filter must be all, none or the name of a BIRD filter"),
    (dict(ttl_security=256), r"ttl_security must be 0-255"),
    (dict(rr_cluster_id="244.0.0.1"), r"rr_cluster_id needs rr_client: true"),
    (dict(rr_client=True, rr_cluster_id="cluster1", as_number=64512), r"rr_cluster_id 'cluster1' is not IPv4-formatted"),
    (dict(rr_client=True), r"rr_client needs an iBGP peer \(as_number 65002 is not the local AS 64512\)$"),
])
def test_bad_input_names_the_peer(params, reason):
    with pytest.raises(FabricError, match=reason):
        peer(**params)


def test_file_round_trip_and_masking():
    blocks = {"Node_10_0_0_3": bird.render_peer(peer(peer_ip="10.0.0.3", password="s3"), "bgp"),
              "Node_10_0_0_2": bird.render_peer(peer(), "bgp")}
    text = bird.render_file("bgp", blocks)
    assert bird.file_owner(text) == "bgp" and bird.file_owner("protocol bgp x {}\n") is None
    assert bird.parse_file(text) == blocks
    assert text.index("Node_10_0_0_2") < text.index("Node_10_0_0_3")
    assert '  password "********";' in bird.masked(text) and "s3" not in bird.masked(text)


# Real output of `birdc show protocols all` (BIRD 2.0.12), cut down and trailing blanks stripped;
# the "Last error" line added as BIRD prints it for a refused connection.
SHOW = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     23:20:52.975

static1    Static     master4    up     23:20:52.975
  Channel ipv4
    State:          UP
    Table:          master4
    Routes:         1 imported, 0 exported, 1 preferred

Node_10_99_0_2 BGP        ---        up     23:17:07.086  Established
  Description:    podnet.fabric:t1 peer 10.99.0.2
  BGP state:          Established
    Neighbor address: 10.99.0.2
    Neighbor AS:      65002
    Local AS:         65001
    Local capabilities
      Graceful restart
        Restart time: 120
    Session:          external multihop AS4
    Hold timer:       227.363/240
    Keepalive timer:  61.648/80
  Channel ipv4
    State:          UP
    Table:          master4
    Input filter:   ACCEPT
    Output filter:  ACCEPT
    Routes:         2 imported, 2 exported, 1 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              2          0          0          0          2

Node_10_253_0_9 BGP        ---        start  23:20:52.975  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 10.253.0.9
    Neighbor AS:      65009
    Local AS:         65001
    Connect delay:    0.981/1
    Last error:       Socket: Connection refused
  Channel ipv4
    State:          DOWN
    Table:          master4
"""


def test_parse_show_protocols_all():
    protos = bird.parse_protocols(SHOW)
    assert sorted(protos) == ["Node_10_253_0_9", "Node_10_99_0_2", "device1", "static1"]
    up = protos["Node_10_99_0_2"]
    assert (up["proto"], up["state"], up["since"], up["info"], up["bgp_state"]) == ("BGP", "up", "23:17:07.086", "Established", "Established")
    assert up["neighbor_as"] == "65002" and up["channels"]["ipv4"] == {"state": "UP", "routes": {"imported": 2, "exported": 2, "preferred": 1}}
    down = bird.session(protos["Node_10_253_0_9"])
    assert down["state"] == "Active" and down["last_error"] == "Socket: Connection refused" and down["uptime"] is None
    assert protos["Node_10_253_0_9"]["info"] == "Active        Socket: Connection refused"
    good = bird.session(up)
    assert good["routes"] == {"imported": 2, "exported": 2, "preferred": 1, "filtered": 0} and isinstance(good["uptime"], int)


def test_uptime_from_bird_stamps():
    import time
    now = time.mktime(time.strptime("2026-12-01 10:00:30", "%Y-%m-%d %H:%M:%S"))
    assert bird.uptime("10:00:00.123", now) == 30
    assert bird.uptime("23:59:30", now) == 10 * 3600 + 60         # yesterday's stamp
    assert bird.uptime("2026-11-30 10:00:30", now) == 86400
    assert bird.uptime("whenever", now) is None
    long_format = bird.parse_protocols("Name Proto Table State Since Info\nNode_1 BGP --- up 2026-11-30 10:00:30  Established\n")
    assert long_format["Node_1"]["since"] == "2026-11-30 10:00:30" and long_format["Node_1"]["info"] == "Established"


class FakeRun(object):
    """bird/birdc stand-ins: ``bird -p`` answers ``answer`` and records what it parsed."""

    def __init__(self, answer=(0, "", "")):
        self.answer = answer
        self.calls = []
        self.staged = None

    def __call__(self, argv, input_text=None):
        self.calls.append(argv)
        if argv[:2] == ["bird", "-p"]:
            with open(argv[3]) as handle:
                self.staged = handle.read()
            return self.answer
        return (1, "", "Unable to connect to server control socket (%s): No such file or directory" % argv[2])


def setup_daemon(tmp_path, run):
    conf = tmp_path / "bird.conf"
    conf.write_text("router id 10.0.0.1;\n")
    return bird.Bird(run, config=str(conf), directory=str(tmp_path / "podnet.d"), socket=str(tmp_path / "ctl"))


def test_plan_validates_the_complete_config_then_writes(tmp_path):
    run = FakeRun()
    daemon = setup_daemon(tmp_path, run)
    plan, info = bird.plan(daemon, "bgp", [peer(password="pw")])
    assert info["added"] == ["Node_10_0_0_2"] and len(plan.actions) == 1
    assert 'include "' in run.staged and "podnet-staging" in run.staged   # the staged copy, not the real dir
    assert not os.path.exists(daemon.directory)                            # nothing written while planning
    assert "pw" not in str(plan.after) and plan.before[daemon.owner_path("bgp")] is None
    plan.apply()                                                           # BIRD not running: files only
    path = daemon.owner_path("bgp")
    assert oct(os.stat(path).st_mode & 0o777) == "0o640" and 'password "pw";' in open(path).read()
    assert open(daemon.config).read().endswith('include "%s/*.conf";\n' % daemon.directory)
    again, info = bird.plan(daemon, "bgp", [peer(password="pw")])
    assert not again.actions and info["added"] == []


def test_rejected_config_quotes_bird_and_names_the_peer(tmp_path):
    daemon = setup_daemon(tmp_path, None)
    lines = bird.render_file("bgp", {"Node_10_0_0_2": bird.render_peer(peer(keepalive_time="300", password="pw"), "bgp")}).splitlines()
    number = lines.index('  password "pw";') + 1

    def run(argv, input_text=None):
        del input_text
        staged = os.path.join(os.path.dirname(open(argv[3]).read().split('include "')[1].split('"')[0]), "bgp.conf")
        return 1, "", "bird: %s:%d:3 Keepalive time must be at most hold time\n" % (staged, number)
    daemon.run = daemon.parse_run = run
    with pytest.raises(FabricError) as err:
        bird.plan(daemon, "bgp", [peer(keepalive_time="300", password="pw")])
    assert str(err.value) == ('peer 10.0.0.2 (Node_10_0_0_2): BIRD rejects it: %s:%d:3 Keepalive time must be at most hold time: '
                              '`password "********";`' % (daemon.owner_path("bgp"), number))
    assert not os.path.exists(daemon.directory)


def test_other_owners_and_foreign_files(tmp_path):
    daemon = setup_daemon(tmp_path, FakeRun())
    os.makedirs(daemon.directory)
    other = bird.render_file("t2", {"Node_10_0_0_2": bird.render_peer(peer(), "t2")})
    (tmp_path / "podnet.d" / "t2.conf").write_text(other)
    (tmp_path / "podnet.d" / "mine.conf").write_text("protocol bgp Hand_1 { }\n")
    with pytest.raises(FabricError, match=r"^peer 10\.0\.0\.2 \(Node_10_0_0_2\): protocol Node_10_0_0_2 is already defined by owner t2 \("):
        bird.plan(daemon, "bgp", [peer()])
    with pytest.raises(FabricError, match=r"already defined by .*mine\.conf, not podnet\.fabric's"):
        bird.plan(daemon, "bgp", [peer(name="Hand_1")])
    with pytest.raises(FabricError, match=r"mine\.conf: exists and is not owner mine's podnet\.fabric peers file"):
        bird.plan(daemon, "mine", [peer(peer_ip="10.0.0.3")])
    with pytest.raises(FabricError, match=r"declared twice in this task"):
        bird.plan(daemon, "bgp", [peer(peer_ip="10.0.0.3"), peer(peer_ip="10.0.0.3")])
    with pytest.raises(FabricError, match=r"declared twice in this task"):
        bird.plan(daemon, "bgp", [peer(peer_ip="10.0.0.3"), peer(peer_ip="10.0.0.3:179", name="Other")])
    # The same peer address under another name: two sessions to one neighbor would fight.
    with pytest.raises(FabricError, match=r"^peer 10\.0\.0\.2 \(Mine_2\): 10\.0\.0\.2 is already a neighbor in owner t2 \("):
        bird.plan(daemon, "bgp", [peer(name="Mine_2")])
    assert bird.plan(daemon, "bgp", [peer(name="Mine_2", peer_ip="10.0.0.2:1179")])[1]["added"] == ["Mine_2"]


def test_purge_and_absent(tmp_path):
    daemon = setup_daemon(tmp_path, FakeRun())
    plan = bird.plan(daemon, "bgp", [peer(), peer(peer_ip="10.0.0.3"), peer(peer_ip="10.0.0.4")])[0]
    plan.apply()
    plan, info = bird.plan(daemon, "bgp", [peer(peer_ip="10.0.0.4", state="absent")])
    assert (info["removed"], info["protocols"]) == (["Node_10_0_0_4"], ["Node_10_0_0_2", "Node_10_0_0_3"])
    plan, info = bird.plan(daemon, "bgp", [peer()], purge=True)
    assert info["removed"] == ["Node_10_0_0_3", "Node_10_0_0_4"]
    plan.apply()
    plan, info = bird.plan(daemon, "bgp", [], purge=True)
    assert plan.descriptions[0].startswith("remove %s" % daemon.owner_path("bgp"))
    plan.apply()
    assert not os.path.exists(daemon.owner_path("bgp"))


def test_birdc_errors_and_configure():
    answers = {"configure": (0, "BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\nReconfigured\n", ""),
               "show": (1, "", "Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n")}
    daemon = bird.Bird(lambda argv, input_text=None: answers[argv[3]])
    assert "Reconfigured" in daemon.configure()
    with pytest.raises(FabricError, match=r"^birdc -s /run/bird/bird.ctl show protocols all: Unable to connect to server control socket"):
        daemon.protocols()
    answers["configure"] = (0, "BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\n/etc/bird/bird.conf:3:1 syntax error\n", "")
    with pytest.raises(FabricError, match=r"^birdc configure: Reading configuration .* / /etc/bird/bird.conf:3:1 syntax error$"):
        daemon.configure()
