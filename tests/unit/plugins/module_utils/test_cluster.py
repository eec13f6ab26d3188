"""The cluster model: manifests in, per-node slices out (pure functions, no Ansible)."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c

CLUSTER_CIDR = "10.244.0.0/16"


def node(name, ip, prefix=24, pod_cidr=None, **extra):
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                        "annotations": {c.NODE_ADDRESS_ANNOTATION: "%s/%d" % (ip, prefix)},
                        "uid": "ignored", "resourceVersion": "1"},
           "spec": {}, "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                                  "nodeInfo": {"kubeletVersion": "v1.30.0"}}}
    if pod_cidr:
        obj["spec"]["podCIDR"] = pod_cidr
    obj.update(extra)
    return obj


def pod(name, node_name, labels=None, ip=None, ports=(), namespace="default"):
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
           "spec": {"nodeName": node_name, "restartPolicy": "Always",
                    "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": p} for p in ports]}]},
           "status": {"phase": "Running", "podIP": "10.9.9.9"}}
    if ip:
        obj["metadata"]["annotations"] = {c.IP_ADDRS_ANNOTATION: '["%s"]' % ip}
    return obj


def three():
    return [node("node1", "172.31.1.11"), node("node2", "172.31.1.12"),
            node("node3", "172.31.2.13", pod_cidr="10.244.2.0/24"),
            pod("web-1", "node1", {"app": "web"}, ports=[8080]), pod("web-2", "node2", {"app": "web"}),
            pod("tools-3", "node3", {"app": "tools"}, ip="10.244.2.100")]


def cidrs(objects, hosts, reports=None, prefix=24):
    return c.allocate_pod_cidrs(c.parse_objects(objects, hosts), CLUSTER_CIDR, prefix, reports)


def as_reports(allocation):
    return dict((n, {"podCIDR": cidr}) for n, cidr in allocation.items())


# --- allocation -------------------------------------------------------------------------------------

def test_first_allocation_in_inventory_order_around_pinned_blocks():
    got = cidrs(three(), ["node1", "node2", "node3"])
    assert got == {"node1": "10.244.0.0/24", "node2": "10.244.1.0/24", "node3": "10.244.2.0/24"}


def test_inserting_a_node_in_the_middle_renumbers_nobody():
    hosts = ["node1", "node2", "node3"]
    before = cidrs(three(), hosts)
    objects = three()
    objects.insert(1, node("node1b", "172.31.1.14"))
    after = cidrs(objects, ["node1", "node1b", "node2", "node3"], as_reports(before))
    assert dict((n, after[n]) for n in hosts) == before
    assert after["node1b"] == "10.244.3.0/24"  # the lowest free block


def test_without_reports_inventory_order_would_renumber():
    # what the reports prevent: the same insert, nodes reporting nothing
    objects = three()
    objects.insert(1, node("node1b", "172.31.1.14"))
    assert cidrs(objects, ["node1", "node1b", "node2", "node3"])["node2"] != "10.244.1.0/24"


def test_removed_node_frees_its_block_and_others_keep_theirs():
    hosts = ["node1", "node2", "node3"]
    before = cidrs(three(), hosts)
    objects = [o for o in three() if (o["metadata"]["name"] != "node1" and o["spec"].get("nodeName") != "node1")]
    after = cidrs(objects, ["node2", "node3"], as_reports(before))
    assert after == {"node2": before["node2"], "node3": before["node3"]}
    objects.insert(0, node("node9", "172.31.1.19"))
    again = cidrs(objects, ["node9", "node2", "node3"], as_reports(after))
    assert again["node9"] == "10.244.0.0/24" and again["node2"] == before["node2"]


def test_many_inserts_and_removals_keep_every_surviving_block():
    hosts = ["n%d" % i for i in range(10)]
    objects = [node(h, "172.31.1.%d" % (10 + i)) for i, h in enumerate(hosts)]
    alloc = cidrs(objects, hosts)
    for step in range(5):
        gone = hosts.pop(step)  # remove one, insert two in the middle
        objects = [o for o in objects if o["metadata"]["name"] != gone]
        for k in range(2):
            name = "new%d%d" % (step, k)
            hosts.insert(3, name)
            objects.insert(3, node(name, "172.31.1.%d" % (100 + step * 2 + k)))
        new = cidrs(objects, hosts, as_reports(alloc))
        for h in hosts:
            if h in alloc:
                assert new[h] == alloc[h], h
        assert len(set(new.values())) == len(new)
        alloc = new


def test_a_report_outside_the_cluster_or_colliding_is_not_kept():
    objects = three()
    reports = {"node1": {"podCIDR": "10.99.0.0/24"}, "node2": {"podCIDR": "10.244.2.0/24"}}
    got = cidrs(objects, ["node1", "node2", "node3"], reports)
    assert got == {"node1": "10.244.0.0/24", "node2": "10.244.1.0/24", "node3": "10.244.2.0/24"}


def test_two_nodes_reporting_the_same_block_first_keeps_it():
    reports = {"node1": {"podCIDR": "10.244.7.0/24"}, "node2": {"podCIDR": "10.244.7.0/24"}}
    got = cidrs(three(), ["node1", "node2", "node3"], reports)
    assert got["node1"] == "10.244.7.0/24" and got["node2"] == "10.244.0.0/24"


def test_pinned_blocks_must_not_overlap_or_leave_the_cluster():
    objects = three()
    objects[0]["spec"]["podCIDR"] = "10.244.2.0/23"
    with pytest.raises(c.ClusterError, match=r"^Node node3: spec.podCIDR 10.244.2.0/24 overlaps Node node1's"):
        cidrs(objects, ["node1", "node2", "node3"])
    objects = three()
    objects[0]["spec"]["podCIDR"] = "10.1.0.0/24"
    with pytest.raises(c.ClusterError, match=r"^Node node1: spec.podCIDR 10.1.0.0/24 is outside"):
        cidrs(objects, ["node1", "node2", "node3"])


def test_cluster_full():
    objects = [node("a", "10.0.0.1"), node("b", "10.0.0.2"), node("x", "10.0.0.3")]
    with pytest.raises(c.ClusterError, match=r"^Node x: the cluster CIDR 10.244.0.0/23 has no free /24"):
        c.allocate_pod_cidrs(c.parse_objects(objects, ["a", "b", "x"]), "10.244.0.0/23", 24)


# --- node slices -----------------------------------------------------------------------------------

def test_node_model_pods_peers_and_subnets():
    model = c.cluster_node(three(), "node1", ["node1", "node2", "node3"], CLUSTER_CIDR, 24,
                           {"node1": {"podCIDR": "10.244.0.0/24", "podIPs": {"default/web-1": "10.244.0.2"}}})
    assert model["pod_cidr"] == "10.244.0.0/24" and model["gateway"] == "10.244.0.1"
    assert model["node_ip"] == "172.31.1.11" and model["node_subnet"] == "172.31.1.0/24"
    [web1] = model["pods"]
    assert web1["id"] == "default/web-1" and web1["netns"] == "pod-default-web-1" and web1["podIP"] == "10.244.0.2"
    assert web1["ports"] == [{"containerPort": 8080, "protocol": "TCP", "name": None}]
    peers = dict((p["name"], p) for p in model["peers"])
    assert peers["node2"]["same_subnet"] and not peers["node3"]["same_subnet"]
    assert peers["node3"]["vtep_ip"] == "10.244.2.0" and peers["node3"]["pod_cidr"] == "10.244.2.0/24"
    assert peers["node3"]["vtep_mac"] == c.stable_mac("vtep/node3")


def test_every_node_computes_the_same_peers_from_the_same_input():
    hosts = ["node1", "node2", "node3"]
    models = dict((h, c.cluster_node(three(), h, hosts, CLUSTER_CIDR)) for h in hosts)
    for h in hosts:
        for peer in models[h]["peers"]:
            assert peer["pod_cidr"] == models[peer["name"]]["pod_cidr"]
            assert peer["vtep_mac"] == models[peer["name"]]["vtep_mac"]


def test_fixed_pod_ip_from_the_calico_annotation():
    model = c.cluster_node(three(), "node3", ["node1", "node2", "node3"], CLUSTER_CIDR)
    assert model["pods"][0]["ip"] == "10.244.2.100"


def test_fixed_ip_outside_the_node_block_names_the_pod():
    objects = three()
    objects[-1]["metadata"]["annotations"][c.IP_ADDRS_ANNOTATION] = '["10.244.5.3"]'
    with pytest.raises(c.ClusterError, match=r"^Pod default/tools-3: annotation cni.projectcalico.org/ipAddrs 10.244.5.3 "
                                             r"is not a pod address of node node3's pod CIDR 10.244.2.0/24$"):
        c.cluster_node(objects, "node3", ["node1", "node2", "node3"], CLUSTER_CIDR)


def test_unknown_fields_are_ignored_and_lists_unpacked():
    objects = [{"apiVersion": "v1", "kind": "List", "items": three()}, None]
    objects[0]["items"][3]["spec"]["tolerations"] = [{"operator": "Exists"}]
    model = c.cluster_node(objects, "node1", ["node1", "node2", "node3"], CLUSTER_CIDR)
    assert [p["name"] for p in model["pods"]] == ["web-1"]


def test_services_are_kept_with_their_endpoints():
    objects = three() + [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                          "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}]
    model = c.cluster_node(objects, "node2", ["node1", "node2", "node3"], CLUSTER_CIDR, 24,
                           {"node1": {"podCIDR": "10.244.0.0/24", "podIPs": {"default/web-1": "10.244.0.2"}}})
    [svc] = model["services"]
    assert svc["id"] == "default/web" and svc["type"] == "ClusterIP"
    assert [(e["pod"], e["nodeName"], e["podIP"]) for e in svc["endpoints"]] == [
        ("default/web-1", "node1", "10.244.0.2"), ("default/web-2", "node2", None)]


# --- validation: one line naming the object -----------------------------------------------------

def bad(mutate, hosts=("node1", "node2", "node3")):
    objects = copy.deepcopy(three())
    mutate(objects)
    with pytest.raises(c.ClusterError) as err:
        c.cluster_node(objects, "node1", list(hosts), CLUSTER_CIDR)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_host_network_pod_is_refused():
    msg = bad(lambda o: o[3]["spec"].update(hostNetwork=True))
    assert msg.startswith("Pod default/web-1: spec.hostNetwork true is not supported")


def test_host_network_false_is_fine():
    objects = three()
    objects[3]["spec"]["hostNetwork"] = False
    assert c.cluster_node(objects, "node1", ["node1", "node2", "node3"], CLUSTER_CIDR)["pods"]


def test_pod_on_an_unknown_node():
    msg = bad(lambda o: o[4]["spec"].update(nodeName="node7"))
    assert msg == "Pod default/web-2: spec.nodeName node7 is not a Node of the cluster (nodes: node1, node2, node3)"


def test_pod_without_a_node():
    msg = bad(lambda o: o[4]["spec"].pop("nodeName"))
    assert msg == "Pod default/web-2: spec.nodeName is required (nothing schedules pods here)"


def test_node_without_a_name():
    msg = bad(lambda o: o[1]["metadata"].pop("name"))
    assert msg == "Node (the 2nd Node object): metadata.name is required"


def test_node_without_an_address():
    def mutate(o):
        o[1]["metadata"]["annotations"] = {}
        o[1]["status"]["addresses"] = [{"type": "Hostname", "address": "node2"}]
    assert bad(mutate).startswith("Node node2: no node address")


def test_node_address_and_annotation_disagree():
    msg = bad(lambda o: o[0]["status"]["addresses"][0].update(address="172.31.1.99"))
    assert msg.startswith("Node node1: annotation projectcalico.org/IPv4Address 172.31.1.11 and InternalIP 172.31.1.99 disagree")


def test_inventory_host_without_a_node_object():
    msg = bad(lambda o: None, hosts=("node1", "node2", "node3", "node4"))
    assert msg.startswith("Node node4: the inventory host has no Node object")


def test_node_object_without_an_inventory_host():
    msg = bad(lambda o: None, hosts=("node1", "node2"))
    assert msg.startswith("Node node3: no inventory host of that name")


def test_duplicates_and_unsupported_kinds():
    assert bad(lambda o: o.append(pod("web-1", "node2"))) == "Pod default/web-1: declared twice"
    assert bad(lambda o: o.append(node("node1", "172.31.1.50"))) == "Node node1: declared twice"
    msg = bad(lambda o: o.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}))
    assert msg.startswith("Deployment web: kind 'Deployment' is not supported here")


@pytest.mark.parametrize("value, reason", [
    ("10.244.0.5", "must be a JSON list"),
    ('["10.244.0.5", "10.244.0.6"]', "must list exactly one IPv4 address"),
    ('["fd00::5"]', "is IPv6"),
    ('["nope"]', "is not an address"),
])
def test_bad_ip_annotation(value, reason):
    msg = bad(lambda o: o[3]["metadata"].update(annotations={c.IP_ADDRS_ANNOTATION: value}))
    assert msg.startswith("Pod default/web-1: annotation cni.projectcalico.org/ipAddrs") and reason in msg


def test_bad_pod_cidr_and_port():
    assert bad(lambda o: o[0]["spec"].update(podCIDR="10.244.0.1/24")).startswith("Node node1: spec.podCIDR '10.244.0.1/24' is not a network")
    assert bad(lambda o: o[3]["spec"]["containers"][0]["ports"][0].update(containerPort=70000)) == \
        "Pod default/web-1: containerPort 70000 is out of range"


# --- selectors ------------------------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("selector, expected", [
    ({"app": "web"}, True),
    ({"app": "web", "tier": "back"}, False),
    ({}, True),
    ({"matchLabels": {"app": "web"}}, True),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}, True),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, False),
    ({"matchExpressions": [{"key": "canary", "operator": "NotIn", "values": ["true"]}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
])
def test_selector(selector, expected):
    assert c.selector_matches(selector, LABELS) is expected


def test_none_selector_matches_nothing():
    assert c.selector_matches(None, LABELS) is False


@pytest.mark.parametrize("expr, reason", [
    ({"key": "env", "operator": "Matches", "values": ["x"]}, "is not In, NotIn, Exists or DoesNotExist"),
    ({"key": "env", "operator": "In"}, "needs values"),
    ({"key": "env", "operator": "Exists", "values": ["x"]}, "takes no values"),
    ({"operator": "Exists"}, "has no key"),
])
def test_bad_selector(expr, reason):
    with pytest.raises(c.ClusterError, match=reason):
        c.selector_matches({"matchExpressions": [expr]}, LABELS, "Service default/web")


def test_node_address():
    assert c.node_address(three(), "node2") == "172.31.1.12"
    with pytest.raises(c.ClusterError, match="^Node nodeX: no Node object"):
        c.node_address(three(), "nodeX")


# --- the manifests lookup (plugins/lookup/manifests.py) -------------------------------------------

def test_manifests_lookup_reads_multi_document_files_lists_and_directories(tmp_path):
    from ansible.errors import AnsibleLookupError
    from ansible_collections.podnet.fabric.plugins.lookup.manifests import LookupModule

    (tmp_path / "a-nodes.yaml").write_text(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n---\n"
        "apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n", encoding="utf-8")
    (tmp_path / "b-pods.yml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Pod, metadata: {name: p1}}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not yaml: [", encoding="utf-8")
    got = LookupModule().run([str(tmp_path)])
    assert [o["metadata"]["name"] for o in got] == ["n1", "n2", "p1"]
    assert LookupModule().run([str(tmp_path / "b-pods.yml")])[0]["kind"] == "Pod"
    (tmp_path / "c-bad.yaml").write_text("a: [", encoding="utf-8")
    with pytest.raises(AnsibleLookupError, match="c-bad.yaml"):
        LookupModule().run([str(tmp_path)])
    with pytest.raises(AnsibleLookupError, match="no such file or directory"):
        LookupModule().run([str(tmp_path / "missing")])
