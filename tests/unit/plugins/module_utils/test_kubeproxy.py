"""kube-proxy's iptables ruleset from Services + EndpointSlices, checked against kube-proxy's own tests.

The expected dumps in kubeproxy_data/ are the ones kubernetes pkg/proxy/iptables/proxier_test.go
asserts (its fake proxier: node "test-node" at 192.168.0.2, pod CIDR 10.0.0.0/8, mark 0x4000, no
--random-fully). kube-proxy walks its services in Go map order, so its test helper
(sortIPTablesRules) normalises the output before comparing; :func:`normalise` below does the same:
tables by name; chains KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-* by name, then the rest; each
chain's rules grouped under it; KUBE-NODEPORTS and KUBE-SERVICES rules stably sorted by the
service named in their comment, nat KUBE-SERVICES keeping its "must be the last rule" rule last.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset, endpoints_map, service_ports
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.canon import canonicalise
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.core import parse_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import trace_packet

DATA = Path(__file__).with_name("kubeproxy_data")

# NewFakeProxier's node, with the nfacct counters it has (set nfacct False for this machine's kernel)
FAKE_NODE = {"name": "test-node", "node_ip": "192.168.0.2", "cluster_cidr": "10.0.0.0/8",
             "masquerade_mark": "0x4000", "random_fully": False, "nfacct": True,
             "ips": ["192.168.0.2", "192.168.1.2", "192.168.99.11"]}


def expected(name):
    return "".join(line for line in (DATA / name).read_text().splitlines(True) if not line.startswith("#"))


def svc(ns, name, cluster_ip, ports, **spec):
    status = spec.pop("status", None)
    out = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": dict(spec, clusterIP=cluster_ip, ports=ports)}
    if status:
        out["status"] = status
    return out


def port(name, number, protocol="TCP", **more):
    return dict(more, name=name, port=number, protocol=protocol)


def lb(*ips):
    return {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}


def ep(ip, node=None, **conditions):
    out = {"addresses": [ip], "conditions": conditions}
    if node:
        out["nodeName"] = node
    return out


def slice_(ns, service, endpoints, ports, index=1):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": ns, "name": "%s-%d" % (service, index),
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": ports}


# ---- kube-proxy's test normalisation (sortIPTablesRules) -------------------------------------

_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')


def _service_of(rule):
    m = _COMMENT.search(rule)
    if not m:
        return None
    text = m.group(1) if m.group(1) is not None else m.group(2)
    return re.split(r"[ :]", text, maxsplit=1)[0]


def _chain_order(name):
    if name == "KUBE-NODEPORTS":
        return (0, "")
    if name == "KUBE-SERVICES":
        return (1, "")
    return (2 if name.startswith("KUBE-") else 3, name)


def _sort_by_service(rules, last_marker=None):
    # Go's sort.SliceStable with "less = service name <"; a rule without a comment is never less
    # nor greater, which only matters where such rules are mixed in (never in these chains).
    def key(rule):
        is_last = last_marker is not None and last_marker in rule
        return (is_last, _service_of(rule) or "")
    return sorted(rules, key=key)


def normalise(text):
    tables = {}
    current = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {"chains": [], "rules": {}})
        elif line.startswith(":"):
            name = line[1:].split()[0]
            current["chains"].append(name)
            current["rules"].setdefault(name, [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            current["rules"].setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            current.setdefault("deleted", []).append(line)
    out = []
    for tname in sorted(tables):
        table = tables[tname]
        chains = sorted(table["chains"], key=_chain_order)
        out.append("*" + tname)
        out.extend(":%s - [0:0]" % c for c in chains)
        for c in chains:
            rules = table["rules"][c]
            if c == "KUBE-NODEPORTS" or (c == "KUBE-SERVICES" and tname == "filter"):
                rules = _sort_by_service(rules)
            elif c == "KUBE-SERVICES":
                rules = _sort_by_service(rules, "must be the last rule")
            out.extend(rules)
        out.extend(table.get("deleted", []))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def check_jumps(text):
    """kube-proxy's checkIPTablesRuleJumps: every jump goes to a created, non-empty chain; no unused chain."""
    for table, lines in _tables(text).items():
        created = {l[1:].split()[0] for l in lines if l.startswith(":")}
        filled = {l.split()[1] for l in lines if l.startswith("-A ")}
        jumped = {m for l in lines for m in re.findall(r"-j (\S+)", l)}
        jumped -= {"ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT", "MASQUERADE"}
        assert not (jumped | filled) - created, (table, (jumped | filled) - created)
        assert not jumped - filled - {"KUBE-NODEPORTS"}, (table, jumped - filled)
        top = {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-FORWARD",
               "KUBE-MARK-MASQ", "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"}
        assert not created - jumped - top, (table, created - jumped - top)


def _tables(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("*"):
            cur = out.setdefault(line[1:], [])
        elif line and line != "COMMIT":
            cur.append(line)
    return out


# ---- the Services and EndpointSlices of TestOverallIPTablesRules ------------------------------

def overall_objects():
    services = [
        svc("ns1", "svc1", "172.30.0.41", [port("p80", 80)]),
        svc("ns2", "svc2", "172.30.0.42", [port("p80", 80, nodePort=3001)], type="LoadBalancer",
            externalTrafficPolicy="Local", externalIPs=["192.168.99.22"], healthCheckNodePort=30000,
            status=lb("1.2.3.4")),
        svc("ns3", "svc3", "172.30.0.43", [port("p80", 80, nodePort=3003)], type="NodePort"),
        svc("ns4", "svc4", "172.30.0.44", [port("p80", 80, targetPort=80)], type="NodePort",
            externalIPs=["192.168.99.33"]),
        svc("ns5", "svc5", "172.30.0.45", [port("p80", 80, nodePort=3002)], type="LoadBalancer",
            externalTrafficPolicy="Cluster", healthCheckNodePort=30000,
            loadBalancerSourceRanges=[" 203.0.113.0/25"], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}}, status=lb("5.6.7.8")),
        svc("ns6", "svc6", "172.30.0.46", [port("p80", 80, targetPort=80)], type="ClusterIP"),
    ]
    p80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
    slices = [
        slice_("ns1", "svc1", [ep("10.180.0.1")], p80),
        slice_("ns2", "svc2", [ep("10.180.0.2")], p80),      # no nodeName: not local
        slice_("ns3", "svc3", [ep("10.180.0.3")], p80),
        slice_("ns4", "svc4", [ep("10.180.0.4"), ep("10.180.0.5", node="test-node")], p80),
        slice_("ns5", "svc5", [ep("10.180.0.3")], p80),
    ]
    return services, slices


def test_overall_iptables_rules_match_kube_proxy_exactly():
    services, slices = overall_objects()
    text = build_ruleset(services, slices, FAKE_NODE).restore_text()
    assert normalise(text) == expected("overall.rules")
    check_jumps(text)


def without_nfacct(text):
    """The same layout on a kernel without nfacct: no localhost NodePort counter rules, no counter match."""
    lines = [l for l in text.splitlines(True) if "localhost_nps_accepted_pkts" not in l]
    return "".join(lines).replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")


def test_overall_without_nfacct_drops_only_the_counters():
    services, slices = overall_objects()
    text = build_ruleset(services, slices, dict(FAKE_NODE, nfacct=False)).restore_text()
    assert normalise(text) == without_nfacct(expected("overall.rules"))


def test_restore_text_is_kube_proxys_layout():
    """filter then nat; chain lines before rules; shared chains first, as syncProxyRules writes them."""
    services, slices = overall_objects()
    text = build_ruleset(services, slices, FAKE_NODE).restore_text()
    lines = text.splitlines()
    assert lines[:7] == ["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                         ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]",
                         ":KUBE-FIREWALL - [0:0]"]
    nat = lines.index("*nat")
    assert lines[nat + 1:nat + 5] == [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                                      ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    nat_rules = [l for l in lines[nat:] if l.startswith("-A ")]
    assert nat_rules[-1].startswith('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports;')
    assert lines[-1] == "COMMIT" and text.endswith("\n")


# ---- chain names: the anchors' vectors and kube-proxy's own -----------------------------------

@pytest.mark.parametrize("prefix, name, proto, endpoint, chain", [
    ("KUBE-SVC-", "default/kubernetes:https", "TCP", None, "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("KUBE-SVC-", "kube-system/kube-dns:dns", "UDP", None, "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("KUBE-SVC-", "kube-system/kube-dns:dns-tcp", "TCP", None, "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("KUBE-SVC-", "ns1/svc1:p80", "TCP", None, "KUBE-SVC-XPGD46QRK7WJZT7O"),
    ("KUBE-SEP-", "ns1/svc1:p80", "TCP", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("KUBE-FW-", "ns5/svc5:p80", "TCP", None, "KUBE-FW-NUKIZ6OKUXPJNT4C"),
])
def test_chain_names(prefix, name, proto, endpoint, chain):
    assert kube_chain_name(prefix, name, proto, endpoint) == chain


def test_kube_dns_chains_from_objects():
    services = [svc("kube-system", "kube-dns", "10.96.0.10",
                    [port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153)])]
    slices = [slice_("kube-system", "kube-dns", [ep("10.244.1.10"), ep("10.244.2.10")],
                     [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                      {"name": "metrics", "port": 9153, "protocol": "TCP"}])]
    rs = build_ruleset(services, slices, {"name": "node1", "cluster_cidr": "10.244.0.0/16"})
    names = {c.name for c in rs.chains}
    assert {"KUBE-SVC-TCOU7JCQXEZGVUNU", "KUBE-SVC-ERIFXISQEP7F7OF4"} <= names
    udp = rs.chain("nat", "KUBE-SVC-TCOU7JCQXEZGVUNU").rules
    assert udp[0] == ('-m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp -p udp -d 10.96.0.10 '
                      '--dport 53 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ')
    assert "--probability 0.5000000000" in udp[1] and "statistic" not in udp[2]


# ---- TestSyncProxyRulesRepeated: full sync, then partial syncs (KEP-3453) ---------------------

REPEATED_NODE = dict(FAKE_NODE, nfacct=False)     # that test's fake proxier had no nfacct counters


def repeated_steps():
    steps = {}
    title = None
    for line in (DATA / "sync_repeated.rules").read_text().splitlines(True):
        if line.startswith("## step "):
            title = line[len("## step "):].split()[0]
            steps[title] = ""
        elif title and not line.startswith("#"):
            steps[title] += line
    return steps


class Kernel(object):
    """The nat chains iptables-save would show after each restore (what kube-proxy reads back)."""

    def __init__(self):
        self.chains = set()

    def restore(self, text):
        table = None
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif table == "nat" and line.startswith(":"):
                self.chains.add(line[1:].split()[0])
            elif table == "nat" and line.startswith("-X "):
                self.chains.discard(line.split()[1])


def test_sync_proxy_rules_repeated_partial_syncs_match_kube_proxy():
    steps = repeated_steps()
    kernel = Kernel()
    p80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
    services = {
        "ns1/svc1": svc("ns1", "svc1", "172.30.0.41", [port("p80", 80)], type="ClusterIP"),
        "ns2/svc2": svc("ns2", "svc2", "172.30.0.42", [port("p8080", 8080)], type="ClusterIP"),
    }
    slices = {
        "ns1/svc1": slice_("ns1", "svc1", [ep("10.0.1.1")], p80),
        "ns2/svc2": slice_("ns2", "svc2", [ep("10.0.2.1")], [{"name": "p8080", "port": 8080, "protocol": "TCP"}]),
    }

    def sync(step, changed=None):
        rs = build_ruleset(list(services.values()), list(slices.values()), REPEATED_NODE)
        text = rs.restore_text(changed_services=changed, existing_chains=kernel.chains)
        assert normalise(text) == steps[step], "step %s" % step
        kernel.restore(text)

    sync("1")
    services["ns3/svc3"] = svc("ns3", "svc3", "172.30.0.43", [port("p80", 80)], type="ClusterIP")
    slices["ns3/svc3"] = slice_("ns3", "svc3", [ep("10.0.3.1")], p80)
    sync("2", {"ns3/svc3"})
    del services["ns2/svc2"]            # its EndpointSlice stays, as in kube-proxy's test
    sync("3", {"ns2/svc2"})
    services["ns4/svc4"] = svc("ns4", "svc4", "172.30.0.44", [port("p80", 80)], type="ClusterIP")
    sync("4", {"ns4/svc4"})
    slices["ns4/svc4"] = slice_("ns4", "svc4", [ep("10.0.4.1")], p80)
    sync("5", {"ns4/svc4"})
    slices["ns3/svc3"] = slice_("ns3", "svc3", [ep("10.0.3.2")], p80)
    sync("6", {"ns3/svc3"})
    slices["ns3/svc3"] = slice_("ns3", "svc3", [ep("10.0.3.2"), ep("10.0.3.3")], p80)
    sync("7", {"ns3/svc3"})
    sync("8", set())
    del services["ns4/svc4"]
    sync("9")


def test_service_chains_are_grouped_for_partial_rewrites():
    services, slices = overall_objects()
    rs = build_ruleset(services, slices, FAKE_NODE)
    groups = {s: sorted(c.name for c in chains) for s, chains in rs.services().items()}
    assert groups["ns5/svc5"] == ["KUBE-EXT-NUKIZ6OKUXPJNT4C", "KUBE-FW-NUKIZ6OKUXPJNT4C",
                                  "KUBE-SEP-I77PXRDZVX7PMWMN", "KUBE-SVC-NUKIZ6OKUXPJNT4C"]
    assert "ns6/svc6" not in groups          # no endpoints: only a filter REJECT in a shared chain
    shared = [c.name for c in rs.chains if c.service is None]
    assert shared == ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
                      "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL",
                      "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]


# ---- what nat_rule takes ------------------------------------------------------------------------

def test_nat_rule_ruleset_parses_and_keeps_every_rule():
    services, slices = overall_objects()
    rs = build_ruleset(services, slices, dict(FAKE_NODE, nfacct=False))
    chains, jumps = parse_ruleset(rs.nat_rule_ruleset())
    assert [(c.table, c.name, c.rules) for c in chains] == [(c.table, c.name, c.rules) for c in rs.chains]
    # the ruleset text groups the jumps by table (filter, then nat), each group in kube-proxy's order
    assert [(j.table, j.chain, j.rule, j.position) for j in jumps] == [
        (j["table"], j["chain"], j["rule"], "first") for j in sorted(rs.jumps, key=lambda j: j["table"] != "filter")]
    assert ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES') in [
        (j.table, j.chain, j.rule) for j in jumps]
    params = rs.nat_rule_params()
    assert {"table": "nat", "name": "KUBE-MARK-MASQ", "rules": ["-j MARK --or-mark 0x4000"]} in params["chains"]


def test_kubelet_firewall_chain_declared_even_when_empty():
    """nat_rule needs KUBE-FIREWALL to exist for the INPUT/OUTPUT jumps; kube-proxy's restore omits it empty."""
    rs = build_ruleset([], [], {"name": "n", "localhost_nodeports": False})
    assert rs.chain("filter", "KUBE-FIREWALL").rules == []
    assert ":KUBE-FIREWALL" not in rs.restore_text()
    assert ":KUBE-FIREWALL - [0:0]" in rs.nat_rule_ruleset()
    assert ('-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" '
            '-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS') in rs.chain("nat", "KUBE-SERVICES").rules


# ---- kube-proxy's packet-flow tests (its tracePacket), on our ruleset ----------------------------

LOCAL_IPS = {"127.0.0.1", "192.168.0.2", "192.168.1.2", "192.168.99.11"}   # lo + testNodeIPs (IPv4)
EXTERNAL_CLIENT = "203.0.113.2"
EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"
NODE_IP = "192.168.0.2"
FLOW_NODE = dict(FAKE_NODE, nfacct=False)


def trace(ruleset, src, dst, dport, proto="tcp"):
    """(outputs joined by ", ", masqueraded) as kube-proxy's tracePacket returns them."""
    return trace_packet(ruleset, src, dst, dport, proto, LOCAL_IPS)


def run_flows(ruleset, flows):
    for name, src, dst, dport, output, masq, *proto in flows:
        assert trace(ruleset, src, dst, dport, *proto) == (output, masq), name


def test_trace_packet_on_overall_rules():
    """TestTracePacket's flows, on the TestOverallIPTablesRules objects."""
    services, slices = overall_objects()
    rs = build_ruleset(services, slices, FLOW_NODE)
    run_flows(rs, [
        ("no match", "10.0.0.2", "10.0.0.3", 80, "", False),
        ("single endpoint", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),
        ("multiple endpoints", "10.0.0.2", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80", False),
        ("LOCAL, KUBE-MARK-MASQ", NODE_IP, "192.168.99.22", 80, "10.180.0.2:80", True),
        ("DROP", EXTERNAL_CLIENT, "192.168.99.22", 80, "DROP", False),
        ("ACCEPT (NodePortHealthCheck)", NODE_IP, NODE_IP, 30000, "ACCEPT", False),
        ("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT", False),
    ])


def test_no_endpoints_reject():
    services = [svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001)], type="LoadBalancer",
                    externalIPs=["192.168.99.11"], status=lb("1.2.3.4"))]
    rs = build_ruleset(services, [], FLOW_NODE)
    run_flows(rs, [
        ("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.41", 80, "REJECT", False),
        ("external to external IP with no endpoints", EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT", False),
        ("pod to NodePort with no endpoints", "10.0.0.2", NODE_IP, 3001, "REJECT", False),
        ("external to NodePort with no endpoints", EXTERNAL_CLIENT, NODE_IP, 3001, "REJECT", False),
        ("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "1.2.3.4", 80, "REJECT", False),
        ("external to LoadBalancer IP with no endpoints", EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT", False),
    ])


def test_cluster_ip_general():
    services = [
        svc("ns1", "svc1", "172.30.0.41", [port("http", 80)]),
        svc("ns2", "svc2", "172.30.0.42", [port("http", 80), port("https", 443, targetPort=8443),
                                           port("dns-udp", 53, "UDP"), port("dns-tcp", 53, targetPort=5353),
                                           port("dns-sctp", 53, "SCTP")]),
    ]
    slices = [
        slice_("ns1", "svc1", [ep("10.180.0.1", "test-node")], [{"name": "http", "port": 80, "protocol": "TCP"}]),
        slice_("ns2", "svc2", [ep("10.180.0.1", "test-node"), ep("10.180.2.1", "node2")],
               [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 8443, "protocol": "TCP"},
                {"name": "dns-udp", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                {"name": "dns-sctp", "port": 53, "protocol": "SCTP"}]),
    ]
    rs = build_ruleset(services, slices, FLOW_NODE)
    both = "10.180.0.1:%d, 10.180.2.1:%d"
    run_flows(rs, [
        ("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),
        ("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),
        ("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, both % (80, 80), False),
        ("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, both % (8443, 8443), False),
        ("TCP, UDP and SCTP on the same port (TCP)", "10.180.0.2", "172.30.0.42", 53, both % (5353, 5353), False, "tcp"),
        ("TCP, UDP and SCTP on the same port (UDP)", "10.180.0.2", "172.30.0.42", 53, both % (53, 53), False, "udp"),
        ("TCP, UDP and SCTP on the same port (SCTP)", "10.180.0.2", "172.30.0.42", 53, both % (53, 53), False, "sctp"),
        ("TCP-only port does not match UDP traffic", "10.180.0.2", "172.30.0.42", 80, "", False, "udp"),
        ("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, "", False),
    ])


def test_load_balancer_source_ranges():
    services = [svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001)], type="LoadBalancer",
                    loadBalancerSourceRanges=["192.168.0.0/24", " 203.0.113.0/25"], status=lb("1.2.3.4", "5.6.7.8"))]
    slices = [slice_("ns1", "svc1", [ep("10.180.0.1")], [{"name": "p80", "port": 80, "protocol": "TCP"}])]
    rs = build_ruleset(services, slices, FLOW_NODE)
    out = "10.180.0.1:80"
    run_flows(rs, [
        ("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out, False),
        ("external to nodePort", EXTERNAL_CLIENT, NODE_IP, 3001, out, True),
        ("nodePort bypasses LoadBalancerSourceRanges", EXTERNAL_CLIENT_BLOCKED, NODE_IP, 3001, out, True),
        ("accepted external to LB1", EXTERNAL_CLIENT, "1.2.3.4", 80, out, True),
        ("accepted external to LB2", EXTERNAL_CLIENT, "5.6.7.8", 80, out, True),
        ("blocked external to LB1", EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP", False),
        ("blocked external to LB2", EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP", False),
        ("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "1.2.3.4", 80, "DROP", False),
        ("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "5.6.7.8", 80, "DROP", False),
        ("node to LB1 (allowed by LoadBalancerSourceRanges)", NODE_IP, "1.2.3.4", 80, out, True),
        ("node to LB2 (allowed by LoadBalancerSourceRanges)", NODE_IP, "5.6.7.8", 80, out, True),
        ("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, out, True),
        ("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, out, True),
    ])


@pytest.mark.parametrize("localhost", [True, False])
def test_node_ports(localhost):
    services = [svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001)], type="NodePort")]
    slices = [slice_("ns1", "svc1", [ep("10.180.0.1"), ep("10.180.2.1", "test-node")],
                     [{"name": "p80", "port": 80, "protocol": "TCP"}])]
    rs = build_ruleset(services, slices, dict(FLOW_NODE, localhost_nodeports=localhost))
    out = "10.180.0.1:80, 10.180.2.1:80"
    run_flows(rs, [
        ("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out, False),
        ("external to nodePort", EXTERNAL_CLIENT, NODE_IP, 3001, out, True),
        ("node to nodePort", NODE_IP, NODE_IP, 3001, out, True),
        ("external to nodePort on secondary IP", EXTERNAL_CLIENT, "192.168.1.2", 3001, out, True),
        ("localhost to nodePort", "127.0.0.1", "127.0.0.1", 3001, out if localhost else "", localhost),
    ])
    firewall = rs.chain("filter", "KUBE-FIREWALL").rules
    assert firewall == ([
        '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 '
        '-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP'] if localhost else [])


def test_node_ports_on_chosen_addresses():
    """--nodeport-addresses 192.168.0.0/24 with localhost off: one jump for the node IP only."""
    services = [svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001)], type="NodePort")]
    slices = [slice_("ns1", "svc1", [ep("10.180.0.1")], [{"name": "p80", "port": 80, "protocol": "TCP"}])]
    rs = build_ruleset(services, slices, dict(FLOW_NODE, nodeport_addresses=["192.168.0.0/24", "127.0.0.1/32"],
                                              localhost_nodeports=False))
    assert rs.chain("nat", "KUBE-SERVICES").rules[-1] == (
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" '
        '-d 192.168.0.2 -j KUBE-NODEPORTS')
    run_flows(rs, [
        ("external to nodePort", EXTERNAL_CLIENT, NODE_IP, 3001, "10.180.0.1:80", True),
        ("secondary nodeIP ignores NodePorts", EXTERNAL_CLIENT, "192.168.1.2", 3001, "", False),
        ("localhost to nodePort is ignored", "127.0.0.1", "127.0.0.1", 3001, "", False),
    ])


def _policy_objects(policy):
    services = [svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001, targetPort=80)], type="LoadBalancer",
                    externalTrafficPolicy=policy, externalIPs=["192.168.99.11"], healthCheckNodePort=30000,
                    status=lb("1.2.3.4"))]
    slices = [slice_("ns1", "svc1", [ep("10.180.0.1"), ep("10.180.2.1", "test-node")],
                     [{"name": "p80", "port": 80, "protocol": "TCP"}])]
    return build_ruleset(services, slices, FLOW_NODE)


def test_external_traffic_policy_local():
    rs = _policy_objects("Local")
    both, local = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"
    run_flows(rs, [
        ("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both, False),
        ("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "192.168.99.11", 80, both, False),
        ("external to external IP hits only local endpoint, unmasqueraded", EXTERNAL_CLIENT, "192.168.99.11", 80, local, False),
        ("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "1.2.3.4", 80, both, False),
        ("external to LB IP hits only local endpoint, unmasqueraded", EXTERNAL_CLIENT, "1.2.3.4", 80, local, False),
        ("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", NODE_IP, 3001, both, False),
        ("external to NodePort hits only local endpoint, unmasqueraded", EXTERNAL_CLIENT, NODE_IP, 3001, local, False),
    ])
    assert rs.chain("filter", "KUBE-NODEPORTS").rules == [
        '-m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT']


def test_external_traffic_policy_cluster():
    rs = _policy_objects("Cluster")
    both = "10.180.0.1:80, 10.180.2.1:80"
    run_flows(rs, [
        ("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both, False),
        ("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "192.168.99.11", 80, both, True),
        ("external to external IP hits both endpoints, masqueraded", EXTERNAL_CLIENT, "192.168.99.11", 80, both, True),
        ("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "1.2.3.4", 80, both, True),
        ("external to LB IP hits both endpoints, masqueraded", EXTERNAL_CLIENT, "1.2.3.4", 80, both, True),
        ("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", NODE_IP, 3001, both, True),
        ("external to NodePort hits both endpoints, masqueraded", EXTERNAL_CLIENT, NODE_IP, 3001, both, True),
    ])
    assert rs.chain("filter", "KUBE-NODEPORTS").rules == []    # no health check port for Cluster policy


@pytest.mark.parametrize("policy, nodes, output", [
    ("Cluster", ["test-node", "node1", "node2"], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    ("Local", ["test-node", "node1", "node2"], "10.0.1.1:80"),
    ("Local", ["test-node", "test-node", "node2"], "10.0.1.1:80, 10.0.1.2:80"),
    ("Local", ["node0", "node1", "node2"], "DROP"),
])
def test_internal_traffic_policy(policy, nodes, output):
    services = [svc("ns1", "svc1", "172.30.1.1", [{"port": 80, "protocol": "TCP"}], internalTrafficPolicy=policy)]
    endpoints = [ep("10.0.1.%d" % (i + 1), n, ready=True) for i, n in enumerate(nodes)]
    slices = [slice_("ns1", "svc1", endpoints, [{"name": "", "port": 80, "protocol": "TCP"}])]
    run_flows(build_ruleset(services, slices, FLOW_NODE), [("pod to ClusterIP", "10.0.0.2", "172.30.1.1", 80, output, False)])
    run_flows(build_ruleset(services, [], FLOW_NODE), [("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT", False)])


def _cond(ready, serving, terminating):
    return {"ready": ready, "serving": serving, "terminating": terminating}


@pytest.mark.parametrize("endpoints, to_cluster_ip, to_lb", [
    ([("10.0.1.1", "test-node", _cond(True, True, False)), ("10.0.1.2", "test-node", _cond(True, True, False)),
      ("10.0.1.3", "test-node", _cond(False, True, True)), ("10.0.1.4", "test-node", _cond(False, False, True)),
      ("10.0.1.5", "node-1", _cond(True, True, False))],
     "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80"),
    ([("10.0.1.2", "test-node", _cond(False, True, True)), ("10.0.1.3", "test-node", _cond(False, True, True)),
      ("10.0.1.4", "test-node", _cond(False, False, True)), ("10.0.1.5", "node-1", _cond(True, True, False))],
     "10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80"),
    ([("10.0.1.5", "node-1", _cond(False, True, True))], "10.0.1.5:80", "DROP"),
    ([("10.0.1.5", "test-node", _cond(False, False, True)), ("10.0.1.5", "node-1", _cond(False, False, True))],
     "REJECT", "REJECT"),
], ids=["ready endpoints exist", "only terminating endpoints exist", "terminating endpoints on remote node",
        "no usable endpoints on any node"])
def test_terminating_endpoints_traffic_policy_local(endpoints, to_cluster_ip, to_lb):
    services = [svc("ns1", "svc1", "172.30.1.1", [{"name": "", "port": 80, "protocol": "TCP", "targetPort": 80}],
                    type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30000, status=lb("1.2.3.4"))]
    eps = [dict(ep(ip, node), conditions=cond) for ip, node, cond in endpoints]
    slices = [slice_("ns1", "svc1", eps, [{"name": "", "port": 80, "protocol": "TCP"}])]
    rs = build_ruleset(services, slices, FLOW_NODE)
    run_flows(rs, [
        ("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, to_cluster_ip, False),
        ("external to LB", EXTERNAL_CLIENT, "1.2.3.4", 80, to_lb, False),
    ])
    run_flows(build_ruleset(services, [], FLOW_NODE), [
        ("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT", False),
        ("external to LB after endpoints deleted", EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT", False),
    ])


# ---- how the objects are read (pkg/proxy service.go, endpointslicecache.go) ----------------------

def test_headless_external_name_and_ipv6_only_services_are_not_proxied():
    assert service_ports(svc("ns", "headless", "None", [port("p", 80)])) == []
    assert service_ports(svc("ns", "none", "", [port("p", 80)])) == []
    assert service_ports(svc("ns", "ext", "10.96.0.5", [port("p", 80)], type="ExternalName", externalName="x.example")) == []
    assert service_ports(svc("ns", "v6", "fd00::5", [port("p", 80)])) == []
    rs = build_ruleset([svc("ns", "headless", "None", [port("p", 80)])],
                       [slice_("ns", "headless", [ep("10.0.0.9")], [{"name": "p", "port": 80}])], FLOW_NODE)
    assert not rs.services() and "headless" not in rs.restore_text()


def test_service_defaults():
    (sp,) = service_ports(svc("ns", "web", "10.96.0.7", [{"port": 80}], sessionAffinity="ClientIP"))
    assert (sp.port_name, sp.protocol, sp.name_string, sp.sticky_seconds) == ("", "TCP", "ns/web", 10800)
    (sp,) = service_ports({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 80}],
                                                                 "externalTrafficPolicy": "Local"}})
    assert sp.namespace == "default" and not sp.external_policy_local   # ClusterIP without externalIPs


def test_proxy_mode_and_other_family_lb_ingress_are_ignored():
    (sp,) = service_ports(svc("ns", "lb", "10.96.0.8", [port("p", 80, nodePort=30080)], type="LoadBalancer",
                              status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "Proxy"},
                                                                   {"ip": "2001:db8::1"}, {"hostname": "lb.example"},
                                                                   {"ip": "5.6.7.8", "ipMode": "VIP"}]}},
                              loadBalancerSourceRanges=["10.1.2.3/8", "bogus", "2001:db8::/64"]))
    assert sp.lb_vips == ["5.6.7.8"] and [str(n) for n in sp.lb_source_ranges] == ["10.0.0.0/8"]


@pytest.mark.parametrize("spec, message", [
    ({"ports": [port("a", 80), port("a", 81)]}, r"Service ns/bad: spec.ports\[1\].name: a second TCP port named 'a'"),
    ({"ports": [port("a", 0)]}, r"spec.ports\[0\].port: 0 is not a number from 1 to 65535"),
    ({"ports": [port("a", 80, "ICMP")]}, r"spec.ports\[0\].protocol: 'ICMP' is not TCP, UDP or SCTP"),
    ({"type": "Ingress", "ports": []}, r"Service ns/bad: spec.type 'Ingress'"),
    ({"ports": [port("a", 80)], "sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}, r"timeoutSeconds: 0 is not a number from 1 to 86400"),
])
def test_bad_services_fail_with_one_line_naming_service_and_field(spec, message):
    spec = dict(spec)
    with pytest.raises(FabricError, match=message):
        build_ruleset([svc("ns", "bad", "10.96.0.9", spec.pop("ports"), **spec)], [], FLOW_NODE)


def test_same_port_name_on_two_protocols_is_fine():
    ports = service_ports(svc("kube-system", "kube-dns", "10.96.0.10", [port("dns", 53, "UDP"), port("dns", 53, "TCP")]))
    assert [p.protocol for p in ports] == ["UDP", "TCP"]


def test_endpoints_sort_as_strings_and_prefer_the_running_duplicate():
    eps = endpoints_map([
        slice_("ns", "web", [ep("10.0.0.10"), ep("10.0.0.9", terminating=True, ready=False)], [{"name": "http", "port": 8080}]),
        slice_("ns", "web", [ep("10.0.0.9", "n1"), ep("10.0.0.2")], [{"name": "http", "port": 8080}], index=2),
        {"metadata": {"namespace": "ns", "name": "orphan"}, "endpoints": [ep("10.0.0.3")], "ports": [{"port": 1}]},
        dict(slice_("ns", "web", [ep("fd00::1")], [{"name": "http", "port": 8080}], index=3), addressType="IPv6"),
    ], "n1")
    got = eps[("ns", "web", "http", "TCP")]
    # "10.0.0.10:8080" < "10.0.0.2:8080": kube-proxy sorts the strings, not the addresses
    assert [str(e) for e in got] == ["10.0.0.10:8080", "10.0.0.2:8080", "10.0.0.9:8080"]
    assert got[2].local and got[2].ready and not got[2].terminating
    assert len(eps) == 1


def test_probabilities_and_order_of_three_endpoints():
    services = [svc("ns", "web", "10.96.0.20", [port("http", 80)])]
    slices = [slice_("ns", "web", [ep("10.244.%d.5" % i) for i in (1, 2, 3)], [{"name": "http", "port": 8080}])]
    rules = build_ruleset(services, slices, FLOW_NODE).chain("nat", kube_chain_name("KUBE-SVC-", "ns/web:http", "tcp")).rules
    assert [r.split("-j")[0].split('"')[2].strip() for r in rules[1:]] == [
        "-m statistic --mode random --probability 0.3333333333",
        "-m statistic --mode random --probability 0.5000000000", ""]


def test_large_cluster_mode_drops_endpoint_comments():
    services = [svc("ns", "big", "10.96.0.30", [port("p", 80)])]
    slices = [slice_("ns", "big", [ep("10.%d.%d.%d" % (1, i // 250, i % 250 + 1)) for i in range(1001)], [{"name": "p", "port": 80}])]
    rs = build_ruleset(services, slices, FLOW_NODE)
    svc_rules = rs.chain("nat", kube_chain_name("KUBE-SVC-", "ns/big:p", "tcp")).rules
    assert svc_rules[0].startswith('-m comment --comment "ns/big:p cluster IP"')     # still commented
    first = "10.1.0.100:80"      # the smallest *string*: "10.1.0.100:80" < "10.1.0.10:80" < "10.1.0.1:80"
    assert svc_rules[1] == "-m statistic --mode random --probability 0.0009990010 -j " + kube_chain_name(
        "KUBE-SEP-", "ns/big:p", "tcp", first)
    sep = rs.chain("nat", kube_chain_name("KUBE-SEP-", "ns/big:p", "tcp", first)).rules
    assert sep == ["-s 10.1.0.100 -j KUBE-MARK-MASQ", "-m tcp -p tcp -j DNAT --to-destination " + first]


def test_node_view_defaults_and_bad_keys():
    rs = build_ruleset([], [], {"name": "n1", "masquerade_bit": 14})
    # kube-proxy formats the mark with Go's "%#08x": 0x00004000 (iptables prints it back as 0x4000)
    assert rs.chain("nat", "KUBE-MARK-MASQ").rules == ["-j MARK --or-mark 0x00004000"]
    assert rs.chain("nat", "KUBE-POSTROUTING").rules[-1].endswith("-j MASQUERADE --random-fully")
    with pytest.raises(FabricError, match="node view: unknown key.*clusterCIDR"):
        build_ruleset([], [], {"clusterCIDR": "10.244.0.0/16"})


def test_session_affinity_checks_every_endpoint_before_the_dice():
    services = [svc("ns", "sticky", "10.96.0.40", [port("http", 80)], sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})]
    slices = [slice_("ns", "sticky", [ep("10.244.1.5"), ep("10.244.2.5")], [{"name": "http", "port": 8080}])]
    rs = build_ruleset(services, slices, FLOW_NODE)
    a, b = (kube_chain_name("KUBE-SEP-", "ns/sticky:http", "tcp", e) for e in ("10.244.1.5:8080", "10.244.2.5:8080"))
    assert rs.chain("nat", kube_chain_name("KUBE-SVC-", "ns/sticky:http", "tcp")).rules[1:] == [
        '-m comment --comment "ns/sticky:http -> 10.244.1.5:8080" -m recent --name %s --rcheck --seconds 300 --reap -j %s' % (a, a),
        '-m comment --comment "ns/sticky:http -> 10.244.2.5:8080" -m recent --name %s --rcheck --seconds 300 --reap -j %s' % (b, b),
        '-m comment --comment "ns/sticky:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j ' + a,
        '-m comment --comment "ns/sticky:http -> 10.244.2.5:8080" -j ' + b,
    ]
    assert rs.chain("nat", a).rules[1] == ("-m comment --comment ns/sticky:http -m recent --name %s --set "
                                           "-m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080" % a)


def test_local_policy_with_a_local_endpoint_uses_svl_for_outside_traffic():
    rs = _policy_objects("Local")
    name = "ns1/svc1:p80"
    svc_c, svl_c, ext_c = (kube_chain_name(p, name, "tcp") for p in ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-"))
    local_sep = kube_chain_name("KUBE-SEP-", name, "tcp", "10.180.2.1:80")
    assert rs.chain("nat", svl_c).rules == ['-m comment --comment "%s -> 10.180.2.1:80" -j %s' % (name, local_sep)]
    assert rs.chain("nat", ext_c).rules[-1] == "-j " + svl_c
    assert len(rs.chain("nat", svc_c).rules) == 3            # masquerade rule + two endpoints
    assert not rs.chain("filter", "KUBE-EXTERNAL-SERVICES").rules   # a local endpoint: nothing dropped
    assert sorted(c.name for c in rs.services()["ns1/svc1"]) == sorted(
        [ext_c, svc_c, svl_c, local_sep, kube_chain_name("KUBE-SEP-", name, "tcp", "10.180.0.1:80")])


def test_every_rule_is_one_nat_rule_canonicalises_with_certainty():
    """nat_rule compares rules as iptables prints them; none of ours needs a round trip through iptables.

    (Only without nfacct: nat_rule does not model the nfacct match and learns its spelling after applying.)
    """
    services, slices = overall_objects()
    for node in (FLOW_NODE, dict(FLOW_NODE, random_fully=True)):
        rs = build_ruleset(services, slices, node)
        for c in rs.chains:
            for rule in c.rules:
                assert canonicalise(rule).certain, (c.name, rule)
        for j in rs.jumps:
            assert canonicalise(j["rule"]).certain, j


def test_generation_is_fast_enough_for_the_benchmark():
    services = [svc("ns", "s%d" % i, "10.96.%d.%d" % (i // 250, i % 250 + 1), [port("http", 80)]) for i in range(1000)]
    slices = [slice_("ns", "s%d" % i, [ep("10.244.%d.%d" % (j, i % 250 + 1)) for j in range(3)],
                     [{"name": "http", "port": 8080}]) for i in range(1000)]
    start = time.monotonic()
    text = build_ruleset(services, slices, FLOW_NODE).restore_text()
    assert time.monotonic() - start < 5 and text.count("\n-A KUBE-SEP-") == 6000


def _internal_external_objects():
    services = [
        svc("ns1", "svc1", "172.30.0.41", [port("p80", 80, nodePort=3001)], type="LoadBalancer",
            healthCheckNodePort=30001, status=lb("1.2.3.4")),
        svc("ns2", "svc2", "172.30.0.42", [port("p80", 80, nodePort=3002)], type="LoadBalancer",
            healthCheckNodePort=30002, externalTrafficPolicy="Local", status=lb("5.6.7.8")),
        svc("ns3", "svc3", "172.30.0.43", [port("p80", 80, nodePort=3003)], type="LoadBalancer",
            healthCheckNodePort=30003, internalTrafficPolicy="Local", status=lb("9.10.11.12")),
    ]
    p80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
    slices = [slice_("ns%d" % i, "svc%d" % i, [ep("10.180.0.%d" % i, "test-node"), ep("10.180.1.%d" % i, "remote")], p80)
              for i in (1, 2, 3)]
    return services, slices


_ALL1, _ALL2, _ALL3 = ("10.180.0.%d:80, 10.180.1.%d:80" % (i, i) for i in (1, 2, 3))
# TestInternalExternalMasquerade's flows: (name, source, destination, port, output, masqueraded)
INTERNAL_EXTERNAL_FLOWS = [
    ("pod to ClusterIP", "10.0.0.2", "172.30.0.41", 80, _ALL1, False),
    ("pod to NodePort", "10.0.0.2", NODE_IP, 3001, _ALL1, True),
    ("pod to LB", "10.0.0.2", "1.2.3.4", 80, _ALL1, True),
    ("node to ClusterIP", NODE_IP, "172.30.0.41", 80, _ALL1, True),
    ("node to NodePort", NODE_IP, NODE_IP, 3001, _ALL1, True),
    ("localhost to NodePort", "127.0.0.1", "127.0.0.1", 3001, _ALL1, True),
    ("node to LB", NODE_IP, "1.2.3.4", 80, _ALL1, True),
    ("external to ClusterIP", EXTERNAL_CLIENT, "172.30.0.41", 80, _ALL1, True),
    ("external to NodePort", EXTERNAL_CLIENT, NODE_IP, 3001, _ALL1, True),
    ("external to LB", EXTERNAL_CLIENT, "1.2.3.4", 80, _ALL1, True),
    ("pod to ClusterIP with eTP:Local", "10.0.0.2", "172.30.0.42", 80, _ALL2, False),
    ("pod to NodePort with eTP:Local", "10.0.0.2", NODE_IP, 3002, _ALL2, False),
    ("pod to LB with eTP:Local", "10.0.0.2", "5.6.7.8", 80, _ALL2, False),
    ("node to ClusterIP with eTP:Local", NODE_IP, "172.30.0.42", 80, _ALL2, True),
    ("node to NodePort with eTP:Local", NODE_IP, NODE_IP, 3001, _ALL1, True),     # sic: port 3001 in kube-proxy's test
    ("localhost to NodePort with eTP:Local", "127.0.0.1", "127.0.0.1", 3002, _ALL2, True),
    ("node to LB with eTP:Local", NODE_IP, "5.6.7.8", 80, _ALL2, True),
    ("external to ClusterIP with eTP:Local", EXTERNAL_CLIENT, "172.30.0.42", 80, _ALL2, True),
    ("external to NodePort with eTP:Local", EXTERNAL_CLIENT, NODE_IP, 3002, "10.180.0.2:80", False),
    ("external to LB with eTP:Local", EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.2:80", False),
    ("pod to ClusterIP with iTP:Local", "10.0.0.2", "172.30.0.43", 80, "10.180.0.3:80", False),
    ("pod to NodePort with iTP:Local", "10.0.0.2", NODE_IP, 3003, _ALL3, True),
    ("pod to LB with iTP:Local", "10.0.0.2", "9.10.11.12", 80, _ALL3, True),
    ("node to ClusterIP with iTP:Local", NODE_IP, "172.30.0.43", 80, "10.180.0.3:80", True),
    ("node to NodePort with iTP:Local", NODE_IP, NODE_IP, 3003, _ALL3, True),
    ("localhost to NodePort with iTP:Local", "127.0.0.1", "127.0.0.1", 3003, _ALL3, True),
    ("node to LB with iTP:Local", NODE_IP, "9.10.11.12", 80, _ALL3, True),
    ("external to ClusterIP with iTP:Local", EXTERNAL_CLIENT, "172.30.0.43", 80, "10.180.0.3:80", True),
    ("external to NodePort with iTP:Local", EXTERNAL_CLIENT, NODE_IP, 3003, _ALL3, True),
    ("external to LB with iTP:Local", EXTERNAL_CLIENT, "9.10.11.12", 80, _ALL3, True),
]
_NO_DETECTOR = {
    "node to ClusterIP": (None, False), "node to ClusterIP with eTP:Local": (None, False),
    "node to ClusterIP with iTP:Local": (None, False), "external to ClusterIP": (None, False),
    "external to ClusterIP with eTP:Local": (None, False), "external to ClusterIP with iTP:Local": (None, False),
    "pod to NodePort with eTP:Local": ("10.180.0.2:80", None), "pod to LB with eTP:Local": ("10.180.0.2:80", None),
}
_MASQ_ALL = {"pod to ClusterIP": (None, True), "pod to ClusterIP with eTP:Local": (None, True),
             "pod to ClusterIP with iTP:Local": (None, True)}


@pytest.mark.parametrize("masquerade_all, detector, overrides", [
    (False, True, {}),
    (False, False, _NO_DETECTOR),
    (True, True, _MASQ_ALL),
    (True, False, dict(_MASQ_ALL, **{k: v for k, v in _NO_DETECTOR.items() if k.startswith("pod to")})),
], ids=["base", "no LocalTrafficDetector", "masqueradeAll", "masqueradeAll, no LocalTrafficDetector"])
def test_internal_external_masquerade(masquerade_all, detector, overrides):
    services, slices = _internal_external_objects()
    node = dict(FLOW_NODE, masquerade_all=masquerade_all, cluster_cidr="10.0.0.0/8" if detector else "")
    flows = []
    for name, src, dst, dport, output, masq in INTERNAL_EXTERNAL_FLOWS:
        out, msq = overrides.get(name, (None, None))
        flows.append((name, src, dst, dport, output if out is None else out, masq if msq is None else msq))
    run_flows(build_ruleset(services, slices, node), flows)


@pytest.mark.parametrize("endpoints, output", [
    ([("10.0.1.1", "test-node", _cond(True, True, False)), ("10.0.1.2", "test-node", _cond(True, True, False)),
      ("10.0.1.3", "another-node", _cond(False, True, True)), ("10.0.1.4", "another-node", _cond(False, False, True)),
      ("10.0.1.5", "another-node", _cond(True, True, False))], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"),
    ([("10.0.1.2", "test-node", _cond(False, True, True)), ("10.0.1.3", "test-node", _cond(False, True, True)),
      ("10.0.1.4", "another-node", _cond(False, False, True)), ("10.0.1.5", "another-node", _cond(False, True, True))],
     "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80"),
    ([("10.0.1.5", "node-1", _cond(False, True, True))], "10.0.1.5:80"),
    ([("10.0.1.5", "test-node", _cond(False, False, True)), ("10.0.1.5", "node-1", _cond(False, False, True))], "REJECT"),
], ids=["ready endpoints exist", "only terminating endpoints exist", "terminating endpoints on remote node",
        "no usable endpoints on any node"])
def test_terminating_endpoints_traffic_policy_cluster(endpoints, output):
    services = [svc("ns1", "svc1", "172.30.1.1", [{"name": "", "port": 80, "protocol": "TCP", "targetPort": 80}],
                    type="LoadBalancer", externalTrafficPolicy="Cluster", healthCheckNodePort=30000, status=lb("1.2.3.4"))]
    eps = [dict(ep(ip, node), conditions=cond) for ip, node, cond in endpoints]
    rs = build_ruleset(services, [slice_("ns1", "svc1", eps, [{"name": "", "port": 80, "protocol": "TCP"}])], FLOW_NODE)
    run_flows(rs, [
        ("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, output, False),
        ("external to LB", EXTERNAL_CLIENT, "1.2.3.4", 80, output, output != "REJECT"),
    ])


def _dnat_lines(text, match):
    lines = [l for l in text.splitlines() if l.startswith("-A KUBE-SEP-") and "-j DNAT" in l]
    return next((l for l in lines if match in l), ""), len(lines), sum("--comment" in l for l in lines)


def test_sync_proxy_rules_large_cluster_mode():
    """TestSyncProxyRulesLargeClusterMode: comments go once a sync sees more than 1000 endpoints."""
    node = dict(FLOW_NODE, masquerade_all=True)
    half = 1000 // 2 - 1
    services = {"ns1/svc1": svc("ns1", "svc1", "172.30.0.41", [port("p80", 80)]),
                "ns2/svc2": svc("ns2", "svc2", "172.30.0.42", [port("p8080", 8080)]),
                "ns3/svc3": svc("ns3", "svc3", "172.30.0.43", [port("p8081", 8081)])}
    slices = {
        "ns1/svc1": slice_("ns1", "svc1", [ep("10.0.%d.%d" % (i % 256, i // 256)) for i in range(half)], [{"name": "p80", "port": 80}]),
        "ns2/svc2": slice_("ns2", "svc2", [ep("10.1.%d.%d" % (i % 256, i // 256)) for i in range(half)], [{"name": "p8080", "port": 8080}]),
    }
    kernel = Kernel()

    def sync(changed=None):
        text = build_ruleset(list(services.values()), list(slices.values()), node).restore_text(changed, kernel.chains)
        kernel.restore(text)
        return text

    first, count, comments = _dnat_lines(sync(), "10.0.0.0")
    assert first == "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
    assert count == comments == 2 * half
    slices["ns3/svc3"] = slice_("ns3", "svc3", [ep("203.0.113.4"), ep("203.0.113.8"), ep("203.0.113.12")],
                                [{"name": "p8081", "port": 8081}])
    first, count, comments = _dnat_lines(sync({"ns3/svc3"}), "203.0.113.4")
    assert (first, count, comments) == ("-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081", 3, 0)
    first, count, comments = _dnat_lines(sync(), "10.0.0.0")
    assert (first, count, comments) == ("-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
                                        2 * half + 3, 0)
    services["ns4/svc4"] = svc("ns4", "svc4", "172.30.0.44", [port("p8082", 8082)])
    slices["ns4/svc4"] = slice_("ns4", "svc4", [ep("10.4.0.1")], [{"name": "p8082", "port": 8082}])
    first, count, comments = _dnat_lines(sync({"ns4/svc4"}), "10.4.0.1")
    assert (first, count, comments) == ("-A KUBE-SEP-SU5STNODRYEWJAUF -m tcp -p tcp -j DNAT --to-destination 10.4.0.1:8082", 1, 0)
    del services["ns4/svc4"]
    text = sync({"ns4/svc4"})      # (kube-proxy defers this -X in large clusters until a sync period has passed)
    assert "-X KUBE-SVC-EBDQOQU5SJFXRIL3" in text and "-X KUBE-SEP-SU5STNODRYEWJAUF" in text


def test_zone_hints_narrow_cluster_endpoints_only_when_complete():
    """topology.go: hints count when every ready endpoint has one and one is for this node's zone."""
    services = [svc("ns", "web", "10.96.0.50", [port("http", 80)])]

    def hinted(ip, *zones):
        return dict(ep(ip), hints={"forZones": [{"name": z} for z in zones]})

    def reached(endpoints, zone):
        rs = build_ruleset(services, [slice_("ns", "web", endpoints, [{"name": "http", "port": 80}])], dict(FLOW_NODE, zone=zone))
        return trace(rs, "10.0.0.2", "10.96.0.50", 80)[0]

    complete = [hinted("10.244.1.5", "a"), hinted("10.244.2.5", "b"), hinted("10.244.3.5", "a")]
    assert reached(complete, "a") == "10.244.1.5:80, 10.244.3.5:80"
    assert reached(complete, "c") == "10.244.1.5:80, 10.244.2.5:80, 10.244.3.5:80"    # none for this zone
    assert reached(complete[:2] + [ep("10.244.3.5")], "a") == "10.244.1.5:80, 10.244.2.5:80, 10.244.3.5:80"
    assert reached(complete, "") == "10.244.1.5:80, 10.244.2.5:80, 10.244.3.5:80"      # node without zone label
