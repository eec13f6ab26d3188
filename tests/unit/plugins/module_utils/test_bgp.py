"""A node's BGP speaker as the bgp role computes it: Calico's peers with the role's filters, BFD
towards the router, route reflector clients, what each node originates (its pod CIDR, the service
ranges, the /32 of each LoadBalancer IP it serves) and what goes to the kernel."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import bgp
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c

HOSTS = ["node1", "node2", "node3"]
SETTINGS = {"cluster_cidr": "10.244.0.0/16"}


def node(name, ip, rack, asn=None, rr=None):
    annotations = {"projectcalico.org/IPv4Address": ip + "/24"}
    if asn:
        annotations["projectcalico.org/ASNumber"] = str(asn)
    if rr:
        annotations["projectcalico.org/RouteReflectorClusterID"] = rr
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "rack": rack}, "annotations": annotations},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def nodes(asn_a=65001, asn_b=65002, rr=None):
    return [node("node1", "172.31.1.11", "a", asn_a, rr), node("node2", "172.31.1.12", "a", asn_a),
            node("node3", "172.31.2.13", "b", asn_b)]


def pod(name, node_name, ip, **labels):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": dict({"app": "web"}, **labels),
                         "annotations": {c.IP_ADDRS_ANNOTATION: '["%s"]' % ip}},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}]}}


def config(**spec):
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
            "spec": spec}


def peer(name, password=None, **spec):
    meta = {"name": name}
    if password:
        meta["annotations"] = {"podnet.fabric/password": password}
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": meta, "spec": spec}


def lb(name, ip, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": dict(dict(type="LoadBalancer", selector={"app": "web"}, loadBalancerIP=ip, ports=[{"port": 80}]), **spec)}


def as_per_rack():
    """The lab's layout: AS per rack, a ToR per rack, the nodes of a rack peering each other."""
    return nodes() + [
        config(nodeToNodeMeshEnabled=False, serviceClusterIPs=[{"cidr": "10.96.0.0/12"}],
               serviceLoadBalancerIPs=[{"cidr": "172.31.150.0/28"}]),
        peer("rack-a-tor", "secret-a", nodeSelector="rack == 'a'", peerIP="172.31.1.254", asNumber=65000),
        peer("rack-b-tor", "secret-b", nodeSelector="rack == 'b'", peerIP="172.31.2.254", asNumber=65000),
        peer("rack-a-nodes", nodeSelector="rack == 'a'", peerSelector="rack == 'a'"),
        pod("web-1", "node1", "10.244.0.5", tier="edge"), pod("web-2", "node2", "10.244.1.5"),
        pod("web-3", "node3", "10.244.2.5", tier="edge"),
    ]


def plan(objects, me, **settings):
    return bgp.node_plan(objects, me, HOSTS, {}, dict(SETTINGS, **settings))


def test_no_bgp_objects_means_bgp_off():
    p = plan(nodes(), "node1")
    assert p["enabled"] is False
    assert p["peers"] == [] and p["originate"] == [] and p["program"] == []


def test_as_per_rack_peers_carry_the_roles_filters_and_bfd_only_towards_the_router():
    p1 = plan(as_per_rack(), "node1")
    assert p1["enabled"] and p1["router_id"] == "172.31.1.11" and p1["as_number"] == 65001
    by_ip = dict((x["peer_ip"], x) for x in p1["peers"])
    assert sorted(by_ip) == ["172.31.1.12", "172.31.1.254"]
    tor, mate = by_ip["172.31.1.254"], by_ip["172.31.1.12"]
    assert tor["as_number"] == 65000 and tor["password"] == "secret-a" and tor["bfd"] is True
    assert mate["as_number"] == 65001 and "bfd" not in mate and "password" not in mate
    # eBGP to the router: only what the node originates; iBGP: also what it learned (reflection)
    assert tor["export_filter"] == bgp.OWN_FILTER and mate["export_filter"] == bgp.EXPORT_FILTER
    assert all(x["import_filter"] == "all" for x in p1["peers"])
    p3 = plan(as_per_rack(), "node3")
    assert [(x["peer_ip"], x["as_number"], x["password"]) for x in p3["peers"]] == [("172.31.2.254", 65000, "secret-b")]


def test_each_node_originates_its_own_block_and_the_service_ranges():
    blocks = set()
    for name in HOSTS:
        p = plan(as_per_rack(), name)
        assert p["originate"][0] == p["pod_cidr"]
        assert p["originate"][1:3] == ["10.96.0.0/12", "172.31.150.0/28"]
        assert p["export"] == ["10.244.0.0/16", "10.96.0.0/12", "172.31.150.0/28"]
        assert p["program"] == ["10.244.0.0/16"]
        blocks.add(p["pod_cidr"])
    assert len(blocks) == 3


def test_load_balancer_ips_are_announced_by_every_node_for_cluster_and_by_endpoint_nodes_for_local():
    objects = as_per_rack() + [
        lb("web-bgp", "172.31.150.2"),
        lb("web-bgp-local", "172.31.150.3", externalTrafficPolicy="Local", selector={"app": "web", "tier": "edge"}),
        lb("nobody", "172.31.150.4", selector={"app": "none"}),
        lb("elsewhere", "192.0.2.10"),      # not inside serviceLoadBalancerIPs: not BGP's
    ]
    host_routes = dict((n, [r for r in plan(objects, n)["originate"] if r.endswith("/32")]) for n in HOSTS)
    assert host_routes == {"node1": ["172.31.150.2/32", "172.31.150.3/32"],
                           "node2": ["172.31.150.2/32"],
                           "node3": ["172.31.150.2/32", "172.31.150.3/32"]}
    ann = dict((a["service"], a) for a in plan(objects, "node1")["announcements"])
    assert sorted(ann) == ["default/nobody", "default/web-bgp", "default/web-bgp-local"]
    assert ann["default/nobody"]["nodes"] == [] and "no serving endpoint" in ann["default/nobody"]["reason"]
    assert ann["default/web-bgp-local"]["nodes"] == ["node1", "node3"] and ann["default/web-bgp-local"]["local"]


def test_route_reflector_marks_its_clients_and_never_meshes():
    objects = nodes(asn_a=None, asn_b=None, rr="1.0.0.1") + [
        config(nodeToNodeMeshEnabled=False),
        peer("to-rr", nodeSelector="!has(rr)", peerSelector="rack == 'a' && has(rr)"),
    ]
    objects[0]["metadata"]["labels"]["rr"] = "true"
    rr = plan(objects, "node1")
    assert rr["route_reflector"]["cluster_id"] == "1.0.0.1"
    clients = [x for x in rr["peers"] if x.get("rr_client")]
    assert sorted(x["peer_ip"] for x in clients) == ["172.31.1.12", "172.31.2.13"]
    assert all(x["rr_cluster_id"] == "1.0.0.1" for x in clients)
    client = plan(objects, "node3")
    assert [x["peer_ip"] for x in client["peers"]] == ["172.31.1.11"]
    assert not any(x.get("rr_client") for x in client["peers"])


def test_full_mesh_by_default_without_bfd_between_nodes():
    p = plan(nodes(asn_a=None, asn_b=None) + [config()], "node2")
    assert sorted(x["peer_ip"] for x in p["peers"]) == ["172.31.1.11", "172.31.2.13"]
    assert all(x["calico_node"] and x["as_number"] == 64512 and "bfd" not in x for x in p["peers"])


def test_settings_switch_off_kernel_routes_and_bfd():
    p = plan(as_per_rack(), "node1", program_routes=False, bfd=False)
    assert p["program"] == [] and not any("bfd" in x for x in p["peers"])


def test_unknown_setting_and_unknown_node_are_one_line_errors():
    with pytest.raises(c.ClusterError, match="unknown setting"):
        plan(as_per_rack(), "node1", colour="blue")
    with pytest.raises(c.ClusterError, match="node9"):
        bgp.node_plan(as_per_rack(), "node9", HOSTS, {}, SETTINGS)
