# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small deterministic helpers the roles share (no netaddr needed on the controller)."""
from __future__ import annotations

import hashlib
import ipaddress

from ansible.errors import AnsibleFilterError


def pod_cidrs(nodes, cluster_cidr, node_prefix=24, hostvars=None):
    """{node: pod CIDR}: a node's own ``pod_cidr`` (Kubernetes Node.spec.podCIDR) when its
    inventory sets one, else the i-th /node_prefix of ``cluster_cidr`` in inventory order (append
    new nodes at the end to keep existing allocations). Explicit ones are never handed out twice."""
    try:
        cluster = ipaddress.ip_network(cluster_cidr, strict=True)
    except ValueError as exc:
        raise AnsibleFilterError("pod_cidrs: cluster CIDR %r is not a valid network: %s" % (cluster_cidr, exc))
    node_prefix = int(node_prefix)
    if node_prefix < cluster.prefixlen:
        raise AnsibleFilterError("pod_cidrs: node prefix /%d is larger than the cluster CIDR %s" % (node_prefix, cluster))
    explicit = {}
    for node in nodes:
        value = (hostvars or {}).get(node, {}).get("pod_cidr")
        if value:
            try:
                net = ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                raise AnsibleFilterError("pod_cidrs: node %s pod_cidr %r is not a valid network: %s" % (node, value, exc))
            if not net.subnet_of(cluster):
                raise AnsibleFilterError("pod_cidrs: node %s pod_cidr %s is outside the cluster CIDR %s" % (node, net, cluster))
            explicit[node] = net
    blocks = cluster.subnets(new_prefix=node_prefix)
    out = {}
    for node in nodes:
        if node in explicit:
            out[node] = str(explicit[node])
            continue
        for block in blocks:
            if not any(block.overlaps(e) for e in explicit.values()):
                out[node] = str(block)
                break
        else:
            raise AnsibleFilterError("pod_cidrs: cluster CIDR %s has no /%d left for node %s" % (cluster, node_prefix, node))
    seen = {}
    for node, cidr in out.items():
        if cidr in seen:
            raise AnsibleFilterError("pod_cidrs: nodes %s and %s both have pod CIDR %s" % (seen[cidr], node, cidr))
        seen[cidr] = node
    return out


def nth_address(cidr, n, with_prefix=False):
    """The n-th address of a network (0 = network address): ``'10.244.1.0/24' | nth_address(1)``."""
    net = ipaddress.ip_network(cidr, strict=False)
    ip = net.network_address + int(n)
    if ip not in net:
        raise AnsibleFilterError("nth_address: %s has no address number %s" % (net, n))
    return "%s/%d" % (ip, net.prefixlen) if with_prefix else str(ip)


def veth_name(pod_id, prefix="veth"):
    """A stable host-side veth name for a pod id (CNI uses veth + 8 random hex characters)."""
    return "%s%s" % (prefix, hashlib.sha256(str(pod_id).encode()).hexdigest()[:8])


def stable_mac(seed):
    """A locally administered unicast MAC derived from ``seed`` (stable across re-creation)."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    first = (digest[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in (first,) + tuple(digest[1:6]))


def same_subnet(ip, cidr):
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def _netns_name(prefix, namespace, name):
    text = "%s%s-%s" % (prefix, namespace, name)
    return text if len(text) <= 255 else "%s%s" % (prefix, hashlib.sha256(text.encode()).hexdigest()[:32])


def pods_on(pods, node, netns_prefix="pod-"):
    """The pods of ``pods`` (Kubernetes-style entries: name, namespace, labels, nodeName, ip,
    containers[].ports[].containerPort) scheduled on ``node``, normalized with the names the
    node uses for them: id (namespace/name), netns, veth."""
    out = []
    seen = set()
    for pod in pods or []:
        if not isinstance(pod, dict) or not pod.get("name"):
            raise AnsibleFilterError("pods_on: every pod needs a name: %r" % (pod,))
        if pod.get("nodeName") is None:
            raise AnsibleFilterError("pods_on: pod %s has no nodeName" % pod["name"])
        if pod["nodeName"] != node:
            continue
        namespace = pod.get("namespace") or "default"
        pod_id = "%s/%s" % (namespace, pod["name"])
        if pod_id in seen:
            raise AnsibleFilterError("pods_on: pod %s is declared twice" % pod_id)
        seen.add(pod_id)
        ports = []
        for container in pod.get("containers") or []:
            for port in container.get("ports") or []:
                ports.append({"containerPort": int(port["containerPort"]), "protocol": port.get("protocol", "TCP"),
                              "name": port.get("name")})
        out.append({
            "id": pod_id,
            "name": pod["name"],
            "namespace": namespace,
            "labels": pod.get("labels") or {},
            "ip": pod.get("ip"),
            "netns": _netns_name(netns_prefix, namespace, pod["name"]),
            "veth": veth_name(pod_id),
            "ports": ports,
        })
    return out


def pod_veths(pods, addresses, prefixlen, bridge, mtu, gateway, hairpin=True):
    """podnet.fabric.veth entries for ``pods`` (from pods_on) with their IPAM addresses."""
    return [{
        "name": pod["veth"],
        "peer": "eth0",
        "peer_netns": pod["netns"],
        "addresses": ["%s/%s" % (addresses[pod["id"]], prefixlen)],
        "mac": stable_mac("pod/" + pod["id"]),
        "mtu": int(mtu),
        "bridge": bridge,
        "hairpin": bool(hairpin),
        "gateway": gateway,
    } for pod in pods]


def pick(mapping, keys):
    """The entries of ``keys`` that ``mapping`` has and that are not None."""
    return dict((k, mapping[k]) for k in keys if mapping.get(k) is not None)


def with_addresses(pods, addresses):
    """pods_on() entries with their allocated ``podIP`` (Kubernetes' status.podIP)."""
    return [dict(pod, podIP=addresses.get(pod["id"])) for pod in pods]


def route_peers(nodes, me, hostvars, pod_cidrs, my_subnet):
    """The other nodes as pod_routing needs them: node_ip, pod_cidr, tunnel IP and VTEP MAC,
    and whether they share this node's segment ``my_subnet``."""
    out = []
    for peer in nodes:
        if peer == me:
            continue
        node_ip = (hostvars.get(peer) or {}).get("node_ip")
        if not node_ip:
            raise AnsibleFilterError("route_peers: node %s has no node_ip in the inventory" % peer)
        cidr = (pod_cidrs or {}).get(peer)
        if not cidr:
            raise AnsibleFilterError("route_peers: node %s has no pod CIDR (did podnet.fabric.pod_network run on it?)" % peer)
        out.append({
            "name": peer,
            "node_ip": node_ip,
            "pod_cidr": cidr,
            "vtep_ip": nth_address(cidr, 0),
            "vtep_mac": stable_mac("vtep/" + peer),
            "same_subnet": same_subnet(node_ip, my_subnet),
        })
    return out


def vtep_peer(peer):
    """A podnet.fabric.vxlan peer entry for a node (from pod_routing's peer list)."""
    return {"mac": peer["vtep_mac"], "remote": peer["node_ip"], "ip": peer["vtep_ip"]}


def direct_route(peer, uplink):
    """host-gw: the peer's pod CIDR via its node IP on the shared segment."""
    return {"dest": peer["pod_cidr"], "gateway": peer["node_ip"], "dev": uplink}


def tunnel_route(peer, vtep):
    """vxlan: the peer's pod CIDR via its tunnel address, onlink on the VTEP (flannel's way)."""
    return {"dest": peer["pod_cidr"], "gateway": peer["vtep_ip"], "dev": vtep, "onlink": True}


def served_pods(pods):
    """What the pod_workload server needs of pods_on() entries with TCP container ports."""
    out = []
    for pod in pods or []:
        ports = sorted(set(p["containerPort"] for p in pod.get("ports") or [] if p.get("protocol", "TCP") == "TCP"))
        if ports:
            out.append({"id": pod["id"], "netns": pod["netns"], "ports": ports})
    return out


class FilterModule(object):
    def filters(self):
        return {
            "pod_cidrs": pod_cidrs,
            "nth_address": nth_address,
            "veth_name": veth_name,
            "stable_mac": stable_mac,
            "same_subnet": same_subnet,
            "pods_on": pods_on,
            "pod_veths": pod_veths,
            "pick": pick,
            "served_pods": served_pods,
            "route_peers": route_peers,
            "vtep_peer": vtep_peer,
            "direct_route": direct_route,
            "tunnel_route": tunnel_route,
            "with_addresses": with_addresses,
        }
