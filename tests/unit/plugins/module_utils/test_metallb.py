"""MetalLB's layer-2 mode in the cluster model: IPAddressPool / L2Advertisement parsing as users
paste them, LoadBalancer IPs that never move once given out, and the announcing node chosen as
MetalLB's speakers choose it."""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import random

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c
from ansible_collections.podnet.fabric.plugins.module_utils import metallb as m
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset

HOSTS = ["node1", "node2", "node3"]
NODE_VIEW = {"name": "node1", "node_ip": "172.31.1.11", "cluster_cidr": "10.244.0.0/16"}


def node(name, ip, **labels):
    labels = dict({"kubernetes.io/hostname": name}, **labels)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def nodes():
    return [node("node1", "172.31.1.11", rack="a"), node("node2", "172.31.1.12", rack="b"),
            node("node3", "172.31.1.13", rack="b", edge="true")]


def pod(name, node_name, ip, labels=None, namespace="default"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": "web"},
                         "annotations": {c.IP_ADDRS_ANNOTATION: '["%s"]' % ip}},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}]}}


def lb(name, namespace="default", annotations=None, labels=None, status=None, ports=None, **spec):
    spec = dict(dict(type="LoadBalancer", selector={"app": "web"}, ports=ports or [{"port": 80}]), **spec)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if annotations:
        obj["metadata"]["annotations"] = annotations
    if labels:
        obj["metadata"]["labels"] = labels
    if status:
        obj["status"] = status
    return obj


def pool(name, *addresses, namespace=None, labels=None, **spec):
    obj = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": name},
           "spec": dict(addresses=list(addresses), **spec)}
    if namespace:
        obj["metadata"]["namespace"] = namespace
    if labels:
        obj["metadata"]["labels"] = labels
    return obj


def l2(name, **spec):
    return {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": name, "namespace": "metallb-system"}, "spec": spec}


def parse(objects):
    return c.parse_objects(nodes() + objects, HOSTS)


def model(objects, reports=None):
    return c.cluster_services(nodes() + objects, HOSTS, reports=reports)


def lb_ips(result):
    """{service id: loadBalancerIP} from the report: what must never move."""
    return dict((sid, entry["loadBalancerIP"]) for sid, entry in result["report"]["services"].items()
                if "loadBalancerIP" in entry)


def as_reports(result):
    return dict((h, {"services": copy.deepcopy(result["report"]["services"])}) for h in HOSTS)


def ingress(result, sid):
    for svc in result["services"]:
        if "%s/%s" % (svc["metadata"]["namespace"], svc["metadata"]["name"]) == sid:
            return svc["status"]["loadBalancer"].get("ingress")
    raise KeyError(sid)


def ip_int(text):
    return int(ipaddress.IPv4Address(text))


# --- parsing ---------------------------------------------------------------------------------------

def test_pools_parse_cidrs_and_ranges_with_metallb_defaults():
    cluster = parse([pool("lab", "192.168.2.240/28", " 192.168.3.10 - 192.168.3.12 ", "10.1.2.3/30")])
    [lab] = cluster.pools
    assert (lab["id"], lab["namespace"], lab["autoAssign"], lab["avoidBuggyIPs"], lab["serviceAllocation"]) == (
        "metallb-system/lab", "metallb-system", True, False, None)
    # host bits in a CIDR are dropped, as Go's ParseCIDR that MetalLB uses
    assert lab["ranges"] == [(ip_int("192.168.2.240"), ip_int("192.168.2.255")),
                             (ip_int("192.168.3.10"), ip_int("192.168.3.12")),
                             (ip_int("10.1.2.0"), ip_int("10.1.2.3"))]
    assert lab["ignored"] == []


def test_pools_are_kept_by_name_and_advertisements_in_declaration_order():
    cluster = parse([pool("zeta", "10.0.1.0/24"), l2("second"), pool("alpha", "10.0.0.0/24"), l2("first")])
    assert [p["name"] for p in cluster.pools] == ["alpha", "zeta"]
    assert [a["name"] for a in cluster.l2_advertisements] == ["second", "first"]


def test_ipv6_entries_are_ignored_with_the_reason():
    cluster = parse([pool("dual", "192.168.2.240/29", "fd00::/120", "fd00::10-fd00::20")])
    [dual] = cluster.pools
    assert dual["ranges"] == [(ip_int("192.168.2.240"), ip_int("192.168.2.247"))]
    assert dual["ignored"] == [{"entry": "fd00::/120", "reason": "IPv6: the collection is IPv4 only"},
                               {"entry": "fd00::10-fd00::20", "reason": "IPv6: the collection is IPv4 only"}]


def test_service_allocation_and_l2_advertisement_fields():
    cluster = parse([pool("team", "10.0.0.0/29", serviceAllocation={
        "priority": 10, "namespaces": ["team-a"], "serviceSelectors": [{"matchLabels": {"tier": "front"}}]}),
        l2("lab", ipAddressPools=["team"], interfaces=["eth0"],
           nodeSelectors=[{"matchExpressions": [{"key": "rack", "operator": "In", "values": ["b"]}]}],
           preferredNodeSelectors=[{"weight": 50, "preference": {"matchLabels": {"edge": "true"}}}])])
    assert cluster.pools[0]["serviceAllocation"] == {
        "priority": 10, "namespaces": ["team-a"],
        "serviceSelectors": [{"matchLabels": {"tier": "front"}, "matchExpressions": []}]}
    adv = cluster.l2_advertisements[0]
    assert (adv["ipAddressPools"], adv["interfaces"], adv["ipAddressPoolSelectors"], adv["serviceSelectors"]) == (
        ["team"], ["eth0"], [], [])
    assert adv["nodeSelectors"] == [{"matchLabels": {}, "matchExpressions": [{"key": "rack", "operator": "In", "values": ["b"]}]}]
    assert adv["preferredNodeSelectors"] == [{"weight": 50, "preference": {"matchLabels": {"edge": "true"}, "matchExpressions": []}}]


BAD_OBJECTS = [
    ([pool("lab", "10.0.0.1/32", "10.0.0.9-10.0.0.1")],
     "IPAddressPool metallb-system/lab: spec.addresses[1]: '10.0.0.9-10.0.0.1' is not a range (first > last)"),
    ([pool("lab")], "IPAddressPool metallb-system/lab: spec.addresses: at least one CIDR or range is required"),
    ([pool("lab", "10.0.0.0/33")], "IPAddressPool metallb-system/lab: spec.addresses[0]: '10.0.0.0/33' is not a CIDR: "),
    ([pool("lab", "10.0.0.5")], "IPAddressPool metallb-system/lab: spec.addresses[0]: '10.0.0.5' is not a CIDR or an "
                                "a.b.c.d-a.b.c.e range (a single address is a.b.c.d/32)"),
    ([pool("lab", "10.0.0.1-fd00::1")], "IPAddressPool metallb-system/lab: spec.addresses[0]: '10.0.0.1-fd00::1' is not a "
                                        "range (it mixes IPv4 and IPv6)"),
    ([pool("lab", "10.0.0.1-10.0.0.x")], "IPAddressPool metallb-system/lab: spec.addresses[0]: '10.0.0.1-10.0.0.x': "
                                         "'10.0.0.x' is not an IP address"),
    ([pool("lab", "10.0.0.0/24", autoAssign="yes")], "IPAddressPool metallb-system/lab: spec.autoAssign: 'yes' must be true or false"),
    ([pool("lab", "10.0.0.0/24", serviceAllocation={"namespaceSelectors": [{"matchLabels": {"a": "b"}}]})],
     "IPAddressPool metallb-system/lab: spec.serviceAllocation.namespaceSelectors is not supported here"),
    ([pool("lab", "10.0.0.0/24", serviceAllocation={"priority": -1})],
     "IPAddressPool metallb-system/lab: spec.serviceAllocation.priority: -1 must be a number, 0 or more"),
    ([pool("lab", "10.0.0.0/24", serviceAllocation={"namespaces": ["a", "a"]})],
     "IPAddressPool metallb-system/lab: spec.serviceAllocation.namespaces[1]: 'a' is listed twice"),
    ([pool("lab", "10.0.0.0/24"), pool("other", "10.0.0.128-10.0.1.5")],
     "IPAddressPool metallb-system/other: spec.addresses: 10.0.0.128-10.0.1.5 overlaps 10.0.0.0-10.0.0.255 of IPAddressPool lab"),
    ([pool("lab", "10.0.0.0/24", "10.0.0.7/32")],
     "IPAddressPool metallb-system/lab: spec.addresses: 10.0.0.7-10.0.0.7 overlaps 10.0.0.0-10.0.0.255 of IPAddressPool lab"),
    ([pool("lab", "10.0.0.0/24"), pool("lab", "10.0.1.0/24")], "IPAddressPool metallb-system/lab: declared twice"),
    ([pool("lab", "10.0.0.0/24"), pool("other", "10.0.1.0/24", namespace="metallb")],
     "IPAddressPool metallb/other: metadata.namespace metallb: every MetalLB object must be in one namespace "
     "(metallb-system, as IPAddressPool metallb-system/lab; MetalLB reads only its own)"),
    ([dict(pool("lab", "10.0.0.0/24"), apiVersion="metallb.io/v1alpha1")],
     "IPAddressPool metallb-system/lab: apiVersion 'metallb.io/v1alpha1' is not metallb.io/v1beta1"),
    ([pool("lab", "10.0.0.0/24"), l2("adv", ipAddressPools=["lab", "labb"])],
     "L2Advertisement metallb-system/adv: spec.ipAddressPools[1]: IPAddressPool labb is not declared (pools: lab)"),
    ([l2("adv", nodeSelectors=[{"matchExpressions": [{"key": "rack", "operator": "Near", "values": ["a"]}]}])],
     "L2Advertisement metallb-system/adv: spec.nodeSelectors[0].matchExpressions[0].operator: 'Near' is not In, NotIn, "
     "Exists or DoesNotExist"),
    ([l2("adv", nodeSelectors=[{"matchExpressions": [{"key": "rack", "operator": "In"}]}])],
     "L2Advertisement metallb-system/adv: spec.nodeSelectors[0].matchExpressions[0].values: operator In needs values"),
    ([l2("adv", nodeSelectors=[{"matchLabel": {"rack": "a"}}])],
     "L2Advertisement metallb-system/adv: spec.nodeSelectors[0].matchLabel: not a field of a label selector"),
    ([l2("adv", interfaces="eth0")], "L2Advertisement metallb-system/adv: spec.interfaces must be a list, got str"),
    ([l2("adv", preferredNodeSelectors=[{"weight": 0, "preference": {}}])],
     "L2Advertisement metallb-system/adv: spec.preferredNodeSelectors[0].weight: 0 must be a number from 1 to 100"),
    ([{"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {}}],
     "L2Advertisement (the 1st L2Advertisement object): metadata.name is required"),
]


@pytest.mark.parametrize("objects,message", BAD_OBJECTS)
def test_bad_metallb_objects_fail_with_one_line(objects, message):
    with pytest.raises(c.ClusterError) as err:
        parse(objects)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


# --- allocation ------------------------------------------------------------------------------------

def test_no_pool_and_no_request_gives_no_ingress():
    result = model([lb("web")])
    assert ingress(result, "default/web") is None
    assert "loadBalancerIP" not in result["report"]["services"]["default/web"]


def test_first_free_address_of_the_first_pool_by_name():
    result = model([pool("zz-lab", "192.168.5.0/24"), pool("lab", "192.168.2.240-192.168.2.242"),
                    lb("b"), lb("a"), lb("c"), c_service("plain")])
    assert lb_ips(result) == {"default/a": "192.168.2.240", "default/b": "192.168.2.241", "default/c": "192.168.2.242"}
    assert ingress(result, "default/a") == [{"ip": "192.168.2.240", "ipMode": "VIP"}]
    assert ingress(result, "default/plain") is None
    # the pool after it takes over once the first is full
    result = model([pool("zz-lab", "192.168.5.0/24"), pool("lab", "192.168.2.240-192.168.2.242")] +
                   [lb("s%d" % i) for i in range(4)])
    assert lb_ips(result)["default/s3"] == "192.168.5.0"


def c_service(name):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}


def test_avoid_buggy_ips_skips_dot_0_and_dot_255():
    plain = model([pool("lab", "192.168.1.255-192.168.2.1"), lb("a"), lb("b")])
    assert lb_ips(plain) == {"default/a": "192.168.1.255", "default/b": "192.168.2.0"}
    careful = model([pool("lab", "192.168.1.255-192.168.2.1", avoidBuggyIPs=True), lb("a")])
    assert lb_ips(careful) == {"default/a": "192.168.2.1"}
    with pytest.raises(c.ClusterError) as err:
        model([pool("lab", "192.168.1.255-192.168.2.1", avoidBuggyIPs=True), lb("a", loadBalancerIP="192.168.2.0")])
    assert str(err.value) == ("Service default/a: spec.loadBalancerIP: 192.168.2.0 is in IPAddressPool lab, which avoids "
                              "addresses ending in .0 and .255 (spec.avoidBuggyIPs)")


def test_auto_assign_false_is_only_used_on_request():
    objects = [pool("auto", "10.0.0.1-10.0.0.1"), pool("manual", "10.0.9.0/29", autoAssign=False)]
    assert lb_ips(model(objects + [lb("a")])) == {"default/a": "10.0.0.1"}
    # by address, by pool annotation (either prefix)
    result = model(objects + [lb("a"), lb("b", loadBalancerIP="10.0.9.5"),
                              lb("c", annotations={"metallb.universe.tf/address-pool": "manual"}),
                              lb("d", annotations={"metallb.io/address-pool": "manual"})])
    assert lb_ips(result) == {"default/a": "10.0.0.1", "default/b": "10.0.9.5", "default/c": "10.0.9.0",
                              "default/d": "10.0.9.1"}
    # the auto pool full: a manual pool is never drawn from on its own
    with pytest.raises(c.ClusterError) as err:
        model(objects + [lb("a"), lb("b")])
    assert str(err.value) == "Service default/b: no free address left in IPAddressPool auto"
    with pytest.raises(c.ClusterError) as err:
        model([pool("manual", "10.0.9.0/29", autoAssign=False), lb("a")])
    assert str(err.value).startswith("Service default/a: no IPAddressPool assigns it an address automatically (pools: manual;")


def test_exhaustion_names_the_service_and_the_pool():
    with pytest.raises(c.ClusterError) as err:
        model([pool("tiny", "10.0.0.1/32"), lb("a"), lb("b")])
    assert str(err.value) == "Service default/b: no free address left in IPAddressPool tiny"
    with pytest.raises(c.ClusterError) as err:
        model([pool("tiny", "10.0.0.1/32"), pool("tinier", "10.0.0.2/32"), lb("a"), lb("b"), lb("c")])
    assert str(err.value) == "Service default/c: no free address left in IPAddressPools tinier, tiny"


def test_requests_by_field_annotation_and_status():
    objects = [pool("lab", "192.168.2.240/28"),
               lb("spec", loadBalancerIP="192.168.2.250"),
               lb("new", annotations={"metallb.io/loadBalancerIPs": "fd00::5, 192.168.2.251"}),
               lb("old", annotations={"metallb.universe.tf/loadBalancerIPs": "192.168.2.252"}),
               lb("status", status={"loadBalancer": {"ingress": [{"ip": "192.168.2.253", "ipMode": "Proxy"}]}}),
               lb("auto")]
    result = model(objects)
    assert lb_ips(result) == {"default/spec": "192.168.2.250", "default/new": "192.168.2.251",
                              "default/old": "192.168.2.252", "default/status": "192.168.2.253",
                              "default/auto": "192.168.2.240"}
    assert ingress(result, "default/status") == [{"ip": "192.168.2.253", "ipMode": "Proxy"}]   # kept as declared
    assert ingress(result, "default/new") == [{"ip": "192.168.2.251", "ipMode": "VIP"}]


def test_a_request_wins_over_an_older_status():
    status = {"loadBalancer": {"ingress": [{"ip": "192.168.2.241"}]}}
    result = model([pool("lab", "192.168.2.240/28"), lb("web", loadBalancerIP="192.168.2.245", status=status)])
    assert lb_ips(result) == {"default/web": "192.168.2.245"}
    assert ingress(result, "default/web") == [{"ip": "192.168.2.245", "ipMode": "VIP"}]


def test_without_pools_a_request_is_taken_as_it_is():
    result = model([lb("web", loadBalancerIP="192.0.2.9")])
    assert lb_ips(result) == {"default/web": "192.0.2.9"}
    assert ingress(result, "default/web") == [{"ip": "192.0.2.9", "ipMode": "VIP"}]


BAD_REQUESTS = [
    ([lb("web", loadBalancerIP="192.0.2.9")],
     "Service default/web: spec.loadBalancerIP: 192.0.2.9 is not in any IPAddressPool (pools: lab, other)"),
    ([lb("web", annotations={"metallb.io/loadBalancerIPs": "192.0.2.9"})],
     "Service default/web: metadata.annotations[metallb.io/loadBalancerIPs]: 192.0.2.9 is not in any IPAddressPool "
     "(pools: lab, other)"),
    ([lb("web", status={"loadBalancer": {"ingress": [{"hostname": "x"}, {"ip": "192.0.2.9"}]}})],
     "Service default/web: status.loadBalancer.ingress[1].ip: 192.0.2.9 is not in any IPAddressPool (pools: lab, other)"),
    ([lb("web", loadBalancerIP="192.168.2.241", annotations={"metallb.io/loadBalancerIPs": "192.168.2.241"})],
     "Service default/web: metadata.annotations[metallb.io/loadBalancerIPs]: may not be set together with spec.loadBalancerIP"),
    ([lb("web", annotations={"metallb.io/loadBalancerIPs": "192.168.2.241,192.168.2.242"})],
     "Service default/web: metadata.annotations[metallb.io/loadBalancerIPs]: '192.168.2.241,192.168.2.242' must hold "
     "exactly one IPv4 address (IPv4 only here)"),
    ([lb("web", annotations={"metallb.io/loadBalancerIPs": "192.168.2.x"})],
     "Service default/web: metadata.annotations[metallb.io/loadBalancerIPs]: '192.168.2.x' is not an IP address"),
    ([lb("web", loadBalancerIP="192.168.2.241", annotations={"metallb.io/address-pool": "other"})],
     "Service default/web: spec.loadBalancerIP: 192.168.2.241 is in IPAddressPool lab, not in other "
     "(annotation metallb.io/address-pool)"),
    ([lb("web", annotations={"metallb.universe.tf/address-pool": "nope"})],
     "Service default/web: metadata.annotations[metallb.universe.tf/address-pool]: no IPAddressPool named 'nope' "
     "(pools: lab, other)"),
    ([lb("a", loadBalancerIP="192.168.2.241"), lb("b", loadBalancerIP="192.168.2.241")],
     "Service default/b: spec.loadBalancerIP: 192.168.2.241: it is already allocated to Service default/a (sharing "
     "needs the same metallb.io/allow-shared-ip annotation on both)"),
]


@pytest.mark.parametrize("objects,message", BAD_REQUESTS)
def test_bad_requests_fail_with_one_line(objects, message):
    with pytest.raises(c.ClusterError) as err:
        model([pool("lab", "192.168.2.240/28"), pool("other", "10.0.9.0/29")] + objects)
    assert str(err.value) == message


def test_an_address_taken_without_pools_is_still_an_error():
    with pytest.raises(c.ClusterError) as err:
        model([lb("a", loadBalancerIP="192.0.2.9"), lb("b", loadBalancerIP="192.0.2.9")])
    assert str(err.value).startswith("Service default/b: spec.loadBalancerIP: 192.0.2.9: it is already allocated to Service default/a")


def test_allow_shared_ip_shares_an_address_on_other_ports():
    shared = {"metallb.io/allow-shared-ip": "dns"}
    result = model([pool("lab", "192.168.2.240/28"),
                    lb("dns-udp", annotations=shared, ports=[{"port": 53, "protocol": "UDP"}]),
                    lb("dns-tcp", annotations={"metallb.universe.tf/allow-shared-ip": "dns"}, ports=[{"port": 53}]),
                    lb("web")])
    # the second one lands on the first one's address, as MetalLB's allocator walks the pool
    assert lb_ips(result) == {"default/dns-tcp": "192.168.2.240", "default/dns-udp": "192.168.2.240",
                              "default/web": "192.168.2.241"}


SHARING_ERRORS = [
    (dict(annotations={"metallb.io/allow-shared-ip": "k"}), dict(annotations={"metallb.io/allow-shared-ip": "k"}),
     "port 80/TCP on it is already used by Service default/a"),
    (dict(annotations={"metallb.io/allow-shared-ip": "k"}, ports=[{"port": 53}]),
     dict(annotations={"metallb.io/allow-shared-ip": "j"}), "it is already allocated to Service default/a, whose "
                                                            "allow-shared-ip key 'k' is not 'j'"),
    (dict(annotations={"metallb.io/allow-shared-ip": "k"}, ports=[{"port": 53}], externalTrafficPolicy="Local"),
     dict(annotations={"metallb.io/allow-shared-ip": "k"}, selector={"app": "other"}, externalTrafficPolicy="Local"),
     "it is already allocated to Service default/a, and Local services share an address only with the same selector"),
]


@pytest.mark.parametrize("first,second,why", SHARING_ERRORS)
def test_sharing_rules(first, second, why):
    with pytest.raises(c.ClusterError) as err:
        model([pool("lab", "192.168.2.240/28"), lb("a", loadBalancerIP="192.168.2.241", **first),
               lb("b", loadBalancerIP="192.168.2.241", **second)])
    assert str(err.value) == "Service default/b: spec.loadBalancerIP: 192.168.2.241: " + why


def test_allocations_never_move_when_the_reports_come_back():
    pools = [pool("lab", "192.168.2.240/28")]
    first = model(pools + [lb("m"), lb("p"), lb("t")])
    assert lb_ips(first) == {"default/m": "192.168.2.240", "default/p": "192.168.2.241", "default/t": "192.168.2.242"}
    # a service that sorts first arrives, one in the middle goes: the others keep theirs
    second = model(pools + [lb("a"), lb("m"), lb("t")], as_reports(first))
    assert lb_ips(second) == {"default/a": "192.168.2.241", "default/m": "192.168.2.240", "default/t": "192.168.2.242"}
    third = model(pools + [lb("a"), lb("b"), lb("m"), lb("t")], as_reports(second))
    assert lb_ips(third) == dict(lb_ips(second), **{"default/b": "192.168.2.243"})
    # without the reports they would have moved: the reports are what keeps them
    assert lb_ips(model(pools + [lb("a"), lb("m"), lb("t")]))["default/m"] == "192.168.2.241"


def test_the_order_of_the_manifests_does_not_matter():
    objects = [pool("b-pool", "10.0.1.0/30"), pool("a-pool", "10.0.0.1-10.0.0.2"),
               l2("adv")] + [lb("svc%d" % i, namespace=ns) for i in range(3) for ns in ("default", "other")]
    objects += web(("node2", "10.244.1.12"), ("node3", "10.244.2.13"))
    expected, announced = model(objects), announce(objects)
    assert sorted(lb_ips(expected).values()) == ["10.0.0.1", "10.0.0.2", "10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3"]
    for seed in range(5):
        shuffled = objects[:]
        random.Random(seed).shuffle(shuffled)
        assert model(shuffled) == expected
        assert announce(shuffled) == announced


def test_a_remembered_address_is_dropped_when_it_left_the_pools():
    first = model([pool("lab", "192.168.2.240/28"), lb("web")])
    moved = model([pool("lab", "192.168.3.0/29"), lb("web")], as_reports(first))
    assert lb_ips(moved) == {"default/web": "192.168.3.0"}
    # and a request that came first keeps a remembered one out
    taken = model([pool("lab", "192.168.2.240/28"), lb("web"), lb("vip", loadBalancerIP="192.168.2.240")], as_reports(first))
    assert lb_ips(taken) == {"default/vip": "192.168.2.240", "default/web": "192.168.2.241"}
    # no pool at all: nothing is assigned any more
    assert lb_ips(model([lb("web")], as_reports(first))) == {}


def test_reports_are_merged_by_majority():
    reports = {"node1": {"services": {"default/web": {"loadBalancerIP": "192.168.2.245"}}},
               "node2": {"services": {"default/web": {"loadBalancerIP": "192.168.2.245"}}},
               "node3": {"services": {"default/web": {"loadBalancerIP": "192.168.2.244"}}}}
    assert c.merge_service_reports(reports)["default/web"] == {"loadBalancerIP": "192.168.2.245"}
    reports["node3"]["services"]["default/web"]["loadBalancerIP"] = "not an address"
    del reports["node1"]
    assert c.merge_service_reports(reports)["default/web"] == {"loadBalancerIP": "192.168.2.245"}
    result = model([pool("lab", "192.168.2.240/28"), lb("web")], reports)
    assert result["report"]["services"]["default/web"]["loadBalancerIP"] == "192.168.2.245"


def test_service_allocation_pins_pools_by_namespace_selector_and_priority():
    objects = [pool("common", "10.0.0.0/29"),
               pool("team-low", "10.0.1.0/29", serviceAllocation={"priority": 20, "namespaces": ["team"]}),
               pool("team-high", "10.0.2.0/29", serviceAllocation={"priority": 10, "namespaces": ["team"]}),
               pool("front", "10.0.3.0/29", serviceAllocation={"serviceSelectors": [{"matchLabels": {"tier": "front"}}]}),
               lb("web", namespace="team"), lb("web"), lb("shop", labels={"tier": "front"})]
    assert lb_ips(model(objects)) == {"team/web": "10.0.2.0", "default/web": "10.0.0.0", "default/shop": "10.0.3.0"}
    with pytest.raises(c.ClusterError) as err:
        model(objects + [lb("intruder", loadBalancerIP="10.0.2.5")])
    assert str(err.value) == ("Service default/intruder: spec.loadBalancerIP: 10.0.2.5 is in IPAddressPool team-high, whose "
                              "spec.serviceAllocation does not select this service")


def test_the_kube_proxy_service_carries_the_ingress_and_gets_its_chains():
    result = model([pool("lab", "192.168.2.240/28"), pod("web-1", "node1", "10.244.0.11"), lb("web")])
    [svc] = [s for s in result["services"] if s["metadata"]["name"] == "web"]
    assert svc["status"] == {"loadBalancer": {"ingress": [{"ip": "192.168.2.240", "ipMode": "VIP"}]}}
    assert result["report"]["services"]["default/web"]["loadBalancerIP"] == "192.168.2.240"
    rs = build_ruleset(result["services"], result["endpoint_slices"], NODE_VIEW)
    [rule] = [r for r in rs.chain("nat", "KUBE-SERVICES").rules if "-d 192.168.2.240 " in r]
    assert '"default/web loadbalancer IP"' in rule and "--dport 80 -j KUBE-EXT-" in rule
    assert rs.chain("nat", rule.split("-j ")[-1]).rules     # the external chain exists and leads on


# --- the announcing node ---------------------------------------------------------------------------

def expected_order(names, ip):
    """MetalLB's order computed independently: sha256 of "node#ip", digests compared as bytes."""
    digests = dict((n, hashlib.sha256(("%s#%s" % (n, ip)).encode()).hexdigest()) for n in names)
    return sorted(names, key=lambda n: bytes.fromhex(digests[n]))


def web(*nodes_and_ips):
    return [pod("web-%d" % i, n, ip) for i, (n, ip) in enumerate(nodes_and_ips)]


def announce(objects):
    cluster = parse(objects)
    return m.l2_announcements(cluster, c.service_model(cluster))


def test_the_announcer_is_the_first_node_by_sha256():
    objects = [pool("lab", "192.168.2.240/28"), l2("lab")] + web(("node1", "10.244.0.11")) + \
        [lb("a"), lb("b"), lb("c"), lb("d")]
    got = announce(objects)
    assert [a["ip"] for a in got] == ["192.168.2.240", "192.168.2.241", "192.168.2.242", "192.168.2.243"]
    for vip in got:
        assert vip["nodes"] == expected_order(HOSTS, vip["ip"])
        assert (vip["pool"], vip["local"], vip["interfaces"], vip["reason"]) == ("lab", False, [], None)
        assert vip["node_interfaces"] == {"node1": [], "node2": [], "node3": []}
    assert len(set(vip["nodes"][0] for vip in got)) > 1     # VIPs spread over the nodes
    # digests (first bytes, from sha256sum): "node3#192.168.2.240" 363b1fd0, "node1#..." 3f46eb3a, "node2#..." 6d4ec43a
    assert got[0]["nodes"] == ["node3", "node1", "node2"]


def test_metallbs_own_vector():
    # speaker/layer2_controller_test.go (TestShouldAnnounceEPSlices, "Two services each with two endpoints
    # across two hosts"): with iris1 and iris2 ready, 10.20.30.1 is iris2's and 10.20.30.2 is iris1's
    assert m.announce_order(["iris1", "iris2"], "10.20.30.1") == ["iris2", "iris1"]
    assert m.announce_order(["iris1", "iris2"], "10.20.30.2") == ["iris1", "iris2"]
    assert m.announce_order(["iris2", "iris1"], "10.20.30.2") == ["iris1", "iris2"]


def test_local_policy_keeps_only_nodes_with_a_serving_endpoint():
    objects = [pool("lab", "192.168.2.240/28"), l2("lab")] + web(("node3", "10.244.2.13"), ("node1", "10.244.0.11")) + \
        [lb("web", externalTrafficPolicy="Local")]
    [vip] = announce(objects)
    assert vip["local"] is True
    assert vip["nodes"] == expected_order(["node1", "node3"], vip["ip"])
    # no pod at all: nobody announces, with the reason
    [vip] = announce([pool("lab", "192.168.2.240/28"), l2("lab"), lb("web", externalTrafficPolicy="Local")])
    assert (vip["nodes"], vip["reason"]) == ([], "the service has no serving endpoint")


def test_endpoints_that_cannot_serve_do_not_count():
    cluster = parse([pool("lab", "192.168.2.240/28"), l2("lab"), lb("web", externalTrafficPolicy="Local")])
    model_ = c.service_model(cluster)
    model_["endpoint_slices"] = [{"metadata": {"namespace": "default", "labels": {c.SERVICE_NAME_LABEL: "web"}},
                                  "endpoints": [{"addresses": ["10.244.0.11"], "nodeName": "node1", "conditions": {"ready": False}},
                                                {"addresses": ["10.244.1.12"], "nodeName": "node2",
                                                 "conditions": {"ready": False, "serving": True}},
                                                {"addresses": ["10.244.2.13"], "nodeName": "node3", "conditions": {}}]}]
    [vip] = m.l2_announcements(cluster, model_)
    assert sorted(vip["nodes"]) == ["node2", "node3"]


def test_node_selectors_and_the_exclude_label():
    objects = [pool("lab", "192.168.2.240/28"),
               l2("racks", nodeSelectors=[{"matchLabels": {"rack": "a"}},
                                          {"matchExpressions": [{"key": "edge", "operator": "Exists"},
                                                                {"key": "rack", "operator": "NotIn", "values": ["a"]}]}]),
               lb("web")] + web(("node2", "10.244.1.12"))
    [vip] = announce(objects)
    assert sorted(vip["nodes"]) == ["node1", "node3"]
    objects[1] = l2("no-edge", nodeSelectors=[{"matchExpressions": [{"key": "edge", "operator": "DoesNotExist"}]}])
    [vip] = announce(objects)
    assert sorted(vip["nodes"]) == ["node1", "node2"]
    objects[1] = l2("b", nodeSelectors=[{"matchExpressions": [{"key": "rack", "operator": "In", "values": ["b"]}]}])
    cluster = parse(objects)
    cluster.nodes[2]["labels"][m.EXCLUDE_LABEL] = ""
    [vip] = m.l2_announcements(cluster, c.service_model(cluster))
    assert vip["nodes"] == ["node2"]


def test_advertisements_cover_their_pools_only_and_give_the_interfaces():
    objects = [pool("lab", "192.168.2.240/29", labels={"zone": "home"}), pool("dmz", "10.0.9.0/29", autoAssign=False),
               l2("lab-wifi", ipAddressPools=["lab"], interfaces=["wlan0"],
                  nodeSelectors=[{"matchLabels": {"rack": "b"}}]),
               l2("lab-eth", ipAddressPoolSelectors=[{"matchLabels": {"zone": "home"}}], interfaces=["eth0"]),
               l2("dmz-only", ipAddressPools=["dmz"], nodeSelectors=[{"matchLabels": {"rack": "a"}}]),
               lb("home"), lb("exposed", annotations={"metallb.io/address-pool": "dmz"})] + web(("node1", "10.244.0.11"))
    by_service = dict((vip["service"], vip) for vip in announce(objects))
    home = by_service["default/home"]
    assert home["node_interfaces"] == {"node1": ["eth0"], "node2": ["eth0", "wlan0"], "node3": ["eth0", "wlan0"]}
    assert home["interfaces"] == home["node_interfaces"][home["nodes"][0]]
    exposed = by_service["default/exposed"]
    assert (exposed["pool"], exposed["nodes"], exposed["interfaces"]) == ("dmz", ["node1"], [])


def test_no_advertisement_means_no_announcement():
    [vip] = announce([pool("lab", "192.168.2.240/28"), lb("web")] + web(("node1", "10.244.0.11")))
    assert (vip["ip"], vip["nodes"], vip["reason"]) == (
        "192.168.2.240", [], "no L2Advertisement covers IPAddressPool lab for this service")
    # an address outside the pools (no pools at all) is not MetalLB's to announce
    assert announce([lb("web", loadBalancerIP="192.0.2.9")] + web(("node1", "10.244.0.11"))) == []


def test_service_selectors_and_preferred_nodes():
    objects = [pool("lab", "192.168.2.240/28"),
               l2("front", serviceSelectors=[{"matchLabels": {"tier": "front"}}],
                  preferredNodeSelectors=[{"weight": 10, "preference": {"matchLabels": {"rack": "b"}}},
                                          {"weight": 5, "preference": {"matchLabels": {"edge": "true"}}}]),
               lb("shop", labels={"tier": "front"}), lb("other")] + web(("node1", "10.244.0.11"))
    by_service = dict((vip["service"], vip) for vip in announce(objects))
    # node3 scores 15, node2 10, node1 0: the weights come before the hash
    assert by_service["default/shop"]["nodes"] == ["node3", "node2", "node1"]
    assert by_service["default/other"]["nodes"] == []
    assert by_service["default/other"]["reason"].startswith("no L2Advertisement covers")


def test_shared_vips_are_listed_once_per_service():
    shared = {"metallb.io/allow-shared-ip": "dns"}
    objects = [pool("lab", "192.168.2.240/28"), l2("lab"),
               lb("dns-udp", annotations=shared, ports=[{"port": 53, "protocol": "UDP"}]),
               lb("dns-tcp", annotations=shared, ports=[{"port": 53}])] + web(("node1", "10.244.0.11"))
    got = announce(objects)
    assert [(vip["ip"], vip["service"]) for vip in got] == [("192.168.2.240", "default/dns-tcp"),
                                                            ("192.168.2.240", "default/dns-udp")]
    assert got[0]["nodes"] == got[1]["nodes"]
