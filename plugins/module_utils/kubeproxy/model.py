# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube-proxy's view of the cluster, read from plain Kubernetes objects (pure, no I/O).

Services (v1) and EndpointSlices (discovery.k8s.io/v1) come in as the dicts ``kubectl get -o
yaml`` prints. This module turns them into what kube-proxy's iptables proxier works from: one
:class:`ServicePort` per service port, the :class:`Endpoint` list of each, and, per node, the
endpoints each traffic policy uses (:func:`categorize`). IPv4 only, like the rest of the
collection. The rules themselves are written by :mod:`.rules`.

Behaviour follows kubernetes pkg/proxy (service.go, endpointslicecache.go, topology.go):

- A Service with clusterIP None/empty, or of type ExternalName, is not proxied.
- targetPort is not read: the endpoint port is the EndpointSlice's port of the same name and
  protocol (resolving a named targetPort is the EndpointSlice controller's job).
- An endpoint without ``conditions.ready`` is ready, without ``serving`` is serving, without
  ``terminating`` is not terminating; only its first address counts; the same ip:port seen twice
  keeps the non-terminating one; endpoints sort by the *string* "ip:port".
- Slices of another addressType, or without the kubernetes.io/service-name label, are ignored.

One leniency: an EndpointSlice port without ``name`` is taken as the unnamed port ``""`` (kubectl
prints ``name: ""``; kube-proxy would skip a port whose name is nil), so hand-written slices work.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_STICKY_SECONDS = 10800       # the API server's default for sessionAffinityConfig
PROTOCOLS = ("TCP", "UDP", "SCTP")


def _get(obj, *path, default=None):
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
        if obj is None:
            return default
    return obj


def _ipv4(text):
    """The address as Go's net.IP.String() prints it, or None when it is not IPv4."""
    try:
        ip = ipaddress.ip_address(str(text).strip())
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


def _ipv4_net(text):
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        return None
    return net if net.version == 4 else None


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of one service port, as kube-proxy's BaseEndpointInfo."""
    ip: str
    port: int
    local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone_hints: frozenset = frozenset()

    def __str__(self):
        return "%s:%d" % (self.ip, self.port)


@dataclass
class ServicePort:
    """One port of one Service, with everything the proxier needs (kube-proxy's ServicePort)."""
    namespace: str
    name: str
    port_name: str
    protocol: str                    # TCP | UDP | SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list = field(default_factory=list)
    lb_vips: list = field(default_factory=list)
    lb_source_ranges: list = field(default_factory=list)   # ipaddress.IPv4Network
    affinity: bool = False           # sessionAffinity ClientIP
    sticky_seconds: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def service(self):
        """"namespace/name": the unit a partial sync rewrites."""
        return "%s/%s" % (self.namespace, self.name)

    @property
    def name_string(self):
        """kube-proxy's ServicePortName.String(): "ns/name:port", or "ns/name" for an unnamed port."""
        return self.service + (":" + self.port_name if self.port_name else "")

    @property
    def key(self):
        return (self.namespace, self.name, self.port_name, self.protocol)

    @property
    def externally_accessible(self):
        return self.node_port != 0 or bool(self.lb_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self):
        # Even with externalTrafficPolicy Local, Cluster endpoints serve the short-circuit rules.
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self):
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


def _service_id(svc):
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    if not isinstance(meta, dict) or not meta.get("name"):
        raise FabricError("Service %r: metadata.name is missing" % (svc,))
    return meta.get("namespace") or "default", meta["name"]


def _int_field(value, what, low=0, high=65535):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FabricError("%s: %r is not a number from %d to %d" % (what, value, low, high))
    return value


def _policy_externally_accessible(svc_type, external_ips):
    # pkg/api/v1/service ExternallyAccessible: what the externalTrafficPolicy applies to.
    return svc_type in ("LoadBalancer", "NodePort") or (svc_type == "ClusterIP" and bool(external_ips))


def _cluster_ipv4(spec):
    for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
        if ip and ip != "None" and _ipv4(ip):
            return _ipv4(ip)
    return None


def service_ports(svc):
    """The :class:`ServicePort` list of one Service dict (empty when kube-proxy skips it)."""
    namespace, name = _service_id(svc)
    where = "Service %s/%s" % (namespace, name)
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise FabricError("%s: spec.type %r is not ClusterIP, NodePort, LoadBalancer or ExternalName" % (where, svc_type))
    if svc_type == "ExternalName":
        return []
    cluster_ip = _cluster_ipv4(spec)
    if cluster_ip is None:        # headless, or no IPv4 family
        return []

    external_ips = [ip for ip in (_ipv4(x) for x in spec.get("externalIPs") or []) if ip]
    ext_local = (_policy_externally_accessible(svc_type, external_ips)
                 and spec.get("externalTrafficPolicy") == "Local")
    int_local = spec.get("internalTrafficPolicy") == "Local"
    ranges = [n for n in (_ipv4_net(x) for x in spec.get("loadBalancerSourceRanges") or []) if n]
    vips = []
    for ing in _get(svc, "status", "loadBalancer", "ingress", default=[]) or []:
        if not isinstance(ing, dict) or not ing.get("ip") or ing.get("ipMode") == "Proxy":
            continue                  # a proxy-mode LB delivers to the node: no VIP rules
        ip = _ipv4(ing["ip"])
        if ip:
            vips.append(ip)
    affinity = spec.get("sessionAffinity") == "ClientIP"
    sticky = 0
    if affinity:
        sticky = _get(spec, "sessionAffinityConfig", "clientIP", "timeoutSeconds", default=DEFAULT_STICKY_SECONDS)
        _int_field(sticky, where + ": spec.sessionAffinityConfig.clientIP.timeoutSeconds", 1, 86400)
    hc_port = 0
    if svc_type == "LoadBalancer" and ext_local:
        hc_port = spec.get("healthCheckNodePort") or 0

    ports = []
    seen = set()
    for i, p in enumerate(spec.get("ports") or []):
        at = "%s: spec.ports[%d]" % (where, i)
        if not isinstance(p, dict):
            raise FabricError("%s: must be a mapping" % at)
        proto = p.get("protocol") or "TCP"
        if proto not in PROTOCOLS:
            raise FabricError("%s.protocol: %r is not TCP, UDP or SCTP" % (at, proto))
        port_name = p.get("name") or ""
        if (port_name, proto) in seen:
            raise FabricError("%s.name: a second %s port named %r" % (at, proto, port_name))
        seen.add((port_name, proto))
        ports.append(ServicePort(
            namespace=namespace, name=name, port_name=port_name, protocol=proto,
            cluster_ip=cluster_ip,
            port=_int_field(p.get("port"), at + ".port", 1),
            node_port=_int_field(p.get("nodePort") or 0, at + ".nodePort"),
            external_ips=external_ips, lb_vips=vips, lb_source_ranges=ranges,
            affinity=affinity, sticky_seconds=sticky,
            external_policy_local=ext_local, internal_policy_local=int_local,
            health_check_node_port=hc_port,
        ))
    return ports


def endpoints_map(slices, node_name):
    """EndpointSlice dicts -> {(ns, service, port name, protocol): [Endpoint, ...]} (sorted as kube-proxy does)."""
    by_port = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = _get(meta, "labels", SERVICE_NAME_LABEL)
        if not svc:
            continue                  # kube-proxy logs and ignores such a slice
        if (sl.get("addressType") or "IPv4") != "IPv4":
            continue
        namespace = meta.get("namespace") or "default"
        for port in sl.get("ports") or []:
            number = port.get("port")
            if not number:
                continue
            key = (namespace, svc, port.get("name") or "", port.get("protocol") or "TCP")
            found = by_port.setdefault(key, {})
            for ep in sl.get("endpoints") or []:
                _add_endpoint(found, ep, int(number), node_name)
    return {key: sorted(found.values(), key=str) for key, found in by_port.items() if found}


def _add_endpoint(found, ep, number, node_name):
    addresses = ep.get("addresses") or []
    if not addresses:
        return
    ip = _ipv4(addresses[0])
    if ip is None:
        return
    cond = ep.get("conditions") or {}
    terminating = cond.get("terminating") is True
    zones = frozenset(z.get("name") for z in _get(ep, "hints", "forZones", default=[]) or [] if isinstance(z, dict))
    info = Endpoint(
        ip=ip, port=number,
        local=bool(node_name) and ep.get("nodeName") == node_name,
        ready=cond.get("ready") is not False,
        serving=cond.get("serving") is not False,
        terminating=terminating,
        zone_hints=zones,
    )
    if str(info) not in found or not terminating:
        found[str(info)] = info


def _topology_zone_mode(endpoints, zone):
    """True when every ready endpoint has a zone hint and one is for this node's zone."""
    ready = [ep for ep in endpoints if ep.ready]
    return bool(zone) and all(ep.zone_hints for ep in ready) and any(zone in ep.zone_hints for ep in ready)


def categorize(endpoints, sp, zone=None):
    """(cluster, local, all locally reachable, has any endpoints), as kube-proxy's CategorizeEndpoints.

    "Usable" means ready, falling back to serving-and-terminating (separately for Cluster and
    Local) when none is ready. Zone hints apply when every ready endpoint has one and one is for
    ``zone``; node hints (feature gate PreferSameTrafficDistribution) are not read.
    """
    cluster = []
    local = []
    has_any = False
    by_zone = False
    if sp.uses_cluster_endpoints:
        by_zone = _topology_zone_mode(endpoints, zone)
        cluster = [ep for ep in endpoints if ep.ready and (not by_zone or zone in ep.zone_hints)]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return cluster, local, cluster, has_any

    local_ready = False
    local_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.local
        elif ep.serving and ep.terminating:
            has_any = True
            local_terminating = local_terminating or ep.local
    if local_ready:
        local = [ep for ep in endpoints if ep.local and ep.ready]
    elif local_terminating:
        local = [ep for ep in endpoints if ep.local and ep.serving and ep.terminating]
    if not sp.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not by_zone and (local_ready or not local_terminating):
        # local holds only ready endpoints and cluster holds every ready one: a superset
        return cluster, local, cluster, has_any
    merged = {str(ep): ep for ep in cluster}
    merged.update((str(ep), ep) for ep in local)
    return cluster, local, sorted(merged.values(), key=str), has_any
