# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MetalLB's layer-2 mode computed on the controller: its own objects parsed as users paste them,
LoadBalancer IPs given out the way its controller gives them (but never moving once given), and
the node that announces each VIP chosen the way its speakers choose it.

Pure functions, no Ansible. :func:`cluster.parse_objects` hands the two kinds here and keeps the
result on the :class:`cluster.Cluster` (``pools``, ``l2_advertisements``);
:func:`cluster.allocate_service_addresses` calls :func:`allocate_load_balancer_ips`; after
:func:`cluster.service_model`, :func:`l2_announcements` says who answers ARP for what::

    cluster = parse_objects(objects, hosts)
    model = service_model(cluster, "10.96.0.0/12", "30000-32767", reports)
    for vip in l2_announcements(cluster, model):
        ...   # vip["nodes"][0] announces vip["ip"], vip["nodes"][1:] take over in that order

Fields honoured (metallb.io/v1beta1; everything else in a manifest is accepted and ignored):

- IPAddressPool: ``metadata.name``, ``metadata.namespace`` (default metallb-system),
  ``metadata.labels`` (for ipAddressPoolSelectors), ``spec.addresses`` (CIDRs - host bits
  allowed, as Go's ParseCIDR - and ``first-last`` ranges), ``spec.autoAssign`` (default true),
  ``spec.avoidBuggyIPs`` (default false; true skips addresses ending in .0 and .255),
  ``spec.serviceAllocation`` (``priority``, ``namespaces``, ``serviceSelectors``;
  ``namespaceSelectors`` is an error: no Namespace objects are read here).
  IPv6 entries of spec.addresses are ignored (the collection is IPv4 only), with the reason kept in
  the parsed pool's ``ignored`` list, so a dual-stack pool pastes in unchanged.
- L2Advertisement: ``spec.ipAddressPools`` and ``spec.ipAddressPoolSelectors`` (neither: every
  pool), ``spec.nodeSelectors`` (none: every node), ``spec.interfaces`` (none: every interface),
  ``spec.serviceSelectors`` and ``spec.preferredNodeSelectors`` (weights 1-100), as MetalLB reads them.
- Service annotations (metallb.io/..., or the older metallb.universe.tf/...): ``loadBalancerIPs``
  (comma list; the IPv4 one is used), ``address-pool``, ``allow-shared-ip``.

Bad input is a :class:`cluster.ClusterError` with one line naming the object and the field.
"""
from __future__ import annotations

import hashlib
import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster

API_VERSION = "metallb.io/v1beta1"
POOL_KIND = "IPAddressPool"
L2_KIND = "L2Advertisement"
DEFAULT_NAMESPACE = "metallb-system"
# MetalLB's annotations, the current name first (controller/service.go)
ANNOTATION_PREFIXES = ("metallb.io", "metallb.universe.tf")
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
ClusterError = _cluster.ClusterError


# --- parsing --------------------------------------------------------------------------------------

def flag(value, default, label, path):
    """A boolean field: ``default`` when absent, else true or false (one-line error otherwise)."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ClusterError("%s: %s: %r must be true or false" % (label, path, value))
    return value


def _strings(value, label, path):
    """A list of non-empty strings without duplicates (MetalLB's validateDuplicate)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClusterError("%s: %s must be a list, got %s" % (label, path, type(value).__name__))
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ClusterError("%s: %s[%d]: %r must be a non-empty string" % (label, path, i, item))
        if item in out:
            raise ClusterError("%s: %s[%d]: %r is listed twice" % (label, path, i, item))
        out.append(item)
    return out


def label_selector(value, label, path):
    """A metav1.LabelSelector, checked, as {"matchLabels": {...}, "matchExpressions": [...]}
    (the form :func:`cluster.selector_matches` reads; an empty selector matches everything)."""
    if not isinstance(value, dict):
        raise ClusterError("%s: %s must be a label selector (matchLabels / matchExpressions), got %r" % (label, path, value))
    unknown = sorted(set(value) - set(("matchLabels", "matchExpressions")))
    if unknown:
        raise ClusterError("%s: %s.%s: not a field of a label selector (matchLabels, matchExpressions)" % (label, path, unknown[0]))
    match_labels = _cluster._string_map(value.get("matchLabels"), path + ".matchLabels", label)
    expressions = []
    raw = value.get("matchExpressions")
    if raw is not None and not isinstance(raw, list):
        raise ClusterError("%s: %s.matchExpressions must be a list" % (label, path))
    for i, expr in enumerate(raw or []):
        at = "%s.matchExpressions[%d]" % (path, i)
        if not isinstance(expr, dict) or not expr.get("key"):
            raise ClusterError("%s: %s: a key is required" % (label, at))
        operator = expr.get("operator")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise ClusterError("%s: %s.values must be a list" % (label, at))
        values = [str(v) for v in values]
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ClusterError("%s: %s.operator: %r is not In, NotIn, Exists or DoesNotExist" % (label, at, operator))
        if operator in ("In", "NotIn") and not values:
            raise ClusterError("%s: %s.values: operator %s needs values" % (label, at, operator))
        if operator in ("Exists", "DoesNotExist") and values:
            raise ClusterError("%s: %s.values: operator %s takes no values" % (label, at, operator))
        expressions.append({"key": str(expr["key"]), "operator": operator, "values": values})
    return {"matchLabels": match_labels, "matchExpressions": expressions}


def _selectors(value, label, path):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClusterError("%s: %s must be a list of label selectors" % (label, path))
    out = []
    for i, item in enumerate(value):
        selector = label_selector(item, label, "%s[%d]" % (path, i))
        if selector in out:
            raise ClusterError("%s: %s[%d]: the same selector is listed twice" % (label, path, i))
        out.append(selector)
    return out


def _any_selects(selectors, labels):
    return any(_cluster.selector_matches(s, labels) for s in selectors)


def _identity(metadata, label):
    namespace = str(metadata.get("namespace") or DEFAULT_NAMESPACE)
    return {"id": "%s/%s" % (namespace, metadata["name"]), "name": str(metadata["name"]), "namespace": namespace,
            "labels": _cluster._string_map(metadata.get("labels"), "label", label)}


def object_label(kind, metadata, index):
    """How messages name a MetalLB object: "IPAddressPool metallb-system/lab"."""
    if not metadata.get("name"):
        return "%s (the %s %s object)" % (kind, _cluster._ordinal(index), kind)
    return "%s %s/%s" % (kind, metadata.get("namespace") or DEFAULT_NAMESPACE, metadata["name"])


def _address(text, label, path, entry):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise ClusterError("%s: %s: %r: %r is not an IP address" % (label, path, entry, text.strip()))


def _pool_entry(entry, label, path):
    """(first, last) integers of one spec.addresses entry, or a reason string when it is IPv6."""
    if not isinstance(entry, str) or not entry.strip():
        raise ClusterError("%s: %s: %r is not a CIDR or an a.b.c.d-a.b.c.e range" % (label, path, entry))
    if "-" in entry:
        first_text, last_text = entry.split("-", 1)
        first, last = _address(first_text, label, path, entry), _address(last_text, label, path, entry)
        if first.version != last.version:
            raise ClusterError("%s: %s: %r is not a range (it mixes IPv4 and IPv6)" % (label, path, entry))
        if first.version == 6:
            return "IPv6: the collection is IPv4 only"
        if int(first) > int(last):
            raise ClusterError("%s: %s: %r is not a range (first > last)" % (label, path, entry))
        return int(first), int(last)
    if "/" not in entry:
        # Go's net.ParseCIDR, which MetalLB uses, wants a prefix length: a bare address is an error there too
        raise ClusterError("%s: %s: %r is not a CIDR or an a.b.c.d-a.b.c.e range (a single address is a.b.c.d/32)"
                           % (label, path, entry))
    try:
        net = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError as exc:
        raise ClusterError("%s: %s: %r is not a CIDR: %s" % (label, path, entry, exc))
    if net.version == 6:
        return "IPv6: the collection is IPv4 only"
    return int(net.network_address), int(net.broadcast_address)


def parse_pool(obj, metadata, label):
    """A metallb.io/v1beta1 IPAddressPool::

        {"id", "name", "namespace", "labels", "addresses": [entry, ...], "ranges": [(first, last), ...],
         "autoAssign": bool, "avoidBuggyIPs": bool, "ignored": [{"entry", "reason"}],
         "serviceAllocation": None | {"priority": n, "namespaces": [...], "serviceSelectors": [...]}}

    ``ranges`` are IPv4 addresses as integers, in the order of spec.addresses (the order MetalLB
    hands them out in)."""
    spec = _cluster._mapping(obj.get("spec"), "spec", label)
    addresses = spec.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        raise ClusterError("%s: spec.addresses: at least one CIDR or range is required" % label)
    ranges, ignored, entries = [], [], []
    for i, entry in enumerate(addresses):
        parsed = _pool_entry(entry, label, "spec.addresses[%d]" % i)
        entries.append(entry.strip())
        if isinstance(parsed, str):
            ignored.append({"entry": entry.strip(), "reason": parsed})
        else:
            ranges.append(parsed)
    return dict(_identity(metadata, label), addresses=entries, ranges=ranges, ignored=ignored,
                autoAssign=flag(spec.get("autoAssign"), True, label, "spec.autoAssign"),
                avoidBuggyIPs=flag(spec.get("avoidBuggyIPs"), False, label, "spec.avoidBuggyIPs"),
                serviceAllocation=_service_allocation(spec.get("serviceAllocation"), label))


def _service_allocation(value, label):
    if value is None:
        return None
    value = _cluster._mapping(value, "spec.serviceAllocation", label)
    if value.get("namespaceSelectors"):
        raise ClusterError("%s: spec.serviceAllocation.namespaceSelectors is not supported here (no Namespace objects "
                           "are read): list the namespaces in spec.serviceAllocation.namespaces" % label)
    priority = value.get("priority") or 0
    if not _cluster._is_int(priority) or priority < 0:
        raise ClusterError("%s: spec.serviceAllocation.priority: %r must be a number, 0 or more" % (label, priority))
    return {"priority": priority,
            "namespaces": _strings(value.get("namespaces"), label, "spec.serviceAllocation.namespaces"),
            "serviceSelectors": _selectors(value.get("serviceSelectors"), label, "spec.serviceAllocation.serviceSelectors")}


def parse_l2_advertisement(obj, metadata, label):
    """A metallb.io/v1beta1 L2Advertisement::

        {"id", "name", "namespace", "labels", "ipAddressPools": [name, ...], "ipAddressPoolSelectors": [selector],
         "nodeSelectors": [selector], "interfaces": [name, ...], "serviceSelectors": [selector],
         "preferredNodeSelectors": [{"weight": n, "preference": selector}]}"""
    spec = _cluster._mapping(obj.get("spec"), "spec", label)
    preferred = []
    raw = spec.get("preferredNodeSelectors")
    if raw is not None and not isinstance(raw, list):
        raise ClusterError("%s: spec.preferredNodeSelectors must be a list" % label)
    for i, item in enumerate(raw or []):
        at = "spec.preferredNodeSelectors[%d]" % i
        item = _cluster._mapping(item, at, label)
        weight = item.get("weight")
        if not _cluster._is_int(weight) or not 1 <= weight <= 100:
            raise ClusterError("%s: %s.weight: %r must be a number from 1 to 100" % (label, at, weight))
        preferred.append({"weight": weight, "preference": label_selector(item.get("preference") or {}, label, at + ".preference")})
    return dict(_identity(metadata, label),
                ipAddressPools=_strings(spec.get("ipAddressPools"), label, "spec.ipAddressPools"),
                ipAddressPoolSelectors=_selectors(spec.get("ipAddressPoolSelectors"), label, "spec.ipAddressPoolSelectors"),
                nodeSelectors=_selectors(spec.get("nodeSelectors"), label, "spec.nodeSelectors"),
                interfaces=_strings(spec.get("interfaces"), label, "spec.interfaces"),
                serviceSelectors=_selectors(spec.get("serviceSelectors"), label, "spec.serviceSelectors"),
                preferredNodeSelectors=preferred)


def check_objects(pools, advertisements):
    """What MetalLB checks across objects: one namespace (MetalLB reads only its own), pool
    names unique, no address in two pools (or twice in one); an L2Advertisement naming a pool
    that is not declared is an error here (MetalLB would skip it: most likely a typo).
    Returns (pools sorted by name, advertisements in declaration order)."""
    objects = [(POOL_KIND, p) for p in pools] + [(L2_KIND, a) for a in advertisements]
    if objects:
        namespace = objects[0][1]["namespace"]
        for kind, obj in objects:
            if obj["namespace"] != namespace:
                raise ClusterError("%s %s: metadata.namespace %s: every MetalLB object must be in one namespace "
                                   "(%s, as %s %s; MetalLB reads only its own)" % (
                                       kind, obj["id"], obj["namespace"], namespace, objects[0][0], objects[0][1]["id"]))
    seen = {}
    for kind, obj in objects:
        if (kind, obj["name"]) in seen:
            raise ClusterError("%s %s: declared twice" % (kind, obj["id"]))
        seen[(kind, obj["name"])] = obj
    spans = []
    for pool in pools:
        for first, last in pool["ranges"]:
            for other, (o_first, o_last) in spans:
                if first <= o_last and o_first <= last:
                    raise ClusterError("IPAddressPool %s: spec.addresses: %s-%s overlaps %s of IPAddressPool %s" % (
                        pool["id"], ipaddress.IPv4Address(first), ipaddress.IPv4Address(last),
                        _span_text(o_first, o_last), other["name"]))
            spans.append((pool, (first, last)))
    names = [p["name"] for p in pools]
    for adv in advertisements:
        for i, name in enumerate(adv["ipAddressPools"]):
            if name not in names:
                raise ClusterError("L2Advertisement %s: spec.ipAddressPools[%d]: IPAddressPool %s is not declared (pools: %s)" % (
                    adv["id"], i, name, ", ".join(sorted(names)) or "none"))
    return sorted(pools, key=lambda p: p["name"]), list(advertisements)


def _span_text(first, last):
    return "%s-%s" % (ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))


# --- LoadBalancer IP allocation (MetalLB's controller, internal/allocator/allocator.go) -----------

def annotation(svc, name):
    """(key, value) of a MetalLB annotation on a parsed Service, the metallb.io form first; None."""
    for prefix in ANNOTATION_PREFIXES:
        key = "%s/%s" % (prefix, name)
        if key in svc["annotations"]:
            return key, svc["annotations"][key]
    return None


def is_buggy(ip):
    """An address ending in .0 or .255 (some consumer routers drop them; avoidBuggyIPs skips them)."""
    return ip & 0xFF in (0, 255)


def pool_for(pools, ip):
    """The pool that gives out address ``ip`` (text or integer), or None: inside one of its
    ranges and not a .0/.255 address of a pool that avoids them (MetalLB's poolFor)."""
    value = int(ipaddress.IPv4Address(ip)) if isinstance(ip, str) else ip
    for pool in pools:
        if pool["avoidBuggyIPs"] and is_buggy(value):
            continue
        if any(first <= value <= last for first, last in pool["ranges"]):
            return pool
    return None


def pool_compatible(pool, svc):
    """Does the pool's spec.serviceAllocation allow this service (isPoolCompatibleWithService)?"""
    allocation = pool["serviceAllocation"]
    if allocation is None:
        return True
    if allocation["namespaces"] and svc["namespace"] not in allocation["namespaces"]:
        return False
    if allocation["serviceSelectors"]:
        return _any_selects(allocation["serviceSelectors"], svc["labels"])
    return True


def _sharing_key(svc):
    found = annotation(svc, "allow-shared-ip")
    return found[1] if found else ""


def _backend_key(svc):
    # Local policy services share an IP only with the same selector: the VIP goes to one node
    if svc["externalTrafficPolicy"] == "Local":
        return ",".join("%s=%s" % kv for kv in sorted(svc["selector"].items()))
    return ""


class _Users(object):
    """Who holds which address: MetalLB's sharing rules (sharingOK and checkSharing): services
    share an address only with the same non-empty allow-shared-ip key, the same backends when
    Local, and none of the same port/protocol pairs."""

    def __init__(self):
        self.by_ip = {}

    def conflict(self, ip, svc):
        """None when ``svc`` may take ``ip`` (an integer), else why not (one phrase)."""
        key, backend = _sharing_key(svc), _backend_key(svc)
        ports = set((p["protocol"], p["port"]) for p in svc["ports"])
        for other in self.by_ip.get(ip, []):
            if other["id"] == svc["id"]:
                continue
            if not key or not _sharing_key(other):
                return ("it is already allocated to Service %s (sharing needs the same metallb.io/allow-shared-ip "
                        "annotation on both)" % other["id"])
            if key != _sharing_key(other):
                return "it is already allocated to Service %s, whose allow-shared-ip key %r is not %r" % (
                    other["id"], _sharing_key(other), key)
            if backend != _backend_key(other):
                return ("it is already allocated to Service %s, and Local services share an address only with the "
                        "same selector" % other["id"])
            clash = sorted(ports & set((p["protocol"], p["port"]) for p in other["ports"]))
            if clash:
                return "port %d/%s on it is already used by Service %s" % (clash[0][1], clash[0][0], other["id"])
        return None

    def take(self, ip, svc):
        self.by_ip.setdefault(ip, []).append(svc)


def requested_ip(svc):
    """(field, address) a LoadBalancer asks for: the loadBalancerIPs annotation or
    spec.loadBalancerIP (both: an error, as MetalLB's getDesiredLbIPs), else the first IPv4
    status.loadBalancer.ingress ip (what a controller gave it before), else (None, None)."""
    label = "Service " + svc["id"]
    found = annotation(svc, "loadBalancerIPs")
    if found and found[1].strip():
        key, text = found
        field = "metadata.annotations[%s]" % key
        if svc["loadBalancerIP"]:
            raise ClusterError("%s: %s: may not be set together with spec.loadBalancerIP" % (label, field))
        v4 = []
        for part in text.split(","):
            try:
                ip = ipaddress.ip_address(part.strip())
            except ValueError:
                raise ClusterError("%s: %s: %r is not an IP address" % (label, field, part.strip()))
            if ip.version == 4:
                v4.append(str(ip))
        if len(v4) != 1:
            raise ClusterError("%s: %s: %r must hold exactly one IPv4 address (IPv4 only here)" % (label, field, text))
        return field, v4[0]
    if svc["loadBalancerIP"]:
        return "spec.loadBalancerIP", svc["loadBalancerIP"]
    for i, entry in enumerate(svc["loadBalancerIngress"]):
        if entry.get("ip") and ipaddress.ip_address(entry["ip"]).version == 4:
            return "status.loadBalancer.ingress[%d].ip" % i, entry["ip"]
    return None, None


def _wanted_pool(svc, pools):
    """The pool named by the address-pool annotation, or None."""
    found = annotation(svc, "address-pool")
    if not found or not found[1]:
        return None
    for pool in pools:
        if pool["name"] == found[1]:
            return pool
    raise ClusterError("Service %s: metadata.annotations[%s]: no IPAddressPool named %r (pools: %s)" % (
        svc["id"], found[0], found[1], ", ".join(p["name"] for p in pools) or "none"))


def _auto_pools(svc, pools):
    """The pools a service without a request draws from, in order (MetalLB's Allocate): pools
    whose serviceAllocation selects it by priority (lower first, 0 last), then the pools without
    one; autoAssign false pools never. MetalLB walks the second group in Go map order; here it is
    by name, so every run gives the same address."""
    pinned = [p for p in pools if p["autoAssign"] and p["serviceAllocation"] is not None and pool_compatible(p, svc)]
    pinned.sort(key=lambda p: (p["serviceAllocation"]["priority"] == 0, p["serviceAllocation"]["priority"], p["name"]))
    return pinned + [p for p in pools if p["autoAssign"] and p["serviceAllocation"] is None]


def _addresses(pool):
    for first, last in pool["ranges"]:
        for ip in range(first, last + 1):
            if not (pool["avoidBuggyIPs"] and is_buggy(ip)):
                yield ip


def _check_declared(svc, field, text, pools, users):
    label = "Service " + svc["id"]
    ip = int(ipaddress.IPv4Address(text))
    if pools:
        pool = pool_for(pools, ip)
        if pool is None:
            near = [p for p in pools if any(first <= ip <= last for first, last in p["ranges"])]
            if near:
                raise ClusterError("%s: %s: %s is in IPAddressPool %s, which avoids addresses ending in .0 and .255 "
                                   "(spec.avoidBuggyIPs)" % (label, field, text, near[0]["name"]))
            raise ClusterError("%s: %s: %s is not in any IPAddressPool (pools: %s)" % (
                label, field, text, ", ".join(p["name"] for p in pools)))
        wanted = _wanted_pool(svc, pools)
        if wanted is not None and wanted is not pool:
            raise ClusterError("%s: %s: %s is in IPAddressPool %s, not in %s (annotation %s)" % (
                label, field, text, pool["name"], wanted["name"], annotation(svc, "address-pool")[0]))
        if not pool_compatible(pool, svc):
            raise ClusterError("%s: %s: %s is in IPAddressPool %s, whose spec.serviceAllocation does not select "
                               "this service" % (label, field, text, pool["name"]))
    why = users.conflict(ip, svc)
    if why:
        raise ClusterError("%s: %s: %s: %s" % (label, field, text, why))
    users.take(ip, svc)


def allocate_load_balancer_ips(cluster, remembered, out):
    """Set ``out[id]["loadBalancerIP"]`` (IPv4 text or None) for every Service; only type
    LoadBalancer gets one. Services in id order, in three passes, so a value never moves once
    given out and the order of the manifests does not matter:

    1. requested (:func:`requested_ip`): must lie in a pool when pools are declared (and in the
       address-pool annotation's pool, and be allowed by its serviceAllocation); taken by another
       service is an error unless both may share it. Without any pool a request is taken as it
       is (nothing else assigns addresses then);
    2. else the address the nodes report (``remembered``, :func:`cluster.merge_service_reports`),
       kept while it is in a pool the service may use and free (autoAssign false does not drop
       it: MetalLB keeps an address it assigned while the config allows it);
    3. else the first free address of the address-pool annotation's pool (autoAssign false
       included, as MetalLB), or of the first pool of :func:`_auto_pools` that has one.
       No pool declared: no address. No free address: an error naming the service and the pools.
    """
    pools = cluster.pools
    users = _Users()
    services = sorted(cluster.services, key=lambda svc: svc["id"])
    for svc in services:
        out[svc["id"]]["loadBalancerIP"] = None
    balancers = [svc for svc in services if svc["type"] == "LoadBalancer"]
    pending = []
    for svc in balancers:
        _wanted_pool(svc, pools)            # an unknown pool name is an error, whatever else the service says
        field, text = requested_ip(svc)
        if text is None:
            pending.append(svc)
            continue
        _check_declared(svc, field, text, pools, users)
        out[svc["id"]]["loadBalancerIP"] = text
    if not pools:
        return
    rest = []
    for svc in pending:
        text = (remembered.get(svc["id"]) or {}).get("loadBalancerIP")
        ip = int(ipaddress.IPv4Address(text)) if text else None
        pool = pool_for(pools, ip) if ip is not None else None
        wanted = _wanted_pool(svc, pools)
        if pool is not None and (wanted is None or wanted is pool) and pool_compatible(pool, svc) \
                and users.conflict(ip, svc) is None:
            users.take(ip, svc)
            out[svc["id"]]["loadBalancerIP"] = text
        else:
            rest.append(svc)
    for svc in rest:
        wanted = _wanted_pool(svc, pools)
        candidates = [wanted] if wanted is not None else _auto_pools(svc, pools)
        if not candidates:
            raise ClusterError("Service %s: no IPAddressPool assigns it an address automatically (pools: %s; autoAssign "
                               "false or a serviceAllocation for other services): set spec.loadBalancerIP or the "
                               "metallb.io/address-pool annotation" % (svc["id"], ", ".join(p["name"] for p in pools)))
        for pool in candidates:
            ip = next((ip for ip in _addresses(pool) if users.conflict(ip, svc) is None), None)
            if ip is not None:
                users.take(ip, svc)
                out[svc["id"]]["loadBalancerIP"] = str(ipaddress.IPv4Address(ip))
                break
        else:
            raise ClusterError("Service %s: no free address left in IPAddressPool%s %s" % (
                svc["id"], "s" if len(candidates) > 1 else "", ", ".join(p["name"] for p in candidates)))


# --- layer 2: which node answers ARP for a VIP (MetalLB's speaker) -------------------------------

def covers(adv, pool):
    """Does the L2Advertisement apply to the pool (setL2AdvertisementsToPools): listed by name,
    picked by an ipAddressPoolSelector, or every pool when it names none."""
    if not adv["ipAddressPools"] and not adv["ipAddressPoolSelectors"]:
        return True
    return pool["name"] in adv["ipAddressPools"] or _any_selects(adv["ipAddressPoolSelectors"], pool["labels"])


def selects_node(adv, node):
    """nodeSelectors: none selects every node; else any one of them."""
    return not adv["nodeSelectors"] or _any_selects(adv["nodeSelectors"], node["labels"])


def announce_order(nodes, ip, scores=None):
    """Candidate node names ordered as MetalLB's speakers order them: the highest summed
    preferredNodeSelectors weight first, then sha256(node + "#" + ip) compared as bytes."""
    scores = scores or {}
    return sorted(nodes, key=lambda name: (-scores.get(name, 0), hashlib.sha256((name + "#" + ip).encode("utf-8")).digest()))


def can_serve(endpoint):
    # epslices.EndpointCanServe: ready unset or true, else serving true
    conditions = endpoint.get("conditions") or {}
    return conditions.get("ready") is None or conditions.get("ready") is True or conditions.get("serving") is True


def service_slices(model, namespace, name):
    out = []
    for sl in model.get("endpoint_slices") or []:
        meta = sl.get("metadata") or {}
        if meta.get("namespace", "default") == namespace and (meta.get("labels") or {}).get(_cluster.SERVICE_NAME_LABEL) == name:
            out.append(sl)
    return out


def _interfaces(ads):
    """The interfaces a node announces on (ipAdvertisementFor): [] means all of them, as soon as one
    of its advertisements names none."""
    names = set()
    for adv in ads:
        if not adv["interfaces"]:
            return []
        names.update(adv["interfaces"])
    return sorted(names)


def l2_announcements(cluster, model):
    """Who answers ARP for each LoadBalancer VIP, as MetalLB's layer-2 speakers decide it
    (speaker/layer2_controller.go in metallb/metallb: ShouldAnnounce, speakersForAds,
    nodesWithEndpoint, sortL2Candidates; read for the behaviour, not copied). One entry per VIP
    and service (services sharing an address each get one), sorted by address then service::

        {"ip": "192.168.2.240", "service": "ns/name", "pool": "lab",
         "nodes": ["node2", "node1"],        # nodes[0] announces, the rest take over in that order
         "interfaces": [],                   # the announcer's: [] = every eligible interface
         "node_interfaces": {"node2": [], "node1": ["eth0"]},
         "local": False,                     # externalTrafficPolicy Local
         "reason": None}                     # why ``nodes`` is empty, else None

    Candidates: the nodes selected by at least one L2Advertisement that covers the VIP's pool and
    selects the service (serviceSelectors), minus nodes labelled
    node.kubernetes.io/exclude-from-external-load-balancers; with externalTrafficPolicy Local only
    those with a serving endpoint of the service. Nobody announces a service without a serving
    endpoint, nor a VIP outside every pool. Services sharing a VIP agree on its nodes: Local ones
    share only with the same selector. ``model`` is :func:`cluster.service_model`'s result (its
    report gives each service's address, its endpoint_slices the endpoints).
    (MetalLB also drops nodes whose speaker memberlist reports dead or whose
    NetworkUnavailable condition is true: that is the failover's job on the nodes, not this one.)"""
    out = []
    allocated = (model.get("report") or {}).get("services") or {}
    for svc in cluster.services:
        ip = (allocated.get(svc["id"]) or {}).get("loadBalancerIP")
        if svc["type"] != "LoadBalancer" or not ip:
            continue
        pool = pool_for(cluster.pools, ip)
        if pool is None:
            continue    # not MetalLB's address (no pools: a request taken as it is): nothing announces it
        out.append(_announcement(cluster, model, svc, ip, pool))
    return sorted(out, key=lambda a: (int(ipaddress.IPv4Address(a["ip"])), a["service"]))


def _announcement(cluster, model, svc, ip, pool):
    local = svc["externalTrafficPolicy"] == "Local"
    result = {"ip": ip, "service": svc["id"], "pool": pool["name"], "nodes": [], "interfaces": [],
              "node_interfaces": {}, "local": local, "reason": None}
    ads = [adv for adv in cluster.l2_advertisements if covers(adv, pool)
           and (not adv["serviceSelectors"] or _any_selects(adv["serviceSelectors"], svc["labels"]))]
    if not ads:
        result["reason"] = "no L2Advertisement covers IPAddressPool %s for this service" % pool["name"]
        return result
    if _sharing_key(svc) and any(adv["serviceSelectors"] for adv in ads):
        result["reason"] = "allow-shared-ip is incompatible with serviceSelectors on L2Advertisements"
        return result
    endpoints = [ep for sl in service_slices(model, svc["namespace"], svc["name"]) for ep in sl.get("endpoints") or []
                 if can_serve(ep)]
    if not endpoints:
        result["reason"] = "the service has no serving endpoint"
        return result
    node_ads = {}
    for node in cluster.nodes:
        if EXCLUDE_LABEL in node["labels"]:
            continue
        mine = [adv for adv in ads if selects_node(adv, node)]
        if mine:
            node_ads[node["name"]] = mine
    names = list(node_ads)
    if local:
        with_endpoint = set(ep.get("nodeName") for ep in endpoints)
        names = [name for name in names if name in with_endpoint]
    if not names:
        result["reason"] = ("no node selected by the L2Advertisements has a serving endpoint (externalTrafficPolicy Local)"
                            if local else "no node is selected by the L2Advertisements")
        return result
    scores = {}
    for adv in ads:
        for preferred in adv["preferredNodeSelectors"]:
            for node in cluster.nodes:
                # a preference only counts on the nodes the advertisement itself selects
                if node["name"] in names and selects_node(adv, node) and \
                        _cluster.selector_matches(preferred["preference"], node["labels"]):
                    scores[node["name"]] = scores.get(node["name"], 0) + preferred["weight"]
    result["nodes"] = announce_order(names, ip, scores)
    result["node_interfaces"] = dict((name, _interfaces(node_ads[name])) for name in result["nodes"])
    result["interfaces"] = result["node_interfaces"][result["nodes"][0]]
    return result
