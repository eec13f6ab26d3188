"""From users' names to the traced packet (trace/resolve.py), and the bridge step between a pod's
veth and its node's bridge port, on the kube-proxy rulesets of test_trace.py's nodes."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.trace import text_lines, trace_path
from ansible_collections.podnet.fabric.plugins.module_utils.trace.resolve import (
    ResolveError, request, service_entries,
)
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import NodeState

from .test_trace import node_state

POD1 = {"routes": [{"dst": "10.244.1.0/24", "dev": "eth0"}, {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"}],
        "addresses": {"eth0": ["10.244.1.5/24"], "lo": ["127.0.0.1/8"]},
        "links": {"eth0": {"index": 2, "kind": "veth", "mac": "0a:00:00:00:01:05", "master": None, "peer_index": 9,
                           "peer_netnsid": 0}},
        "host": "node1"}
WEB1 = {"routes": [{"dst": "10.244.1.0/24", "dev": "eth0"}, {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"}],
        "addresses": {"eth0": ["10.244.1.10/24"]},
        "links": {"eth0": {"index": 2, "kind": "veth", "mac": "0a:00:00:00:01:0a", "master": None, "peer_index": 10,
                           "peer_netnsid": 0}},
        "host": "node1"}


def node1_links():
    return {"cni0": {"index": 5, "kind": "bridge", "mac": "0a:00:00:00:01:01", "master": None},
            "vethaaaa": {"index": 9, "kind": "veth", "mac": "0a:00:00:00:aa:aa", "master": "cni0", "peer_index": 2},
            "vethbbbb": {"index": 10, "kind": "veth", "mac": "0a:00:00:00:bb:bb", "master": "cni0", "peer_index": 2},
            "eth0": {"index": 3, "kind": "device", "mac": "0a:00:00:00:00:11", "master": None}}


@pytest.fixture(scope="module")
def states():
    node1 = dict(node_state("node1", 1), links=node1_links(), host="node1")
    node3 = dict(node_state("node3", 3), host="node3")
    return {"node1": node1, "node3": node3, "ns/client": POD1, "ns/web-1": WEB1}


def test_service_entries_read_kube_proxy_comments(states):
    entries = service_entries(NodeState.from_dict(states["node1"]))
    web = [(e["kind"], e["ip"], e["dport"], e["proto"]) for e in entries if e["service"] == "ns/web"]
    assert web == [("svc", "10.96.0.20", 80, "tcp"), ("nodeport", None, 30080, "tcp")]
    empty = [e for e in entries if e["service"] == "ns/empty"]
    assert [(e["kind"], e["ip"], e["table"]) for e in empty] == [("svc", "10.96.0.40", "filter")]
    assert {e["port"] for e in entries} == {"p"}


@pytest.mark.parametrize("to,want", [
    ("web.ns.svc.cluster.local", ("10.96.0.20", 80, "tcp")),
    ("web.ns.svc:p", ("10.96.0.20", 80, "tcp")),
    ("svc:ns/dns", ("10.96.0.10", 53, "udp")),
    ("svc:ns/web:80", ("10.96.0.20", 80, "tcp")),
    ("svc:ns/empty", ("10.96.0.40", 80, "tcp")),
    ("nodeport:node3/ns/web", ("172.31.1.13", 30080, "tcp")),
    ("ns/web-1:8080", ("10.244.1.10", 8080, "tcp")),
    ("pod:ns/web-1:8080", ("10.244.1.10", 8080, "tcp")),
    ("node3:22", ("172.31.1.13", 22, "tcp")),
    ("203.0.113.7:443", ("203.0.113.7", 443, "tcp")),
])
def test_destinations(states, to, want):
    got = request(states, "ns/client", to)
    assert (got["packet"]["dst"], got["packet"]["dport"], got["packet"]["proto"]) == want
    assert got["name"] == "ns/client" and got["host"] == "node1" and got["packet"]["src"] == "10.244.1.5"
    assert got["packet"]["iif"] is None and "ns/client" not in got["peers"]


def test_sources(states):
    host = request(states, "node3", "svc:ns/web")
    assert (host["name"], host["host"], host["packet"]["src"], host["packet"]["iif"]) == ("node3", "node3", None, None)
    addr = request(states, "172.31.1.11", "svc:ns/web")
    assert (addr["name"], addr["packet"]["src"]) == ("node1", "172.31.1.11")
    outside = request(states, "203.0.113.7", "nodeport:node1/ns/web", via="node1")
    assert (outside["name"], outside["packet"]["src"], outside["packet"]["iif"]) == ("node1", "203.0.113.7", "eth0")
    assert outside["resolved"][-1] == "nodeport:node1/ns/web -> NodePort 30080/tcp of ns/web port p on node1 (172.31.1.11)"


@pytest.mark.parametrize("src,to,kwargs,message", [
    ("ns/nobody", "svc:ns/web", {}, "trace: pod ns/nobody was not read (pods read: ns/client, ns/web-1)"),
    ("ns/client", "svc:ns/web:https", {}, "trace: ns/web has no port https as ClusterIP (ports: p/80)"),
    ("ns/client", "svc:ns/missing", {}, "trace: no kube-proxy rule on the nodes read reaches ns/missing as ClusterIP"),
    ("ns/client", "ns/web-1", {}, "trace: a tcp packet to ns/web-1 needs a port"),
    ("ns/client", "nodeport:node9/ns/web", {}, "trace: nodeport nodeport:node9/ns/web: node node9 was not read"),
    ("203.0.113.7", "svc:ns/web", {}, "trace: 203.0.113.7 is no address of the hosts read; say which node it enters (via)"),
    ("ns/client", "web.ns", {}, "trace: destination 'web.ns' is no pod, Service, host or address read"),
])
def test_errors_name_the_object(states, src, to, kwargs, message):
    with pytest.raises(ResolveError) as err:
        request(states, src, to, **kwargs)
    assert str(err.value) == message


def test_a_pod_to_a_service_passes_both_bridge_ports(states):
    plan = request(states, "ns/client", "svc:ns/web")
    path = trace_path(states, plan["name"], plan["packet"], endpoint="10.244.1.10")
    assert [(t["node"], t["verdict"]) for t in path] == [
        ("ns/client", "forwarded"), ("node1", "forwarded"), ("ns/web-1", "delivered")]
    into, out = path[1]["hops"][0], path[1]["hops"][-1]
    assert (into["kind"], into["port"], into["direction"], into["peer"]) == ("bridge", "vethaaaa", "in", "ns/client eth0")
    assert (out["kind"], out["port"], out["direction"], out["peer"]) == ("bridge", "vethbbbb", "out", "ns/web-1 eth0")
    lines = text_lines(path, plan["packet"])
    assert "node1 bridge cni0: in through port vethaaaa from ns/client eth0 (MAC 0a:00:00:00:01:05)" in lines
    assert "node1 bridge cni0: out through port vethbbbb to ns/web-1 eth0 (MAC 0a:00:00:00:01:0a)" in lines


def test_pods_of_one_node_are_switched_by_its_bridge(states):
    plan = request(states, "ns/client", "ns/web-1:8080")
    path = trace_path(states, plan["name"], plan["packet"])
    assert [(t["node"], t["verdict"]) for t in path] == [("ns/client", "forwarded"), ("ns/web-1", "delivered")]
    hop = path[0]["hops"][-1]
    assert (hop["node"], hop["kind"], hop["direction"], hop["port"]) == ("node1", "bridge", "switched", "vethbbbb")
    assert hop["verdict"] == ("switched from port vethaaaa (ns/client eth0) to port vethbbbb (ns/web-1 eth0, "
                              "MAC 0a:00:00:00:01:0a): bridged, not routed")


def test_no_bridge_step_across_hosts(states):
    other = dict(states, **{"ns/web-1": dict(WEB1, host="node9")})
    plan = request(other, "ns/client", "ns/web-1:8080")
    path = trace_path(other, plan["name"], plan["packet"])
    assert [h["kind"] for t in path for h in t["hops"]] == ["route", "route"]   # web-1 is not node1's


def test_outer_packet_hops_are_marked(states):
    plan = request(states, "ns/client", "svc:ns/web")
    path = trace_path(states, plan["name"], plan["packet"], endpoint="10.244.3.10")
    encap = [h for h in path[1]["hops"] if h["kind"] == "encap"][0]
    after = path[1]["hops"][path[1]["hops"].index(encap) + 1:]
    assert after and all(h.get("outer") for h in after)
    assert all(h.get("outer") for h in path[2]["hops"]) and path[2]["role"] == "outer"
    assert not any(h.get("outer") for h in path[3]["hops"])


# --- the source's own DNS lookup (trace/dns.py) -----------------------------------------------------

KUBELET_RESOLV = """# kubelet-style
nameserver 10.96.0.10
nameserver 10.96.0.11
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5 timeout:1
"""


def test_resolv_conf_and_the_names_a_pod_asks():
    from ansible_collections.podnet.fabric.plugins.module_utils.trace import dns
    conf = dns.parse_resolv_conf(KUBELET_RESOLV)
    assert conf == {"nameservers": ["10.96.0.10", "10.96.0.11"], "ndots": 5,
                    "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]}
    # four dots < ndots 5: every search domain first (what ndots:5 costs), the name itself last
    assert dns.candidates("web.default.svc.cluster.local", conf) == [
        "web.default.svc.cluster.local.default.svc.cluster.local", "web.default.svc.cluster.local.svc.cluster.local",
        "web.default.svc.cluster.local.cluster.local", "web.default.svc.cluster.local"]
    assert dns.candidates("web", conf)[0] == "web.default.svc.cluster.local"
    assert dns.candidates("web.default.svc.cluster.local.", conf) == ["web.default.svc.cluster.local"]
    assert dns.candidates("a.b", dict(conf, ndots=1)) == [
        "a.b", "a.b.default.svc.cluster.local", "a.b.svc.cluster.local", "a.b.cluster.local"]


def test_query_and_answer_wire_format():
    import struct
    from ansible_collections.podnet.fabric.plugins.module_utils.trace import dns
    query = dns.build_query(0x1234, "web.default.svc.cluster.local")
    assert query[:12] == struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    assert query[12:] == b"\x03web\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    # an answer as unbound sends it: the question, a CNAME (compressed to the question), its A record
    question = query[12:]
    cname_target = b"\x05web-2" + b"\xc0\x10"            # web-2.default.svc.cluster.local (pointer to offset 16)
    answer = (struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 2, 0, 0) + question
              + b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 30, len(cname_target)) + cname_target
              + b"\xc0\x2f" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([10, 107, 164, 13]))
    rcode, addrs, cnames = dns.parse_answer(answer, 0x1234)
    assert (rcode, addrs, cnames) == ("NOERROR", ["10.107.164.13"], ["web-2.default.svc.cluster.local"])
    nx = struct.pack(">HHHHHH", 7, 0x8183, 1, 0, 0, 0) + question
    assert dns.parse_answer(nx, 7) == ("NXDOMAIN", [], [])
    with pytest.raises(ValueError):
        dns.parse_answer(nx, 8)


def test_a_dns_name_destination_asks_for_its_lookup(states):
    assert request(states, "ns/client", "web.ns.svc.cluster.local:p")["lookup"] == "web.ns.svc.cluster.local"
    assert request(states, "ns/client", "svc:ns/web")["lookup"] is None


def test_summary_tells_only_what_decides_the_path(states):
    from ansible_collections.podnet.fabric.plugins.module_utils.trace.engine import summary_lines
    plan = request(states, "ns/client", "svc:ns/web")
    path = trace_path(states, plan["name"], plan["packet"], endpoint="10.244.3.10")
    lines = summary_lines(path, plan["packet"])
    assert lines[0] == "packet: tcp 10.244.1.5 -> 10.96.0.20:80 (locally generated)"
    choice = [l for l in lines if "endpoint choice" in l]
    assert len(choice) == 1 and choice[0].startswith("node1: endpoint choice in KUBE-SVC-")
    assert choice[0].endswith("chance 50.0% [of 10.244.1.10:8080 50.0%, 10.244.3.10:8080 50.0%]")
    assert any(l.startswith("node1: DNAT to 10.244.3.10:8080 (nat KUBE-SEP-") for l in lines)
    assert "node1: vxlan flannel.1: encapsulate VNI 1 to 172.31.1.13 udp/8472 (inner next hop MAC " \
           "aa:bb:cc:00:00:03, outer 172.31.1.11 -> 172.31.1.13)" in lines
    assert "node3: the VXLAN packet arrives and is decapsulated (to the VXLAN device flannel.1 (VNI 1))" in lines
    assert not any("jump KUBE-SERVICES" in l or "[outer]" in l for l in lines)
    assert lines[-1] == "node3 => forwarded: out of cni0 to 10.244.3.10"     # no state of that pod here


def test_an_ecmp_next_hop_is_chosen():
    hops = [{"gateway": "172.31.1.11", "dev": "eth0"}, {"gateway": "172.31.2.13", "dev": "eth1"}]
    router = {"routes": [{"dst": "172.31.150.1", "nexthops": hops},
                         {"dst": "172.31.1.0/24", "dev": "eth0"}, {"dst": "172.31.2.0/24", "dev": "eth1"}],
              "addresses": {"eth0": ["172.31.1.254/24"], "eth1": ["172.31.2.254/24"]}}
    pkt = {"src": "172.31.100.10", "dst": "172.31.150.1", "dport": 80, "iif": "eth2"}
    from ansible_collections.podnet.fabric.plugins.module_utils.trace import trace_node
    first = trace_node(router, pkt)
    assert first["exit"]["next_hop"] == "172.31.1.11"
    other = trace_node(router, pkt, nexthop="172.31.2.13")
    assert (other["exit"]["next_hop"], other["exit"]["dev"]) == ("172.31.2.13", "eth1")
    route = [h for h in other["hops"] if h["kind"] == "route"][0]
    assert route["note"] == "ECMP: the kernel hashes the flow over 2 next hops; the trace follows 172.31.2.13"
    assert [h["gateway"] for h in route["ecmp"]] == ["172.31.1.11", "172.31.2.13"]
    assert trace_node(router, pkt, nexthop="last")["exit"]["next_hop"] == "172.31.2.13"
