"""Calico's BGP model in the cluster model: BGPConfiguration / BGPPeer parsing as users paste them,
and each node's peers as Calico's confd computes them, in calico_bgp_peer's parameter shape."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import bird
from ansible_collections.podnet.fabric.plugins.module_utils import calico
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c

HOSTS = ["node1", "node2", "node3"]
IPS = {"node1": "172.31.1.11", "node2": "172.31.1.12", "node3": "172.31.2.13"}


def node(name, labels=None, annotations=None):
    meta = {"name": name, "labels": dict({"kubernetes.io/hostname": name}, **(labels or {})),
            "annotations": dict({c.NODE_ADDRESS_ANNOTATION: IPS[name] + "/24"}, **(annotations or {}))}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta}


def nodes(**extra):
    """Three nodes; ``extra`` maps a node name to (labels, annotations)."""
    return [node(name, *extra.get(name, ({}, {}))) for name in HOSTS]


def config(name="default", annotations=None, **spec):
    obj = {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


def peer(name, annotations=None, **spec):
    obj = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


def parse(*objects, base=None):
    return c.parse_objects((nodes() if base is None else base) + list(objects), HOSTS)


def error(*objects, base=None):
    with pytest.raises(c.ClusterError) as info:
        parse(*objects, base=base)
    return str(info.value)


def by_ip(bgp):
    return dict((p["peer_ip"], p) for p in bgp["peers"])


def normalized(bgp):
    """Every peer through calico_bgp_peer's own normalize: proves the shape."""
    return [bird.normalize(p, bgp["router_id"], bgp["as_number"]) for p in bgp["peers"]]


RR_LABELS = {"route-reflector": "true"}
RR_ANN = {calico.RR_ANNOTATION: "244.0.0.1"}


def rr_cluster(*objects):
    """node1 is a route reflector; mesh off; everyone peers the reflectors, reflectors peer everyone."""
    base = nodes(node1=(RR_LABELS, RR_ANN))
    return parse(config(nodeToNodeMeshEnabled=False),
                 peer("peer-with-route-reflectors", nodeSelector="all()", peerSelector="route-reflector == 'true'"),
                 *objects, base=base)


# --- parsing ------------------------------------------------------------------------------------

def test_defaults_without_any_calico_object():
    cluster = parse()
    assert cluster.bgp_configurations == {} and cluster.bgp_peers == []
    bgp = calico.node_bgp(cluster, "node1", pod_cidr="10.244.0.0/24")
    assert (bgp["as_number"], bgp["router_id"], bgp["listen_port"], bgp["mesh"]) == (64512, "172.31.1.11", 179, True)
    assert bgp["route_reflector"] is None
    assert bgp["originate"] == {"pod_cidr": "10.244.0.0/24", "service_cluster_ips": [], "service_external_ips": [],
                                "service_load_balancer_ips": []}


def test_global_configuration_fields():
    cluster = parse(config(asNumber=65010, listenPort=1179, logSeverityScreen="Info", bindMode="NodeIP",
                           serviceClusterIPs=[{"cidr": "10.96.0.0/12"}], serviceExternalIPs=[{"cidr": "192.0.2.0/24"}],
                           serviceLoadBalancerIPs=[{"cidr": "172.31.100.0/24"}, {"cidr": "fd00::/64"}][:1],
                           nodeMeshMaxRestartTime="2m", annotations={calico.MESH_PASSWORD_ANNOTATION: "s3cret"}))
    cfg = cluster.bgp_configurations["default"]
    assert (cfg["as_number"], cfg["listen_port"], cfg["mesh_max_restart_time"], cfg["mesh_password"]) == (65010, 1179, "120", "s3cret")
    bgp = calico.node_bgp(cluster, "node2")
    assert bgp["originate"]["service_cluster_ips"] == ["10.96.0.0/12"]
    assert bgp["originate"]["service_external_ips"] == ["192.0.2.0/24"]
    assert bgp["originate"]["service_load_balancer_ips"] == ["172.31.100.0/24"]
    mesh = by_ip(bgp)["172.31.1.11:1179"]
    assert mesh["name"] == "Mesh_172_31_1_11"       # Calico's mesh names carry no port
    assert (mesh["password"], mesh["max_restart_time"], mesh["as_number"]) == ("s3cret", "120", 65010)
    normalized(bgp)


def test_dotted_as_number_and_per_node_listen_port():
    cluster = parse(config(asNumber="1.10"), config("node.node3", listenPort=1790))
    bgp = calico.node_bgp(cluster, "node1")
    assert bgp["as_number"] == 65546
    assert sorted(by_ip(bgp)) == ["172.31.1.12", "172.31.2.13:1790"]
    assert calico.node_bgp(cluster, "node3")["listen_port"] == 1790


@pytest.mark.parametrize("obj, message", [
    (config("global"), "BGPConfiguration global: metadata.name must be default (the global configuration) or node.<node name>"),
    (config(asNumber="65a"), "BGPConfiguration default: spec.asNumber: '65a' is not an AS number"),
    (config(asNumber=0), "BGPConfiguration default: spec.asNumber: 0 is not 1-4294967295"),
    (config(nodeToNodeMeshEnabled="no"), "BGPConfiguration default: spec.nodeToNodeMeshEnabled: 'no' must be true or false"),
    (config(listenPort=70000), "BGPConfiguration default: spec.listenPort: 70000 is not a port (1-65535)"),
    (config(serviceClusterIPs=["10.96.0.0/12"]), "BGPConfiguration default: spec.serviceClusterIPs[0].cidr is required"),
    (config(serviceExternalIPs=[{"cidr": "300.0.0.0/8"}]), "BGPConfiguration default: spec.serviceExternalIPs[0].cidr: '300.0.0.0/8' is not a CIDR"),
    (config(serviceLoadBalancerIPs=[{"cidr": "fd00::/64"}]),
     "BGPConfiguration default: spec.serviceLoadBalancerIPs[0].cidr: fd00::/64 is IPv6, only IPv4 is supported"),
    (config(nodeMeshMaxRestartTime="soon"), "BGPConfiguration default: spec.nodeMeshMaxRestartTime: 'soon' is not a duration"),
    (config(nodeMeshPassword={"secretKeyRef": {"name": "bgp", "key": "mesh"}}),
     "BGPConfiguration default: spec.nodeMeshPassword.secretKeyRef: Secrets are not read here; put the password in annotation "
     "podnet.fabric/node-mesh-password"),
    (config("node.node9", listenPort=1179), "BGPConfiguration node.node9: Node node9 is not a Node of the cluster"),
    (dict(config(), apiVersion="crd.projectcalico.org/v1"), "BGPConfiguration default: apiVersion 'crd.projectcalico.org/v1' is not projectcalico.org/v3"),
    (peer("tor"), "BGPPeer tor: spec.peerIP or spec.peerSelector is required"),
    (peer("tor", peerIP="172.31.1.254"), "BGPPeer tor: spec.asNumber is required with spec.peerIP"),
    (peer("tor", peerIP="172.31.1.300", asNumber=65000), "BGPPeer tor: spec.peerIP: '172.31.1.300':"),
    (peer("tor", peerIP="[fd00::1]:179", asNumber=65000), "BGPPeer tor: spec.peerIP: fd00::1 is IPv6, only IPv4 is supported"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, peerSelector="all()"),
     "BGPPeer tor: spec.peerIP and spec.peerSelector exclude each other"),
    (peer("rr", peerSelector="all()", asNumber=65000),
     "BGPPeer rr: spec.asNumber must not be set with spec.peerSelector (the selected nodes' AS is used)"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, node="node1", nodeSelector="all()"),
     "BGPPeer tor: spec.node and spec.nodeSelector exclude each other"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, node="node9"),
     "BGPPeer tor: spec.node node9 is not a Node of the cluster (nodes: node1, node2, node3)"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, nodeSelector="rack in {'a'}"),
     "BGPPeer tor: spec.nodeSelector: \"rack in {'a'}\" is not supported (all(), key == 'v', key != 'v', has(key), !has(key), joined by &&)"),
    (peer("rr", peerSelector="has(rr) || has(x)"), "BGPPeer rr: spec.peerSelector: 'has(rr) || has(x)' is not supported"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, password={"secretKeyRef": {"name": "bgp", "key": "tor"}}),
     "BGPPeer tor: spec.password.secretKeyRef: Secrets are not read here; put the password in annotation podnet.fabric/password"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, annotations={calico.PASSWORD_ANNOTATION: 'a"b'}),
     "BGPPeer tor: annotation podnet.fabric/password: at most 80 characters without quotes, backslashes or newlines (TCP MD5)"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, sourceAddress="Auto"),
     "BGPPeer tor: spec.sourceAddress: 'Auto' is not UseNodeIP or None"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, nextHopMode="self"),
     "BGPPeer tor: spec.nextHopMode: 'self' is not Auto, Self or Keep"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, ttlSecurity=300), "BGPPeer tor: spec.ttlSecurity: 300 is not 0-255 hops"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, keepaliveTime="often"), "BGPPeer tor: spec.keepaliveTime: 'often' is not a duration"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, reachableBy="172.31.1.1"),
     "BGPPeer tor: spec.reachableBy is not supported here (it needs a static route to the peer)"),
    (peer("tor", peerIP="172.31.1.254", asNumber=65000, keepOriginalNextHop="yes"),
     "BGPPeer tor: spec.keepOriginalNextHop: 'yes' must be true or false"),
])
def test_object_errors_are_one_line(obj, message):
    msg = error(obj)
    assert msg.startswith(message) and "\n" not in msg


def test_declared_twice():
    assert error(config(), config()) == "BGPConfiguration default: declared twice"
    tor = peer("tor", peerIP="172.31.1.254", asNumber=65000)
    assert error(tor, tor) == "BGPPeer tor: declared twice"


@pytest.mark.parametrize("annotations, message", [
    ({calico.AS_ANNOTATION: "sixty"}, "Node node2: annotation projectcalico.org/ASNumber: 'sixty' is not an AS number"),
    ({calico.RR_ANNOTATION: "rack-a"},
     "Node node2: annotation projectcalico.org/RouteReflectorClusterID: 'rack-a' is not an IPv4-formatted cluster ID"),
])
def test_node_annotation_errors(annotations, message):
    assert error(base=nodes(node2=({}, annotations))) == message


def test_selectors():
    labels = {"rack": "a", "route-reflector": "true"}
    for text, expected in [("all()", True), ("rack == 'a'", True), ('rack == "b"', False), ("rack != 'b'", True),
                           ("has(route-reflector)", True), ("!has(route-reflector)", False), ("! has(edge)", True),
                           ("rack == 'a' && has(route-reflector)", True), ("rack == 'a' && !has(route-reflector)", False)]:
        assert calico.selects(calico.parse_selector(text, "x", "y"), labels) is expected, text
    assert calico.parse_selector("", "x", "y") is None


def test_filters_are_ignored():
    cluster = parse(peer("tor", peerIP="172.31.1.254", asNumber=65000, filters=["only-pods"]))
    assert by_ip(calico.node_bgp(cluster, "node1"))["172.31.1.254"]["name"] == "Global_172_31_1_254"


# --- mesh -----------------------------------------------------------------------------------------

def test_mesh_each_node_peers_the_two_others_with_their_as_and_calicos_passive_side():
    cluster = parse(config(asNumber=65001), base=nodes(node3=({}, {calico.AS_ANNOTATION: "65003"})))
    for me in HOSTS:
        bgp = calico.node_bgp(cluster, me, pod_cidr="10.244.1.0/24")
        others = [n for n in HOSTS if n != me]
        assert sorted(by_ip(bgp)) == sorted(IPS[n] for n in others)
        assert bgp["as_number"] == (65003 if me == "node3" else 65001)
        for other in others:
            entry = by_ip(bgp)[IPS[other]]
            assert entry == {"peer_ip": IPS[other], "name": "Mesh_" + IPS[other].replace(".", "_"),
                             "as_number": 65003 if other == "node3" else 65001, "calico_node": True,
                             "source_address": "UseNodeIP"}
        for norm in normalized(bgp):
            assert norm["passive"] is bird.calico_passive(norm["peer_ip"], bgp["router_id"])
            assert norm["source_address"] == bgp["router_id"]
    # of each pair exactly one side is passive
    passive = dict(((me, p["peer_ip"]), p["passive"]) for me in HOSTS for p in normalized(calico.node_bgp(cluster, me)))
    for one in HOSTS:
        for two in HOSTS:
            if one != two:
                assert passive[(one, IPS[two])] != passive[(two, IPS[one])]


def test_mesh_off_without_peers_means_no_peers():
    bgp = calico.node_bgp(parse(config(nodeToNodeMeshEnabled=False)), "node1")
    assert bgp["peers"] == [] and bgp["mesh"] is False


# --- route reflectors -----------------------------------------------------------------------------

def test_route_reflector_clients_peer_only_the_reflectors_and_reflectors_peer_everyone():
    cluster = rr_cluster()
    for client in ("node2", "node3"):
        bgp = calico.node_bgp(cluster, client)
        assert [p["peer_ip"] for p in bgp["peers"]] == [IPS["node1"]]
        assert bgp["peers"][0]["name"] == "Node_172_31_1_11"
        assert bgp["peers"][0]["calico_node"] is False     # Calico: both sides of node peers connect
        assert bgp["route_reflector"] is None
        normalized(bgp)
    rr = calico.node_bgp(cluster, "node1")
    assert sorted(by_ip(rr)) == [IPS["node2"], IPS["node3"]]     # the reverse peerings
    assert rr["route_reflector"] == {"cluster_id": "244.0.0.1", "clients": ["Node_172_31_1_12", "Node_172_31_2_13"]}
    assert all(not n["passive"] for n in normalized(rr))


def test_route_reflectors_do_not_mesh_even_with_the_mesh_on():
    base = nodes(node1=(RR_LABELS, RR_ANN))
    cluster = parse(peer("peer-with-route-reflectors", nodeSelector="all()", peerSelector="route-reflector == 'true'"), base=base)
    assert sorted(by_ip(calico.node_bgp(cluster, "node2"))) == [IPS["node1"], IPS["node3"]]
    assert by_ip(calico.node_bgp(cluster, "node2"))[IPS["node3"]]["name"].startswith("Mesh_")
    assert by_ip(calico.node_bgp(cluster, "node2"))[IPS["node1"]]["name"].startswith("Node_")
    rr = calico.node_bgp(cluster, "node1")
    assert sorted(p["name"] for p in rr["peers"]) == ["Node_172_31_1_12", "Node_172_31_2_13"]


def test_two_reflectors_of_one_cluster_id_are_not_each_others_clients():
    base = nodes(node1=(RR_LABELS, RR_ANN), node2=(RR_LABELS, RR_ANN))
    cluster = parse(config(nodeToNodeMeshEnabled=False),
                    peer("peer-with-route-reflectors", nodeSelector="all()", peerSelector="route-reflector == 'true'"),
                    base=base)
    rr = calico.node_bgp(cluster, "node1")
    assert sorted(by_ip(rr)) == [IPS["node2"], IPS["node3"]]
    assert rr["route_reflector"]["clients"] == ["Node_172_31_2_13"]
    assert sorted(by_ip(calico.node_bgp(cluster, "node3"))) == [IPS["node1"], IPS["node2"]]


# --- global, node-selected and per-node peers ---------------------------------------------------

def test_global_peer_to_a_tor_with_per_rack_as():
    base = nodes(node1=({"rack": "a"}, {calico.AS_ANNOTATION: "65101"}), node2=({"rack": "a"}, {calico.AS_ANNOTATION: "65101"}),
                 node3=({"rack": "b"}, {calico.AS_ANNOTATION: "65102"}))
    tor = peer("tor", peerIP="172.31.1.254", asNumber=65000, keepaliveTime="10s", maxRestartTime="2m", ttlSecurity=1,
               keepOriginalNextHop=True, annotations={calico.PASSWORD_ANNOTATION: "md5pass"})
    cluster = parse(config(nodeToNodeMeshEnabled=False), tor, base=base)
    for me, local_as in (("node1", 65101), ("node2", 65101), ("node3", 65102)):
        bgp = calico.node_bgp(cluster, me, export_filter="podnet_export", import_filter="all")
        assert bgp["as_number"] == local_as
        assert bgp["peers"] == [{"peer_ip": "172.31.1.254", "name": "Global_172_31_1_254", "as_number": 65000,
                                 "calico_node": False, "source_address": "UseNodeIP", "next_hop_mode": "Keep",
                                 "password": "md5pass", "keepalive_time": "10", "max_restart_time": "120",
                                 "ttl_security": 1, "import_filter": "all", "export_filter": "podnet_export"}]
        norm = normalized(bgp)[0]
        assert (norm["local_as_number"], norm["passive"], norm["ttl_security"]) == (local_as, False, 1)
        assert "  password \"md5pass\";" in bird.render_peer(norm, "bgp")


def test_keep_original_next_hop_only_towards_ebgp():
    cluster = parse(peer("ibgp", peerIP="172.31.1.254", asNumber=64512, keepOriginalNextHop=True, sourceAddress="None"))
    entry = calico.node_bgp(cluster, "node1")["peers"]
    entry = [p for p in entry if p["peer_ip"] == "172.31.1.254"][0]
    assert "next_hop_mode" not in entry and entry["source_address"] == "None"


def test_per_rack_tors_by_node_selector():
    base = nodes(node1=({"rack": "a"}, {}), node2=({"rack": "a"}, {}), node3=({"rack": "b"}, {}))
    cluster = parse(config(nodeToNodeMeshEnabled=False),
                    peer("rack-a", peerIP="172.31.1.254", asNumber=65000, nodeSelector="rack == 'a'"),
                    peer("rack-b", peerIP="172.31.2.254:1179", asNumber=65000, nodeSelector="rack == 'b'", nextHopMode="Self"),
                    base=base)
    assert [p["name"] for p in calico.node_bgp(cluster, "node1")["peers"]] == ["Node_172_31_1_254"]
    assert [p["name"] for p in calico.node_bgp(cluster, "node2")["peers"]] == ["Node_172_31_1_254"]
    rack_b = calico.node_bgp(cluster, "node3")
    assert [(p["peer_ip"], p["name"], p["next_hop_mode"]) for p in rack_b["peers"]] == [
        ("172.31.2.254:1179", "Node_172_31_2_254_port_1179", "Self")]
    norm = normalized(rack_b)[0]
    assert (norm["port"], norm["name"]) == (1179, "Node_172_31_2_254_port_1179")


def test_spec_node_limits_to_one_node():
    cluster = parse(peer("node2-only", peerIP="172.31.9.9", asNumber=65009, node="node2", localASNumber=65222))
    assert "172.31.9.9" not in by_ip(calico.node_bgp(cluster, "node1"))
    assert "172.31.9.9" not in by_ip(calico.node_bgp(cluster, "node3"))
    entry = by_ip(calico.node_bgp(cluster, "node2"))["172.31.9.9"]
    assert (entry["name"], entry["local_as_number"]) == ("Node_172_31_9_9", 65222)
    assert bird.normalize(entry, IPS["node2"])["local_as_number"] == 65222


def test_global_peer_selecting_nodes_uses_calicos_passive_side():
    base = nodes(node3=({"edge": "true"}, {}))
    cluster = parse(config(nodeToNodeMeshEnabled=False), peer("to-edge", peerSelector="has(edge)"), base=base)
    for me in ("node1", "node2"):
        bgp = calico.node_bgp(cluster, me)
        assert [(p["name"], p["calico_node"]) for p in bgp["peers"]] == [("Global_172_31_2_13", True)]
        norm = normalized(bgp)[0]
        assert norm["passive"] is bird.calico_passive(IPS["node3"], IPS[me])
    # the edge node gets the reverse peerings with every node (all()), itself skipped
    edge = calico.node_bgp(cluster, "node3")
    assert sorted(p["name"] for p in edge["peers"]) == ["Node_172_31_1_11", "Node_172_31_1_12"]


def test_peer_ip_of_a_calico_node_gets_the_reverse_peering():
    cluster = parse(config(nodeToNodeMeshEnabled=False),
                    peer("n1-n3", peerIP=IPS["node3"], asNumber=64512, node="node1", annotations={calico.PASSWORD_ANNOTATION: "pw"}))
    assert [(p["name"], p.get("password")) for p in calico.node_bgp(cluster, "node1")["peers"]] == [("Node_172_31_2_13", "pw")]
    assert [(p["name"], p.get("password")) for p in calico.node_bgp(cluster, "node3")["peers"]] == [("Node_172_31_1_11", "pw")]
    assert calico.node_bgp(cluster, "node2")["peers"] == []


def test_one_session_per_address_mesh_first():
    cluster = parse(peer("dup", peerIP=IPS["node2"], asNumber=64512, node="node1"))
    peers = calico.node_bgp(cluster, "node1")["peers"]
    assert [p["name"] for p in peers] == ["Mesh_172_31_1_12", "Mesh_172_31_2_13"]


def test_unknown_node():
    with pytest.raises(c.ClusterError) as info:
        calico.node_bgp(parse(), "node9")
    assert str(info.value).startswith("Node node9: not in the cluster")


def test_existing_models_are_unchanged_by_calico_objects():
    plain = c.node_model(parse(), "node1", c.allocate_pod_cidrs(parse(), "10.244.0.0/16"))
    with_bgp = parse(config(asNumber=65001), peer("tor", peerIP="172.31.1.254", asNumber=65000))
    assert c.node_model(with_bgp, "node1", c.allocate_pod_cidrs(with_bgp, "10.244.0.0/16")) == plain
