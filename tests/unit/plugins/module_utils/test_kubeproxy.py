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
from pathlib import Path

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset, endpoints_map, service_ports
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.core import parse_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name

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
