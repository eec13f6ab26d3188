"""What podnet.fabric.service_proxy applies on a node: kube-proxy's ruleset for the node's view plus
its pods' hostPorts in one nat_rule ruleset, the route_localnet settings, the report; and the
merged node reports the role reads (pod_network's fact + the service proxy's)."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.podnet.fabric.plugins.filter.podnet import node_reports
from ansible_collections.podnet.fabric.plugins.filter.services import service_proxy_node
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c
from ansible_collections.podnet.fabric.plugins.module_utils import service_proxy as sp
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.hostport import dnat_chain_name
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.core import parse_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name

HOSTS = ["node1", "node2"]
SETTINGS = {"cluster_cidr": "10.244.0.0/16"}


def node(name, ip):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def pod(name, node_name, labels, ports=({"name": "http", "containerPort": 8080},)):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "ports": [dict(p) for p in ports]}]}}


def service(name, **spec):
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": "http"}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def objects():
    return [node("node1", "172.31.1.11"), node("node2", "172.31.1.12"),
            pod("web-1", "node1", {"app": "web"}),
            pod("web-2", "node2", {"app": "web"}, ports=[{"name": "http", "containerPort": 8080, "hostPort": 8088}]),
            service("web", selector={"app": "web"}),
            service("local", type="NodePort", externalTrafficPolicy="Local", selector={"app": "web"},
                    ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30081}])]


REPORTS = {"node1": {"podCIDR": "10.244.0.0/24", "podIPs": {"default/web-1": "10.244.0.2"}},
           "node2": {"podCIDR": "10.244.1.0/24", "podIPs": {"default/web-2": "10.244.1.2"}}}


def plan(me, objs=None, reports=None, **settings):
    return sp.node_proxy(objs if objs is not None else objects(), me, HOSTS, copy.deepcopy(REPORTS if reports is None else reports),
                         dict(SETTINGS, **settings))


def chains(ruleset):
    """{(table, chain): [rules]} of a ruleset text (the owned chains, as nat_rule reads them)."""
    out = {}
    table = None
    for line in ruleset.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out[(table, line[1:].split()[0])] = []
        elif line.startswith("-A ") and (table, line.split()[1]) in out:
            out[(table, line.split()[1])].append(line.split(" ", 2)[2])
    return out


def test_kube_proxy_chains_for_the_nodes_own_view():
    one, two = chains(plan("node1")["ruleset"]), chains(plan("node2")["ruleset"])
    web = kube_chain_name("KUBE-SVC-", "default/web:http", "tcp")
    for rules in (one, two):
        assert ("nat", web) in rules and len([r for r in rules[("nat", web)] if "-j KUBE-SEP-" in r]) == 2
    # Local policy: each node sends external traffic to its own pod only
    svl = kube_chain_name("KUBE-SVL-", "default/local:http", "tcp")
    sep = kube_chain_name("KUBE-SEP-", "default/local:http", "tcp", "10.244.0.2:8080")
    assert one[("nat", svl)][-1].endswith("-j " + sep)
    assert not any("10.244.0.2" in r for r in two[("nat", svl)])


def test_hostports_join_the_same_ruleset_on_their_node_only():
    two = plan("node2")
    rules = chains(two["ruleset"])
    dn = dnat_chain_name("podnet", "pod-default-web-2")
    assert rules[("nat", dn)][-1] == "-p tcp --dport 8088 -j DNAT --to-destination 10.244.1.2:8080"
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in two["ruleset"]   # appended, as portmap
    assert "-I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in two["ruleset"]
    assert two["counts"]["hostport_pods"] == 1
    assert not any(name.startswith("CNI-") for _table, name in chains(plan("node1")["ruleset"]))
    # KUBE-* and CNI-* never share a name: nat_rule gets each chain once
    names = [line for line in two["ruleset"].splitlines() if line.startswith(":")]
    assert len(names) == len(rules)


def test_the_ruleset_is_one_nat_rule_can_read():
    text = plan("node2")["ruleset"]
    parsed = parse_ruleset(text, "nat")
    assert parsed is not None and text.count("COMMIT") == 2 and text.startswith("*filter\n")


def test_route_localnet_for_localhost_nodeports_and_hostports():
    assert plan("node1")["sysctls"] == {"net.ipv4.conf.all.route_localnet": "1"}
    # "all" covers cni0 (the kernel ORs them); without localhost NodePorts, portmap's own setting
    assert plan("node2")["sysctls"] == {"net.ipv4.conf.all.route_localnet": "1"}
    assert plan("node2", localhost_nodeports=False)["sysctls"] == {"net.ipv4.conf.cni0.route_localnet": "1"}
    assert plan("node1", localhost_nodeports=False)["sysctls"] == {}
    assert plan("node1", nodeport_addresses=["172.31.1.0/24"])["sysctls"] == {}
    assert plan("node1", nodeport_addresses=["127.0.0.0/8"])["sysctls"] == {"net.ipv4.conf.all.route_localnet": "1"}
    assert plan("node2", hostports=False, localhost_nodeports=False)["sysctls"] == {}


def test_a_pod_not_wired_yet_gets_its_hostports_later():
    unwired = {"node1": REPORTS["node1"], "node2": {"podCIDR": "10.244.1.0/24", "podIPs": {}}}
    two = plan("node2", reports=unwired)
    assert two["counts"]["hostport_pods"] == 0 and "CNI-HOSTPORT-DNAT" not in two["ruleset"]
    assert plan("node2", reports={})["counts"]["hostport_pods"] == 0     # a fresh cluster: nothing reported


def test_the_report_is_the_cluster_models_and_keeps_addresses():
    first = plan("node1", reports={})
    ip = first["report"]["services"]["default/web"]["clusterIP"]
    assert first["report"] == c.cluster_services(objects(), HOSTS)["report"]
    # reported back, the address stays even when a service sorting before it appears
    reports = dict((n, dict(REPORTS[n], **first["report"])) for n in HOSTS)
    again = plan("node1", objs=objects() + [service("aaa", selector={"app": "web"})], reports=reports)
    assert again["report"]["services"]["default/web"]["clusterIP"] == ip
    # the role writes the report only when it differs from the one the node gave
    assert first["report_changed"] and again["report_changed"]
    assert not plan("node1", reports=reports)["report_changed"]
    reports["node1"]["services"] = {}
    assert plan("node1", reports=reports)["report_changed"]


def test_bad_input_is_one_line_naming_the_object():
    bad = objects()
    bad[3]["spec"]["containers"][0]["ports"][0]["hostPort"] = 70000
    with pytest.raises(c.ClusterError, match=r"^Pod default/web-2: containerPort 8080: hostPort 70000 is not a port number"):
        plan("node2", objs=bad)
    with pytest.raises(c.ClusterError, match=r"^service proxy: unknown setting\(s\) clustercidr"):
        sp.node_proxy(objects(), "node1", HOSTS, REPORTS, {"clustercidr": "10.0.0.0/8"})
    twice = objects() + [pod("web-3", "node2", {}, ports=[{"containerPort": 80, "hostPort": 8088}])]
    with pytest.raises(Exception, match=r"service_proxy_node: Pod default/web-3: hostPort 8088/TCP on 0.0.0.0 is already taken"):
        service_proxy_node(twice, "node2", HOSTS, REPORTS, SETTINGS)


def test_hostport_and_host_ip_pass_through_the_pod_model():
    cluster = c.parse_objects([node("node1", "172.31.1.11"), node("node2", "172.31.1.12"),
                               pod("a", "node1", {}, ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "172.31.1.11"},
                                                            {"containerPort": 81}])], HOSTS)
    assert cluster.pods[0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": None, "hostPort": 8080, "hostIP": "172.31.1.11"},
        {"containerPort": 81, "protocol": "TCP", "name": None}]
    with pytest.raises(c.ClusterError, match=r"^Pod default/a: containerPort 80: hostIP 'node1' is not an IPv4 address$"):
        c.parse_objects([node("node1", "172.31.1.11"), node("node2", "172.31.1.12"),
                         pod("a", "node1", {}, ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "node1"}])], HOSTS)


def test_node_reports_merge_the_facts_of_both_roles():
    hostvars = {"node1": {"ansible_local": {"podnet_fabric": {"podCIDR": "10.244.0.0/24", "podIPs": {"a": "1"}},
                                            "podnet_fabric_services": {"services": {"default/web": {"clusterIP": "10.96.0.5"}}}}},
                "node2": {"ansible_local": {"podnet_fabric": {"podCIDR": "10.244.1.0/24"}}},
                "node3": {}}
    merged = node_reports(["node1", "node2", "node3"], hostvars, ["podnet_fabric", "podnet_fabric_services"])
    assert merged == {"node1": {"podCIDR": "10.244.0.0/24", "podIPs": {"a": "1"},
                                "services": {"default/web": {"clusterIP": "10.96.0.5"}}},
                      "node2": {"podCIDR": "10.244.1.0/24"}}
    assert node_reports(["node1"], hostvars) == {"node1": hostvars["node1"]["ansible_local"]["podnet_fabric"]}
    # what podnet.fabric.node_report read wins over setup's ansible_local (which may be older)
    hostvars["node2"]["podnet_fabric_reports"] = {"podnet_fabric": {"podCIDR": "10.244.9.0/24"}}
    assert node_reports(["node2"], hostvars) == {"node2": {"podCIDR": "10.244.9.0/24"}}
