"""The ToR router's neighbors and settings from Calico's objects (AS per rack, per-rack BGPPeers
with MD5 passwords pointing at the router's rack address), as frr.render takes them."""
from __future__ import annotations

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.filter import tor
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c
from ansible_collections.podnet.fabric.plugins.module_utils import frr

HOSTS = ["node1", "node2", "node3"]
IPS = {"node1": "172.31.1.11", "node2": "172.31.1.12", "node3": "172.31.2.13"}
RACKS = {"node1": "a", "node2": "a", "node3": "b"}
RACK_AS = {"a": "65001", "b": "65002"}
ROUTER = ["172.31.1.254", "172.31.2.254"]


def node(name, as_number=True, zone=True):
    labels = {"kubernetes.io/hostname": name, "rack": RACKS[name]}
    if zone:
        labels["topology.kubernetes.io/zone"] = "rack-" + RACKS[name]
    annotations = {c.NODE_ADDRESS_ANNOTATION: IPS[name] + "/24"}
    if as_number:
        annotations["projectcalico.org/ASNumber"] = RACK_AS[RACKS[name]]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels, "annotations": annotations}}


def peer(name, password=None, **spec):
    obj = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}
    if password:
        obj["metadata"]["annotations"] = {"podnet.fabric/password": password}
    return obj


def rack_peers(**extra):
    return [peer("tor-rack-a", "rack-a-Secret", nodeSelector="rack == 'a'", peerIP="172.31.1.254", asNumber=65000, **extra),
            peer("tor-rack-b", "rack-b-Secret", nodeSelector="rack == 'b'", peerIP="172.31.2.254", asNumber=65000, **extra)]


CONFIG = {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
          "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": False,
                   "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "serviceExternalIPs": [{"cidr": "172.31.50.0/24"}],
                   "serviceLoadBalancerIPs": [{"cidr": "172.31.1.240/29"}]}}


def objects(*extra, nodes=None):
    return (nodes if nodes is not None else [node(n) for n in HOSTS]) + [CONFIG] + list(extra)


def test_as_per_rack_peers_become_neighbors_with_rack_password_and_bfd():
    got = tor.tor_neighbors(objects(*rack_peers()), ROUTER, HOSTS, as_number=65000)
    assert got == [
        {"name": "node1", "address": "172.31.1.11", "as_number": 65001, "bfd": True, "password": "rack-a-Secret", "rack": "rack-a"},
        {"name": "node2", "address": "172.31.1.12", "as_number": 65001, "bfd": True, "password": "rack-a-Secret", "rack": "rack-a"},
        {"name": "node3", "address": "172.31.2.13", "as_number": 65002, "bfd": True, "password": "rack-b-Secret", "rack": "rack-b"},
    ]
    # ... straight into frr.render: one neighbor per node, each in its rack's AS, with its rack's password.
    text = frr.render({"hostname": "router", "as_number": 65000, "router_id": "172.31.1.254"}, got,
                      tor.tor_settings(objects(), "10.244.0.0/16"))
    assert " neighbor 172.31.2.13 remote-as 65002\n" in text and " neighbor 172.31.2.13 password rack-b-Secret\n" in text
    assert " neighbor 172.31.1.12 description node2 rack rack-a\n" in text


def test_only_nodes_peering_with_one_of_the_router_addresses():
    # Rack A's router address only: node3 peers with 172.31.2.254, which is not this router's.
    got = tor.tor_neighbors(objects(*rack_peers()), ["172.31.1.254/24"])
    assert [n["name"] for n in got] == ["node1", "node2"]
    # A global BGPPeer (every node) towards another router, and no BGPPeer at all: nothing here.
    other = peer("upstream", peerIP="172.31.100.1", asNumber=65100)
    assert tor.tor_neighbors(objects(other), ROUTER) == []


def test_local_as_number_is_what_the_node_presents_and_defaults():
    # localASNumber on the BGPPeer wins over the node's AS; without annotations the global AS.
    peers = [peer("tor", peerIP="172.31.1.254", asNumber=65000, localASNumber=64999)]
    got = tor.tor_neighbors(objects(*peers), ROUTER)
    assert [(n["name"], n["as_number"]) for n in got] == [("node1", 64999), ("node2", 64999), ("node3", 64999)]
    bare = [node(n, as_number=False, zone=False) for n in HOSTS]
    got = tor.tor_neighbors(objects(peer("tor", peerIP="172.31.1.254", asNumber=65000), nodes=bare), ROUTER, bfd=False)
    assert got[0] == {"name": "node1", "address": "172.31.1.11", "as_number": 64512, "bfd": False}


def test_settings_from_the_default_bgp_configuration():
    assert tor.tor_settings(objects(), "10.244.0.0/16", 24) == {
        "cluster_cidr": "10.244.0.0/16", "cluster_node_prefix": 24,
        "service_cidrs": ["10.96.0.0/12", "172.31.50.0/24"], "load_balancer_cidrs": ["172.31.1.240/29"]}
    empty = tor.tor_settings([node(n) for n in HOSTS], "10.244.0.0/16")
    assert empty["service_cidrs"] == [] and empty["load_balancer_cidrs"] == []


def test_manifest_paths_like_the_other_cluster_filters(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objects(*rack_peers())))
    assert tor.tor_neighbors([], ROUTER, manifests=[str(path)]) == tor.tor_neighbors(objects(*rack_peers()), ROUTER)
    assert tor.tor_settings(None, "10.244.0.0/16", manifests=str(path))["load_balancer_cidrs"] == ["172.31.1.240/29"]


@pytest.mark.parametrize("objs, addresses, kwargs, message", [
    (objects(*rack_peers()), ROUTER, {"as_number": 65009},
     "tor_neighbors: Node node1: its BGPPeer expects AS 65000 at 172.31.1.254, but the router is AS 65009"),
    (objects(peer("a", peerIP="172.31.1.254", asNumber=65000), peer("b", peerIP="172.31.2.254", asNumber=65000)), ROUTER, {},
     "tor_neighbors: Node node1: peers with the router at 172.31.1.254 and 172.31.2.254; the router keeps one session"),
    (objects(peer("a", peerIP="172.31.1.254:1179", asNumber=65000)), ROUTER, {},
     "tor_neighbors: Node node1: peers with the router at 172.31.1.254 port 1179; the router listens on port 179"),
    (objects(), ["router"], {}, "tor_neighbors: router address 'router' is not an IPv4 address"),
    (objects(), [], {}, "tor_neighbors: the router's addresses are required"),
    (objects(), ROUTER, {"hosts": ["node1", "node2"]}, "tor_neighbors: Node node3: no inventory host of that name"),
    (objects(peer("tor", peerIP="172.31.1.254")), ROUTER, {}, "tor_neighbors: BGPPeer tor: spec.asNumber is required"),
])
def test_errors_are_one_line_naming_the_object(objs, addresses, kwargs, message):
    with pytest.raises(AnsibleFilterError) as info:
        tor.tor_neighbors(objs, addresses, **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)


def test_filter_names():
    assert sorted(tor.FilterModule().filters()) == ["tor_neighbors", "tor_settings"]
