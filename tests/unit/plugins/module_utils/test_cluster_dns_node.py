"""cluster_dns.node_dns / resolv_conf: one node's DNS from the cluster's objects.

resolv.conf texts are written out by hand after the kubelet's (pkg/kubelet/network/dns): the
cluster DNS as nameserver, search <ns>.svc.<domain> svc.<domain> <domain>, options ndots:5.
"""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.cluster_dns import node_dns, resolv_conf
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

HOSTS = ["node1", "node2"]
SETTINGS = {"upstreams": ["172.31.100.10"], "forward_domains": ["example.test"]}


def node(name, ip, cidr):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def pod(name, node_name, namespace="default", labels=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": dict(spec, nodeName=node_name, containers=[{"name": "c"}])}


KUBE_DNS = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}
WEB = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
       "spec": {"clusterIP": "10.96.0.80", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}


def objects(*extra):
    return [node("node1", "192.168.1.11", "10.244.1.0/24"), node("node2", "192.168.1.12", "10.244.2.0/24"),
            pod("dns-1", "node1", "kube-system", {"k8s-app": "kube-dns"}, dnsPolicy="Default"),
            pod("dns-2", "node2", "kube-system", {"k8s-app": "kube-dns"}, dnsPolicy="Default"),
            pod("web-1", "node1", "shop", {"app": "web"}), pod("tools", "node2"), KUBE_DNS, WEB] + list(extra)


REPORTS = {"node1": {"podCIDR": "10.244.1.0/24", "podIPs": {"kube-system/dns-1": "10.244.1.2", "shop/web-1": "10.244.1.3"}},
           "node2": {"podCIDR": "10.244.2.0/24", "podIPs": {"kube-system/dns-2": "10.244.2.2", "default/tools": "10.244.2.3"}}}


def test_kubelet_resolv_conf():
    assert resolv_conf("shop/web-1", "shop", ["10.96.0.10"]) == (
        "# podnet.fabric cluster_dns: kubelet-style resolv.conf of pod shop/web-1 (dnsPolicy ClusterFirst)\n"
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n")


def test_dns_config_adds_to_cluster_first_and_replaces_same_named_options():
    text = resolv_conf("shop/a", "shop", ["10.96.0.10"], "k8s.example", 5, "ClusterFirst",
                       {"nameservers": ["10.0.0.53"], "searches": ["corp.example"],
                        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert text.splitlines()[1:] == ["nameserver 10.96.0.10", "nameserver 10.0.0.53",
                                     "search shop.svc.k8s.example svc.k8s.example k8s.example corp.example",
                                     "options ndots:2 edns0"]


def test_dns_policy_default_keeps_the_node_resolver_and_none_takes_only_dns_config():
    assert resolv_conf("kube-system/dns-1", "kube-system", ["10.96.0.10"], policy="Default") is None
    text = resolv_conf("shop/a", "shop", ["10.96.0.10"], policy="None", dns_config={"nameservers": ["10.0.0.53"]})
    assert text.splitlines()[1:] == ["nameserver 10.0.0.53"]


@pytest.mark.parametrize("policy, config, message", [
    ("Sometimes", None, "Pod shop/a: spec.dnsPolicy 'Sometimes' is not one of"),
    ("None", {}, "Pod shop/a: spec.dnsPolicy None needs spec.dnsConfig.nameservers"),
    ("ClusterFirst", {"nameservers": ["fd00::53"]}, "Pod shop/a: spec.dnsConfig.nameservers: 'fd00::53' is not an IPv4"),
    ("ClusterFirst", {"options": [{"value": "1"}]}, "Pod shop/a: spec.dnsConfig.options[0] needs a name"),
])
def test_bad_dns_fields_name_the_pod(policy, config, message):
    with pytest.raises(FabricError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        resolv_conf("shop/a", "shop", ["10.96.0.10"], policy=policy, dns_config=config)


def test_node_plan_servers_are_the_dns_service_pods_of_this_node():
    plan = node_dns(objects(), "node1", HOSTS, REPORTS, SETTINGS)
    assert plan["nameserver"] == "10.96.0.10"
    assert [(s["pod"], s["netns"], s["ip"]) for s in plan["servers"]] == [
        ("kube-system/dns-1", "pod-kube-system-dns-1", "10.244.1.2")]
    # the DNS pod (dnsPolicy Default) keeps the node's resolver; web-1 gets the cluster's
    assert [(r["pod"], r["netns"]) for r in plan["resolv_confs"]] == [("shop/web-1", "pod-shop-web-1")]
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in plan["resolv_confs"][0]["content"]
    config = plan["servers"][0]["config"]
    # records of the whole cluster, also of pods on other nodes (reported IPs)
    for line in ("local-data: 'web.shop.svc.cluster.local. 5 IN A 10.96.0.80'",
                 "local-data: '10-244-2-3.default.pod.cluster.local. 5 IN A 10.244.2.3'",
                 "control-interface: /run/podnet-dns/pod-kube-system-dns-1/control",
                 "forward-addr: 172.31.100.10", 'local-zone: "example.test." transparent'):
        assert line in config.splitlines() or "  " + line in config.splitlines(), line
    other = node_dns(objects(), "node2", HOSTS, REPORTS, SETTINGS)
    assert [s["pod"] for s in other["servers"]] == ["kube-system/dns-2"]
    assert other["servers"][0]["config"].replace("dns-2", "dns-1") == config   # the same records on both


def test_node_without_dns_pods_only_gets_resolv_confs_and_a_missing_dns_service_plans_nothing():
    objs = [o for o in objects() if (o["metadata"].get("labels") or {}).get("k8s-app") != "kube-dns"]
    plan = node_dns(objs, "node2", HOSTS, REPORTS, SETTINGS)
    assert plan["servers"] == [] and [r["pod"] for r in plan["resolv_confs"]] == ["default/tools"]
    none = node_dns([o for o in objects() if o is not KUBE_DNS], "node1", HOSTS, REPORTS, SETTINGS)
    assert (none["servers"], none["resolv_confs"], none["nameserver"]) == ([], [], None)
    assert none["note"] == "no Service kube-system/kube-dns among the cluster's objects: no cluster DNS"


def test_dns_service_without_selector_or_upstream_is_one_line_error():
    headless_dns = dict(KUBE_DNS, spec=dict(KUBE_DNS["spec"], selector=None))
    objs = [o for o in objects() if o is not KUBE_DNS] + [headless_dns]
    with pytest.raises(FabricError, match="^Service kube-system/kube-dns: the cluster DNS needs a clusterIP and a selector"):
        node_dns(objs, "node1", HOSTS, REPORTS, SETTINGS)
    with pytest.raises(FabricError, match="^cluster DNS: at least one upstream server is needed"):
        node_dns(objects(), "node1", HOSTS, REPORTS, {})
