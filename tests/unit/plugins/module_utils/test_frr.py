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
    assert lines[1:4] == ["frr defaults traditional", "hostname router", "log syslog informational"]
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


def test_bfd_profile_block_defaults_to_100ms_times_3():
    text = lab()
    assert ("bfd\n profile podnet-nodes\n  detect-multiplier 3\n  receive-interval 100\n"
            "  transmit-interval 100\n exit\n !\nexit\n") in text
    custom = lab(bfd={"receive_interval": 300, "transmit_interval": 300})
    assert "  receive-interval 300\n  transmit-interval 300\n" in custom


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
