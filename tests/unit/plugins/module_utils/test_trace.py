"""The trace engine on kube-proxy rulesets built by the kubeproxy layer, and on route tables.

Three nodes as the lab draws them (flannel-style VXLAN, VNI 1, port 8472): node1 172.31.1.11 with
pods 10.244.1.0/24 on cni0, node3 172.31.1.13 with pods 10.244.3.0/24, a pod namespace on node3.
"""
from __future__ import annotations


import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name
from ansible_collections.podnet.fabric.plugins.module_utils.trace import text_lines, trace_node, trace_path
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import NodeState

CIDR = "10.244.0.0/16"
EGRESS = ("nat", "POSTROUTING", '-s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "podnet egress" -j MASQUERADE')
EXTERNAL = "203.0.113.7"


def svc(name, ip, port=80, proto="TCP", **spec):
    ports = [dict(name="p", port=port, protocol=proto, **({"nodePort": spec.pop("node_port")} if "node_port" in spec else {}))]
    return {"metadata": {"namespace": "ns", "name": name}, "spec": dict(spec, clusterIP=ip, ports=ports)}


def slice_(name, endpoints, port=8080, proto="TCP"):
    return {"metadata": {"namespace": "ns", "name": name + "-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": port, "protocol": proto}],
            "endpoints": [{"addresses": [ip], "nodeName": node} for ip, node in endpoints]}


SERVICES = [
    svc("dns", "10.96.0.10", 53, "UDP"),
    svc("web", "10.96.0.20", node_port=30080, type="NodePort"),
    svc("local", "10.96.0.30", node_port=30081, type="NodePort", externalTrafficPolicy="Local"),
    svc("empty", "10.96.0.40"),
    svc("sticky", "10.96.0.50", sessionAffinity="ClientIP"),
]
SLICES = [
    slice_("dns", [("10.244.1.10", "node1"), ("10.244.3.10", "node3")], 53, "UDP"),
    slice_("web", [("10.244.1.10", "node1"), ("10.244.3.10", "node3")]),
    slice_("local", [("10.244.3.10", "node3")]),
    slice_("sticky", [("10.244.1.10", "node1"), ("10.244.3.10", "node3")]),
]


def node_state(name, index, extra=()):
    ip = "172.31.1.1%d" % index
    other = 3 if index == 1 else 1
    rs = build_ruleset(SERVICES, SLICES, {"name": name, "node_ip": ip, "cluster_cidr": CIDR})
    return {
        "name": name,
        "iptables": save_text(rs, extra=[EGRESS] + list(extra)),
        "routes": [   # as `ip -json route show table all` prints them
            {"dst": "10.244.%d.0/24" % index, "dev": "cni0", "protocol": "kernel", "scope": "link", "prefsrc": "10.244.%d.1" % index},
            {"dst": "10.244.%d.0/24" % other, "gateway": "10.244.%d.0" % other, "dev": "flannel.1", "flags": ["onlink"]},
            {"dst": "default", "gateway": "172.31.1.1", "dev": "eth0"},
            {"dst": "172.31.1.0/24", "dev": "eth0", "prefsrc": ip},
            {"type": "local", "dst": ip, "dev": "eth0", "table": "local"},
            {"type": "local", "dst": "10.244.%d.1" % index, "dev": "cni0", "table": "local"},
            {"type": "local", "dst": "10.244.%d.0" % index, "dev": "flannel.1", "table": "local"},
            {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
        ],
        "addresses": {"eth0": [ip + "/24"], "cni0": ["10.244.%d.1/24" % index], "flannel.1": ["10.244.%d.0/32" % index],
                      "lo": ["127.0.0.1/8"]},
        "neighbours": {"flannel.1": {"10.244.%d.0" % other: "aa:bb:cc:00:00:0%d" % other}},
        "fdb": {"flannel.1": {"aa:bb:cc:00:00:0%d" % other: "172.31.1.1%d" % other}},
        "vxlan": {"flannel.1": {"vni": 1, "port": 8472, "local": ip, "dev": "eth0"}},
    }


POD3 = {"name": "pod3", "routes": [{"dst": "10.244.3.0/24", "dev": "eth0"},
                                   {"dst": "default", "gateway": "10.244.3.1", "dev": "eth0"}],
        "addresses": {"eth0": ["10.244.3.10/24"]}}


@pytest.fixture(scope="module")
def nodes():
    return {"node1": node_state("node1", 1), "node3": node_state("node3", 3), "pod3": POD3}


def rules(result, table=None):
    return [(h["table"], h["chain"], h["verdict"]) for h in result["hops"] if h["kind"] == "rule"
            and (table is None or h["table"] == table)]


def chain_of(prefix, name, proto="tcp", ep=None):
    return kube_chain_name(prefix, "ns/%s:p" % name, proto, ep)


def test_cluster_ip_across_nodes_through_vxlan(nodes):
    pkt = {"src": "10.244.1.5", "dst": "10.96.0.10", "proto": "udp", "dport": 53, "iif": "cni0"}
    path = trace_path(nodes, "node1", pkt, endpoint="10.244.3.10")
    assert [(t["node"], t["verdict"]) for t in path] == [
        ("node1", "forwarded"), ("node3", "delivered"), ("node3", "forwarded"), ("pod3", "delivered")]
    first = path[0]
    svc_chain = chain_of("KUBE-SVC-", "dns", "udp")
    sep = chain_of("KUBE-SEP-", "dns", "udp", "10.244.3.10:53")
    assert rules(first, "nat")[:4] == [
        ("nat", "PREROUTING", "jump KUBE-SERVICES"), ("nat", "KUBE-SERVICES", "jump " + svc_chain),
        ("nat", svc_chain, "jump " + sep), ("nat", sep, "DNAT to 10.244.3.10:53")]
    dice = next(h for h in first["hops"] if h.get("alternatives"))
    assert dice["rule_number"] == 3 and dice["chance"] == 0.5 and dice["probability"] is None
    assert [(a["leads_to"], a["chance"]) for a in dice["alternatives"]] == [("10.244.1.10:53", 0.5), ("10.244.3.10:53", 0.5)]
    assert '--comment "ns/dns:p cluster IP"' in first["hops"][1]["rule"]
    encap = next(h for h in first["hops"] if h["kind"] == "encap")
    assert (encap["vni"], encap["port"], encap["mac"], encap["outer_src"], encap["outer_dst"]) == (
        1, 8472, "aa:bb:cc:00:00:03", "172.31.1.11", "172.31.1.13")
    assert first["exit"]["encap"]["remote"] == "172.31.1.13"
    assert path[1]["reason"] == "to the VXLAN device flannel.1 (VNI 1)"
    assert path[2]["hops"][0]["node"] == "node3" and path[2]["packet"]["iif"] == "flannel.1"
    assert path[3]["packet"]["dst"] == "10.244.3.10" and path[3]["packet"]["src"] == "10.244.1.5"
    lines = text_lines(path, pkt)
    assert lines[0] == "packet: udp 10.244.1.5 -> 10.96.0.10:53 arriving on cni0"
    assert any(l.startswith("node1 vxlan flannel.1: encapsulate VNI 1 to 172.31.1.13 udp/8472") for l in lines)


def test_first_and_last_endpoint_and_a_bad_choice(nodes):
    pkt = {"src": "10.244.1.5", "dst": "10.96.0.10", "proto": "udp", "dport": 53, "iif": "cni0"}
    assert trace_node(nodes["node1"], pkt)["packet"]["dst"] == "10.244.1.10"
    assert trace_node(nodes["node1"], pkt, endpoint="last")["packet"]["dst"] == "10.244.3.10"
    bad = trace_node(nodes["node1"], pkt, endpoint="10.9.9.9")
    assert bad["verdict"] == "cannot evaluate"
    assert bad["reason"] == "endpoint 10.9.9.9 is not among the choices of %s: 10.244.1.10:53, 10.244.3.10:53" % (
        chain_of("KUBE-SVC-", "dns", "udp"))


def test_node_port_cluster_policy_masquerades(nodes):
    pkt = {"src": EXTERNAL, "dst": "172.31.1.11", "dport": 30080, "iif": "eth0"}
    result = trace_node(nodes["node1"], pkt)
    ext, svc_chain = chain_of("KUBE-EXT-", "web"), chain_of("KUBE-SVC-", "web")
    nat = [c for t, c, v in rules(result, "nat")]
    assert nat[:6] == ["PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS", ext, "KUBE-MARK-MASQ", ext]
    assert ("nat", "KUBE-POSTROUTING", "MASQUERADE to 10.244.1.1 (random-fully)") in rules(result)
    assert result["packet"]["src"] == "10.244.1.1" and result["packet"]["dst"] == "10.244.1.10"
    assert svc_chain in nat


def test_node_port_local_policy(nodes):
    pkt = {"src": EXTERNAL, "dst": "172.31.1.11", "dport": 30081, "iif": "eth0"}
    dropped = trace_node(nodes["node1"], pkt)          # no local endpoint on node1
    assert dropped["verdict"] == "dropped"
    assert dropped["hops"][-1]["comment"] == "ns/local:p has no local endpoints"
    assert (dropped["hops"][-1]["table"], dropped["hops"][-1]["chain"]) == ("filter", "KUBE-EXTERNAL-SERVICES")
    kept = trace_node(nodes["node3"], dict(pkt, dst="172.31.1.13"))
    assert kept["verdict"] == "forwarded" and kept["packet"]["src"] == EXTERNAL    # client source kept
    assert chain_of("KUBE-SVL-", "local") in [c for t, c, v in rules(kept)]


def test_hairpin_is_masqueraded_to_the_bridge_address(nodes):
    pkt = {"src": "10.244.1.10", "dst": "10.96.0.20", "dport": 80, "iif": "cni0"}
    result = trace_node(nodes["node1"], pkt, endpoint="10.244.1.10")
    sep = chain_of("KUBE-SEP-", "web", ep="10.244.1.10:8080")
    assert ("nat", sep, "jump KUBE-MARK-MASQ") in rules(result)
    assert result["exit"]["dev"] == "cni0" and result["packet"]["src"] == "10.244.1.1"
    assert result["packet"]["dst"] == "10.244.1.10"


def test_no_endpoints_rejects(nodes):
    result = trace_node(nodes["node1"], {"src": "10.244.1.5", "dst": "10.96.0.40", "dport": 80, "iif": "cni0"})
    assert result["verdict"] == "rejected" and result["reason"] == "rejected in filter KUBE-SERVICES"
    last = result["hops"][-1]
    assert last["verdict"] == "REJECT icmp-port-unreachable" and last["comment"] == "ns/empty:p has no endpoints"
    assert last["rule"].startswith("-d 10.96.0.40/32 -p tcp -m comment")


def test_session_affinity(nodes):
    pkt = {"src": "10.244.1.5", "dst": "10.96.0.50", "dport": 80, "iif": "cni0"}
    first = trace_node(nodes["node1"], pkt)
    dice = next(h for h in first["hops"] if h.get("alternatives"))
    assert "session affinity" in dice["note"] and "none of the 2 recent lists" in dice["note"]
    dnat = next(h for h in first["hops"] if h["verdict"].startswith("DNAT"))
    assert dnat["affinity"].startswith("session affinity: records 10.244.1.5 in recent list KUBE-SEP-")
    sep3 = chain_of("KUBE-SEP-", "sticky", ep="10.244.3.10:8080")
    again = trace_node(dict(nodes["node1"], recent={sep3: ["10.244.1.5"]}), pkt)
    assert again["packet"]["dst"] == "10.244.3.10"
    hit = next(h for h in again["hops"] if h.get("affinity", "").startswith("session affinity: 10.244.1.5 is in"))
    assert hit["rule_number"] == 3 and "--rcheck --seconds 10800 --reap" in hit["rule"]


def test_locally_generated_to_a_cluster_ip(nodes):
    result = trace_node(nodes["node1"], {"dst": "10.96.0.20", "dport": 80})
    assert result["packet"]["src"] == "172.31.1.11" or result["packet"]["src"] == "10.244.1.1"
    chains = [(t, c) for t, c, v in rules(result)]
    assert chains[0] == ("nat", "OUTPUT") and ("nat", "KUBE-MARK-MASQ") in chains
    routes = [h for h in result["hops"] if h["kind"] == "route"]
    assert [h["verdict"] for h in routes] == ["route via 172.31.1.1 dev eth0", "reroute to 10.244.1.10 dev cni0"]


def test_egress_masquerade(nodes):
    result = trace_node(nodes["node1"], {"src": "10.244.1.5", "dst": "198.51.100.1", "dport": 443, "iif": "cni0"})
    assert result["hops"][-1]["comment"] == "podnet egress"
    assert result["hops"][-1]["verdict"] == "MASQUERADE to 172.31.1.11"
    assert result["exit"] == {"dev": "eth0", "next_hop": "172.31.1.1", "onlink": False}


@pytest.mark.parametrize("rule, message", [
    ("-m foo --bar 1 -j ACCEPT", "cannot evaluate -m foo in filter FORWARD rule 1"),
    ("-m addrtype --src-type UNICAST --limit-iface-in -j ACCEPT",
     "cannot evaluate -m addrtype --limit-iface-in in filter FORWARD rule 1"),
    ("-m statistic --mode nth --every 2 --packet 0 -j ACCEPT", "cannot evaluate -m statistic --mode in filter FORWARD rule 1"),
])
def test_unknown_matches_are_not_guessed(rule, message):
    state = {"name": "n", "iptables": "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD %s\nCOMMIT\n" % rule,
             "routes": [{"dst": "default", "dev": "eth0"}], "addresses": {"eth0": ["192.0.2.1/24"]}}
    result = trace_node(state, {"src": "198.51.100.9", "dst": "198.51.100.1", "dport": 1, "iif": "eth1"})
    assert (result["verdict"], result["reason"]) == ("cannot evaluate", message)


def test_matches_our_roles_emit():
    save = "\n".join([
        "*filter", ":FORWARD DROP [0:0]", ":PODNET-X - [0:0]",
        "-A FORWARD -i veth+ ! -o eth0 -j PODNET-X",
        "-A FORWARD -i eth1 -p tcp -m multiport --dports 80,8000:8100 -m conntrack --ctstate NEW -j PODNET-X",
        "-A PODNET-X -m mark --mark 0x2000/0x2000 -j DROP",
        "-A PODNET-X -m iprange --dst-range 10.0.0.1-10.0.0.9 -m physdev --physdev-is-bridged -j DROP",
        "-A PODNET-X -m iprange --dst-range 10.0.0.1-10.0.0.9 -j RETURN",
        "-A PODNET-X -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m addrtype ! --src-type LOCAL -j ACCEPT",
        "COMMIT", ""])
    state = {"name": "n", "iptables": save, "routes": [{"dst": "10.0.0.0/8", "dev": "eth0"}],
             "addresses": {"eth0": ["10.0.0.254/8"]}}
    ok = trace_node(state, {"src": "192.0.2.5", "dst": "10.0.0.50", "dport": 8050, "iif": "eth1"})
    assert [(h["chain"], h["rule_number"], h["verdict"]) for h in ok["hops"] if h["kind"] == "rule"] == [
        ("FORWARD", 2, "jump PODNET-X"), ("PODNET-X", 4, "ACCEPT")]
    returned = trace_node(state, {"src": "192.0.2.5", "dst": "10.0.0.5", "dport": 80, "iif": "eth1"})
    assert returned["verdict"] == "dropped" and returned["hops"][-1] == dict(
        node="n", kind="policy", table="filter", chain="FORWARD", verdict="DROP")
    marked = trace_node(state, {"src": "192.0.2.5", "dst": "10.0.0.50", "dport": 80, "iif": "eth1", "mark": 0x2000})
    assert marked["verdict"] == "dropped" and marked["hops"][-1]["rule_number"] == 1
    assert trace_node(state, {"src": "192.0.2.5", "dst": "10.0.0.50", "dport": 22, "iif": "eth1"})["verdict"] == "dropped"


NETLINK_ROUTES = [   # the netlink layer's route views (route.dump)
    {"family": 2, "dest": "10.0.0.0/8", "table": 254, "type": "unicast", "gateway": "192.0.2.1", "dev": "eth0",
     "onlink": False, "src": None, "metric": 0, "nexthops": []},
    {"family": 2, "dest": "10.1.0.0/16", "table": 254, "type": "unicast", "gateway": None, "dev": None,
     "onlink": False, "src": None, "metric": 0,
     "nexthops": [{"gateway": "192.0.2.2", "dev": "eth0", "weight": 1, "onlink": False},
                  {"gateway": "192.0.2.3", "dev": "eth0", "weight": 1, "onlink": False}]},
    {"family": 2, "dest": "10.1.2.0/24", "table": 254, "type": "blackhole", "gateway": None, "dev": None,
     "onlink": False, "src": None, "metric": 0, "nexthops": []},
    {"family": 2, "dest": "10.1.3.0/24", "table": 254, "type": "unreachable", "gateway": None, "dev": None,
     "onlink": False, "src": None, "metric": 0, "nexthops": []},
    {"family": 2, "dest": "192.0.2.0/24", "table": 254, "type": "unicast", "gateway": None, "dev": "eth0",
     "onlink": False, "src": "192.0.2.10", "metric": 0, "nexthops": []},
    {"family": 2, "dest": "192.0.2.10/32", "table": 255, "type": "local", "gateway": None, "dev": "eth0",
     "onlink": False, "src": None, "metric": 0, "nexthops": []},
    {"family": 2, "dest": "192.0.2.255/32", "table": 255, "type": 3, "gateway": None, "dev": "eth0",
     "onlink": False, "src": None, "metric": 0, "nexthops": []},
    {"family": 10, "dest": "::/0", "table": 254, "type": "unicast", "gateway": "fe80::1", "dev": "eth0",
     "onlink": False, "src": None, "metric": 1024, "nexthops": []},
]


@pytest.mark.parametrize("dst, verdict, route", [
    ("10.9.9.9", "forwarded", "10.0.0.0/8 via 192.0.2.1 dev eth0"),
    ("10.1.9.9", "forwarded", "10.1.0.0/16 nexthop via 192.0.2.2 dev eth0 weight 1 nexthop via 192.0.2.3 dev eth0 weight 1"),
    ("10.1.2.9", "no route", "blackhole 10.1.2.0/24"),
    ("10.1.3.9", "no route", "unreachable 10.1.3.0/24"),
    ("192.0.2.10", "delivered", "local 192.0.2.10 dev eth0 table local"),
    ("192.0.2.255", "delivered", "broadcast 192.0.2.255 dev eth0 table local"),
    ("172.16.0.1", "no route", None),
])
def test_route_decisions(dst, verdict, route):
    state = {"name": "r", "routes": NETLINK_ROUTES, "addresses": {"eth0": ["192.0.2.10/24"]}}
    result = trace_node(state, {"src": "192.0.2.99", "dst": dst, "dport": 80, "iif": "eth0"})
    assert result["verdict"] == verdict
    hop = next(h for h in result["hops"] if h["kind"] == "route")
    assert hop.get("route") == route
    if dst == "10.1.9.9":
        assert [h["gateway"] for h in hop["ecmp"]] == ["192.0.2.2", "192.0.2.3"] and result["exit"]["next_hop"] == "192.0.2.2"


def test_forwarding_off_and_missing_vxlan_neighbour(nodes):
    off = trace_node(dict(nodes["node1"], ip_forward=False), {"src": EXTERNAL, "dst": "10.244.1.9", "dport": 1, "iif": "eth0"})
    assert (off["verdict"], off["reason"]) == ("dropped", "net.ipv4.ip_forward is 0 on node1: the packet is not forwarded")
    lost = trace_node(dict(nodes["node1"], neighbours={}), {"src": "10.244.1.5", "dst": "10.244.3.7", "dport": 1, "iif": "cni0"})
    assert lost["reason"] == "VXLAN flannel.1: no neighbour entry for next hop 10.244.3.0 (no MAC for the inner frame)"


def test_bad_input_is_one_line():
    with pytest.raises(FabricError, match="packet: a tcp packet needs dport"):
        trace_node({"name": "x"}, {"dst": "10.0.0.1"})
    with pytest.raises(FabricError, match=r"node state x: unknown key\(s\) rutes"):
        NodeState.from_dict({"name": "x", "rutes": []})


def test_the_last_of_a_thousand_services_is_found():
    # how long it takes is bench/trace.py's business, not a test's
    services = [svc("s%d" % i, "10.96.%d.%d" % (i // 250, i % 250 + 1)) for i in range(1000)]
    slices = [slice_("s%d" % i, [("10.244.%d.%d" % (j, i % 250 + 1), "n") for j in range(3)]) for i in range(1000)]
    text = save_text(build_ruleset(services, slices, {"name": "n", "cluster_cidr": CIDR}))
    state = {"name": "n", "iptables": text, "routes": [{"dst": "10.244.0.0/16", "dev": "cni0"}, {"dst": "default", "dev": "eth0"}],
             "addresses": {"cni0": ["10.244.0.1/16"], "eth0": ["192.0.2.1/24"]}}
    result = trace_node(state, {"src": "10.244.0.5", "dst": "10.96.3.232", "dport": 80, "iif": "cni0"}, endpoint="last")
    assert result["packet"]["dst"] == "10.244.2.232"
