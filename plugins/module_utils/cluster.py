# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster model, computed once on the controller from Kubernetes objects and what the nodes
report (the way the controller-manager and kube-proxy compute theirs from the API server).

Pure functions, no Ansible: objects (Node, Pod, Service manifests as ``kubectl get -o yaml``
prints them) and node reports in, one node's slice of the model out::

    cluster = parse_objects(objects, hosts=["node1", "node2"])
    cidrs = allocate_pod_cidrs(cluster, "10.244.0.0/16", 24, reports)
    model = node_model(cluster, "node1", cidrs, reports)

Fields honoured (everything else in a manifest is accepted and ignored):

- Node: ``metadata.name``, ``metadata.labels``, ``spec.podCIDR`` / ``spec.podCIDRs`` (pinned
  block), ``status.addresses[type=InternalIP]``, annotation ``projectcalico.org/IPv4Address``
  (``ip/prefix``: the node's address and its subnet, for cross-subnet decisions, as Calico).
- Pod: ``metadata.name``, ``metadata.namespace``, ``metadata.labels``, annotation
  ``cni.projectcalico.org/ipAddrs`` (a JSON list with one IPv4 address: a fixed pod IP),
  ``spec.nodeName`` (required: nothing schedules here), ``spec.containers[].ports[]``.
- Service (kept for the services work): ``metadata``, ``spec.selector``, ``spec.ports``,
  ``spec.type``, ``spec.clusterIP``; endpoints are the selected pods.

Fields we would misread are errors (``spec.hostNetwork: true``, a pod without a node, a node
without a name ...): :class:`ClusterError` with one line naming the object and the reason.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json

IP_ADDRS_ANNOTATION = "cni.projectcalico.org/ipAddrs"
NODE_ADDRESS_ANNOTATION = "projectcalico.org/IPv4Address"
KINDS = ("Node", "Pod", "Service")


class ClusterError(ValueError):
    """Bad input: the message is one line naming the object and the reason."""


# --- small helpers --------------------------------------------------------------------------------

def stable_mac(seed):
    """A locally administered unicast MAC derived from ``seed`` (stable across re-creation)."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    first = (digest[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in (first,) + tuple(digest[1:6]))


def veth_name(pod_id, prefix="veth"):
    """A stable host-side veth name for a pod id (CNI uses veth + 8 random hex characters)."""
    return "%s%s" % (prefix, hashlib.sha256(str(pod_id).encode()).hexdigest()[:8])


def netns_name(prefix, namespace, name):
    text = "%s%s-%s" % (prefix, namespace, name)
    return text if len(text) <= 255 else "%s%s" % (prefix, hashlib.sha256(text.encode()).hexdigest()[:32])


def _ordinal(n):
    return "%d%s" % (n, {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th"))


def _mapping(value, what, label):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClusterError("%s: %s must be a mapping, got %s" % (label, what, type(value).__name__))
    return value


def _string_map(value, what, label):
    out = {}
    for key, val in _mapping(value, what, label).items():
        if isinstance(val, (dict, list)) or val is None:
            raise ClusterError("%s: %s %s must be a string" % (label, what, key))
        out[str(key)] = val if isinstance(val, str) else json.dumps(val) if isinstance(val, bool) else str(val)
    return out


def _network(value, what, label):
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ClusterError("%s: %s %r is not a network: %s" % (label, what, value, exc))
    if net.version != 4:
        raise ClusterError("%s: %s %s is IPv6, only IPv4 is supported" % (label, what, net))
    return net


# --- parsing --------------------------------------------------------------------------------------

class Cluster(object):
    """Parsed objects: ``nodes`` (inventory order), ``pods`` and ``services`` (as declared)."""

    def __init__(self, nodes, pods, services):
        self.nodes = nodes
        self.pods = pods
        self.services = services

    def node(self, name):
        for node in self.nodes:
            if node["name"] == name:
                return node
        raise ClusterError("Node %s: not in the cluster (nodes: %s)" % (name, ", ".join(n["name"] for n in self.nodes)))


def flatten(objects):
    """Objects as a flat list: ``kind: List`` (what ``kubectl get -o yaml`` prints for several
    objects) is unpacked, None (an empty YAML document) dropped."""
    out = []
    for obj in objects or []:
        if obj is None:
            continue
        if isinstance(obj, dict) and obj.get("kind") == "List":
            out.extend(flatten(obj.get("items")))
        else:
            out.append(obj)
    return out


def _label(kind, metadata, index, namespaced):
    name = metadata.get("name")
    if not name:
        return "%s (the %s %s object)" % (kind, _ordinal(index), kind)
    if namespaced:
        return "%s %s/%s" % (kind, metadata.get("namespace") or "default", name)
    return "%s %s" % (kind, name)


def parse_objects(objects, hosts=None):
    """Validate manifests and return a :class:`Cluster`. ``hosts`` (the inventory's node hosts, in
    order) must be exactly the Node objects' names; nodes keep the inventory's order."""
    counts = {}
    nodes, pods, services = [], [], []
    for obj in flatten(objects):
        if not isinstance(obj, dict):
            raise ClusterError("cluster objects: every object must be a mapping, got %r" % (obj,))
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ClusterError("%s %s: kind %r is not supported here (%s; a List of them)" % (
                kind or "object", (obj.get("metadata") or {}).get("name", "without a name"), kind, ", ".join(KINDS)))
        counts[kind] = counts.get(kind, 0) + 1
        metadata = _mapping(obj.get("metadata"), "metadata", kind)
        label = _label(kind, metadata, counts[kind], kind != "Node")
        if not metadata.get("name"):
            raise ClusterError("%s: metadata.name is required" % label)
        if str(obj.get("apiVersion", "v1")) != "v1":
            raise ClusterError("%s: apiVersion %r is not v1" % (label, obj.get("apiVersion")))
        if kind == "Node":
            nodes.append(_parse_node(obj, metadata, label))
        elif kind == "Pod":
            pods.append(_parse_pod(obj, metadata, label))
        else:
            services.append(_parse_service(obj, metadata, label))
    nodes = _order_nodes(nodes, hosts)
    names = set(n["name"] for n in nodes)
    seen = set()
    for pod in pods:
        if pod["id"] in seen:
            raise ClusterError("Pod %s: declared twice" % pod["id"])
        seen.add(pod["id"])
        if pod["nodeName"] not in names:
            raise ClusterError("Pod %s: spec.nodeName %s is not a Node of the cluster (nodes: %s)" % (
                pod["id"], pod["nodeName"], ", ".join(sorted(names)) or "none"))
    seen = set()
    for svc in services:
        if svc["id"] in seen:
            raise ClusterError("Service %s: declared twice" % svc["id"])
        seen.add(svc["id"])
    return Cluster(nodes, pods, services)


def _order_nodes(nodes, hosts):
    by_name = {}
    for node in nodes:
        if node["name"] in by_name:
            raise ClusterError("Node %s: declared twice" % node["name"])
        by_name[node["name"]] = node
    if hosts is None:
        return nodes
    hosts = list(hosts)
    for node in nodes:
        if node["name"] not in hosts:
            raise ClusterError("Node %s: no inventory host of that name among the nodes (%s)" % (
                node["name"], ", ".join(hosts) or "none"))
    missing = [h for h in hosts if h not in by_name]
    if missing:
        raise ClusterError("Node %s: the inventory host has no Node object (add a Node manifest named %s)" % (
            missing[0], missing[0]))
    return [by_name[h] for h in hosts]


def _parse_node(obj, metadata, label):
    spec = _mapping(obj.get("spec"), "spec", label)
    status = _mapping(obj.get("status"), "status", label)
    annotations = _string_map(metadata.get("annotations"), "annotation", label)
    pinned = None
    if spec.get("podCIDR"):
        pinned = _network(spec["podCIDR"], "spec.podCIDR", label)
    cidrs = spec.get("podCIDRs") or []
    if not isinstance(cidrs, list):
        raise ClusterError("%s: spec.podCIDRs must be a list" % label)
    v4 = [c for c in (_network_any(c, label) for c in cidrs) if c.version == 4]
    if v4:
        if pinned is not None and v4[0] != pinned:
            raise ClusterError("%s: spec.podCIDR %s and spec.podCIDRs %s disagree" % (label, pinned, v4[0]))
        pinned = v4[0]
    internal = None
    for addr in status.get("addresses") or []:
        if isinstance(addr, dict) and addr.get("type") == "InternalIP" and internal is None:
            try:
                ip = ipaddress.ip_address(str(addr.get("address")))
            except ValueError:
                raise ClusterError("%s: status.addresses InternalIP %r is not an address" % (label, addr.get("address")))
            if ip.version == 4:
                internal = ip
    subnet = None
    annotated = annotations.get(NODE_ADDRESS_ANNOTATION)
    if annotated:
        try:
            iface = ipaddress.ip_interface(annotated)
        except ValueError:
            raise ClusterError("%s: annotation %s %r is not ip/prefix" % (label, NODE_ADDRESS_ANNOTATION, annotated))
        if internal is not None and iface.ip != internal:
            raise ClusterError("%s: annotation %s %s and InternalIP %s disagree" % (
                label, NODE_ADDRESS_ANNOTATION, iface.ip, internal))
        internal = iface.ip
        subnet = iface.network
    if internal is None:
        raise ClusterError("%s: no node address (status.addresses InternalIP or annotation %s)" % (
            label, NODE_ADDRESS_ANNOTATION))
    return {
        "name": str(metadata["name"]),
        "labels": _string_map(metadata.get("labels"), "label", label),
        "ip": str(internal),
        "subnet": str(subnet if subnet is not None else ipaddress.ip_network("%s/32" % internal)),
        "pinned": str(pinned) if pinned is not None else None,
    }


def _network_any(value, label):
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ClusterError("%s: spec.podCIDRs entry %r is not a network: %s" % (label, value, exc))


def _parse_pod(obj, metadata, label):
    spec = _mapping(obj.get("spec"), "spec", label)
    if spec.get("hostNetwork"):
        raise ClusterError("%s: spec.hostNetwork true is not supported (pods get their own network namespace)" % label)
    node = spec.get("nodeName")
    if not node:
        raise ClusterError("%s: spec.nodeName is required (nothing schedules pods here)" % label)
    annotations = _string_map(metadata.get("annotations"), "annotation", label)
    fixed = None
    if IP_ADDRS_ANNOTATION in annotations:
        fixed = _fixed_ip(annotations[IP_ADDRS_ANNOTATION], label)
    ports = []
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        raise ClusterError("%s: spec.containers must be a list" % label)
    for container in containers:
        container = _mapping(container, "a container", label)
        for port in container.get("ports") or []:
            port = _mapping(port, "a container port", label)
            try:
                number = int(port["containerPort"])
            except (KeyError, TypeError, ValueError):
                raise ClusterError("%s: container %s has a port without a valid containerPort" % (label, container.get("name")))
            if not 0 < number < 65536:
                raise ClusterError("%s: containerPort %d is out of range" % (label, number))
            if port.get("hostPort"):
                raise ClusterError("%s: hostPort is not supported (containerPort %d)" % (label, number))
            ports.append({"containerPort": number, "protocol": str(port.get("protocol") or "TCP"),
                          "name": port.get("name")})
    return dict(_identity(metadata, label), nodeName=str(node), ip=fixed, ports=ports)


def _fixed_ip(text, label):
    try:
        addrs = json.loads(text)
    except ValueError:
        raise ClusterError("%s: annotation %s must be a JSON list of addresses, got %r" % (label, IP_ADDRS_ANNOTATION, text))
    if not isinstance(addrs, list) or len(addrs) != 1:
        raise ClusterError("%s: annotation %s must list exactly one IPv4 address, got %r" % (label, IP_ADDRS_ANNOTATION, text))
    try:
        ip = ipaddress.ip_address(str(addrs[0]))
    except ValueError:
        raise ClusterError("%s: annotation %s: %r is not an address" % (label, IP_ADDRS_ANNOTATION, addrs[0]))
    if ip.version != 4:
        raise ClusterError("%s: annotation %s: %s is IPv6, only IPv4 is supported" % (label, IP_ADDRS_ANNOTATION, ip))
    return str(ip)


def _parse_service(obj, metadata, label):
    spec = _mapping(obj.get("spec"), "spec", label)
    selector = _string_map(spec.get("selector"), "spec.selector", label)
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        raise ClusterError("%s: spec.ports must be a list" % label)
    return dict(_identity(metadata, label), type=str(spec.get("type") or "ClusterIP"), clusterIP=spec.get("clusterIP"),
                selector=selector, ports=[dict(p) for p in ports if isinstance(p, dict)])


def _identity(metadata, label):
    """id (namespace/name), name, namespace and labels of a namespaced object."""
    namespace = str(metadata.get("namespace") or "default")
    return {"id": "%s/%s" % (namespace, metadata["name"]), "name": str(metadata["name"]),
            "namespace": namespace, "labels": _string_map(metadata.get("labels"), "label", label)}


# --- selectors --------------------------------------------------------------------------------------

def selector_matches(selector, labels, what="selector"):
    """Kubernetes label selection: a plain map (a Service's spec.selector) or a LabelSelector
    (``matchLabels`` and ``matchExpressions`` with In, NotIn, Exists, DoesNotExist), ANDed.
    An empty selector matches everything; None matches nothing (as for a Service)."""
    if selector is None:
        return False
    labels = labels or {}
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
    else:
        match_labels, expressions = selector, []
    for key, value in match_labels.items():
        if labels.get(key) != str(value):
            return False
    for expr in expressions:
        key, op = expr.get("key"), expr.get("operator")
        values = [str(v) for v in expr.get("values") or []]
        if not key:
            raise ClusterError("%s: a matchExpressions entry has no key" % what)
        if op in ("In", "NotIn") and not values:
            raise ClusterError("%s: operator %s on %s needs values" % (what, op, key))
        if op in ("Exists", "DoesNotExist") and values:
            raise ClusterError("%s: operator %s on %s takes no values" % (what, op, key))
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ClusterError("%s: operator %r on %s is not In, NotIn, Exists or DoesNotExist" % (what, op, key))
        if not ok:
            return False
    return True


# --- pod CIDR allocation ------------------------------------------------------------------------

def reported_cidr(report):
    """The pod CIDR a node reports (its ``podCIDR`` key), or None."""
    if isinstance(report, dict) and report.get("podCIDR"):
        return str(report["podCIDR"])
    return None


def allocate_pod_cidrs(cluster, cluster_cidr, node_prefix=24, reports=None):
    """{node: pod CIDR}. In this order: a Node's spec.podCIDR; else the block the node reports it
    has (kept while it is inside the cluster CIDR and nobody before it claimed it - the way the
    controller-manager keeps allocations); else the lowest free /node_prefix block. So nodes
    added or removed anywhere in the inventory never renumber the others."""
    cluster_net = _network(cluster_cidr, "cluster CIDR", "cluster")
    node_prefix = int(node_prefix)
    if not cluster_net.prefixlen <= node_prefix <= 32:
        raise ClusterError("cluster: node prefix /%d does not fit the cluster CIDR %s" % (node_prefix, cluster_net))
    reports = reports or {}
    taken = []  # (network, node)
    out = {}

    def claim(node, net):
        for other, owner in taken:
            if net.overlaps(other):
                return owner
        taken.append((net, node))
        out[node] = str(net)
        return None

    for node in cluster.nodes:
        if node["pinned"]:
            net = ipaddress.ip_network(node["pinned"])
            if not net.subnet_of(cluster_net):
                raise ClusterError("Node %s: spec.podCIDR %s is outside the cluster CIDR %s" % (node["name"], net, cluster_net))
            owner = claim(node["name"], net)
            if owner:
                raise ClusterError("Node %s: spec.podCIDR %s overlaps Node %s's %s" % (node["name"], net, owner, out[owner]))
    for node in cluster.nodes:
        if node["name"] in out:
            continue
        text = reported_cidr(reports.get(node["name"]))
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            continue  # a report we cannot read is no report
        if net.version == 4 and net.subnet_of(cluster_net) and net.prefixlen == node_prefix:
            claim(node["name"], net)
    free = cluster_net.subnets(new_prefix=node_prefix)
    for node in cluster.nodes:
        if node["name"] in out:
            continue
        for block in free:
            if claim(node["name"], block) is None:
                break
        else:
            raise ClusterError("Node %s: the cluster CIDR %s has no free /%d block left" % (node["name"], cluster_net, node_prefix))
    return out


# --- one node's slice -------------------------------------------------------------------------------

def nth_address(cidr, n):
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + int(n))


def node_model(cluster, me, pod_cidrs, reports=None, netns_prefix="pod-"):
    """What node ``me`` applies: its pod CIDR, its pods (names it uses for them, fixed IPs checked
    against its block, the IP it last reported), its peers (every other node: address, pod CIDR,
    VTEP address and MAC, same subnet or not) and the services with their endpoints."""
    node = cluster.node(me)
    reports = reports or {}
    cidr = ipaddress.ip_network(pod_cidrs[me])
    pods = []
    for pod in cluster.pods:
        if pod["nodeName"] != me:
            continue
        if pod["ip"] is not None:
            ip = ipaddress.ip_address(pod["ip"])
            if ip not in cidr or ip in (cidr.network_address, cidr.network_address + 1, cidr.broadcast_address):
                raise ClusterError("Pod %s: annotation %s %s is not a pod address of node %s's pod CIDR %s" % (
                    pod["id"], IP_ADDRS_ANNOTATION, ip, me, cidr))
        pods.append(_node_pod(pod, netns_prefix, reports.get(me)))
    subnet = ipaddress.ip_network(node["subnet"])
    peers = []
    for other in cluster.nodes:
        if other["name"] == me:
            continue
        peers.append({
            "name": other["name"],
            "node_ip": other["ip"],
            "pod_cidr": pod_cidrs[other["name"]],
            "vtep_ip": nth_address(pod_cidrs[other["name"]], 0),
            "vtep_mac": stable_mac("vtep/" + other["name"]),
            "same_subnet": ipaddress.ip_address(other["ip"]) in subnet,
        })
    return {
        "name": me,
        "node_ip": node["ip"],
        "node_subnet": node["subnet"],
        "labels": node["labels"],
        "pod_cidr": str(cidr),
        "gateway": nth_address(cidr, 1),
        "vtep_ip": nth_address(cidr, 0),
        "vtep_mac": stable_mac("vtep/" + me),
        "bridge_mac": stable_mac("bridge/" + me),
        "pods": pods,
        "peers": peers,
        "services": services_with_endpoints(cluster, reports),
    }


def _node_pod(pod, netns_prefix, report):
    ips = (report or {}).get("podIPs") if isinstance(report, dict) else None
    return {
        "id": pod["id"],
        "name": pod["name"],
        "namespace": pod["namespace"],
        "labels": pod["labels"],
        "ip": pod["ip"],
        "podIP": (ips or {}).get(pod["id"]) if isinstance(ips, dict) else None,
        "netns": netns_name(netns_prefix, pod["namespace"], pod["name"]),
        "veth": veth_name(pod["id"]),
        "ports": pod["ports"],
    }


def services_with_endpoints(cluster, reports=None):
    """Services with the pods their selector picks in their namespace (endpoints: pod id, node,
    reported podIP, container ports), in declaration order."""
    reports = reports or {}
    out = []
    for svc in cluster.services:
        endpoints = []
        if svc["selector"]:
            for pod in cluster.pods:
                if pod["namespace"] == svc["namespace"] and selector_matches(svc["selector"], pod["labels"], "Service " + svc["id"]):
                    report = reports.get(pod["nodeName"]) or {}
                    ips = report.get("podIPs") if isinstance(report, dict) else None
                    endpoints.append({"pod": pod["id"], "nodeName": pod["nodeName"],
                                      "podIP": pod["ip"] or (ips or {}).get(pod["id"]), "ports": pod["ports"]})
        out.append(dict(svc, endpoints=endpoints))
    return out


def cluster_node(objects, me, hosts, cluster_cidr, node_prefix=24, reports=None, netns_prefix="pod-"):
    """The whole pipeline for one node: parse, allocate, slice."""
    cluster = parse_objects(objects, hosts)
    cidrs = allocate_pod_cidrs(cluster, cluster_cidr, node_prefix, reports)
    return node_model(cluster, me, cidrs, reports, netns_prefix)


def node_address(objects, name):
    """A Node object's address (for inventories that derive connection or lab addresses from it)."""
    for obj in flatten(objects):
        if isinstance(obj, dict) and obj.get("kind") == "Node" and (obj.get("metadata") or {}).get("name") == name:
            return _parse_node(obj, obj.get("metadata") or {}, "Node %s" % name)["ip"]
    raise ClusterError("Node %s: no Node object of that name" % name)


def cluster_pods(objects, me, hosts, netns_prefix="pod-"):
    """Node ``me``'s pods with the names it uses for them (no allocation: for roles that only
    need the pods, e.g. their workloads)."""
    cluster = parse_objects(objects, hosts)
    cluster.node(me)
    return [_node_pod(pod, netns_prefix, None) for pod in cluster.pods if pod["nodeName"] == me]
