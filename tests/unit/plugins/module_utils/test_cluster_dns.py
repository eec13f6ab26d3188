"""cluster_dns: the Kubernetes DNS specification's records from objects, and their unbound text.

Expected records are written out by hand from kubernetes/dns docs/specification.md (schema
1.1.0), not computed with the code under test.
"""
from __future__ import annotations

import random

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.cluster_dns import cluster_records, unbound_config
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

VERSION = ("dns-version.cluster.local", "TXT", '"1.1.0"')


def service(name, cluster_ip="10.96.0.10", ports=(), namespace="default", **spec):
    meta = {"name": name, "namespace": namespace}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    spec = dict(spec, ports=list(ports))
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def port(name, number, protocol="TCP"):
    return {"name": name, "port": number, "protocol": protocol}


def endpoint(ip, ready=None, hostname=None):
    ep = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpoint_slice(svc, endpoints, ports=(), namespace="default", name=None, address_type="IPv4", label=True):
    labels = {"kubernetes.io/service-name": svc} if label else {}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or svc + "-x1", "namespace": namespace, "labels": labels},
            "addressType": address_type, "ports": list(ports), "endpoints": list(endpoints)}


def pod(name, ip=None, namespace="default", annotation=None, host_network=False):
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]}}
    if ip:
        obj["status"] = {"podIP": ip}
    if annotation:
        obj["metadata"]["annotations"] = {"cni.projectcalico.org/ipAddrs": annotation}
    if host_network:
        obj["spec"]["hostNetwork"] = True
    return obj


def triples(*args, **kwargs):
    return set((r.name, r.type, r.data) for r in cluster_records(*args, **kwargs))


# --- Services with a ClusterIP ---------------------------------------------------------------------

def test_cluster_ip_service_gets_a_ptr_and_srv_for_named_ports_only():
    svc = service("kube-dns", "10.96.0.10", [port("dns", 53, "UDP"), port("dns-tcp", 53), port(None, 9153)],
                  namespace="kube-system")
    assert triples([svc]) == {
        VERSION,
        ("kube-dns.kube-system.svc.cluster.local", "A", "10.96.0.10"),
        ("10.0.96.10.in-addr.arpa", "PTR", "kube-dns.kube-system.svc.cluster.local."),
        ("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV", "10 100 53 kube-dns.kube-system.svc.cluster.local."),
        ("_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local", "SRV", "10 100 53 kube-dns.kube-system.svc.cluster.local."),
    }


def test_cluster_ip_service_ignores_its_endpoints_and_other_domain():
    svc = service("kubernetes", "10.96.0.1", [port("https", 443)])
    sl = endpoint_slice("kubernetes", [endpoint("172.31.1.11", hostname="api")], [port("https", 6443)])
    assert triples([svc], [sl], domain="pi.lan") == {
        ("dns-version.pi.lan", "TXT", '"1.1.0"'),
        ("kubernetes.default.svc.pi.lan", "A", "10.96.0.1"),
        ("1.0.96.10.in-addr.arpa", "PTR", "kubernetes.default.svc.pi.lan."),
        ("_https._tcp.kubernetes.default.svc.pi.lan", "SRV", "10 100 443 kubernetes.default.svc.pi.lan."),
    }


# --- headless Services -----------------------------------------------------------------------------

HEADLESS = service("web", "None", [port("http", 80)], namespace="shop")
WEB = "web.shop.svc.cluster.local"


def test_headless_ready_endpoints_hostnames_srv_per_endpoint_and_ptr():
    sl = endpoint_slice("web", [
        endpoint("10.244.1.5", ready=True, hostname="web-0"),
        endpoint("10.244.2.6"),                       # no conditions: ready; no hostname: 10-244-2-6
        endpoint("10.244.1.9", ready=False, hostname="web-2"),
    ], [port("http", 8080), port(None, 9000)], namespace="shop")
    assert triples([HEADLESS], [sl]) == {
        VERSION,
        (WEB, "A", "10.244.1.5"),
        (WEB, "A", "10.244.2.6"),
        ("web-0." + WEB, "A", "10.244.1.5"),
        ("10-244-2-6." + WEB, "A", "10.244.2.6"),
        # the endpoint's port (8080), one SRV per ready endpoint, none for the unnamed port
        ("_http._tcp." + WEB, "SRV", "10 100 8080 web-0.%s." % WEB),
        ("_http._tcp." + WEB, "SRV", "10 100 8080 10-244-2-6.%s." % WEB),
        ("5.1.244.10.in-addr.arpa", "PTR", "web-0.%s." % WEB),
        ("6.2.244.10.in-addr.arpa", "PTR", "10-244-2-6.%s." % WEB),
    }


def test_headless_without_ready_endpoints_has_no_name_so_it_is_nxdomain():
    sl = endpoint_slice("web", [endpoint("10.244.1.9", ready=False)], [port("http", 80)], namespace="shop")
    assert triples([HEADLESS], [sl]) == {VERSION}
    assert triples([HEADLESS]) == {VERSION}


@pytest.mark.parametrize("how", [{"publishNotReadyAddresses": True},
                                 {"annotations": {"service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"}}])
def test_headless_publishing_not_ready_addresses(how):
    svc = service("web", "None", namespace="shop", **how)
    sl = endpoint_slice("web", [endpoint("10.244.1.9", ready=False)], namespace="shop")
    assert (WEB, "A", "10.244.1.9") in triples([svc], [sl])


def test_headless_reads_only_its_own_ipv4_labelled_slices_and_merges_them():
    slices = [
        endpoint_slice("web", [endpoint("10.244.1.5")], namespace="shop", name="web-a"),
        endpoint_slice("web", [endpoint("10.244.2.5"), endpoint("10.244.1.5")], namespace="shop", name="web-b"),
        endpoint_slice("web", [endpoint("10.244.3.5")], namespace="other"),          # another namespace
        endpoint_slice("web", [endpoint("10.244.4.5")], namespace="shop", label=False),
        endpoint_slice("web", [endpoint("fd00::5")], namespace="shop", address_type="IPv6"),
    ]
    a = sorted(data for name, rtype, data in triples([HEADLESS], slices) if name == WEB)
    assert a == ["10.244.1.5", "10.244.2.5"]


# --- ExternalName ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["www.example.test", "www.example.test."])
def test_external_name_is_a_cname_and_nothing_else(target):
    svc = service("ext", None, [port("http", 80)], type="ExternalName", externalName=target)
    assert triples([svc]) == {VERSION, ("ext.default.svc.cluster.local", "CNAME", "www.example.test.")}


# --- Pods and PTR ----------------------------------------------------------------------------------

def test_pod_records_from_status_or_fixed_annotation_and_none_for_host_network_or_no_ip():
    pods = [pod("a", "10.244.1.7", namespace="shop"), pod("b", annotation='["10.244.2.50"]'),
            pod("c"), pod("d", "172.31.1.11", host_network=True)]
    assert triples([], [], pods) == {
        VERSION,
        ("10-244-1-7.shop.pod.cluster.local", "A", "10.244.1.7"),
        ("7.1.244.10.in-addr.arpa", "PTR", "10-244-1-7.shop.pod.cluster.local."),
        ("10-244-2-50.default.pod.cluster.local", "A", "10.244.2.50"),
        ("50.2.244.10.in-addr.arpa", "PTR", "10-244-2-50.default.pod.cluster.local."),
    }


def test_a_headless_endpoints_ptr_wins_over_its_pods():
    sl = endpoint_slice("web", [endpoint("10.244.1.5", hostname="web-0")], namespace="shop")
    records = triples([HEADLESS], [sl], [pod("web-0", "10.244.1.5", namespace="shop")])
    assert [r for r in records if r[1] == "PTR"] == [("5.1.244.10.in-addr.arpa", "PTR", "web-0.%s." % WEB)]
    assert ("10-244-1-5.shop.pod.cluster.local", "A", "10.244.1.5") in records


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("objects, message", [
    ([service("Web")], "Service default/Web: metadata.name is not a DNS-1035 label"),
    ([service("1web")], "Service default/1web: metadata.name is not a DNS-1035 label"),
    ([service("web", namespace="Shop_1")], "Service Shop_1/web: metadata.namespace is not a DNS-1123 label"),
    ([{"metadata": {"namespace": "x"}}], "metadata.name is missing"),
    ([service("ext", None, type="ExternalName", externalName="bad_name.example")],
     "Service default/ext: spec.externalName 'bad_name.example' is not a lower-case DNS name"),
    ([service("ext", None, type="ExternalName")], "Service default/ext: spec.externalName None"),
    ([service("web", None)], "Service default/web: spec.clusterIP is not set"),
    ([service("web", "10.96.0.300")], "Service default/web: spec.clusterIP '10.96.0.300' is not an IPv4 address"),
    ([service("a", "10.96.0.5"), service("b", "10.96.0.5")], "Service default/b: spec.clusterIP 10.96.0.5 is already Service default/a's"),
    ([service("a"), service("a", "10.96.0.6")], "Service default/a: declared twice"),
    ([service("web", ports=[port("Http_1", 80)])], "Service default/web: spec.ports[0].name 'Http_1' is not a DNS-1123 label"),
    ([service("web", ports=[port("http", 80), port("http", 81)])], "Service default/web: spec.ports[1].name: a second TCP port"),
    ([service("web", type="Bogus")], "Service default/web: spec.type 'Bogus'"),
])
def test_bad_services_name_the_object_and_the_reason(objects, message):
    with pytest.raises(FabricError) as err:
        cluster_records(objects)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("ep, ports, message", [
    (endpoint("10.244.1.5", hostname="Web_0"), [], "endpoints[0].hostname 'Web_0' is not a DNS-1123 label"),
    (endpoint("10.244.1.500"), [], "endpoints[0].addresses[0] '10.244.1.500' is not an IPv4 address"),
    (endpoint("10.244.1.5"), [port("HTTP", 80)], "ports[0] needs a DNS-1123 label name"),
    (endpoint("10.244.1.5"), [port("http", 0)], "ports[0].port 0 is not a number from 1 to 65535"),
])
def test_bad_endpoint_slices_name_the_slice_and_its_service(ep, ports, message):
    with pytest.raises(FabricError) as err:
        cluster_records([HEADLESS], [endpoint_slice("web", [ep], ports, namespace="shop")])
    assert str(err.value).startswith("EndpointSlice web-x1 (of Service shop/web): ")
    assert message in str(err.value)


@pytest.mark.parametrize("bad, message", [
    (pod("p", "10.244.1.999"), "Pod default/p: pod IP '10.244.1.999' is not an IPv4 address"),
    (pod("p", annotation="10.244.1.5"), "Pod default/p: annotation cni.projectcalico.org/ipAddrs '10.244.1.5' is not a JSON list"),
    (pod("p", "10.244.1.5", namespace="A"), "Pod A/p: metadata.namespace is not a DNS-1123 label"),
])
def test_bad_pods(bad, message):
    with pytest.raises(FabricError) as err:
        cluster_records([], [], [bad])
    assert message in str(err.value)


def test_a_slice_that_is_not_a_mapping():
    with pytest.raises(FabricError, match="EndpointSlice 'web': must be a mapping"):
        cluster_records([HEADLESS], ["web"])


def test_bad_cluster_domain():
    with pytest.raises(FabricError, match="cluster domain 'Cluster.Local'"):
        cluster_records([], domain="Cluster.Local")


@pytest.mark.parametrize("kwargs, message", [
    ({"upstreams": []}, "at least one upstream"),
    ({"upstreams": ["dns.example"]}, "upstream 'dns.example' is not an IPv4 address"),
    ({"upstreams": ["10.0.0.1@99999"]}, "upstream '10.0.0.1@99999'"),
    ({"upstreams": ["10.0.0.1"], "interfaces": ["eth0"]}, "interface 'eth0'"),
    ({"upstreams": ["10.0.0.1"], "allow": ["10.244.0.0/33"]}, "allowed client network '10.244.0.0/33'"),
    ({"upstreams": ["10.0.0.1"], "forward_domains": ["svc.cluster.local"]}, "forward domain 'svc.cluster.local'"),
])
def test_bad_server_settings(kwargs, message):
    with pytest.raises(FabricError) as err:
        unbound_config([], **kwargs)
    assert message in str(err.value)


# --- the unbound text ------------------------------------------------------------------------------

def cluster_objects():
    services = [service("kubernetes", "10.96.0.1", [port("https", 443)]), HEADLESS,
                service("ext", None, type="ExternalName", externalName="www.example.test")]
    slices = [endpoint_slice("web", [endpoint("10.244.1.5", hostname="web-0"), endpoint("10.244.2.6")],
                             [port("http", 8080)], namespace="shop")]
    return services, slices, [pod("a", "10.244.1.7", namespace="shop")]


def render(services, slices, pods):
    return unbound_config(cluster_records(services, slices, pods), ["10.53.2.2", "10.53.3.2@5353"],
                          interfaces=["10.96.0.10"], allow=["10.244.0.0/16"], forward_domains=["example.test"],
                          control_socket="/run/podnet-dns.ctl", server_options=['pidfile: "/run/podnet-dns.pid"'])


def test_rendered_config_is_complete_and_byte_identical_for_reordered_objects():
    services, slices, pods = cluster_objects()
    text = render(services, slices, pods)
    shuffled = random.Random(7)
    for _attempt in range(5):
        again = [list(x) for x in (services, slices, pods)]
        for x in again:
            shuffled.shuffle(x)
        assert render(*again) == text
    lines = text.splitlines()
    assert lines[:7] == [
        "# podnet.fabric cluster DNS: rendered from Kubernetes objects, do not edit",
        "server:",
        "  interface: 10.96.0.10",
        "  access-control: 10.244.0.0/16 allow",
        '  pidfile: "/run/podnet-dns.pid"',
        '  module-config: "iterator"',
        '  local-zone: "cluster.local." static',
    ]
    assert '  local-zone: "example.test." transparent' in lines
    assert '  local-zone: "ext.default.svc.cluster.local." redirect' in lines
    for line in ("  local-data: 'kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1'",
                 "  local-data: '_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 10 100 8080 web-0.web.shop.svc.cluster.local.'",
                 "  local-data: 'ext.default.svc.cluster.local. 5 IN CNAME www.example.test.'",
                 "  local-data: '7.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-7.shop.pod.cluster.local.'",
                 "  local-data: 'dns-version.cluster.local. 5 IN TXT \"1.1.0\"'",
                 "  local-data: 'cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5'"):
        assert line in lines
    assert lines[-7:] == ["remote-control:", "  control-enable: yes", "  control-interface: /run/podnet-dns.ctl",
                          "forward-zone:", '  name: "."', "  forward-addr: 10.53.2.2", "  forward-addr: 10.53.3.2@5353"]


def test_ttl_and_a_new_service_change_only_their_lines():
    services, slices, pods = cluster_objects()
    before = render(services, slices, pods).splitlines()
    after = render(services + [service("added", "10.96.0.20")], slices, pods).splitlines()
    assert sorted(set(after) - set(before)) == [
        "  local-data: '20.0.96.10.in-addr.arpa. 5 IN PTR added.default.svc.cluster.local.'",
        "  local-data: 'added.default.svc.cluster.local. 5 IN A 10.96.0.20'",
    ]
    assert set(before) <= set(after)
    ten = unbound_config(cluster_records(services), ["10.53.2.2"], ttl=30)
    assert "  local-data: 'kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1'" in ten.splitlines()
