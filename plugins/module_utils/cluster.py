# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster model, computed once on the controller from Kubernetes objects and what the nodes
report (the way the controller-manager and kube-proxy compute theirs from the API server).

Pure functions, no Ansible: objects (Node, Pod, Service, EndpointSlice manifests as ``kubectl get -o yaml``
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
  ``spec.nodeName`` (required: nothing schedules here), ``spec.containers[].ports[]`` (with
  ``hostPort`` / ``hostIP``, which the service proxy maps as CNI portmap does),
  ``spec.hostname`` / ``spec.subdomain`` (the endpoint's hostname under a headless Service).
- Service: the v1 spec as the API server validates and defaults it (type, clusterIP /
  clusterIPs, ports, selector, sessionAffinity(Config), external/internalTrafficPolicy,
  healthCheckNodePort, externalIPs, externalName, loadBalancerIP, loadBalancerSourceRanges,
  allocateLoadBalancerNodePorts, publishNotReadyAddresses, status.loadBalancer.ingress).
- EndpointSlice (discovery.k8s.io/v1): declared slices, for Services without a selector (an
  outside host behind a Service), as Kubernetes allows.
- IPAddressPool and L2Advertisement (metallb.io/v1beta1): MetalLB's own objects, parsed by
  ``metallb.py`` (see there); LoadBalancer Services get their address from the pools.
- BGPConfiguration and BGPPeer (projectcalico.org/v3): Calico's own objects, parsed by
  ``calico.py`` (see there, also for the Node annotations it reads); ``calico.node_bgp`` gives a
  node's BGP peers.

Services get their clusterIP, nodePorts and LoadBalancer IP from :func:`allocate_service_addresses` (stable the way
pod CIDRs are: declared values, else what the nodes report they applied) and their endpoints
from :func:`endpoint_slices` (what the EndpointSlice controller would write);
:func:`service_model` returns both in the shapes ``kubeproxy.build_ruleset`` takes::

    model = service_model(cluster, "10.96.0.0/12", "30000-32767", reports)
    build_ruleset(model["services"], model["endpoint_slices"], node_view)

Fields we would misread are errors (``spec.hostNetwork: true``, a pod without a node, a node
without a name ...): :class:`ClusterError` with one line naming the object and the reason.
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re

IP_ADDRS_ANNOTATION = "cni.projectcalico.org/ipAddrs"
NODE_ADDRESS_ANNOTATION = "projectcalico.org/IPv4Address"
KINDS = ("Node", "Pod", "Service", "EndpointSlice", "IPAddressPool", "L2Advertisement", "BGPConfiguration", "BGPPeer")
# every other kind is core v1
API_VERSIONS = {"EndpointSlice": "discovery.k8s.io/v1", "IPAddressPool": "metallb.io/v1beta1",
                "L2Advertisement": "metallb.io/v1beta1", "BGPConfiguration": "projectcalico.org/v3",
                "BGPPeer": "projectcalico.org/v3"}
METALLB_KINDS = ("IPAddressPool", "L2Advertisement")
CALICO_KINDS = ("BGPConfiguration", "BGPPeer")


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
    """Parsed objects: ``nodes`` (inventory order), ``pods``, ``services``, the declared
    ``endpoint_slices`` (as declared), MetalLB's ``pools`` (IPAddressPools, by name) and
    ``l2_advertisements`` (as declared); see ``metallb.parse_pool`` / ``parse_l2_advertisement``;
    Calico's ``bgp_configurations`` ({name: ...}) and ``bgp_peers`` (as declared); see
    ``calico.parse_configuration`` / ``parse_peer``."""

    def __init__(self, nodes, pods, services, endpoint_slices=None, pools=None, l2_advertisements=None,
                 bgp_configurations=None, bgp_peers=None):
        self.nodes = nodes
        self.pods = pods
        self.services = services
        self.endpoint_slices = list(endpoint_slices or [])
        self.pools = list(pools or [])
        self.l2_advertisements = list(l2_advertisements or [])
        self.bgp_configurations = dict(bgp_configurations or {})
        self.bgp_peers = list(bgp_peers or [])

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
    from ansible_collections.podnet.fabric.plugins.module_utils import metallb as _metallb     # it imports this module
    from ansible_collections.podnet.fabric.plugins.module_utils import calico as _calico       # it imports this module
    counts = {}
    nodes, pods, services, slices, pools, advertisements = [], [], [], [], [], []
    bgp_configurations, bgp_peers = [], []
    for obj in flatten(objects):
        if not isinstance(obj, dict):
            raise ClusterError("cluster objects: every object must be a mapping, got %r" % (obj,))
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ClusterError("%s %s: kind %r is not supported here (%s; a List of them)" % (
                kind or "object", (obj.get("metadata") or {}).get("name", "without a name"), kind, ", ".join(KINDS)))
        counts[kind] = counts.get(kind, 0) + 1
        metadata = _mapping(obj.get("metadata"), "metadata", kind)
        if kind in METALLB_KINDS:
            label = _metallb.object_label(kind, metadata, counts[kind])
        elif kind in CALICO_KINDS:
            label = _calico.object_label(kind, metadata, counts[kind])
        else:
            label = _label(kind, metadata, counts[kind], kind != "Node")
        if not metadata.get("name"):
            raise ClusterError("%s: metadata.name is required" % label)
        api_version = API_VERSIONS.get(kind, "v1")
        if str(obj.get("apiVersion", api_version)) != api_version:
            raise ClusterError("%s: apiVersion %r is not %s" % (label, obj.get("apiVersion"), api_version))
        if kind == "Node":
            nodes.append(_parse_node(obj, metadata, label))
        elif kind == "Pod":
            pods.append(_parse_pod(obj, metadata, label))
        elif kind == "Service":
            services.append(_parse_service(obj, metadata, label))
        elif kind == "IPAddressPool":
            pools.append(_metallb.parse_pool(obj, metadata, label))
        elif kind == "L2Advertisement":
            advertisements.append(_metallb.parse_l2_advertisement(obj, metadata, label))
        elif kind == "BGPConfiguration":
            bgp_configurations.append(_calico.parse_configuration(obj, metadata, label))
        elif kind == "BGPPeer":
            bgp_peers.append(_calico.parse_peer(obj, metadata, label))
        else:
            slices.append(_parse_endpoint_slice(obj, metadata, label))
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
    _check_declared_slices(slices, seen)
    pools, advertisements = _metallb.check_objects(pools, advertisements)
    bgp_configurations, bgp_peers = _calico.check_objects(bgp_configurations, bgp_peers, nodes)
    return Cluster(nodes, pods, services, slices, pools, advertisements, bgp_configurations, bgp_peers)


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
        "annotations": annotations,
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
            entry = {"containerPort": number, "protocol": str(port.get("protocol") or "TCP"), "name": port.get("name")}
            if port.get("hostPort"):
                entry.update(_host_port(port, number, label))
            ports.append(entry)
    # spec.hostname + spec.subdomain give the pod its own DNS name under a headless Service
    hostname, subdomain = spec.get("hostname") or None, spec.get("subdomain") or None
    for field_name, value in (("spec.hostname", hostname), ("spec.subdomain", subdomain)):
        if value is not None:
            _dns_label(value, label, field_name)
    return dict(_identity(metadata, label), nodeName=str(node), ip=fixed, ports=ports,
                hostname=hostname, subdomain=subdomain)


def _host_port(port, container_port, label):
    """hostPort / hostIP of a container port, checked (the service proxy maps them as CNI portmap)."""
    host_port = port["hostPort"]
    if not _is_int(host_port) or not 0 < int(host_port) < 65536:
        raise ClusterError("%s: containerPort %d: hostPort %r is not a port number from 1 to 65535"
                           % (label, container_port, host_port))
    out = {"hostPort": int(host_port)}
    if port.get("hostIP") not in (None, ""):
        try:
            out["hostIP"] = str(ipaddress.IPv4Address(str(port["hostIP"])))
        except ValueError:
            raise ClusterError("%s: containerPort %d: hostIP %r is not an IPv4 address"
                               % (label, container_port, port["hostIP"]))
    return out


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


# --- Services and EndpointSlices: parsed as the API server validates and defaults them ----------
# (kubernetes pkg/apis/core/validation ValidateService, pkg/apis/core/v1 SetDefaults_Service,
# pkg/apis/discovery/validation). Messages name the object and the field the way kubectl shows
# the API server's answer: "Service ns/name: spec.ports[1].port: Invalid value: 0: ...".

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TRAFFIC_POLICIES = ("Cluster", "Local")
DEFAULT_AFFINITY_SECONDS = 10800        # SetDefaults_Service: three hours
MAX_AFFINITY_SECONDS = 86400            # core.MaxClientIPServiceAffinitySeconds
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_SLICE_ENTRIES = 100                 # EndpointSlice validation: endpoints, addresses and ports each

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _quote(value):
    """A value as the API server quotes it in a message: strings in double quotes, numbers bare."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def _invalid(label, path, value, reason):
    return ClusterError("%s: %s: Invalid value: %s: %s" % (label, path, _quote(value), reason))


def _unsupported(label, path, value, supported):
    return ClusterError("%s: %s: Unsupported value: %s: supported values: %s" % (
        label, path, _quote(value), ", ".join('"%s"' % s for s in supported)))


def _required(label, path, why=""):
    return ClusterError("%s: %s: Required value%s" % (label, path, ": " + why if why else ""))


def _forbidden(label, path, why):
    return ClusterError("%s: %s: Forbidden: %s" % (label, path, why))


def _list(value, label, path):
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(label, path, type(value).__name__, "must be a list")
    return value


def _dns_label(value, label, path, pattern=_DNS1123_LABEL, kind="RFC 1123 label"):
    if not isinstance(value, str) or len(value) > 63 or not pattern.match(value):
        raise _invalid(label, path, value, "must be a lowercase %s (a-z, 0-9 and '-', at most 63 characters, "
                                           "starting with a %s and ending with an alphanumeric character)" % (
                                               kind, "letter" if pattern is _DNS1035_LABEL else "letter or digit"))
    return value


def _port_number(value, label, path):
    if not _is_int(value) or not 0 < value < 65536:
        raise _invalid(label, path, value, "must be between 1 and 65535, inclusive")
    return value


def _port_name_error(name):
    """Why ``name`` is not an IANA_SVC_NAME (validation.IsValidPortName), or None."""
    if len(name) > 15:
        return "must be no more than 15 characters"
    if not re.match(r"^[-a-z0-9]+$", name):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if not re.search(r"[a-z]", name):
        return "must contain at least one letter (a-z)"
    if "--" in name:
        return "must not contain consecutive hyphens"
    if name.startswith("-") or name.endswith("-"):
        return "must not begin or end with a hyphen"
    return None


def _ipv4(value, label, path, special_ok=True):
    """An IPv4 address as text (IPv4 only, like the rest of the collection); ``special_ok`` False
    refuses the addresses ValidateNonSpecialIP refuses for external IPs and endpoints."""
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _invalid(label, path, value, "must be a valid IP address")
    if ip.version != 4:
        raise _invalid(label, path, value, "IPv6 is not supported here (IPv4 only)")
    if not special_ok:
        if ip.is_unspecified:
            raise _invalid(label, path, value, "may not be unspecified (0.0.0.0)")
        if ip.is_loopback:
            raise _invalid(label, path, value, "may not be in the loopback range (127.0.0.0/8)")
        if ip in _LINK_LOCAL:
            raise _invalid(label, path, value, "may not be in the link-local range (169.254.0.0/16)")
        if ip in _LINK_LOCAL_MULTICAST:
            raise _invalid(label, path, value, "may not be in the link-local multicast range (224.0.0.0/24)")
    return str(ip)


_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_MULTICAST = ipaddress.ip_network("224.0.0.0/24")


def externally_accessible(svc_type, external_ips):
    """What externalTrafficPolicy applies to (pkg/api/service ExternallyAccessible)."""
    return svc_type in ("NodePort", "LoadBalancer") or (svc_type == "ClusterIP" and bool(external_ips))


def needs_node_ports(svc):
    """NodePort services, and LoadBalancers unless allocateLoadBalancerNodePorts is false."""
    return svc["type"] == "NodePort" or (svc["type"] == "LoadBalancer" and svc["allocateLoadBalancerNodePorts"])


def needs_cluster_ip(svc):
    return svc["type"] != "ExternalName" and svc["clusterIP"] != "None"


def _parse_service(obj, metadata, label):
    spec = _mapping(obj.get("spec"), "spec", label)
    status = _mapping(obj.get("status"), "status", label)
    _dns_label(str(metadata["name"]), label, "metadata.name", _DNS1035_LABEL, "RFC 1035 label")
    if metadata.get("namespace"):
        _dns_label(metadata["namespace"], label, "metadata.namespace")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in SERVICE_TYPES:
        raise _unsupported(label, "spec.type", svc_type, SERVICE_TYPES)
    cluster_ip = _declared_cluster_ip(spec, svc_type, label)
    headless = cluster_ip == "None"
    if svc_type in ("NodePort", "LoadBalancer") and headless:
        raise _invalid(label, "spec.clusterIP", "None", "may not be set to 'None' for %s services" % svc_type)

    raw_ports = _list(spec.get("ports"), label, "spec.ports")
    if not raw_ports and not headless and svc_type != "ExternalName":
        raise _required(label, "spec.ports")
    ports = [_parse_service_port(p, "spec.ports[%d]" % i, len(raw_ports) > 1, svc_type, label)
             for i, p in enumerate(raw_ports)]
    _check_service_port_duplicates(ports, label)

    external_name = None
    if svc_type == "ExternalName":
        # the value is a CNAME: a trailing dot (fully qualified) is allowed
        external_name = str(spec.get("externalName") or "")
        cname = external_name[:-1] if external_name.endswith(".") else external_name
        if not cname:
            raise _required(label, "spec.externalName")
        if len(cname) > 253 or not _DNS1123_SUBDOMAIN.match(cname):
            raise _invalid(label, "spec.externalName", external_name, "must be a lowercase RFC 1123 subdomain")

    selector = _string_map(spec.get("selector"), "spec.selector", label)
    for key, value in selector.items():
        if not key or len(key) > 316:
            raise _invalid(label, "spec.selector", key, "a label key must be a qualified name")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise _invalid(label, "spec.selector.%s" % key, value, "a valid label value must be 63 characters or less, "
                                                                   "alphanumeric, '-', '_' or '.', starting and ending alphanumeric")

    affinity, affinity_config = _session_affinity(spec, label)
    external_ips = [_ipv4(ip, label, "spec.externalIPs[%d]" % i, special_ok=False)
                    for i, ip in enumerate(_list(spec.get("externalIPs"), label, "spec.externalIPs"))]
    external_policy = _external_traffic_policy(spec, svc_type, external_ips, label)
    internal_policy = spec.get("internalTrafficPolicy")
    if internal_policy is None and svc_type != "ExternalName":
        internal_policy = "Cluster"         # SetDefaults_Service
    if internal_policy is not None and internal_policy not in TRAFFIC_POLICIES:
        raise _unsupported(label, "spec.internalTrafficPolicy", internal_policy, TRAFFIC_POLICIES)

    health_check_port = spec.get("healthCheckNodePort") or None
    needs_health_check = svc_type == "LoadBalancer" and external_policy == "Local"
    if health_check_port is not None:
        if not needs_health_check:
            raise _invalid(label, "spec.healthCheckNodePort", health_check_port,
                           "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
        _port_number(health_check_port, label, "spec.healthCheckNodePort")

    source_ranges = []
    for i, text in enumerate(_list(spec.get("loadBalancerSourceRanges"), label, "spec.loadBalancerSourceRanges")):
        if svc_type != "LoadBalancer":
            raise _forbidden(label, "spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
        try:
            # space padding is allowed (a leftover of the annotation this field replaced)
            source_ranges.append(str(ipaddress.ip_network(str(text).strip(), strict=False)))
        except ValueError:
            raise _invalid(label, "spec.loadBalancerSourceRanges[%d]" % i, text, "must be a valid CIDR value, (e.g. 10.9.8.0/24)")

    allocate_lb_node_ports = spec.get("allocateLoadBalancerNodePorts")
    if allocate_lb_node_ports is not None and svc_type != "LoadBalancer":
        raise _forbidden(label, "spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
    if svc_type == "LoadBalancer":
        if allocate_lb_node_ports is None:
            allocate_lb_node_ports = True   # SetDefaults_Service
        if not isinstance(allocate_lb_node_ports, bool):
            raise _invalid(label, "spec.allocateLoadBalancerNodePorts", allocate_lb_node_ports, "must be true or false")

    lb_ip = spec.get("loadBalancerIP") or None
    if lb_ip is not None:
        lb_ip = _ipv4(lb_ip, label, "spec.loadBalancerIP")
    ingress = _load_balancer_ingress(status, svc_type, label)
    if svc_type == "LoadBalancer" and not ingress and lb_ip:
        # No cloud controller runs here: a requested loadBalancerIP is taken as assigned, the way
        # MetalLB honours it, so kube-proxy's LoadBalancer rules exist for it.
        ingress = [{"ip": lb_ip, "ipMode": "VIP"}]

    publish_not_ready = spec.get("publishNotReadyAddresses", False)
    if not isinstance(publish_not_ready, bool):
        raise _invalid(label, "spec.publishNotReadyAddresses", publish_not_ready, "must be true or false")

    return dict(_identity(metadata, label), type=svc_type, clusterIP=cluster_ip, selector=selector, ports=ports,
                externalName=external_name, sessionAffinity=affinity, sessionAffinityConfig=affinity_config,
                externalIPs=external_ips, externalTrafficPolicy=external_policy, internalTrafficPolicy=internal_policy,
                healthCheckNodePort=health_check_port, loadBalancerSourceRanges=source_ranges,
                allocateLoadBalancerNodePorts=allocate_lb_node_ports, loadBalancerIP=lb_ip,
                loadBalancerIngress=ingress, publishNotReadyAddresses=publish_not_ready,
                annotations=_string_map(metadata.get("annotations"), "annotation", label))


def _declared_cluster_ip(spec, svc_type, label):
    """None (to allocate), "None" (headless) or the declared IPv4 address. clusterIPs (dual-stack
    form) must agree with clusterIP; only one IPv4 family is supported."""
    cluster_ip = spec.get("clusterIP")
    cluster_ips = _list(spec.get("clusterIPs"), label, "spec.clusterIPs")
    families = _list(spec.get("ipFamilies"), label, "spec.ipFamilies")
    policy = spec.get("ipFamilyPolicy")
    if svc_type == "ExternalName":
        for field_name, value in (("clusterIP", cluster_ip), ("clusterIPs", cluster_ips), ("ipFamilies", families),
                                  ("ipFamilyPolicy", policy)):
            if value:
                raise _forbidden(label, "spec." + field_name, "may not be set for ExternalName services")
        return None
    if len(cluster_ips) > 1:
        raise _invalid(label, "spec.clusterIPs", cluster_ips, "dual-stack is not supported here (one IPv4 address)")
    if cluster_ips:
        if cluster_ip and str(cluster_ips[0]) != str(cluster_ip):
            raise _invalid(label, "spec.clusterIPs[0]", cluster_ips[0], "must match `clusterIP` %s" % _quote(cluster_ip))
        cluster_ip = cluster_ips[0]
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            raise _unsupported(label, "spec.ipFamilies[%d]" % i, family, ("IPv4", "IPv6"))
        if family != "IPv4" or i > 0:
            raise _invalid(label, "spec.ipFamilies[%d]" % i, family, "only the IPv4 family is supported here")
    if policy is not None:
        if policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
            raise _unsupported(label, "spec.ipFamilyPolicy", policy, ("PreferDualStack", "RequireDualStack", "SingleStack"))
        if policy == "RequireDualStack":
            raise _invalid(label, "spec.ipFamilyPolicy", policy, "dual-stack is not supported here (IPv4 only)")
    if cluster_ip in (None, ""):
        return None
    if cluster_ip == "None":
        return "None"
    try:
        ipaddress.ip_address(str(cluster_ip))
    except ValueError:
        raise _invalid(label, "spec.clusterIP", cluster_ip, "must be empty, 'None', or a valid IP address")
    return _ipv4(cluster_ip, label, "spec.clusterIP")


def _parse_service_port(port, at, require_name, svc_type, label):
    if not isinstance(port, dict):
        raise _invalid(label, at, type(port).__name__, "must be a mapping")
    name = port.get("name") or ""
    if not name:
        if require_name:
            raise _required(label, at + ".name", "a Service with more than one port names each one")
    else:
        _dns_label(name, label, at + ".name")
    number = _port_number(port.get("port"), label, at + ".port")
    protocol = port.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise _unsupported(label, at + ".protocol", protocol, PROTOCOLS)
    target = port.get("targetPort")
    if target is None or target == 0 or target == "":
        target = number                     # SetDefaults_Service: targetPort defaults to port
    elif _is_int(target):
        _port_number(target, label, at + ".targetPort")
    elif isinstance(target, str):
        # a name: the container port of that name in each selected pod
        why = _port_name_error(target)
        if why:
            raise _invalid(label, at + ".targetPort", target, why)
    else:
        raise _invalid(label, at + ".targetPort", target, "must be a port number or a container port name")
    node_port = port.get("nodePort") or None
    if node_port is not None:
        if svc_type in ("ClusterIP", "ExternalName"):
            raise _forbidden(label, at + ".nodePort", "may not be used when `type` is '%s'" % svc_type)
        _port_number(node_port, label, at + ".nodePort")
    return {"name": name, "protocol": protocol, "port": number, "targetPort": target, "nodePort": node_port}


def _check_service_port_duplicates(ports, label):
    names, numbers, node_ports = set(), set(), set()
    for i, port in enumerate(ports):
        at = "spec.ports[%d]" % i
        if port["name"]:
            if port["name"] in names:
                raise ClusterError("%s: %s.name: Duplicate value: %s" % (label, at, _quote(port["name"])))
            names.add(port["name"])
        if (port["protocol"], port["port"]) in numbers:
            raise ClusterError("%s: %s: Duplicate value: port %d/%s" % (label, at, port["port"], port["protocol"]))
        numbers.add((port["protocol"], port["port"]))
        if port["nodePort"] is not None:
            if (port["protocol"], port["nodePort"]) in node_ports:
                raise ClusterError("%s: %s.nodePort: Duplicate value: %d" % (label, at, port["nodePort"]))
            node_ports.add((port["protocol"], port["nodePort"]))


def _session_affinity(spec, label):
    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("ClientIP", "None"):
        raise _unsupported(label, "spec.sessionAffinity", affinity, ("ClientIP", "None"))
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        return affinity, None               # SetDefaults_Service drops a config that has no use
    client_ip = _mapping(_mapping(config, "spec.sessionAffinityConfig", label).get("clientIP"),
                         "spec.sessionAffinityConfig.clientIP", label)
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        timeout = DEFAULT_AFFINITY_SECONDS
    if not _is_int(timeout) or not 0 < timeout <= MAX_AFFINITY_SECONDS:
        raise _invalid(label, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                       "must be greater than 0 and less than %d" % MAX_AFFINITY_SECONDS)
    return affinity, {"clientIP": {"timeoutSeconds": timeout}}


def _external_traffic_policy(spec, svc_type, external_ips, label):
    policy = spec.get("externalTrafficPolicy") or None
    if not externally_accessible(svc_type, external_ips):
        if policy is not None:
            raise _invalid(label, "spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services")
        return None
    if policy is None:
        return "Cluster"                    # SetDefaults_Service
    if policy not in TRAFFIC_POLICIES:
        raise _unsupported(label, "spec.externalTrafficPolicy", policy, TRAFFIC_POLICIES)
    return policy


def _load_balancer_ingress(status, svc_type, label):
    load_balancer = _mapping(status.get("loadBalancer"), "status.loadBalancer", label)
    out = []
    for i, entry in enumerate(_list(load_balancer.get("ingress"), label, "status.loadBalancer.ingress")):
        at = "status.loadBalancer.ingress[%d]" % i
        entry = _mapping(entry, at, label)
        item = {}
        if entry.get("ip"):
            try:
                item["ip"] = str(ipaddress.ip_address(str(entry["ip"])))   # an IPv6 VIP is kept and ignored by kube-proxy
            except ValueError:
                raise _invalid(label, at + ".ip", entry["ip"], "must be a valid IP address")
        if entry.get("hostname"):
            item["hostname"] = str(entry["hostname"])
        if entry.get("ipMode"):
            if entry["ipMode"] not in ("VIP", "Proxy"):
                raise _unsupported(label, at + ".ipMode", entry["ipMode"], ("Proxy", "VIP"))
            if "ip" not in item:
                raise _forbidden(label, at + ".ipMode", "may not be specified when `ip` is not")
            item["ipMode"] = entry["ipMode"]
        elif svc_type == "LoadBalancer" and "ip" in item:
            item["ipMode"] = "VIP"          # SetDefaults_Service (LoadBalancerIPMode)
        out.append(item)
    return out


def _parse_endpoint_slice(obj, metadata, label):
    """A declared EndpointSlice, checked and returned as the discovery.k8s.io/v1 object kube-proxy
    reads (defaults filled), under ``object``; ``service`` is the id of the Service it backs."""
    identity = _identity(metadata, label)
    service = identity["labels"].get(SERVICE_NAME_LABEL)
    if not service:
        raise _required(label, "metadata.labels.%s" % SERVICE_NAME_LABEL, "it names the Service this slice belongs to")
    address_type = obj.get("addressType")
    if not address_type:
        raise _required(label, "addressType")
    if address_type != "IPv4":
        raise _unsupported(label, "addressType", address_type, ("IPv4",))
    endpoints = _list(obj.get("endpoints"), label, "endpoints")
    if len(endpoints) > MAX_SLICE_ENTRIES:
        raise ClusterError("%s: endpoints: Too many: %d: must have at most %d items" % (label, len(endpoints), MAX_SLICE_ENTRIES))
    out_endpoints = [_slice_endpoint(ep, "endpoints[%d]" % i, label) for i, ep in enumerate(endpoints)]
    ports = _list(obj.get("ports"), label, "ports")
    if len(ports) > MAX_SLICE_ENTRIES:
        raise ClusterError("%s: ports: Too many: %d: must have at most %d items" % (label, len(ports), MAX_SLICE_ENTRIES))
    out_ports, names = [], set()
    for i, port in enumerate(ports):
        at = "ports[%d]" % i
        port = _mapping(port, at, label)
        name = port.get("name") or ""
        if name:
            _dns_label(name, label, at + ".name")
        if name in names:
            raise ClusterError("%s: %s.name: Duplicate value: %s" % (label, at, _quote(name)))
        names.add(name)
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise _unsupported(label, at + ".protocol", protocol, PROTOCOLS)
        item = {"name": name, "protocol": protocol}
        if port.get("port") is not None:     # no port: "all ports", which kube-proxy skips
            item["port"] = _port_number(port["port"], label, at + ".port")
        out_ports.append(item)
    meta = {"name": identity["name"], "namespace": identity["namespace"], "labels": identity["labels"]}
    return dict(identity, service="%s/%s" % (identity["namespace"], service), object={
        "apiVersion": API_VERSIONS["EndpointSlice"], "kind": "EndpointSlice", "metadata": meta,
        "addressType": "IPv4", "endpoints": out_endpoints, "ports": out_ports})


def _slice_endpoint(endpoint, at, label):
    endpoint = _mapping(endpoint, at, label)
    addresses = _list(endpoint.get("addresses"), label, at + ".addresses")
    if not addresses:
        raise _required(label, at + ".addresses", "must contain at least one address")
    if len(addresses) > MAX_SLICE_ENTRIES:
        raise ClusterError("%s: %s.addresses: Too many: %d: must have at most %d items" % (label, at, len(addresses), MAX_SLICE_ENTRIES))
    out = {"addresses": [_ipv4(a, label, "%s.addresses[%d]" % (at, i), special_ok=False) for i, a in enumerate(addresses)]}
    conditions = _mapping(endpoint.get("conditions"), at + ".conditions", label)
    out["conditions"] = {}
    for key in ("ready", "serving", "terminating"):
        value = conditions.get(key)
        if value is not None and not isinstance(value, bool):
            raise _invalid(label, "%s.conditions.%s" % (at, key), value, "must be true or false")
        if value is not None:
            out["conditions"][key] = value
    for key in ("nodeName", "zone", "hostname"):
        if endpoint.get(key):
            out[key] = str(endpoint[key])
    if isinstance(endpoint.get("targetRef"), dict):
        out["targetRef"] = dict(endpoint["targetRef"])
    return out


def _check_declared_slices(slices, service_ids):
    seen = set()
    for sl in slices:
        if sl["id"] in seen:
            raise ClusterError("EndpointSlice %s: declared twice" % sl["id"])
        seen.add(sl["id"])
        if sl["service"] not in service_ids:
            # kube-proxy would ignore it silently; here it is most likely a typo in the label
            raise ClusterError("EndpointSlice %s: metadata.labels.%s: Service %s is not declared" % (
                sl["id"], SERVICE_NAME_LABEL, sl["service"]))


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


# --- Service addresses: clusterIP and nodePort allocation -----------------------------------------

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
KUBERNETES_SERVICE = "default/kubernetes"   # gets the service CIDR's first address, as the API server does


def _static_band(size, low, high, step):
    """How many of a range's first slots the API server keeps for declared values, handing out
    dynamic ones from the rest first (KEP-3070 for cluster IPs: min(max(16, size/16), 256);
    KEP-3668 for node ports: min(max(16, size/32), 128)), so declared values rarely collide with
    allocated ones."""
    if size <= low:
        return 0
    return min(max(low, size // step), high)


def _seed(text):
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16)


class _Pool(object):
    """Slots 0..size-1 of a range with their owners. New values start at a slot derived from the
    owner's name in the dynamic band (a value depends on nothing else but collisions), then scan
    the rest of the dynamic band, then the static band."""

    def __init__(self, size, static):
        self.size = size
        self.static = static
        self.owners = {}

    def owner(self, slot):
        return self.owners.get(slot)

    def take(self, slot, owner):
        self.owners[slot] = owner

    def next_free(self, seed_text):
        """The first free slot from the one ``seed_text`` hashes to; None when the range is full."""
        dynamic = self.size - self.static
        start = self.static + (_seed(seed_text) % dynamic if dynamic > 0 else 0)
        for span in (range(start, self.size), range(self.static, start), range(0, self.static)):
            for slot in span:
                if slot not in self.owners:
                    return slot
        return None


def parse_node_port_range(text):
    """(first, last) from kube-apiserver's --service-node-port-range form "30000-32767"."""
    try:
        first, last = (int(part) for part in str(text).split("-"))
    except ValueError:
        raise ClusterError("cluster: node port range %r is not first-last (e.g. 30000-32767)" % (text,))
    if not 0 < first <= last < 65536:
        raise ClusterError("cluster: node port range %s-%s is not within 1-65535" % (first, last))
    return first, last


def merge_service_reports(reports):
    """The service addresses the nodes report they applied, agreed over all nodes' reports
    ({node: {"services": {"ns/name": {"clusterIP": ip, "nodePorts": {"name/PROTO": n},
    "healthCheckNodePort": n, "loadBalancerIP": ip}}}}): for each value the one most nodes report, ties to the lowest,
    so every node (and every ``--limit``) reads the same. Values that cannot be read are no report."""
    votes = {}

    def vote(key, value):
        tally = votes.setdefault(key, {})
        tally[value] = tally.get(value, 0) + 1

    for node in sorted(reports or {}):
        report = reports[node]
        services = report.get("services") if isinstance(report, dict) else None
        if not isinstance(services, dict):
            continue
        for sid, entry in services.items():
            if not isinstance(entry, dict):
                continue
            for field_name in ("clusterIP", "loadBalancerIP"):
                try:
                    ip = ipaddress.ip_address(str(entry.get(field_name)))
                    if ip.version == 4:
                        vote((sid, field_name, None), ip)
                except ValueError:
                    pass
            node_ports = entry.get("nodePorts")
            for key, number in (node_ports.items() if isinstance(node_ports, dict) else ()):
                if _is_int(number):
                    vote((sid, "nodePorts", str(key)), number)
            if _is_int(entry.get("healthCheckNodePort")):
                vote((sid, "healthCheckNodePort", None), entry["healthCheckNodePort"])
    merged = {}
    for (sid, field_name, key), tally in sorted(votes.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        value = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        entry = merged.setdefault(sid, {})
        if field_name == "nodePorts":
            entry.setdefault("nodePorts", {})[key] = value
        else:
            entry[field_name] = str(value) if field_name in ("clusterIP", "loadBalancerIP") else value
    return merged


def node_port_key(port):
    """How a service port's nodePort is remembered in reports: "name/PROTOCOL" ("/TCP" unnamed)."""
    return "%s/%s" % (port["name"], port["protocol"])


def allocate_service_addresses(cluster, service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE,
                               reports=None):
    """{service id: {"clusterIP": ip | "None" | None, "nodePorts": {"name/PROTO": n},
    "healthCheckNodePort": n | None, "loadBalancerIP": ip | None}} for every Service, the way the
    API server's allocators (and MetalLB's controller, for type LoadBalancer: see
    ``metallb.allocate_load_balancer_ips``) give them out but as a pure function, so that a value
    never changes once given out:

    1. declared values (spec.clusterIP, ports[].nodePort, healthCheckNodePort) win; one that is
       outside its range or taken by another declared one is an error naming both services;
    2. else the value the nodes report they applied (:func:`merge_service_reports`), kept while it
       is in range and no declared value (or a service before it, by id) took it;
    3. else a free value: from a slot derived from the service's name in the dynamic band, as
       the API server prefers it; the service CIDR's first address is Service default/kubernetes's.

    Services are taken in id order, so the order of the manifests does not matter."""
    net = _network(service_cidr, "service CIDR", "cluster")
    if net.num_addresses < 4:
        raise ClusterError("cluster: the service CIDR %s is too small (a /30 or larger)" % net)
    # slot i is address network+1+i: the network and broadcast addresses are never given out
    ips = _Pool(net.num_addresses - 2, _static_band(net.num_addresses, 16, 256, 16))
    ips.take(0, "Service " + KUBERNETES_SERVICE)
    first_port, last_port = parse_node_port_range(node_port_range)
    ports = _Pool(last_port - first_port + 1, _static_band(last_port - first_port + 1, 16, 128, 32))
    remembered = merge_service_reports(reports)
    services = sorted(cluster.services, key=lambda svc: svc["id"])
    out = dict((svc["id"], {"clusterIP": svc["clusterIP"] if svc["type"] != "ExternalName" else None,
                            "nodePorts": {}, "healthCheckNodePort": None}) for svc in services)
    _allocate_cluster_ips(services, net, ips, remembered, out)
    _allocate_node_ports(services, (first_port, last_port), ports, remembered, out)
    from ansible_collections.podnet.fabric.plugins.module_utils import metallb as _metallb     # it imports this module
    _metallb.allocate_load_balancer_ips(cluster, remembered, out)
    return out


def _ip_slot(net, text):
    """The pool slot of an address, or None when the address is not one the CIDR gives out."""
    ip = ipaddress.ip_address(text)
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        return None
    return int(ip) - int(net.network_address) - 1


def _allocate_cluster_ips(services, net, pool, remembered, out):
    wanting = [svc for svc in services if needs_cluster_ip(svc)]
    for svc in wanting:
        label = "Service " + svc["id"]
        if svc["clusterIP"] is None:
            if svc["id"] == KUBERNETES_SERVICE:
                out[svc["id"]]["clusterIP"] = str(net.network_address + 1)
            continue
        slot = _ip_slot(net, svc["clusterIP"])
        if slot is None:
            raise _invalid(label, "spec.clusterIP", svc["clusterIP"], "provided IP is not in the valid range. "
                                                                      "The range of valid IPs is %s" % net)
        owner = pool.owner(slot)
        if owner is not None and owner != label:
            raise _invalid(label, "spec.clusterIP", svc["clusterIP"], "provided IP is already allocated (to %s)" % owner)
        pool.take(slot, label)
    for svc in wanting:
        label = "Service " + svc["id"]
        if out[svc["id"]]["clusterIP"] is not None:
            continue
        text = (remembered.get(svc["id"]) or {}).get("clusterIP")
        slot = _ip_slot(net, text) if text else None
        if slot is not None and pool.owner(slot) is None:
            pool.take(slot, label)
            out[svc["id"]]["clusterIP"] = text
    for svc in wanting:
        label = "Service " + svc["id"]
        if out[svc["id"]]["clusterIP"] is not None:
            continue
        slot = pool.next_free(svc["id"])
        if slot is None:
            raise ClusterError("%s: spec.clusterIP: the service CIDR %s has no free address left" % (label, net))
        pool.take(slot, label)
        out[svc["id"]]["clusterIP"] = str(net.network_address + 1 + slot)


def _allocate_node_ports(services, port_range, pool, remembered, out):
    """Node port numbers are exclusive across services whatever the protocol (one allocator, as
    the API server's), while ports of one service with the same port number share one node port
    (dns 53/UDP and dns-tcp 53/TCP), as the API server gives them."""
    first, last = port_range
    used = {}       # service id -> {(protocol, node port)}: one service may use a number once per protocol

    def claim(svc, label, protocol, number):
        """Give ``number`` to ``label``: None when done, "" when it is outside the range, else
        the owner that holds it (another service, or this one for the same protocol)."""
        if not first <= number <= last:
            return ""
        owner = pool.owner(number - first)
        if owner is not None and owner != label:
            return owner
        if (protocol, number) in used.setdefault(svc["id"], set()):
            return label
        pool.take(number - first, label)
        used[svc["id"]].add((protocol, number))
        return None

    def range_error(label, path, number):
        return _invalid(label, path, number, "provided port is not in the valid range. The range of valid ports is %d-%d" % (first, last))

    def health_label(svc):
        # its own owner name: a service's health check port is never one of its node ports
        return "Service %s (healthCheckNodePort)" % svc["id"]

    wanting = [svc for svc in services if needs_node_ports(svc)]
    # 1. declared, including on LoadBalancers that allocate none (they still hold the number)
    for svc in services:
        label = "Service " + svc["id"]
        for i, port in enumerate(svc["ports"]):
            if port["nodePort"] is None:
                continue
            owner = claim(svc, label, port["protocol"], port["nodePort"])
            if owner == "":
                raise range_error(label, "spec.ports[%d].nodePort" % i, port["nodePort"])
            if owner:
                raise _invalid(label, "spec.ports[%d].nodePort" % i, port["nodePort"], "provided port is already allocated (to %s)" % owner)
            out[svc["id"]]["nodePorts"][node_port_key(port)] = port["nodePort"]
        if svc["healthCheckNodePort"] is not None:
            owner = claim(svc, health_label(svc), "TCP", svc["healthCheckNodePort"])
            if owner == "":
                raise range_error(label, "spec.healthCheckNodePort", svc["healthCheckNodePort"])
            if owner:
                raise _invalid(label, "spec.healthCheckNodePort", svc["healthCheckNodePort"],
                               "provided port is already allocated (to %s)" % owner)
            out[svc["id"]]["healthCheckNodePort"] = svc["healthCheckNodePort"]

    def share(svc, port):
        """A node port this service already has for the same port number (another protocol)."""
        for other in svc["ports"]:
            number = out[svc["id"]]["nodePorts"].get(node_port_key(other))
            if other is not port and other["port"] == port["port"] and number is not None \
                    and (port["protocol"], number) not in used.get(svc["id"], set()):
                return number
        return None

    # 2. declared by a sibling port, then remembered; 3. new
    for phase in ("sibling", "remembered", "new"):
        for svc in wanting:
            label = "Service " + svc["id"]
            allocated = out[svc["id"]]["nodePorts"]
            for port in svc["ports"]:
                key = node_port_key(port)
                if key in allocated:
                    continue
                if phase == "sibling":
                    declared = [p["nodePort"] for p in svc["ports"] if p["port"] == port["port"] and p["nodePort"] is not None]
                    number = declared[0] if declared else None
                elif phase == "remembered":
                    number = ((remembered.get(svc["id"]) or {}).get("nodePorts") or {}).get(key)
                else:
                    number = share(svc, port)
                    if number is None:
                        slot = pool.next_free("%s:%s" % (svc["id"], key))
                        if slot is None:
                            raise ClusterError("%s: spec.ports[%d].nodePort: the node port range %d-%d has no free port left" % (
                                label, svc["ports"].index(port), first, last))
                        number = first + slot
                if number is not None and claim(svc, label, port["protocol"], number) is None:
                    allocated[key] = number
        # the health check port of a Local LoadBalancer (needed even when it allocates no node ports)
        for svc in services:
            label = "Service " + svc["id"]
            if phase == "sibling" or out[svc["id"]]["healthCheckNodePort"] is not None or not (
                    svc["type"] == "LoadBalancer" and svc["externalTrafficPolicy"] == "Local"):
                continue
            if phase == "remembered":
                number = (remembered.get(svc["id"]) or {}).get("healthCheckNodePort")
            else:
                slot = pool.next_free("%s:healthCheckNodePort" % svc["id"])
                if slot is None:
                    raise ClusterError("%s: spec.healthCheckNodePort: the node port range %d-%d has no free port left" % (
                        label, first, last))
                number = first + slot
            if number is not None and claim(svc, health_label(svc), "TCP", number) is None:
                out[svc["id"]]["healthCheckNodePort"] = number


# --- EndpointSlices: what the EndpointSlice controller writes for the selected pods -------------

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"


def pod_ip(pod, reports=None):
    """A pod's IP: its fixed address (Calico's ipAddrs annotation), else the one its node reported
    (``podIPs``), else None (not wired yet)."""
    if pod["ip"]:
        return pod["ip"]
    report = (reports or {}).get(pod["nodeName"])
    ips = report.get("podIPs") if isinstance(report, dict) else None
    text = ips.get(pod["id"]) if isinstance(ips, dict) else None
    try:
        ip = ipaddress.ip_address(str(text)) if text else None
    except ValueError:
        return None     # a report we cannot read is no report
    return str(ip) if ip is not None and ip.version == 4 else None


def pods_by_label(cluster):
    """{(namespace, label key, value): [pod, ...]}: a Service selector (a map of equalities) only
    has to look at the pods that carry one of its labels, not at every pod of the cluster."""
    index = {}
    for pod in cluster.pods:
        for key, value in pod["labels"].items():
            index.setdefault((pod["namespace"], key, value), []).append(pod)
    return index


def selected_pods(cluster, svc, index=None):
    """The pods of the Service's namespace its selector picks; none without a selector
    (``index``: :func:`pods_by_label`, when selecting for many services)."""
    if not svc["selector"]:
        return []
    index = index if index is not None else pods_by_label(cluster)
    candidates = min((index.get((svc["namespace"], key, value), []) for key, value in svc["selector"].items()), key=len)
    return [pod for pod in candidates if selector_matches(svc["selector"], pod["labels"], "Service " + svc["id"])]


def _container_port(pod, name, protocol):
    for port in pod["ports"]:
        if port.get("name") == name and port.get("protocol", "TCP") == protocol:
            return port["containerPort"]
    return None


def _endpoint_ports(svc, pod):
    """The service ports this pod serves, resolved from targetPort (podutil.FindPort): a number
    as it is, a name by the pod's container port of that name and protocol; a port the pod does
    not have is left out for this pod, as the controller does."""
    out = []
    for port in svc["ports"]:
        target = port["targetPort"]
        number = _container_port(pod, target, port["protocol"]) if isinstance(target, str) else target
        if number is not None:
            out.append((port["name"], number, port["protocol"]))
    return tuple(out)


def _check_named_target_ports(svc, pods):
    """A named targetPort that no selected pod declares is a mistake in the manifests (the
    controller would leave every endpoint out of that port, and the port would REJECT)."""
    if not pods:
        return      # a selector matching nothing is allowed: the service rejects
    for i, port in enumerate(svc["ports"]):
        target = port["targetPort"]
        if isinstance(target, str) and all(_container_port(pod, target, port["protocol"]) is None for pod in pods):
            raise ClusterError("Service %s: spec.ports[%d].targetPort: %s: no selected pod declares a %s container port "
                               "of that name (selected: %s)" % (svc["id"], i, _quote(target), port["protocol"],
                                                                ", ".join(p["id"] for p in pods)))


def _slice_name(svc, ports, chunk):
    # the controller uses generateName "<service>-" plus random characters; ours is derived from
    # what the slice holds, so every node names it the same
    digest = hashlib.sha256(("%s|%r|%d" % (svc["id"], ports, chunk)).encode("utf-8")).hexdigest()[:10]
    return "%s-%s" % (svc["name"][:52], digest)


def _computed_slices(cluster, svc, reports, index, zones):
    pods = selected_pods(cluster, svc, index)
    _check_named_target_ports(svc, pods)
    groups = {}
    for pod in sorted(pods, key=lambda p: p["id"]):
        ip = pod_ip(pod, reports)
        if ip is None:
            continue    # the controller leaves out pods without an IP
        endpoint = {"addresses": [ip],
                    # no readiness probes run here: a wired pod is ready
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": pod["nodeName"],
                    "targetRef": {"kind": "Pod", "namespace": pod["namespace"], "name": pod["name"]}}
        if zones.get(pod["nodeName"]):
            endpoint["zone"] = zones[pod["nodeName"]]
        if pod["hostname"] and pod["subdomain"] == svc["name"]:
            endpoint["hostname"] = pod["hostname"]      # as the controller does, for the DNS records
        groups.setdefault(_endpoint_ports(svc, pod), []).append(endpoint)
    labels = dict(svc["labels"])
    labels.update({SERVICE_NAME_LABEL: svc["name"], MANAGED_BY_LABEL: SLICE_CONTROLLER})
    if svc["clusterIP"] == "None":
        labels[HEADLESS_LABEL] = ""
    out = []
    # one slice per set of resolved ports, at most 100 endpoints each (--max-endpoints-per-slice)
    for ports in sorted(groups):
        endpoints = groups[ports]
        for chunk, start in enumerate(range(0, len(endpoints), MAX_SLICE_ENTRIES)):
            out.append({
                "apiVersion": API_VERSIONS["EndpointSlice"], "kind": "EndpointSlice",
                "metadata": {"name": _slice_name(svc, ports, chunk), "namespace": svc["namespace"], "labels": dict(labels),
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc["name"],
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "addressType": "IPv4",
                "endpoints": endpoints[start:start + MAX_SLICE_ENTRIES],
                "ports": [{"name": name, "port": number, "protocol": protocol} for name, number, protocol in ports],
            })
    return out


def endpoint_slices(cluster, reports=None):
    """discovery.k8s.io/v1 EndpointSlice dicts for the whole cluster, in service id order: for a
    Service with a selector, the slices the EndpointSlice controller would write from the
    selected pods (pod IPs from :func:`pod_ip`); then the declared slices (a Service without a
    selector takes those, as Kubernetes allows). ExternalName services get none."""
    out = []
    index = pods_by_label(cluster)
    zones = dict((node["name"], node["labels"].get(ZONE_LABEL)) for node in cluster.nodes)
    for svc in sorted(cluster.services, key=lambda s: s["id"]):
        if svc["type"] != "ExternalName" and svc["selector"]:
            out.extend(_computed_slices(cluster, svc, reports or {}, index, zones))
    for declared in sorted(cluster.endpoint_slices, key=lambda s: s["id"]):
        out.append(copy.deepcopy(declared["object"]))
    return out


# --- the whole service model ----------------------------------------------------------------------

def service_object(svc, addresses):
    """A parsed Service as the v1 object the API server would store: defaults filled and the
    allocated clusterIP / nodePorts / healthCheckNodePort in place, and the allocated
    LoadBalancer IP in status.loadBalancer.ingress (as MetalLB writes it), so kube-proxy's
    LoadBalancer rules exist for it."""
    spec = {"type": svc["type"]}
    if svc["type"] == "ExternalName":
        spec["externalName"] = svc["externalName"]
    else:
        ip = addresses["clusterIP"]
        spec.update(clusterIP=ip, clusterIPs=[ip], ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    ports = []
    for port in svc["ports"]:
        item = {"protocol": port["protocol"], "port": port["port"], "targetPort": port["targetPort"]}
        if port["name"]:
            item["name"] = port["name"]
        node_port = addresses["nodePorts"].get(node_port_key(port))
        if node_port is not None:
            item["nodePort"] = node_port
        ports.append(item)
    if ports:
        spec["ports"] = ports
    if svc["selector"]:
        spec["selector"] = dict(svc["selector"])
    spec["sessionAffinity"] = svc["sessionAffinity"]
    if svc["sessionAffinityConfig"]:
        spec["sessionAffinityConfig"] = copy.deepcopy(svc["sessionAffinityConfig"])
    optional = (("externalIPs", svc["externalIPs"]), ("externalTrafficPolicy", svc["externalTrafficPolicy"]),
                ("internalTrafficPolicy", svc["internalTrafficPolicy"]),
                ("healthCheckNodePort", addresses["healthCheckNodePort"]),
                ("loadBalancerIP", svc["loadBalancerIP"]), ("loadBalancerSourceRanges", svc["loadBalancerSourceRanges"]),
                ("allocateLoadBalancerNodePorts", svc["allocateLoadBalancerNodePorts"]),
                ("publishNotReadyAddresses", svc["publishNotReadyAddresses"] or None))
    for key, value in optional:
        if value is not None and value != []:
            spec[key] = copy.deepcopy(value)
    metadata = {"name": svc["name"], "namespace": svc["namespace"]}
    for key in ("labels", "annotations"):     # kept for other readers (DNS reads tolerate-unready)
        if svc[key]:
            metadata[key] = dict(svc[key])
    ingress = svc["loadBalancerIngress"]
    lb_ip = addresses.get("loadBalancerIP")
    if lb_ip is not None and not any(entry.get("ip") == lb_ip for entry in ingress):
        ingress = [{"ip": lb_ip, "ipMode": "VIP"}]     # given out here, or requested over an older status
    load_balancer = {"ingress": copy.deepcopy(ingress)} if ingress else {}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec,
            "status": {"loadBalancer": load_balancer}}


def service_report(allocation):
    """What a node writes back after applying the services (its local facts' ``services``), so
    that the next run, on any node, keeps every value: {"services": {id: {"clusterIP": ip,
    "nodePorts": {"name/PROTO": n}, "healthCheckNodePort": n, "loadBalancerIP": ip}}} (empty
    fields left out)."""
    services = {}
    for sid in sorted(allocation):
        addresses = allocation[sid]
        entry = {}
        if addresses["clusterIP"] not in (None, "None"):
            entry["clusterIP"] = addresses["clusterIP"]
        if addresses["nodePorts"]:
            entry["nodePorts"] = dict(addresses["nodePorts"])
        if addresses["healthCheckNodePort"] is not None:
            entry["healthCheckNodePort"] = addresses["healthCheckNodePort"]
        if addresses.get("loadBalancerIP") is not None:
            entry["loadBalancerIP"] = addresses["loadBalancerIP"]
        if entry:
            services[sid] = entry
    return {"services": services}


def service_model(cluster, service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE, reports=None):
    """The services of the whole cluster, the same on every node::

        {"services": [v1 Service, ...],               # clusterIP / nodePorts / LB ingress filled, id order
         "endpoint_slices": [discovery.k8s.io/v1 EndpointSlice, ...],
         "report": {"services": {...}}}               # what each node writes back (service_report)

    ``services`` and ``endpoint_slices`` are what ``kubeproxy.build_ruleset`` takes; ``reports``
    are the nodes' reports ({node: report}, as ``node_reports`` gives), read for pod IPs and for
    the addresses given out before."""
    allocation = allocate_service_addresses(cluster, service_cidr, node_port_range, reports)
    services = [service_object(svc, allocation[svc["id"]]) for svc in sorted(cluster.services, key=lambda s: s["id"])]
    return {"services": services, "endpoint_slices": endpoint_slices(cluster, reports),
            "report": service_report(allocation)}


def cluster_services(objects, hosts=None, service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE,
                     reports=None):
    """The whole pipeline for the services: parse, allocate, compute the slices."""
    return service_model(parse_objects(objects, hosts), service_cidr, node_port_range, reports)
