"""hostPorts as the CNI portmap plugin writes them, checked against portmap's own unit tests.

The expected rules below are the ones containernetworking/plugins
plugins/meta/portmap/portmap_iptables_test.go asserts for the same inputs (its argv lists; a
rule here is compared token by token after shell-splitting, so quoting cannot hide a
difference). Their test calls fillDnatRules for one container with IP 10.0.0.2/24, network
"test" and a 128-character container id.
"""
from __future__ import annotations

import shlex

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.hostport import (
    HostPortNode, build_hostports, dnat_chain_name, dnat_comment,
)
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

CONTAINER_ID = ("icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3"
                "vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y")
# portmap_iptables_test.go "generates a correct standard container chain": its portMappings
MAPPINGS = [
    (8080, 80, "tcp", None), (8081, 80, "tcp", None), (8080, 81, "udp", None), (8082, 82, "udp", None),
    (8083, 83, "tcp", "192.168.0.2"), (8084, 84, "tcp", "0.0.0.0"),
    (8085, 85, "tcp", "2001:db8:a::1"), (8086, 86, "tcp", "::"),
]
SETMARK = "CNI-HOSTPORT-SETMARK"


def pod(mappings, netns=CONTAINER_ID, ip="10.0.0.2/24", pod_id="default/test"):
    ports = [dict({"containerPort": c, "hostPort": h, "protocol": p}, **({"hostIP": i} if i is not None else {}))
             for h, c, p, i in mappings]
    return {"id": pod_id, "netns": netns, "podIP": ip, "ports": ports}


def split(rules):
    return [shlex.split(r) for r in rules]


def test_chain_names_are_portmaps_hashes():
    assert dnat_chain_name("testNetName", CONTAINER_ID) == "CNI-DN-bfd599665540dd91d5d28"
    assert dnat_chain_name("test", CONTAINER_ID) == "CNI-DN-67e92b96e692a494b6b85"
    assert len(dnat_chain_name("podnet", "pod-default-web")) == 28


def test_standard_container_chain_matches_portmap():
    out = build_hostports([pod(MAPPINGS)], {"network": "test", "conditions": ["-a", "b"]})
    chain = "CNI-DN-67e92b96e692a494b6b85"
    comment = 'dnat name: "test" id: "%s"' % CONTAINER_ID
    assert split(out.chain("CNI-HOSTPORT-DNAT")["rules"]) == [
        ["-m", "comment", "--comment", comment, "-m", "multiport", "-p", "tcp",
         "--destination-ports", "8080,8081,8083,8084,8085,8086", "-a", "b", "-j", chain],
        ["-m", "comment", "--comment", comment, "-m", "multiport", "-p", "udp",
         "--destination-ports", "8080,8082", "-a", "b", "-j", chain],
    ]
    assert split(out.chain(chain)["rules"]) == [
        # tcp rules and not hostIP
        ["-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        ["-p", "tcp", "--dport", "8081", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8081", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        # udp rules and not hostIP
        ["-p", "udp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "udp", "--dport", "8080", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:81"],
        ["-p", "udp", "--dport", "8082", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "udp", "--dport", "8082", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "udp", "--dport", "8082", "-j", "DNAT", "--to-destination", "10.0.0.2:82"],
        # tcp rules and hostIP
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-j", "DNAT", "--to-destination", "10.0.0.2:83"],
        # tcp rules and hostIP = "0.0.0.0"
        ["-p", "tcp", "--dport", "8084", "-s", "10.0.0.2/24", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8084", "-s", "127.0.0.1", "-j", SETMARK],
        ["-p", "tcp", "--dport", "8084", "-j", "DNAT", "--to-destination", "10.0.0.2:84"],
    ]


def test_without_snat_only_dnat_rules_and_no_mark_chains():
    out = build_hostports([pod(MAPPINGS)], {"network": "test", "snat": False, "conditions": ["-a", "b"]})
    assert split(out.chain("CNI-DN-67e92b96e692a494b6b85")["rules"]) == [
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        ["-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        ["-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:81"],
        ["-p", "udp", "--dport", "8082", "-j", "DNAT", "--to-destination", "10.0.0.2:82"],
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-j", "DNAT", "--to-destination", "10.0.0.2:83"],
        ["-p", "tcp", "--dport", "8084", "-j", "DNAT", "--to-destination", "10.0.0.2:84"],
    ]
    # cmdAdd sets route_localnet only with snat; the mark chains are only made with snat
    assert out.chain("CNI-HOSTPORT-SETMARK") is None and out.chain("CNI-HOSTPORT-MASQ") is None
    assert [j["chain"] for j in out.jumps] == ["PREROUTING", "OUTPUT"]
    assert out.sysctls == {}


def test_external_setmark_chain_matches_portmap():
    out = build_hostports([pod([(8080, 80, "tcp", None)])],
                          {"network": "test", "external_setmark_chain": "PLZ-SET-MARK", "conditions": ["-a", "b"]})
    assert split(out.chain("CNI-DN-67e92b96e692a494b6b85")["rules"]) == [
        ["-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", "PLZ-SET-MARK"],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", "PLZ-SET-MARK"],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
    ]
    # with an external mark chain portmap creates neither CNI-HOSTPORT-SETMARK nor -MASQ
    assert [c["name"] for c in out.chains] == ["CNI-HOSTPORT-DNAT", "CNI-DN-67e92b96e692a494b6b85"]
    assert "POSTROUTING" not in [j["chain"] for j in out.jumps]


def test_top_level_chain_and_its_entry_rules_match_portmap():
    out = build_hostports([pod([(8080, 80, "tcp", None)])])
    # genToplevelDnatChain: entryChains PREROUTING, OUTPUT; appended (prependEntry false)
    assert [(j["table"], j["chain"], shlex.split(j["rule"]), j["position"]) for j in out.jumps[:2]] == [
        ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"], "last"),
        ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"], "last"),
    ]


@pytest.mark.parametrize("bit, mark", [(5, "0x20/0x20"), (13, "0x2000/0x2000")])
def test_mark_chains_match_portmap(bit, mark):
    out = build_hostports([pod([(8080, 80, "tcp", None)])], {"mark_bit": bit})
    assert split(out.chain("CNI-HOSTPORT-SETMARK")["rules"]) == [
        ["-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", mark]]
    assert split(out.chain("CNI-HOSTPORT-MASQ")["rules"]) == [["-m", "mark", "--mark", mark, "-j", "MASQUERADE"]]
    (post,) = [j for j in out.jumps if j["chain"] == "POSTROUTING"]
    assert shlex.split(post["rule"]) == ["-m", "comment", "--comment", "CNI portfwd requiring masquerade",
                                         "-j", "CNI-HOSTPORT-MASQ"]
    assert post["position"] == "first"      # genMarkMasqChain: prependEntry true


def test_default_node_is_portmaps_default_config():
    """The default mark bit 13 (0x2000), snat on, route_localnet on the bridge, our pod ids."""
    web = {"id": "default/web", "netns": "pod-default-web", "podIP": "10.244.1.5",
           "ports": [{"containerPort": 80, "hostPort": 8080}]}
    out = build_hostports([web], {"bridge": "cni0", "pod_cidr": "10.244.1.0/24"})
    name = dnat_chain_name("podnet", "pod-default-web")
    assert [c["name"] for c in out.chains] == ["CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-DNAT", name]
    assert out.chain(name)["rules"] == [
        "-p tcp --dport 8080 -s 10.244.1.5/24 -j CNI-HOSTPORT-SETMARK",
        "-p tcp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
        "-p tcp --dport 8080 -j DNAT --to-destination 10.244.1.5:80",
    ]
    assert out.chain("CNI-HOSTPORT-DNAT")["rules"] == [
        '-m comment --comment "dnat name: \\"podnet\\" id: \\"pod-default-web\\"" -m multiport -p tcp '
        '--destination-ports 8080 -j ' + name]
    assert out.sysctls == {"net.ipv4.conf.cni0.route_localnet": "1"}


def test_masq_all_marks_every_source_and_drops_the_localhost_rule():
    out = build_hostports([pod([(8080, 80, "tcp", None)])], {"network": "test", "masq_all": True})
    assert out.chain("CNI-DN-67e92b96e692a494b6b85")["rules"] == [
        "-p tcp --dport 8080 -s 0.0.0.0/0 -j CNI-HOSTPORT-SETMARK",
        "-p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80"]


def test_multiport_takes_at_most_15_ports_a_rule():
    out = build_hostports([pod([(9000 + i, 80, "tcp", None) for i in range(17)])])
    entries = [shlex.split(r) for r in out.chain("CNI-HOSTPORT-DNAT")["rules"]]
    ports = [e[e.index("--destination-ports") + 1] for e in entries]
    assert ports == [",".join(str(9000 + i) for i in range(15)), "9015,9016"]


def test_pods_keep_their_order_and_pods_without_hostports_get_nothing():
    a = pod([(8080, 80, "tcp", None)], netns="pod-default-a", ip="10.244.1.5/24", pod_id="default/a")
    b = pod([(9090, 80, "udp", None)], netns="pod-default-b", ip="10.244.1.6/24", pod_id="default/b")
    plain = {"id": "default/c", "netns": "pod-default-c", "podIP": None, "ports": [{"containerPort": 80}]}
    out = build_hostports([b, plain, a])
    assert [c["name"] for c in out.chains][3:] == [dnat_chain_name("podnet", "pod-default-b"),
                                                   dnat_chain_name("podnet", "pod-default-a")]
    assert [r.split()[-1] for r in out.chain("CNI-HOSTPORT-DNAT")["rules"]] == [c["name"] for c in out.chains][3:]


def test_no_hostports_no_rules():
    out = build_hostports([{"id": "default/c", "netns": "pod-default-c", "podIP": "10.244.1.7/24",
                            "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}]}])
    assert out.chains == [] and out.jumps == [] and out.sysctls == {} and out.nat_rule_ruleset() == ""


def test_nat_rule_shapes():
    out = build_hostports([pod([(8080, 80, "tcp", None)], netns="pod-default-a", ip="10.244.1.5/24")])
    params = out.nat_rule_params()
    assert set(params) == {"chains", "jumps"}
    assert all(set(c) == {"table", "name", "rules"} for c in params["chains"])
    assert all(set(j) == {"table", "chain", "rule", "position"} for j in params["jumps"])
    text = out.nat_rule_ruleset().splitlines()
    assert text[0] == "*nat" and text[-1] == "COMMIT"
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in text      # appended
    assert '-I POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ' in text


def test_long_comments_stay_within_iptables_limit():
    assert len(dnat_comment("podnet", "x" * 300)) == 255


# --- bad input: one line naming the pod and the reason ---------------------------------------------

@pytest.mark.parametrize("port, message", [
    ({"containerPort": 80, "hostPort": 65536}, "Pod default/a: hostPort 65536 is outside 1-65535"),
    ({"containerPort": 80, "hostPort": -1}, "Pod default/a: hostPort -1 is outside 1-65535"),
    ({"containerPort": 80, "hostPort": "http"}, "Pod default/a: hostPort 'http' is not a port number"),
    ({"containerPort": 0, "hostPort": 8080}, "Pod default/a: containerPort 0 is outside 1-65535"),
    ({"containerPort": 80, "hostPort": 8080, "protocol": "ICMP"},
     "Pod default/a: hostPort 8080 has protocol 'ICMP'; only TCP, UDP, SCTP are known"),
    ({"containerPort": 80, "hostPort": 8080, "hostIP": "node1"},
     "Pod default/a: hostPort 8080 has hostIP 'node1', which is not an IP address"),
])
def test_bad_ports_are_refused(port, message):
    with pytest.raises(FabricError) as err:
        build_hostports([{"id": "default/a", "netns": "pod-default-a", "podIP": "10.244.1.5/24", "ports": [port]}])
    assert str(err.value) == message


@pytest.mark.parametrize("first_ip, second_ip, clash", [
    (None, None, True), ("0.0.0.0", "172.31.1.11", True), ("172.31.1.11", None, True),
    ("172.31.1.11", "172.31.1.11", True), ("172.31.1.11", "172.31.1.12", False),
])
def test_two_pods_claiming_one_hostport(first_ip, second_ip, clash):
    a = pod([(8080, 80, "tcp", first_ip)], netns="pod-default-a", ip="10.244.1.5/24", pod_id="default/a")
    b = pod([(8080, 81, "TCP", second_ip)], netns="pod-default-b", ip="10.244.1.6/24", pod_id="default/b")
    if not clash:
        assert len(build_hostports([a, b]).chain("CNI-HOSTPORT-DNAT")["rules"]) == 2
        return
    with pytest.raises(FabricError) as err:
        build_hostports([a, b])
    assert str(err.value) == "Pod default/b: hostPort 8080/TCP on %s is already taken by Pod default/a" % (second_ip or "0.0.0.0")


def test_same_port_other_protocol_is_no_clash():
    a = pod([(8080, 80, "tcp", None)], netns="pod-default-a", ip="10.244.1.5/24", pod_id="default/a")
    b = pod([(8080, 80, "udp", None)], netns="pod-default-b", ip="10.244.1.6/24", pod_id="default/b")
    assert len(build_hostports([a, b]).chains) == 5


def test_one_pod_declaring_a_hostport_twice():
    with pytest.raises(FabricError) as err:
        build_hostports([pod([(8080, 80, "tcp", None), (8080, 81, "tcp", None)], pod_id="default/a")])
    assert str(err.value) == "Pod default/a: hostPort 8080/TCP on 0.0.0.0 is declared twice in this pod"


def test_pod_without_ip_or_prefix_is_refused():
    with pytest.raises(FabricError, match=r"^Pod default/a: has hostPorts but no IP yet"):
        build_hostports([pod([(8080, 80, "tcp", None)], ip=None, pod_id="default/a")])
    with pytest.raises(FabricError, match=r"^Pod default/a: IP 10.244.1.5 has no prefix"):
        build_hostports([pod([(8080, 80, "tcp", None)], ip="10.244.1.5", pod_id="default/a")])


def test_bad_node_settings_are_refused():
    with pytest.raises(FabricError, match="unknown key"):
        HostPortNode.from_dict({"brige": "cni0"})
    with pytest.raises(FabricError, match="mark_bit 32 is not 0-31"):
        HostPortNode.from_dict({"mark_bit": 32})
