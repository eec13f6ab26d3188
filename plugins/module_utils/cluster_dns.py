# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster DNS: Kubernetes objects -> DNS records -> an unbound configuration (pure, no I/O).

:func:`cluster_records` turns v1 Services, discovery.k8s.io/v1 EndpointSlices and v1 Pods (the
dicts ``kubectl get -o yaml`` prints) into the records of the Kubernetes DNS specification,
schema 1.1.0 (kubernetes/dns docs/specification.md); :func:`unbound_config` renders them as the
configuration of unbound, sorted, so the same objects always give the same bytes.
:func:`node_dns` is one node's share for the role podnet.fabric.cluster_dns: the unbound
configuration of each DNS pod of the node (the pods the DNS Service selects) and the kubelet's
resolv.conf (:func:`resolv_conf`) for each of its pods.

Records (``<zone>`` is the cluster domain, ``cluster.local`` by default):

- ``dns-version.<zone>`` TXT "1.1.0" (spec 2.2). (:func:`unbound_config` adds the zone's SOA,
  so that negative answers carry a TTL.)
- Service with a ClusterIP: ``<svc>.<ns>.svc.<zone>`` A; for each named port
  ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV ``10 100 <port> <svc>.<ns>.svc.<zone>``
  (the spec leaves priority and weight open; these are its examples' values, equal weights);
  the reverse name of the ClusterIP PTR the service name.
- Headless Service (clusterIP None): per *ready* endpoint, ``<svc>...`` A, ``<hostname>.<svc>...``
  A, one SRV per named port of its EndpointSlice (the endpoint's port, as kube-dns and CoreDNS
  answer) targeting ``<hostname>.<svc>...``, and a PTR to that name. The spec gives every
  endpoint a hostname: its ``hostname`` field, else a system-assigned one; ours is the address
  with dashes (``10-244-1-5``), CoreDNS's choice, so every SRV target resolves. No ready
  endpoint: no records, so the name is NXDOMAIN as the spec asks. Not-ready endpoints count as
  ready when the Service sets ``spec.publishNotReadyAddresses`` (or the old
  tolerate-unready-endpoints annotation). An endpoint without ``conditions.ready`` is ready and
  only its first address counts, as in :mod:`.kubeproxy.model`.
- ExternalName Service: ``<svc>.<ns>.svc.<zone>`` CNAME ``<externalName>``.
- Pod (an extension the spec allows, the ``pods`` records of kube-dns/CoreDNS):
  ``a-b-c-d.<ns>.pod.<zone>`` A and a PTR, from ``status.podIP`` or else the collection's fixed
  address annotation (``cni.projectcalico.org/ipAddrs``). The pod PTR is left out for an address
  that already has a spec PTR (a headless endpoint), so a reverse lookup names the service.
  hostNetwork pods get nothing (their address is the node's).

IPv4 only, like the rest of the collection. Names are compared case-insensitively by the server;
the API server's validation is enforced here (lower-case DNS labels), and bad input raises
:class:`FabricError` with one line naming the object and the reason.

Why unbound (1.17) and not dnsmasq (2.90), both tried in network namespaces on this machine:

- ExternalName: dnsmasq's ``--cname`` only points at names dnsmasq itself knows (hosts files,
  DHCP); for ``www.example.test`` held by the upstream it answered the bare CNAME, unfollowed.
  unbound, with the name as a ``redirect`` local zone holding the CNAME, answered the CNAME *and*
  the upstream's A record in one response.
- Inside the cluster domain: unbound's ``static`` local zone answers unknown names NXDOMAIN with
  the AA flag and our SOA (negative TTL), never asking the upstream; dnsmasq's ``--local`` gave
  NXDOMAIN without AA or SOA and TTL 0 on its records.
- Changes: ``unbound-control reload`` re-reads the whole configuration in the same process;
  dnsmasq's SIGHUP re-reads only hosts-style files, never the SRV/CNAME/PTR options of its
  configuration, so adding a Service's SRV records would need a restart.
Both do A, SRV, PTR and forwarding; kube-dns ran dnsmasq only as a cache in front of SkyDNS.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils.cluster import IP_ADDRS_ANNOTATION
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.model import (
    PROTOCOLS, SERVICE_NAME_LABEL, _ipv4, _ipv4_net, _service_id, service_ports)
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

SCHEMA_VERSION = "1.1.0"
DEFAULT_DOMAIN = "cluster.local"
DEFAULT_TTL = 5                       # CoreDNS's default: Service changes show within seconds
SRV_PRIORITY, SRV_WEIGHT = 10, 100
TOLERATE_UNREADY = "service.alpha.kubernetes.io/tolerate-unready-endpoints"

# The API server's own patterns (k8s.io/apimachinery/pkg/util/validation).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class Record:
    """One resource record: absolute ``name`` without the final dot, ``type``, and ``data`` in
    zone-file presentation form (names in it end with a dot)."""
    name: str
    type: str                          # A | CNAME | PTR | SOA | SRV | TXT
    data: str

    def zone_line(self, ttl):
        return "%s. %d IN %s %s" % (self.name, ttl, self.type, self.data)


def _label(value, pattern=_DNS1123_LABEL):
    return isinstance(value, str) and len(value) <= 63 and bool(pattern.match(value))


def _subdomain(value):
    return (isinstance(value, str) and 0 < len(value) <= 253
            and all(_label(part) for part in value.split(".")))


def reverse_name(ip):
    """``10.96.0.1`` -> ``1.0.96.10.in-addr.arpa``."""
    return ipaddress.ip_address(ip).reverse_pointer


def dashed(ip):
    """``10.244.1.5`` -> ``10-244-1-5``: the pod name form and our system-assigned hostname."""
    return ip.replace(".", "-")


def cluster_records(services, endpoint_slices=(), pods=(), domain=DEFAULT_DOMAIN):
    """The cluster's DNS records, sorted and without duplicates (see the module docstring)."""
    if not _subdomain(domain):
        raise FabricError("cluster domain %r: not a lower-case DNS name (RFC 1123)" % (domain,))
    records = {Record("dns-version." + domain, "TXT", '"%s"' % SCHEMA_VERSION)}
    slices = _slices_by_service(endpoint_slices)
    owners_of_ip = {}                  # ClusterIP -> "ns/name", to refuse a ClusterIP given twice
    seen = set()
    for svc in services:
        namespace, name = _service_identity(svc)
        if (namespace, name) in seen:
            raise FabricError("Service %s/%s: declared twice" % (namespace, name))
        seen.add((namespace, name))
        records |= _service_records(svc, namespace, name, domain, slices.get((namespace, name), []), owners_of_ip)
    ptr_names = set(r.name for r in records if r.type == "PTR")
    for pod in pods:
        for record in _pod_records(pod, domain):
            if record.type != "PTR" or record.name not in ptr_names:
                records.add(record)
    return sorted(records)


def _service_identity(svc):
    namespace, name = _service_id(svc)
    if not _label(namespace):
        raise FabricError("Service %s/%s: metadata.namespace is not a DNS-1123 label" % (namespace, name))
    if not _label(name, _DNS1035_LABEL):
        raise FabricError("Service %s/%s: metadata.name is not a DNS-1035 label "
                          "(lower-case letters, digits, '-', starting with a letter)" % (namespace, name))
    return namespace, name


def _service_records(svc, namespace, name, domain, slices, owners_of_ip):
    where = "Service %s/%s" % (namespace, name)
    fqdn = "%s.%s.svc.%s" % (name, namespace, domain)
    spec = svc.get("spec") or {}
    _check_port_names(spec, where)
    cluster_ports = service_ports(svc)      # validates type, ports, protocols; [] if not proxied
    if (spec.get("type") or "ClusterIP") == "ExternalName":
        target = spec.get("externalName")
        if isinstance(target, str) and target.endswith("."):
            target = target[:-1]           # an absolute name is the same name
        if not _subdomain(target):
            raise FabricError("%s: spec.externalName %r is not a lower-case DNS name (RFC 1123)" % (where, spec.get("externalName")))
        return {Record(fqdn, "CNAME", target + ".")}

    cluster_ip = spec.get("clusterIP")
    if cluster_ip in (None, ""):
        raise FabricError("%s: spec.clusterIP is not set (allocate it before rendering DNS)" % where)
    if cluster_ip == "None":
        return _headless_records(svc, fqdn, slices, where)
    if _ipv4(cluster_ip) is None:
        raise FabricError("%s: spec.clusterIP %r is not an IPv4 address or None" % (where, cluster_ip))
    cluster_ip = _ipv4(cluster_ip)
    if cluster_ip in owners_of_ip:
        raise FabricError("%s: spec.clusterIP %s is already Service %s's" % (where, cluster_ip, owners_of_ip[cluster_ip]))
    owners_of_ip[cluster_ip] = "%s/%s" % (namespace, name)
    records = {Record(fqdn, "A", cluster_ip), Record(reverse_name(cluster_ip), "PTR", fqdn + ".")}
    for sp in cluster_ports:
        if sp.port_name:
            records.add(_srv(sp.port_name, sp.protocol, fqdn, sp.port, fqdn))
    return records


def _check_port_names(spec, where):
    # SRV owner names are built from port names: only DNS labels make valid names.
    for i, port in enumerate(spec.get("ports") or []):
        port_name = port.get("name") if isinstance(port, dict) else None
        if port_name and not _label(port_name):
            raise FabricError("%s: spec.ports[%d].name %r is not a DNS-1123 label" % (where, i, port_name))


def _srv(port_name, protocol, fqdn, port, target):
    return Record("_%s._%s.%s" % (port_name, protocol.lower(), fqdn), "SRV",
                  "%d %d %d %s." % (SRV_PRIORITY, SRV_WEIGHT, port, target))


def _headless_records(svc, fqdn, slices, where):
    spec = svc.get("spec") or {}
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    publish_unready = spec.get("publishNotReadyAddresses") is True or annotations.get(TOLERATE_UNREADY) == "true"
    records = set()
    for sl in slices:
        at = "EndpointSlice %s (of %s)" % ((sl.get("metadata") or {}).get("name"), where)
        named_ports = _slice_named_ports(sl, at)
        for i, ep in enumerate(sl.get("endpoints") or []):
            ep = ep if isinstance(ep, dict) else {}
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            ip = _ipv4(addresses[0])
            if ip is None:
                raise FabricError("%s: endpoints[%d].addresses[0] %r is not an IPv4 address" % (at, i, addresses[0]))
            ready = (ep.get("conditions") or {}).get("ready") is not False
            if not (ready or publish_unready):
                continue
            hostname = ep.get("hostname") or dashed(ip)
            if not _label(hostname):
                raise FabricError("%s: endpoints[%d].hostname %r is not a DNS-1123 label" % (at, i, hostname))
            host_fqdn = "%s.%s" % (hostname, fqdn)
            records |= {Record(fqdn, "A", ip), Record(host_fqdn, "A", ip),
                        Record(reverse_name(ip), "PTR", host_fqdn + ".")}
            records |= set(_srv(n, proto, fqdn, number, host_fqdn) for n, proto, number in named_ports)
    return records


def _slice_named_ports(sl, at):
    named = []
    for i, port in enumerate(sl.get("ports") or []):
        port = port if isinstance(port, dict) else {}
        port_name, proto, number = port.get("name"), port.get("protocol") or "TCP", port.get("port")
        if not port_name:
            continue                       # unnamed ports have no SRV record (spec 2.4.2)
        if not _label(port_name) or proto not in PROTOCOLS:
            raise FabricError("%s: ports[%d] needs a DNS-1123 label name and protocol TCP, UDP or SCTP" % (at, i))
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            raise FabricError("%s: ports[%d].port %r is not a number from 1 to 65535" % (at, i, number))
        named.append((port_name, proto, number))
    return named


def _slices_by_service(endpoint_slices):
    # As kube-proxy: slices without the service-name label or of another family are ignored.
    by_service = {}
    for sl in endpoint_slices:
        if not isinstance(sl, dict):
            raise FabricError("EndpointSlice %r: must be a mapping" % (sl,))
        meta = sl.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service and (sl.get("addressType") or "IPv4") == "IPv4":
            by_service.setdefault((meta.get("namespace") or "default", service), []).append(sl)
    return by_service


def _pod_records(pod, domain):
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict) or not meta.get("name"):
        raise FabricError("Pod %r: metadata.name is missing" % (pod,))
    namespace = meta.get("namespace") or "default"
    where = "Pod %s/%s" % (namespace, meta["name"])
    if not _label(namespace):
        raise FabricError("%s: metadata.namespace is not a DNS-1123 label" % where)
    if (pod.get("spec") or {}).get("hostNetwork") is True:
        return set()
    text = (pod.get("status") or {}).get("podIP")
    if not text:
        fixed = (meta.get("annotations") or {}).get(IP_ADDRS_ANNOTATION)
        if not fixed:
            return set()                   # no address yet: no records yet
        try:
            text = (json.loads(fixed) or [None])[0]
        except (TypeError, ValueError):
            raise FabricError("%s: annotation %s %r is not a JSON list of addresses" % (where, IP_ADDRS_ANNOTATION, fixed))
    ip = _ipv4(text)
    if ip is None:
        raise FabricError("%s: pod IP %r is not an IPv4 address" % (where, text))
    fqdn = "%s.%s.pod.%s" % (dashed(ip), namespace, domain)
    return {Record(fqdn, "A", ip), Record(reverse_name(ip), "PTR", fqdn + ".")}


def unbound_config(records, upstreams, interfaces=("0.0.0.0",), allow=("0.0.0.0/0",),
                   domain=DEFAULT_DOMAIN, ttl=DEFAULT_TTL, forward_domains=(), control_socket=None,
                   server_options=()):
    """unbound.conf text serving ``records`` for ``domain`` and forwarding everything else.

    ``upstreams``: IPv4 addresses (``ip`` or ``ip@port``) of the upstream servers.
    ``forward_domains``: names outside the cluster domain that unbound by default answers itself
    (RFC 6761's ``test.``, ``home.arpa.``, private reverse zones) but that the upstream serves,
    e.g. a lab's ``example.test``: RFC 6761 asks for exactly this opt-in.
    ``control_socket``: a path for ``unbound-control`` (reload without restart).
    ``server_options``: daemon lines ("pidfile: ...", "username: ...") added as given.
    """
    if not upstreams:
        raise FabricError("cluster DNS: at least one upstream server is needed")
    for upstream in upstreams:
        ip, _sep, port = str(upstream).partition("@")
        if _ipv4(ip) is None or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise FabricError("cluster DNS: upstream %r is not an IPv4 address (optionally @port)" % (upstream,))
    for ip in interfaces:
        if _ipv4(ip) is None:
            raise FabricError("cluster DNS: interface %r is not an IPv4 address" % (ip,))
    for net in allow:
        if _ipv4_net(net) is None:
            raise FabricError("cluster DNS: allowed client network %r is not an IPv4 CIDR" % (net,))
    for name in forward_domains:
        if not _subdomain(name) or name == domain or name.endswith("." + domain):
            raise FabricError("cluster DNS: forward domain %r is not a DNS name outside %s" % (name, domain))

    lines = ["# podnet.fabric cluster DNS: rendered from Kubernetes objects, do not edit", "server:"]
    lines += ["  interface: %s" % ip for ip in interfaces]
    lines += ["  access-control: %s allow" % net for net in allow]
    lines += ["  %s" % option for option in server_options]
    lines += [
        # No DNSSEC validation: the cluster zone is unsigned and a lab's upstream has no signed
        # chain to the root, so a trust anchor (Debian ships one) would turn answers into SERVFAIL.
        '  module-config: "iterator"',
        # static: names in the zone without data are NXDOMAIN here, never asked upstream.
        '  local-zone: "%s." static' % domain,
    ]
    lines += ['  local-zone: "%s." transparent' % name for name in sorted(forward_domains)]
    # The SOA (CoreDNS's values) puts the negative TTL into NXDOMAIN answers.
    soa = Record(domain, "SOA", "ns.dns.%s. hostmaster.%s. 1 7200 1800 86400 %d" % (domain, domain, ttl))
    records = sorted(set(records) | {soa})
    for record in records:
        if record.type == "CNAME":
            # A redirect zone makes unbound follow the CNAME (to the upstream) in the same
            # answer; as plain local-data it would answer the bare CNAME. (Side effect: names
            # below an ExternalName answer the same CNAME; Kubernetes defines none there.)
            lines.append('  local-zone: "%s." redirect' % record.name)
    # single quotes: TXT data has double quotes of its own
    lines += ["  local-data: '%s'" % record.zone_line(ttl) for record in records]
    if control_socket:
        lines += ["remote-control:", "  control-enable: yes", "  control-interface: %s" % control_socket]
    lines += ["forward-zone:", '  name: "."'] + ["  forward-addr: %s" % upstream for upstream in upstreams]
    return "\n".join(lines) + "\n"


# --- one node's DNS: the kubelet's resolv.conf for its pods, and its DNS pods' servers ----------

DNS_SERVICE = "kube-system/kube-dns"
DEFAULT_NDOTS = 5
RESOLV_MARKER = "# podnet.fabric cluster_dns"   # first line of every resolv.conf written here
# The kubelet's limits (pkg/kubelet/network/dns): glibc reads at most 3 nameservers, and the
# search list is capped at 32 names.
MAX_NAMESERVERS, MAX_SEARCHES = 3, 32
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


def resolv_conf(pod_id, namespace, nameservers, domain=DEFAULT_DOMAIN, ndots=DEFAULT_NDOTS, policy="ClusterFirst",
                dns_config=None):
    """The resolv.conf the kubelet gives pod ``pod_id`` ("ns/name"), or None for ``dnsPolicy:
    Default`` (the pod keeps the node's resolver).

    ClusterFirst: ``nameserver`` the cluster DNS, ``search <ns>.svc.<domain> svc.<domain>
    <domain>``, ``options ndots:5``; ``spec.dnsConfig`` adds nameservers and searches after
    them and its options replace same-named ones. ``None``: only ``spec.dnsConfig``."""
    where = "Pod %s" % pod_id
    if policy not in DNS_POLICIES:
        raise FabricError("%s: spec.dnsPolicy %r is not one of %s" % (where, policy, ", ".join(DNS_POLICIES)))
    if policy == "Default":
        return None
    config = dns_config if dns_config is not None else {}
    if not isinstance(config, dict):
        raise FabricError("%s: spec.dnsConfig must be a mapping" % where)
    extra_servers = _string_list(config.get("nameservers"), where, "spec.dnsConfig.nameservers")
    for ip in extra_servers:
        if _ipv4(ip) is None:
            raise FabricError("%s: spec.dnsConfig.nameservers: %r is not an IPv4 address" % (where, ip))
    extra_searches = _string_list(config.get("searches"), where, "spec.dnsConfig.searches")
    options = [("ndots", str(ndots))] if policy != "None" else []
    for i, option in enumerate(config.get("options") or []):
        if not isinstance(option, dict) or not isinstance(option.get("name"), str) or not option["name"]:
            raise FabricError("%s: spec.dnsConfig.options[%d] needs a name" % (where, i))
        value = option.get("value")
        options = [o for o in options if o[0] != option["name"]] + [(option["name"], None if value is None else str(value))]
    if policy == "None":
        servers, searches = extra_servers, extra_searches
        if not servers:
            raise FabricError("%s: spec.dnsPolicy None needs spec.dnsConfig.nameservers" % where)
    else:
        servers = list(nameservers) + extra_servers
        searches = ["%s.svc.%s" % (namespace, domain), "svc.%s" % domain, domain] + extra_searches
    servers = _unique(servers)[:MAX_NAMESERVERS]
    searches = _unique(searches)[:MAX_SEARCHES]
    lines = ["%s: kubelet-style resolv.conf of pod %s (dnsPolicy %s)" % (RESOLV_MARKER, pod_id, policy)]
    lines += ["nameserver %s" % ip for ip in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(name if value is None else "%s:%s" % (name, value) for name, value in options))
    return "\n".join(lines) + "\n"


def _string_list(value, where, field):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FabricError("%s: %s must be a list of strings" % (where, field))
    return list(value)


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _raw_pods(objects):
    """{(namespace, name): Pod object}: the fields the cluster model does not keep (dnsPolicy)."""
    out = {}
    for obj in _cluster.flatten(objects):
        if isinstance(obj, dict) and obj.get("kind") == "Pod":
            meta = obj.get("metadata") or {}
            out[(meta.get("namespace") or "default", meta.get("name"))] = obj
    return out


def node_dns(objects, me, hosts, reports=None, settings=None):
    """What node ``me`` applies for the cluster DNS, from the cluster's objects and the nodes'
    reports (pod IPs, service addresses given out)::

        {"resolv_confs": [{"pod", "netns", "content"}],   # every pod of the node (not dnsPolicy Default)
         "servers": [{"pod", "netns", "ip", "config"}],  # the node's DNS pods: the DNS Service selects them
         "nameserver": "10.96.0.10",                      # the DNS Service's clusterIP
         "counts": {"records", "servers", "resolv_confs"},
         "note": ""}                                      # why there is no DNS, if there is none

    Without the DNS Service among the objects there is no cluster DNS: nothing is planned (so
    what the role wrote before is removed) and ``note`` says why.

    ``settings``: ``dns_service`` ("kube-system/kube-dns"), ``domain``, ``ttl``, ``ndots``,
    ``upstreams``, ``forward_domains``, ``allow``, ``service_cidr``, ``node_port_range``,
    ``netns_prefix``, ``control_dir`` (each server's unbound-control socket is
    ``<control_dir>/<netns>/control``), ``server_options``. The clusterIPs are the ones
    podnet.fabric.service_proxy gives out for the same objects and reports."""
    settings = dict(settings or {})
    domain = settings.get("domain") or DEFAULT_DOMAIN
    prefix = settings.get("netns_prefix", "pod-")
    dns_service = settings.get("dns_service") or DNS_SERVICE
    reports = dict(reports or {})
    cluster = _cluster.parse_objects(objects, hosts)
    cluster.node(me)
    model = _cluster.service_model(cluster, settings.get("service_cidr") or _cluster.DEFAULT_SERVICE_CIDR,
                                   settings.get("node_port_range") or _cluster.DEFAULT_NODE_PORT_RANGE, reports)
    parsed = dict((svc["id"], svc) for svc in cluster.services)
    if dns_service not in parsed:
        # no cluster DNS: nothing to serve and no nameserver to give (what was written goes)
        return {"resolv_confs": [], "servers": [], "nameserver": None,
                "counts": {"records": 0, "servers": 0, "resolv_confs": 0},
                "note": "no Service %s among the cluster's objects: no cluster DNS" % dns_service}
    service = [s for s in model["services"] if "%s/%s" % _service_id(s) == dns_service][0]
    nameserver = (service.get("spec") or {}).get("clusterIP")
    if parsed[dns_service]["type"] == "ExternalName" or nameserver in (None, "", "None") or not parsed[dns_service]["selector"]:
        raise FabricError("Service %s: the cluster DNS needs a clusterIP and a selector (its pods run the DNS servers)" % dns_service)

    pods = [{"metadata": {"name": p["name"], "namespace": p["namespace"]},
             "status": {"podIP": _cluster.pod_ip(p, reports)}} for p in cluster.pods if _cluster.pod_ip(p, reports)]
    records = cluster_records(model["services"], model["endpoint_slices"], pods, domain)
    ttl = settings.get("ttl", DEFAULT_TTL)
    upstreams = list(settings.get("upstreams") or [])
    control_dir = settings.get("control_dir") or "/run/podnet-dns"

    servers = []
    for pod in sorted(_cluster.selected_pods(cluster, parsed[dns_service]), key=lambda p: p["id"]):
        if pod["nodeName"] != me:
            continue
        netns = _cluster.netns_name(prefix, pod["namespace"], pod["name"])
        config = unbound_config(records, upstreams, interfaces=["0.0.0.0"], allow=list(settings.get("allow") or ["0.0.0.0/0"]),
                                domain=domain, ttl=ttl, forward_domains=list(settings.get("forward_domains") or []),
                                control_socket="%s/%s/control" % (control_dir, netns),
                                server_options=list(settings.get("server_options") or []))
        servers.append({"pod": pod["id"], "netns": netns, "ip": _cluster.pod_ip(pod, reports), "config": config})

    raw = _raw_pods(objects)
    resolv_confs = []
    for pod in sorted(cluster.pods, key=lambda p: p["id"]):
        if pod["nodeName"] != me:
            continue
        spec = (raw.get((pod["namespace"], pod["name"])) or {}).get("spec") or {}
        content = resolv_conf(pod["id"], pod["namespace"], [nameserver], domain, settings.get("ndots", DEFAULT_NDOTS),
                              spec.get("dnsPolicy") or "ClusterFirst", spec.get("dnsConfig"))
        if content is not None:
            resolv_confs.append({"pod": pod["id"], "netns": _cluster.netns_name(prefix, pod["namespace"], pod["name"]),
                                 "content": content})
    return {"resolv_confs": resolv_confs, "servers": servers, "nameserver": nameserver,
            "counts": {"records": len(records), "servers": len(servers), "resolv_confs": len(resolv_confs)}, "note": ""}
