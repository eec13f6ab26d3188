"""The show view from plain state: a kube-proxy ruleset built by the kubeproxy layer (as
iptables-save prints it), netlink route/link/address views of a crosssubnet node (node1 of the lab:
host-gw to node2, VXLAN to node3, BIRD's routes at metric 32 beneath), two pod namespaces,
``birdc show protocols all`` text; then the text lines and the DOT picture of three nodes."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import show
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text

CIDR = "10.244.0.0/16"
NODE_IP = {"node1": "172.31.1.11", "node2": "172.31.1.12", "node3": "172.31.2.13"}
POD_CIDR = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24", "node3": "10.244.3.0/24"}
MAC3 = "aa:bb:cc:00:00:03"


def svc(name, ip, port=80, proto="TCP", status=None, **spec):
    p = dict(name="http", port=port, protocol=proto)
    if "node_port" in spec:
        p["nodePort"] = spec.pop("node_port")
    out = {"metadata": {"namespace": "default", "name": name}, "spec": dict(spec, clusterIP=ip, ports=[p])}
    if status:
        out["status"] = status
    return out


def slice_(name, ips, port=8080, proto="TCP"):
    return {"metadata": {"namespace": "default", "name": name + "-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": proto}],
            "endpoints": [{"addresses": [ip], "nodeName": node} for ip, node in ips]}


SERVICES = [svc("web", "10.96.0.20", node_port=30080, type="NodePort"), svc("dns", "10.96.0.10", 53, "UDP"),
            svc("empty", "10.96.0.40"),
            svc("lb", "10.96.0.60", node_port=30090, type="LoadBalancer", status={"loadBalancer": {"ingress": [{"ip": "172.31.1.200"}]}})]
SLICES = [slice_("web", [("10.244.1.10", "node1"), ("10.244.2.10", "node2"), ("10.244.3.10", "node3")]),
          slice_("dns", [("10.244.3.53", "node3")], 53, "UDP"),
          slice_("lb", [("10.244.1.10", "node1")])]


def iptables(node):
    rs = build_ruleset(SERVICES, SLICES, {"name": node, "node_ip": NODE_IP[node], "cluster_cidr": CIDR})
    # iptables-save prints addresses with their /32: the parser must take both spellings
    return save_text(rs).replace("-d 10.96.0.20 ", "-d 10.96.0.20/32 ")


def link(index, kind, mac, master=None, peer_index=None, mtu=1500):
    return {"index": index, "kind": kind, "mac": mac, "up": True, "mtu": mtu, "alias": None, "master": master,
            "peer_index": peer_index, "peer_netnsid": 0 if peer_index else None}


def route(dest, dev=None, gateway=None, metric=0, protocol=2, rtype="unicast", table=254, onlink=False, nexthops=None):
    return {"family": 2, "dest": dest, "table": table, "metric": metric, "type": rtype, "protocol": protocol,
            "gateway": gateway, "dev": dev, "onlink": onlink, "src": None, "nexthops": nexthops or []}


def node1_state():
    return {
        "name": "node1", "iptables": iptables("node1"),
        "links": {"lo": link(1, None, "00:00:00:00:00:00"), "eth0": link(2, "veth", "02:00:00:00:01:11", peer_index=40),
                  "cni0": link(4, "bridge", "02:00:00:00:0c:01", mtu=1450),
                  "flannel.1": link(5, "vxlan", "aa:bb:cc:00:00:01", mtu=1450),
                  "veth1a2b3c4d": link(7, "veth", "0e:00:00:00:00:07", master="cni0", peer_index=2),
                  "veth5e6f7a8b": link(8, "veth", "0e:00:00:00:00:08", master="cni0", peer_index=2)},
        "addresses": {"lo": ["127.0.0.1/8"], "eth0": ["172.31.1.11/24", "172.31.1.200/32"],
                      "cni0": ["10.244.1.1/24"], "flannel.1": ["10.244.1.0/32"]},
        "routes": [
            route("0.0.0.0/0", "eth0", "172.31.1.254", protocol=4),
            route("172.31.1.0/24", "eth0", protocol=2),
            route("172.31.2.0/24", "eth0", "172.31.1.254", protocol=4),
            route("10.244.1.0/24", "cni0"),
            route("10.244.2.0/24", "eth0", "172.31.1.12", protocol=150),
            route("10.244.2.0/24", "eth0", "172.31.1.12", metric=32, protocol=12),
            route("10.244.3.0/24", "flannel.1", "10.244.3.0", protocol=150, onlink=True),
            route("10.244.3.0/24", "eth0", "172.31.1.254", metric=32, protocol=12),
            route("10.96.0.0/12", "eth0", "172.31.1.254", metric=32, protocol=12),
            route("10.244.9.0/24", rtype="blackhole"),
            route("172.31.1.11/32", "eth0", rtype="local", table=255),
        ],
        "neighbours": {"flannel.1": {"10.244.3.0": MAC3}, "eth0": {"172.31.1.12": "02:00:00:00:01:12"}},
        "fdb": {"flannel.1": {MAC3: "172.31.2.13"}},
        "vxlan": {"flannel.1": {"vni": 1, "port": 8472, "local": "172.31.1.11", "dev": "eth0", "learning": False}},
        "ip_forward": True, "recent": {},
    }


PODS = {   # what live.read_netlink returns in each pod namespace; eth0 is index 2 in both
    "pod-default-web-1": {
        "links": {"lo": link(1, None, None), "eth0": link(2, "veth", "0a:58:0a:f4:01:0a", peer_index=7)},
        "addresses": {"lo": ["127.0.0.1/8"], "eth0": ["10.244.1.10/24"]},
        "routes": [route("10.244.1.0/24", "eth0"), route("0.0.0.0/0", "eth0", "10.244.1.1")]},
    "pod-kube-system-dns-1": {
        "links": {"lo": link(1, None, None), "eth0": link(2, "veth", "0a:58:0a:f4:01:35", peer_index=8)},
        "addresses": {"eth0": ["10.244.1.53/24"]}, "routes": []},
}

PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     19:20:00.975
Node_172_31_1_12 BGP        ---        up     19:20:01.086  Established
  BGP state:          Established
    Neighbor address: 172.31.1.12
    Neighbor AS:      65001
    Local AS:         65001
Node_172_31_1_254 BGP        ---        start  19:20:52.975  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 172.31.1.254
    Neighbor AS:      65000
    Local AS:         65001
"""


@pytest.fixture(scope="module")
def view():
    return show.node_view("node1", node1_state(), pods=PODS, protocols_text=PROTOCOLS, labels={"172.31.1.200": "eth0:lb"},
                          cluster_cidr=CIDR, uplink="eth0")


def test_uplink_bridge_and_pods_through_their_veth_peers(view):
    assert view["uplink"] == {"dev": "eth0", "address": "172.31.1.11/24"}
    assert view["bridges"] == [{"name": "cni0", "addresses": ["10.244.1.1/24"], "mtu": 1450, "mac": "02:00:00:00:0c:01",
                                "up": True, "ports": ["veth1a2b3c4d", "veth5e6f7a8b"]}]
    assert [(p["netns"], p["name"], p["ifname"], p["address"], p["veth"], p["bridge"], p["gateway"]) for p in view["pods"]] == [
        ("pod-default-web-1", "default/web-1", "eth0", "10.244.1.10/24", "veth1a2b3c4d", "cni0", "10.244.1.1"),
        ("pod-kube-system-dns-1", "kube/system-dns-1", "eth0", "10.244.1.53/24", "veth5e6f7a8b", "cni0", None)]


def test_a_pod_whose_peer_is_not_a_node_veth_has_no_veth():
    state = node1_state()
    pods = {"pod-x": {"links": {"eth0": link(2, "veth", "0a:00:00:00:00:01", peer_index=5)},   # 5: flannel.1
                      "addresses": {"eth0": ["10.244.1.77/24"]}}}
    (pod,) = show.node_view("node1", state, pods=pods)["pods"]
    assert (pod["ifname"], pod["address"], pod["veth"], pod["bridge"]) == ("eth0", "10.244.1.77/24", None, None)


def test_routes_are_classified_direct_vxlan_bgp_local_blackhole(view):
    got = [(r["dest"], r["kind"], r["dev"], r["gateway"], r["metric"], r["protocol"], r["active"]) for r in view["routes"]]
    assert got == [
        ("10.244.1.0/24", "local", "cni0", None, 0, "kernel", True),
        ("10.244.2.0/24", "direct", "eth0", "172.31.1.12", 0, "150", True),
        ("10.244.2.0/24", "bgp", "eth0", "172.31.1.12", 32, "bird", False),
        ("10.244.3.0/24", "vxlan", "flannel.1", "10.244.3.0", 0, "150", True),
        ("10.244.3.0/24", "bgp", "eth0", "172.31.1.254", 32, "bird", False),
        ("10.244.9.0/24", "blackhole", None, None, 0, "kernel", False),
    ]
    vx = view["routes"][3]["vxlan"]
    assert vx == {"vni": 1, "port": 8472, "mac": MAC3, "remote": "172.31.2.13"}


def test_without_cluster_cidr_connected_subnets_and_the_default_are_left_out():
    routes = show.node_view("node1", node1_state())["routes"]
    dests = [r["dest"] for r in routes]
    assert "0.0.0.0/0" not in dests and "172.31.1.0/24" not in dests
    assert "172.31.2.0/24" in dests and "10.96.0.0/12" in dests and "10.244.1.0/24" in dests


def test_vxlan_peers_join_neighbours_and_fdb(view):
    assert view["vxlan"] == [{"dev": "flannel.1", "vni": 1, "port": 8472, "local": "172.31.1.11", "uplink": "eth0",
                              "mac": "aa:bb:cc:00:00:01",
                              "peers": [{"ip": "10.244.3.0", "mac": MAC3, "remote": "172.31.2.13"}]}]
    assert view["neighbours"] == {"flannel.1": {"10.244.3.0": MAC3}}
    assert view["fdb"] == {"flannel.1": {MAC3: "172.31.2.13"}}


def test_services_chains_and_endpoints_from_the_nat_table(view):
    by = dict((s["name"], s) for s in view["services"])
    assert sorted(by) == ["default/dns:http", "default/empty:http", "default/lb:http", "default/web:http"]
    web = by["default/web:http"]
    assert (web["cluster_ip"], web["port"], web["protocol"], web["node_port"]) == ("10.96.0.20", 80, "tcp", 30080)
    assert web["chain"] == kube_chain_name("KUBE-SVC-", "default/web:http", "tcp")
    assert web["external_chain"] == kube_chain_name("KUBE-EXT-", "default/web:http", "tcp")
    assert [(e["address"], e["chance"]) for e in web["endpoints"]] == [
        ("10.244.1.10:8080", 0.3333), ("10.244.2.10:8080", 0.3333), ("10.244.3.10:8080", 0.3333)]
    assert web["endpoints"][0]["chain"] == kube_chain_name("KUBE-SEP-", "default/web:http", "tcp", "10.244.1.10:8080")
    dns = by["default/dns:http"]
    assert (dns["protocol"], dns["port"], [e["address"] for e in dns["endpoints"]]) == ("udp", 53, ["10.244.3.53:53"])
    empty = by["default/empty:http"]
    assert (empty["cluster_ip"], empty["endpoints"], empty["reject"]) == ("10.96.0.40", [], True)
    lb = by["default/lb:http"]
    assert lb["external_ips"] == ["172.31.1.200"] and lb["endpoints"][0]["address"] == "10.244.1.10:8080"


def test_bgp_sessions_and_learned_routes(view):
    sessions = view["bgp"]["sessions"]
    assert [(s["name"], s["state"], s["since"], s["neighbor_address"], s["neighbor_as"]) for s in sessions] == [
        ("Node_172_31_1_12", "Established", "19:20:01.086", "172.31.1.12", "65001"),
        ("Node_172_31_1_254", "Active", "19:20:52.975", "172.31.1.254", "65000")]
    assert [(r["dest"], r["gateway"], r["metric"]) for r in view["bgp"]["routes"]] == [
        ("10.96.0.0/12", "172.31.1.254", 32), ("10.244.2.0/24", "172.31.1.12", 32), ("10.244.3.0/24", "172.31.1.254", 32)]


def test_vips_are_the_uplinks_extra_32s_with_their_label(view):
    assert view["vips"] == [{"address": "172.31.1.200", "dev": "eth0", "label": "eth0:lb", "owner": "node1"}]


def test_ip_json_shapes_are_read_too():
    """Routes and addresses as `ip -json` prints them (protocol names, dst, addr_info)."""
    state = {"routes": [{"dst": "10.244.3.0/24", "gateway": "172.31.1.254", "dev": "eth0", "protocol": "bird",
                         "metric": 32, "flags": []},
                        {"dst": "default", "gateway": "172.31.1.254", "dev": "eth0"}],
             "addresses": [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "172.31.1.11", "prefixlen": 24}]}]}
    v = show.node_view("n", state, cluster_cidr=CIDR)
    assert v["uplink"] == {"dev": "eth0", "address": "172.31.1.11/24"}
    assert [(r["dest"], r["kind"], r["active"]) for r in v["routes"]] == [("10.244.3.0/24", "bgp", True)]


def test_text_lines_like_the_seeds(view):
    lines = show.text_lines(view)
    assert lines[0] == "node1  eth0 172.31.1.11/24"
    assert lines[1] == "  bridge cni0 10.244.1.1/24 mtu 1450, 2 port(s)"
    assert lines[2].split() == ["pod", "default/web-1", "10.244.1.10", "eth0", "<->", "veth1a2b3c4d", "@", "cni0"]
    assert "  route 10.244.2.0/24 via 172.31.1.12 dev eth0 (direct, host-gw)" in lines
    assert "  route 10.244.2.0/24 via 172.31.1.12 dev eth0 metric 32 (BGP, proto bird, standby)" in lines
    assert "  route 10.244.3.0/24 via flannel.1 (VXLAN VNI 1 -> 172.31.2.13)" in lines
    assert "    10.244.3.0 %s -> 172.31.2.13" % MAC3 in lines
    assert ("  service default/web:http 10.96.0.20:80/tcp -> 10.244.1.10:8080 (33.3%) 10.244.2.10:8080 (33.3%) "
            "10.244.3.10:8080 (33.3%)  [nodePort 30080]") in lines
    assert "  service default/empty:http 10.96.0.40:80/tcp -> no endpoints (REJECT)" in lines
    assert "  bgp Node_172_31_1_12 Established since 19:20:01.086 (172.31.1.12 AS 65001)" in lines
    assert "  vip 172.31.1.200 on eth0 (eth0:lb) owner node1" in lines


def _peer_view(name, index):
    ip = NODE_IP[name]
    state = {"links": {"eth0": link(2, "veth", None), "flannel.1": link(5, "vxlan", None)},
             "addresses": {"eth0": [ip + "/24"]},
             "vxlan": {"flannel.1": {"vni": 1, "port": 8472, "local": ip, "dev": "eth0"}},
             "neighbours": {"flannel.1": {"10.244.1.0": "aa:bb:cc:00:00:01"}},
             "fdb": {"flannel.1": {"aa:bb:cc:00:00:01": "172.31.1.11"}},
             "routes": [route("10.244.1.0/24", "eth0", "172.31.1.11")] if index == 2 else []}
    text = "Node_172_31_1_11 BGP --- up 19:20:01.086 Established\n  BGP state: Established\n" \
           "    Neighbor address: 172.31.1.11\n" if index == 2 else ""
    return show.node_view(name, state, protocols_text=text, cluster_cidr=CIDR)


def test_dot_draws_nodes_pods_tunnels_sessions_and_vips(view):
    views = {"node1": view, "node2": _peer_view("node2", 2), "node3": _peer_view("node3", 3)}
    text = show.dot(views)
    assert text.startswith('digraph "podnet" {') and text.rstrip().endswith("}")
    assert text.count("subgraph") == 3
    assert '"node1/pod-default-web-1" -> "node1/cni0" [dir=none, label="veth1a2b3c4d"];' in text
    # one VXLAN edge per pair of VTEPs, whichever side lists it
    assert text.count('"node1" -> "node3" [dir=both, style=dashed') == 1
    assert '"node3" -> "node1"' not in text
    # one BGP edge per session pair; a peer outside the views gets its own node
    assert text.count("label=\"BGP Established\"") == 1
    assert '"peer 172.31.1.254"' in text and 'label="BGP Active"' in text
    # host-gw: one edge per pair of nodes routing to each other's pods through their addresses
    assert text.count('"node1" -> "node2" [dir=both, color=darkgreen, label="host-gw"];') == 1
    assert '"node2" -> "node1" [dir=both, color=darkgreen' not in text
    assert '"node1" -> "vip 172.31.1.200" [label="owner"];' in text


def test_dot_quotes_what_it_prints():
    v = show.node_view('we"ird', {"addresses": {"eth0": ["10.0.0.1/24"]}})
    assert '"we\\"ird"' in show.dot({'we"ird': v})
