# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The FRR 8.4 renderer without FRR: the lab's ToR configuration line by line, determinism, the
daemons file, and the one-line input errors."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import frr
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

ROUTER = {"hostname": "router", "as_number": 64600, "router_id": "172.31.1.254"}
NODES = [
    {"name": "node1", "address": "172.31.1.11", "as_number": 64601, "password": "s3cret", "rack": "a"},
    {"name": "node2", "address": "172.31.1.12", "as_number": 64601, "password": "s3cret", "rack": "a"},
    {"name": "node3", "address": "172.31.2.13", "as_number": 64602, "password": "other-Key!", "rack": "b"},
]
SETTINGS = {"cluster_cidr": "10.244.0.0/16", "cluster_node_prefix": 24,
            "service_cidrs": ["10.96.0.0/12"], "load_balancer_cidrs": ["172.31.1.240/29"]}


def lab(**settings):
    return frr.render(ROUTER, NODES, dict(SETTINGS, **settings))


def lines_of(text):
    return text.splitlines()


def test_lab_neighbors_remote_as_password_bfd_in_frr_order():
    lines = lines_of(lab())
    start = lines.index(" neighbor 172.31.1.11 remote-as 64601")
    assert lines[start:start + 6] == [
        " neighbor 172.31.1.11 remote-as 64601",
        " neighbor 172.31.1.11 peer-group PODNET-NODES",
        " neighbor 172.31.1.11 description node1 rack a",
        " neighbor 172.31.1.11 bfd",
        " neighbor 172.31.1.11 bfd profile podnet-nodes",
        " neighbor 172.31.1.11 password s3cret",
    ]
    assert " neighbor 172.31.1.12 remote-as 64601" in lines
    assert " neighbor 172.31.2.13 remote-as 64602" in lines
    assert " neighbor 172.31.2.13 password other-Key!" in lines
    assert lines.index(" neighbor PODNET-NODES peer-group") < start


def test_lab_global_bgp_lines():
    text = lab()
    lines = lines_of(text)
    assert lines[0].startswith("! podnet.fabric:tor_router: frr.conf of owner tor_router")
    assert lines[1:5] == ["frr defaults traditional", "hostname router", "log syslog informational", "no ipv6 forwarding"]
    for line in ("router bgp 64600", " bgp router-id 172.31.1.254", " bgp graceful-restart",
                 " bgp bestpath as-path multipath-relax", " no bgp default ipv4-unicast"):
        assert line in lines
    assert "ebgp-requires-policy" not in text
    af = lines[lines.index(" address-family ipv4 unicast"):lines.index(" exit-address-family")]
    assert af == [" address-family ipv4 unicast",
                  "  neighbor PODNET-NODES activate",
                  "  neighbor PODNET-NODES route-map PODNET-FROM-NODES in",
                  "  neighbor PODNET-NODES route-map PODNET-TO-NODES out",
                  "  maximum-paths 16"]
    assert text.endswith("!\nend\n")


def test_lab_policy_accepts_pods_and_services_sends_pods_only():
    text = lab()
    assert "ip prefix-list PODNET-POD-CIDRS seq 10 permit 10.244.0.0/16 ge 24 le 24\n" in text
    assert "ip prefix-list PODNET-SERVICE-IPS seq 10 permit 10.96.0.0/12 le 32\n" in text
    assert "ip prefix-list PODNET-SERVICE-IPS seq 20 permit 172.31.1.240/29 le 32\n" in text
    assert ("route-map PODNET-FROM-NODES permit 10\n match ip address prefix-list PODNET-POD-CIDRS\nexit\n"
            "route-map PODNET-FROM-NODES permit 20\n match ip address prefix-list PODNET-SERVICE-IPS\nexit\n"
            "route-map PODNET-FROM-NODES deny 100\nexit\n") in text
    assert ("route-map PODNET-TO-NODES permit 10\n match ip address prefix-list PODNET-POD-CIDRS\nexit\n"
            "route-map PODNET-TO-NODES deny 100\nexit\n") in text
    assert "default-originate" not in text


def test_bfd_profile_block_defaults_to_100ms_times_3_multihop_ttl():
    # FRR's own defaults (multiplier 3, 300 ms) are left out, as FRR leaves them out of its
    # running configuration (frr-reload.py would otherwise always see a difference).
    text = lab()
    assert ("bfd\n profile podnet-nodes\n  minimum-ttl 1\n  receive-interval 100\n"
            "  transmit-interval 100\n exit\n !\nexit\n") in text
    custom = lab(bfd={"receive_interval": 300, "transmit_interval": 300, "detect_multiplier": 5})
    assert "profile podnet-nodes\n  minimum-ttl 1\n  detect-multiplier 5\n exit\n" in custom
    # Calico's BIRD peers are multihop: FRR must run them as multihop too (BFD on port 4784).
    assert " neighbor PODNET-NODES ebgp-multihop 2\n" in text


def test_options_timers_restart_time_default_route_paths_and_no_bfd_or_password():
    nodes = [dict(NODES[0], bfd=False, password=None)]
    text = frr.render(ROUTER, nodes, dict(SETTINGS, keepalive_time="10s", hold_time=30, restart_time=60,
                                          maximum_paths=8, announce_default=True, graceful_restart=True))
    lines = lines_of(text)
    assert " neighbor PODNET-NODES timers 10 30" in lines
    assert " bgp graceful-restart restart-time 60" in lines
    assert "  neighbor PODNET-NODES default-originate" in lines
    assert "  maximum-paths 8" in lines
    assert "bfd profile" not in text.split("router bgp")[1].split("bfd\n")[0]
    assert " neighbor 172.31.1.11 bfd" not in lines
    assert "password" not in text
    off = frr.render(ROUTER, NODES, dict(SETTINGS, graceful_restart=False))
    assert "graceful-restart" not in off


def test_prefix_ranges_follow_frr_rules():
    text = lab(cluster_node_prefix=16, pod_prefix_max=26, service_cidrs=["10.96.0.10/32"], load_balancer_cidrs=[])
    assert "permit 10.244.0.0/16 le 26\n" in text
    assert "permit 10.96.0.10/32\n" in text
    assert "permit 10.244.0.0/16 ge 24 le 32\n" in lab(pod_prefix_max=32)


def test_same_input_in_another_order_renders_identical_text():
    shuffled = [dict(reversed(list(node.items()))) for node in reversed(NODES)]
    settings = dict(reversed(list(SETTINGS.items())),
                    service_cidrs=["10.96.0.0/12"], load_balancer_cidrs=["172.31.1.240/29", "10.96.0.0/12"])
    assert frr.render(ROUTER, shuffled, settings) == lab()


def test_mask_hides_passwords_only():
    masked = frr.mask(lab())
    assert "s3cret" not in masked and "other-Key!" not in masked
    assert " neighbor 172.31.1.11 password ********" in masked
    assert masked.count("********") == 3


def test_daemons_file_enables_bgpd_and_bfdd_only():
    text = frr.render_daemons()
    lines = lines_of(text)
    assert "bgpd=yes" in lines and "bfdd=yes" in lines
    switches = [line for line in lines if line.endswith("=yes") or line.endswith("=no")]
    assert [line for line in switches if line.endswith("=yes")] == ["bgpd=yes", "bfdd=yes", "vtysh_enable=yes"]
    assert len(switches) == 19 and "zebra=no" not in lines
    assert 'zebra_options="  -A 127.0.0.1 -s 90000000"' in lines
    assert '#watchfrr_options=""' in lines
    with pytest.raises(FabricError, match="zebra"):
        frr.render_daemons(("bgpd", "zebra"))


def test_validation_commands():
    assert frr.check_command("/tmp/frr.conf.new") == ["/usr/bin/vtysh", "--dryrun", "--inputfile", "/tmp/frr.conf.new"]
    assert frr.reload_command("/tmp/f", test=True) == ["/usr/lib/frr/frr-reload.py", "--test", "/tmp/f"]
    assert frr.reload_command("/tmp/f")[1] == "--reload"


def with_node(index, **fields):
    nodes = [dict(node) for node in NODES]
    nodes[index].update(fields)
    return nodes


@pytest.mark.parametrize("nodes, message", [
    (with_node(1, as_number=0), r"^neighbor node2 \(172.31.1.12\): as_number 0 is not 1-4294967295$"),
    (with_node(1, as_number=4294967296), r"neighbor node2 .*as_number 4294967296 is not 1-4294967295"),
    (with_node(1, as_number="64x"), r"neighbor node2 .*as_number '64x' is not a number"),
    (with_node(1, as_number=64600), r"neighbor node2 .*the router's own AS"),
    (with_node(2, address="fd00::13"), r"^neighbor node3: address 'fd00::13' is not an IPv4 address$"),
    (with_node(2, address="172.31.2.300"), r"neighbor node3: address .* is not an IPv4 address"),
    (with_node(2, address="172.31.1.11"), r"^neighbor node3 \(172.31.1.11\): address duplicates neighbor node1$"),
    (with_node(2, name="node1"), r"^neighbor node1 \(172.31.2.13\): name duplicates neighbor node1$"),
    (with_node(0, password="two words"), r"^neighbor node1 \(172.31.1.11\): password must be printable ASCII"),
    (with_node(0, password="x" * 81), r"neighbor node1 .*password is 81 characters, TCP MD5 keys are at most 80"),
    (with_node(0, paswsord="x"), r"^neighbor node1: unknown field paswsord"),
    (with_node(0, address=None), r"^neighbor node1: address is required$"),
    (with_node(0, as_number=None), r"neighbor node1 .*as_number is required"),
])
def test_neighbor_errors_name_the_neighbor_and_the_field(nodes, message):
    with pytest.raises(FabricError, match=message):
        frr.render(ROUTER, nodes, SETTINGS)


def test_password_of_80_characters_is_accepted():
    assert ("password " + "k" * 80) in frr.render(ROUTER, with_node(0, password="k" * 80), SETTINGS)


@pytest.mark.parametrize("router, settings, message", [
    (dict(ROUTER, as_number=-1), SETTINGS, r"^router router: as_number -1 is not 1-4294967295$"),
    (dict(ROUTER, router_id="::1"), SETTINGS, r"router router: router_id '::1' is not an IPv4 address"),
    (dict(ROUTER, hostname="my router"), SETTINGS, r"^router: hostname"),
    (ROUTER, dict(SETTINGS, cluster_cidr=None), r"^settings: cluster_cidr is required$"),
    (ROUTER, dict(SETTINGS, cluster_cidr="10.244.0.1/16"), r"settings: cluster_cidr .* is not an IPv4 network"),
    (ROUTER, dict(SETTINGS, cluster_node_prefix=8), r"settings: cluster_node_prefix 8 is not 16-32"),
    (ROUTER, dict(SETTINGS, service_cidrs=["10.244.128.0/20"]), r"service_cidrs 10.244.128.0/20 overlaps cluster_cidr"),
    (ROUTER, dict(SETTINGS, bfd={"receive_interval": 5}), r"^settings.bfd: receive_interval 5 is not 10-60000$"),
    (ROUTER, dict(SETTINGS, bfd={"detect_multiplier": 1}), r"settings.bfd: detect_multiplier 1 is not 2-255"),
    (ROUTER, dict(SETTINGS, keepalive_time=10), r"keepalive_time and hold_time go together"),
    (ROUTER, dict(SETTINGS, keepalive_time=20, hold_time=30), r"hold_time 30 must be 0 or at least 3 and 3x"),
    (ROUTER, dict(SETTINGS, maximum_paths=0), r"settings: maximum_paths 0 is not 1-256"),
    (ROUTER, dict(SETTINGS, ecmp=4), r"^settings: unknown field ecmp"),
])
def test_router_and_settings_errors(router, settings, message):
    with pytest.raises(FabricError, match=message):
        frr.render(router, NODES, settings)


# --- the daemon side without FRR: a fake runner stands for vtysh, frr-reload.py and systemctl ------

def test_render_defaults_left_out_owner_mark_and_extra_config():
    text = lab(restart_time=120, maximum_paths=256, ipv6_forwarding=True, extra_config=["ip route 0.0.0.0/0 172.31.100.1"])
    assert "restart-time" not in text and "maximum-paths" not in text and "ipv6 forwarding" not in text
    assert text.endswith("!\nip route 0.0.0.0/0 172.31.100.1\n!\nend\n")
    assert frr.file_owner(frr.render(ROUTER, NODES, SETTINGS, owner="t1")) == "t1"
    assert frr.file_owner(frr.render_daemons(owner="t1")) == "t1"
    assert frr.file_owner("router bgp 1\n") is None
    with pytest.raises(FabricError, match="would end the configuration early"):
        lab(extra_config=["end"])


DEBIAN_FRR_CONF = "# default to using syslog.\n#\nlog syslog informational\n"


class FakeFrr(object):
    """Records commands; answers vtysh/frr-reload.py/systemctl as told."""

    def __init__(self, running=True, dryrun=(0, "", ""), delta="", reload_rc=0, active=True, enabled=True):
        self.calls = []
        self.running, self.dryrun, self.delta, self.reload_rc = running, dryrun, delta, reload_rc
        self.active, self.enabled = active, enabled
        self.neighbors = {}

    def __call__(self, argv, input_text=None):
        self.calls.append(list(argv))
        if argv[0].endswith("vtysh"):
            if "--dryrun" in argv:
                return self.dryrun
            if "show version" in argv:
                return (0, "FRRouting 8.4.4\n", "") if self.running else (1, "", "Exiting: failed to connect to any daemons.")
            if "show bgp neighbors json" in argv:
                import json
                return 0, json.dumps(self.neighbors), ""
        if argv[0].endswith("frr-reload.py"):
            if "--test" in argv:
                return 0, self.delta, ""
            return self.reload_rc, "" if not self.reload_rc else "\x1b[91m  ERROR\x1b[0m: line 3: % Unknown command", ""
        if argv[0] == "systemctl":
            if argv[1] == "is-active":
                return (0 if self.active else 3), "", ""
            if argv[1] == "is-enabled":
                return (0 if self.enabled else 1), "", ""
            return 0, "", ""
        raise AssertionError("unexpected command %r" % argv)

    def ran(self, word):
        return [c for c in self.calls if any(word == a for a in c)]


def setup(tmp_path, fake, config=None, daemons=None, manage_service=False):
    if config is not None:
        (tmp_path / "frr.conf").write_text(config)
    if daemons is not None:
        (tmp_path / "daemons").write_text(daemons)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("vtysh", "frr-reload.py"):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    return frr.Frr(fake, config_dir=str(tmp_path), vty_socket=str(tmp_path), vtysh=str(tools / "vtysh"),
                   frr_reload=str(tools / "frr-reload.py"), manage_service=manage_service)


def candidate(owner="t1", **settings):
    return frr.render(ROUTER, NODES, dict(SETTINGS, **settings), owner=owner), frr.render_daemons(owner=owner)


def test_plan_new_files_running_frr_reloads_without_restart(tmp_path):
    fake = FakeFrr()
    daemon = setup(tmp_path, fake, config=DEBIAN_FRR_CONF)
    conf, daemons = candidate()
    plan, info = frr.plan(daemon, "t1", conf, daemons, secrets=["s3cret"])
    assert info["reload"] and not info["restart"]
    assert plan.descriptions[0] == "write %s/daemons (bgpd, bfdd on)" % tmp_path
    assert plan.descriptions[1].startswith("take %s/frr.conf over (FRR's own file" % tmp_path)
    assert "s3cret" not in str(plan.after) and "password ********" in plan.after["%s/frr.conf" % tmp_path]
    assert fake.ran("--dryrun") and not fake.ran("--reload")
    plan.apply()
    assert (tmp_path / "frr.conf").read_text() == conf and oct((tmp_path / "frr.conf").stat().st_mode & 0o777) == "0o640"
    reload = fake.ran("--reload")[0]
    assert reload[-1] == str(tmp_path / "frr.conf") and "--vty_socket" in reload and "--stdout" in reload
    # The same again: nothing but the drift check.
    again, info = frr.plan(daemon, "t1", conf, daemons)
    assert not again.changed and info["drift"] == [] and len(fake.ran("--test")) == 1


def test_plan_drift_is_reloaded_hostname_is_no_drift(tmp_path):
    conf, daemons = candidate()
    delta = ("2026-12-07 16:27:39,047  INFO: Called via ...\n\nLines To Delete\n===============\nno hostname vm\n"
             "router bgp 64600\n no neighbor 172.31.1.11 password s3cret\n\nLines To Add\n============\nhostname router\n"
             "router bgp 64600\n neighbor 172.31.1.11 password s3cret\n")
    fake = FakeFrr(delta=delta)
    daemon = setup(tmp_path, fake, config=conf, daemons=daemons)
    plan, info = frr.plan(daemon, "t1", conf, daemons, secrets=["s3cret"])
    assert info["drift"] == ["router bgp 64600 / no neighbor 172.31.1.11 password ********",
                             "router bgp 64600 / neighbor 172.31.1.11 password ********"]
    assert plan.descriptions == ["frr-reload.py --reload %s/frr.conf: the running configuration differs from it (2 lines)" % tmp_path]
    fake.delta = "\nLines To Delete\n===============\nno hostname vm\n\nLines To Add\n============\nhostname router\n"
    plan, info = frr.plan(daemon, "t1", conf, daemons)
    assert not plan.changed and info["drift"] == []


def test_plan_rejected_candidate_names_the_neighbor_masks_and_changes_nothing(tmp_path):
    conf, daemons = candidate()
    line = conf.splitlines().index(" neighbor 172.31.1.11 password s3cret") + 1
    fake = FakeFrr(dryrun=(2, "", "line %d: %% Unknown command[25]:  neighbor 172.31.1.11 password s3cret\n" % line))
    daemon = setup(tmp_path, fake, config=DEBIAN_FRR_CONF)
    with pytest.raises(FabricError) as info:
        frr.plan(daemon, "t1", conf, daemons, secrets=["s3cret"], labels={"172.31.1.11": "node1"})
    assert str(info.value) == ("neighbor node1 (172.31.1.11): vtysh rejects line %d: %% Unknown command: "
                               "`neighbor 172.31.1.11 password ********` (nothing was changed)" % line)
    assert (tmp_path / "frr.conf").read_text() == DEBIAN_FRR_CONF and not (tmp_path / "daemons").exists()


def test_failed_reload_puts_the_previous_file_back(tmp_path):
    old, daemons = candidate()
    new = candidate(maximum_paths=8)[0]
    fake = FakeFrr(reload_rc=1)
    daemon = setup(tmp_path, fake, config=old, daemons=daemons)
    plan, _info = frr.plan(daemon, "t1", new, daemons)
    with pytest.raises(FabricError) as info:
        plan.apply()
    assert "frr-reload.py --reload" in str(info.value) and "line 3: % Unknown command" in str(info.value)
    assert "\x1b" not in str(info.value) and "previous frr.conf is back in place" in str(info.value)
    assert (tmp_path / "frr.conf").read_text() == old


@pytest.mark.parametrize("text, message", [
    ("! podnet.fabric:other: frr.conf of owner other\nrouter bgp 1\n",
     "frr.conf: belongs to owner other, not to owner t1; refusing to take it over (force: true adopts it)"),
    ("router bgp 65000\n neighbor 10.0.0.1 remote-as 65001\n",
     "frr.conf: was written by hand or by another tool (no podnet.fabric mark), not by owner t1; refusing to replace it"),
])
def test_ownership_refusals_and_force(tmp_path, text, message):
    fake = FakeFrr()
    daemon = setup(tmp_path, fake, config=text)
    conf, daemons = candidate()
    with pytest.raises(FabricError) as info:
        frr.plan(daemon, "t1", conf, daemons)
    assert str(info.value) == "%s/%s" % (tmp_path, message) or str(info.value).startswith("%s/%s" % (tmp_path, message))
    assert fake.calls == [], "FRR was asked before the ownership check"
    plan, _info = frr.plan(daemon, "t1", conf, daemons, force=True)
    assert plan.descriptions[1].startswith("adopt %s/frr.conf from " % tmp_path)


def test_service_management_enable_start_restart(tmp_path):
    conf, daemons = candidate()
    fake = FakeFrr(running=False, active=False, enabled=False)
    daemon = setup(tmp_path, fake, manage_service=True)
    plan, info = frr.plan(daemon, "t1", conf, daemons)
    assert plan.descriptions[1:] == ["write %s/frr.conf" % tmp_path, "systemctl enable frr.service", "systemctl start frr.service"]
    assert info["start"] and not info["reload"]
    plan.apply()
    assert [c[1] for c in fake.calls if c[0] == "systemctl"][-2:] == ["enable", "start"]
    # A changed daemons file while FRR runs: written, then frr.service restarted (no reload).
    fake.running, fake.active, fake.enabled = True, True, True
    (tmp_path / "daemons").write_text(daemons.replace("bfdd=yes", "bfdd=no"))
    new = candidate(maximum_paths=8)[0]
    plan, info = frr.plan(daemon, "t1", new, daemons)
    assert plan.descriptions == ["write %s/daemons (bgpd, bfdd on)" % tmp_path, "write %s/frr.conf" % tmp_path,
                                 "systemctl restart frr.service (the daemons file changed)"]
    assert plan.irreversible_last()


def test_sessions_and_wait(tmp_path):
    fake = FakeFrr()
    daemon = setup(tmp_path, fake)
    fake.neighbors = {
        "172.31.1.11": {"bgpState": "Established", "bgpTimerUpMsec": 42500, "peerBfdInfo": {"status": "Up"},
                        "addressFamilyInfo": {"ipv4Unicast": {"acceptedPrefixCounter": 2, "sentPrefixCounter": 1}}},
        "172.31.1.12": {"bgpState": "Active", "authenticationEnabled": 1, "lastResetDueTo": "BFD down received",
                        "connectionsEstablished": 1},
    }
    clock = iter(range(100)).__next__
    neighbors = [{"name": "node1", "address": "172.31.1.11", "bfd": True}, {"name": "node2", "address": "172.31.1.12", "bfd": True},
                 {"name": "node3", "address": "172.31.2.13", "bfd": False}]
    sessions, not_up = frr.wait_established(daemon, neighbors, 3, clock=lambda: float(clock()), sleep=lambda s: None)
    assert sessions[0] == {"name": "node1", "address": "172.31.1.11", "state": "Established", "uptime": 42,
                           "prefixes_received": 2, "prefixes_sent": 1, "bfd": "Up"}
    assert [s["name"] for s in not_up] == ["node2", "node3"] and sessions[2]["state"] == "missing"
    assert sessions[1]["last_error"].startswith("last reset: BFD down received; no TCP session") and "MD5" in sessions[1]["last_error"]
    assert len(fake.ran("show bgp neighbors json")) == 3     # clock 0 (deadline 3), 1, 2, 3: polled until the deadline, bounded
    fake.neighbors["172.31.1.11"]["peerBfdInfo"]["status"] = "Down"
    assert not frr.up(frr.session("172.31.1.11", "node1", fake.neighbors["172.31.1.11"]), neighbors[0])
