"""podnet.fabric.node_view on a real "node": a namespace with an uplink (a veth to a "remote"
namespace, a VIP /32 with its label on it), a bridge cni0, two pod namespaces on it by veth, a
flannel-style VXLAN device with a permanent neighbour and FDB entry and a route through it, a host-gw
route, a route "proto bird metric 32", and kube-proxy's ruleset built by the kubeproxy layer
(iptables-nft). The view is compared with `ip -json`, `bridge -json fdb` and `iptables-save` in
those namespaces, never with the code under test."""
from __future__ import annotations

import ipaddress
import re
import sys

import pytest

from conftest import REPO, ip_json, sh, unique

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text  # noqa: E402

CLUSTER = "10.244.0.0/16"
NODE_IP, REMOTE_IP, VIP, VTEP3 = "192.168.77.1", "192.168.77.2", "192.168.77.100", "192.168.77.3"
MAC3 = "aa:bb:cc:00:00:03"
PODS = ("10.244.1.5", "10.244.1.6")


def _objects():
    def svc(name, ip, **spec):
        return {"metadata": {"namespace": "default", "name": name},
                "spec": dict(spec, clusterIP=ip, ports=[dict({"name": "http", "port": 80, "protocol": "TCP"},
                                                             **({"nodePort": 30080} if spec else {}))])}
    slices = [{"metadata": {"namespace": "default", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "endpoints": [{"addresses": [ip]} for ip in PODS + ("10.244.3.10",)],
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    return [svc("web", "10.96.0.20", type="NodePort"), svc("empty", "10.96.0.21")], slices


@pytest.fixture
def node(netns_factory):
    """(node netns, [pod netns], pod prefix)."""
    prefix = unique("pnt-") + "-"
    node, remote = netns_factory("pnt-vn"), netns_factory("pnt-vr")
    pods = [netns_factory(prefix) for _ip in PODS]
    sh("ip", "link", "add", "upl0", "netns", node, "type", "veth", "peer", "name", "upr0", "netns", remote)
    sh("ip", "addr", "add", NODE_IP + "/24", "dev", "upl0", netns=node)
    sh("ip", "addr", "add", VIP + "/32", "dev", "upl0", "label", "upl0:lb", netns=node)
    sh("ip", "addr", "add", REMOTE_IP + "/24", "dev", "upr0", netns=remote)
    sh("ip", "link", "set", "upr0", "up", netns=remote)
    sh("ip", "link", "add", "cni0", "type", "bridge", netns=node)
    sh("ip", "addr", "add", "10.244.1.1/24", "dev", "cni0", netns=node)
    for i, (pod, ip) in enumerate(zip(pods, PODS)):
        veth = "veth%s" % unique("")[:6] + str(i)
        sh("ip", "link", "add", veth, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "link", "set", veth, "master", "cni0", "up", netns=node)
        sh("ip", "addr", "add", ip + "/24", "dev", "eth0", netns=pod)
        sh("ip", "link", "set", "eth0", "up", netns=pod)
        sh("ip", "route", "add", "default", "via", "10.244.1.1", netns=pod)
    for dev in ("upl0", "cni0"):
        sh("ip", "link", "set", dev, "up", netns=node)
    sh("ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", NODE_IP, "dev", "upl0", "dstport", "8472",
       "nolearning", netns=node)
    sh("ip", "addr", "add", "10.244.1.0/32", "dev", "flannel.1", netns=node)
    sh("ip", "link", "set", "flannel.1", "up", netns=node)
    sh("ip", "neigh", "replace", "10.244.3.0", "lladdr", MAC3, "dev", "flannel.1", "nud", "permanent", netns=node)
    sh("bridge", "fdb", "append", MAC3, "dev", "flannel.1", "dst", VTEP3, "self", "permanent", netns=node)
    sh("ip", "route", "add", "10.244.3.0/24", "via", "10.244.3.0", "dev", "flannel.1", "onlink", netns=node)
    sh("ip", "route", "add", "10.244.2.0/24", "via", REMOTE_IP, "dev", "upl0", netns=node)
    sh("ip", "route", "add", "10.244.4.0/24", "via", REMOTE_IP, "dev", "upl0", "proto", "bird", "metric", "32", netns=node)
    sh("ip", "route", "add", "default", "via", REMOTE_IP, netns=node)
    services, slices = _objects()
    rs = build_ruleset(services, slices, {"name": "node", "node_ip": NODE_IP, "cluster_cidr": CLUSTER})
    sh("iptables-nft-restore", netns=node, input=save_text(rs))
    return node, pods, prefix


def task(node, **more):
    return {"podnet.fabric.node_view": dict(netns=node, name="node1", cluster_cidr=CLUSTER, iptables_flavour="nft",
                                            bird_socket="/nonexistent/bird.ctl", **more)}


def kernel_routes(ns):
    """Main-table routes inside the cluster CIDR as `ip -json route` prints them."""
    out = []
    for r in ip_json("route", "show", "table", "main", netns=ns):
        dst = r["dst"] if "/" in r["dst"] else r["dst"] + "/32"
        if r["dst"] != "default" and ipaddress.ip_network(dst).subnet_of(ipaddress.ip_network(CLUSTER)):
            out.append((dst, r.get("dev"), r.get("gateway"), r.get("metric", 0), r.get("protocol", "boot")))
    return sorted(out)


def kernel_services(ns):
    """{service port: (cluster IP, port, [DNAT destinations])} from `iptables-save -t nat`."""
    text = sh("iptables-nft-save", "-t", "nat", netns=ns)
    dnat = dict(re.findall(r"^-A (KUBE-SEP-\S+) .*--to-destination (\S+)", text, re.M))
    out = {}
    for line in re.findall(r"^-A KUBE-SERVICES .*cluster IP.*$", text, re.M):
        name = re.search(r'--comment "(\S+) cluster IP"', line).group(1)
        ip = re.search(r"-d (\S+?)(?:/32)? ", line).group(1)
        port = re.search(r"--dport (\d+)", line).group(1)
        chain = re.search(r"-j (KUBE-SVC-\S+)", line).group(1)
        seps = re.findall(r"^-A %s .*-j (KUBE-SEP-\S+)" % re.escape(chain), text, re.M)
        out[name] = (ip, int(port), [dnat[s] for s in seps])
    return out


def test_node_view_matches_ip_json_and_iptables_save(node, playbook):
    ns, pods, prefix = node
    run = playbook([task(ns, namespaces=pods, netns_prefix=prefix), task(ns, netns_prefix=prefix)], check=True)
    assert not run.failed, run
    listed, found = run.results
    assert not listed["changed"] and listed["iptables_flavour"] == "nft"
    view = listed["view"]
    assert found["view"]["pods"] == view["pods"]          # the default: every netns with the prefix

    # pods: their eth0 address, the node's veth whose index is eth0's peer, that veth's bridge
    node_links = dict((lk["ifindex"], lk) for lk in ip_json("link", "show", netns=ns))
    expected = []
    for pod in pods:
        (eth0,) = ip_json("link", "show", "eth0", netns=pod)
        (addr,) = ip_json("-4", "addr", "show", "eth0", netns=pod)
        info = addr["addr_info"][0]
        veth = node_links[eth0["link_index"]]
        expected.append((pod, "%s/%d" % (info["local"], info["prefixlen"]), veth["ifname"], veth["master"]))
    assert [(p["netns"], p["address"], p["veth"], p["bridge"]) for p in view["pods"]] == sorted(expected)
    assert all(p["gateway"] == "10.244.1.1" and p["ifname"] == "eth0" for p in view["pods"])
    (cni0,) = ip_json("-4", "addr", "show", "cni0", netns=ns)
    assert view["bridges"][0]["addresses"] == ["%s/%d" % (a["local"], a["prefixlen"]) for a in cni0["addr_info"]]
    assert sorted(view["bridges"][0]["ports"]) == sorted(e[2] for e in expected)

    # routes and how they are reached
    got = sorted((r["dest"], r["dev"], r["gateway"], r["metric"], r["protocol"]) for r in view["routes"])
    assert got == kernel_routes(ns)
    kinds = dict((r["dest"], r["kind"]) for r in view["routes"])
    assert kinds == {"10.244.1.0/24": "local", "10.244.2.0/24": "direct", "10.244.3.0/24": "vxlan", "10.244.4.0/24": "bgp"}
    vx = next(r for r in view["routes"] if r["kind"] == "vxlan")["vxlan"]
    (link,) = ip_json("-d", "link", "show", "flannel.1", netns=ns)
    assert (vx["vni"], vx["port"]) == (link["linkinfo"]["info_data"]["id"], link["linkinfo"]["info_data"]["port"])
    assert (vx["mac"], vx["remote"]) == (MAC3, VTEP3)
    assert view["bgp"]["routes"] == [{"dest": "10.244.4.0/24", "gateway": REMOTE_IP, "dev": "upl0", "metric": 32,
                                      "nexthops": []}]
    assert view["bgp"]["sessions"] == []

    # neighbours and FDB of the VXLAN device
    neigh = dict((n["dst"], n["lladdr"]) for n in ip_json("neigh", "show", "dev", "flannel.1", netns=ns) if n.get("lladdr"))
    fdb = dict((e["mac"], e["dst"]) for e in
               __import__("json").loads(sh("bridge", "-n", ns, "-json", "fdb", "show", "dev", "flannel.1") or "[]")
               if e.get("dst"))
    assert view["neighbours"] == {"flannel.1": neigh} and view["fdb"] == {"flannel.1": fdb}
    assert view["vxlan"][0]["peers"] == [{"ip": "10.244.3.0", "mac": MAC3, "remote": VTEP3}]

    # Services against iptables-save
    kernel = kernel_services(ns)
    mine = dict((s["name"], (s["cluster_ip"], s["port"], [e["address"] for e in s["endpoints"]]))
                for s in view["services"] if s["chain"])
    assert mine == kernel and set(kernel) == {"default/web:http"}
    web = next(s for s in view["services"] if s["name"] == "default/web:http")
    assert web["node_port"] == 30080 and [e["chance"] for e in web["endpoints"]] == [0.3333, 0.3333, 0.3333]
    empty = next(s for s in view["services"] if s["name"] == "default/empty:http")
    assert empty["reject"] and empty["endpoints"] == [] and empty["cluster_ip"] == "10.96.0.21"

    # the VIP, its label, its owner
    (upl0,) = ip_json("-4", "addr", "show", "upl0", netns=ns)
    vips = [(a["local"], a.get("label")) for a in upl0["addr_info"] if a["prefixlen"] == 32]
    assert [(v["address"], v["label"]) for v in view["vips"]] == vips == [(VIP, "upl0:lb")]
    assert view["vips"][0]["owner"] == "node1" and view["uplink"] == {"dev": "upl0", "address": NODE_IP + "/24"}

    text = listed["text"]
    assert text[0] == "node1  upl0 %s/24" % NODE_IP
    for pod, addr, veth, _bridge in expected:
        assert any(line.split()[2:] == [addr.split("/")[0], "eth0", "<->", veth, "@", "cni0"] for line in text), text
    assert "  route 10.244.3.0/24 via flannel.1 (VXLAN VNI 1 -> %s)" % VTEP3 in text
