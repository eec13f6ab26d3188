# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Routes: observe as plain dicts, validate against the namespace, plan as Plan actions.

Call with a handle opened in the namespace the routes live in (``core.open_netns``); the handle
may be None in check mode when that namespace does not exist yet (it then looks empty).

Ownership: a route belongs to an owner when its protocol (``rtm_protocol``, "proto NAME" in
``ip route``) is the number :class:`owner.ProtocolRegistry` gives that owner. :func:`plan` takes
that number; only routes with it are replaced or deleted. A declared route whose identity
(family, table, destination, metric, tos) matches a route with release 0.1's protocol 149 is
adopted (replaced in place with the owner's protocol, no gap); one that matches another owner's
route (any number in the registry) or a route that is not podnet.fabric's is an error naming both.
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, noop

AF_INET, AF_INET6 = 2, 10
TABLES = {"default": 253, "main": 254, "local": 255}
TABLE_NAMES = dict((v, k) for k, v in TABLES.items())
SCOPES = {"universe": 0, "site": 200, "link": 253, "host": 254}
SCOPE_NAMES = dict((v, k) for k, v in SCOPES.items())
TYPES = {"unicast": 1, "local": 2, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}
TYPE_NAMES = dict((v, k) for k, v in TYPES.items())
# Types with no nexthop at all: the kernel answers the packet itself.
NO_NEXTHOP_TYPES = ("blackhole", "unreachable", "prohibit", "throw")
RTNH_F_ONLINK = 4
ESRCH = 3
# iproute2's rt_protos, for messages ("proto static") and the return value.
PROTO_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
               10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
               18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
               189: "rip", 192: "eigrp"}
# Numbers that cannot mark an owner: set by the kernel itself, the unmarked default of a plain
# `ip route add` (boot, which would make purge delete routes nobody marked), the names iproute2
# gives to other software's numbers, and release 0.1's legacy protocol.
RESERVED_PROTOCOLS = (0, 1, 2, 3)


def proto_name(number):
    return PROTO_NAMES.get(number, str(number))


def check_protocol(value):
    """A protocol number to pin an owner to: 4..255, not 149 nor a number iproute2 names."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FabricError("protocol %r: must be a number 4..255" % (value,))
    if not 0 <= number <= 255:
        raise FabricError("protocol %s: must be a number 4..255" % number)
    if number in RESERVED_PROTOCOLS:
        raise FabricError("protocol %d (%s): cannot mark ownership (0-3 are the kernel's and plain `ip route add`'s); "
                          "leave protocol out to get the owner's registered number (%d..%d)"
                          % (number, proto_name(number), owners.ROUTE_PROTO_RANGE[0], owners.ROUTE_PROTO_RANGE[-1]))
    if number == owners.LEGACY_ROUTE_PROTO:
        raise FabricError("protocol %d: is release 0.1's unowned protocol (its routes are adopted by the owner that declares them); "
                          "leave protocol out to get the owner's registered number" % number)
    if number in PROTO_NAMES:
        raise FabricError("protocol %d: iproute2 names it %s (another program's routes); leave protocol out to get the owner's registered number"
                          % (number, PROTO_NAMES[number]))
    return number


def owner_names(registry=None):
    """{protocol number: owner} of every owner the host's registry knows (never writes)."""
    registry = registry if registry is not None else owners.ProtocolRegistry()
    return dict((number, owner) for owner, number in registry.read().items())


def _named_number(value, names, what, field, low, high):
    """'main' / 254 / '254' -> 254, within low..high."""
    text = str(value).strip().lower()
    if text in names:
        return names[text]
    try:
        number = int(text)
    except ValueError:
        raise FabricError("%s: %s %r is neither one of %s nor a number" % (what, field, value, "/".join(sorted(names))))
    if not low <= number <= high:
        raise FabricError("%s: %s %d is outside %d..%d" % (what, field, number, low, high))
    return number


def check_table(value, what="route"):
    return _named_number(value if value is not None else "main", TABLES, what, "table", 1, 2 ** 32 - 1)


def default_metric(family):
    return 1024 if family == AF_INET6 else 0


def dest_text(route):
    """The destination as `ip route` prints it: 'default' for a /0."""
    return "default" if route["dest"] in ("0.0.0.0/0", "::/0") else route["dest"]


def label(route):
    """How messages name a route: 'route 10.244.2.0/24' plus table/metric when not default."""
    text = "route %s" % dest_text(route)
    if route["family"] == AF_INET6 and route["dest"] == "::/0":
        text += " (IPv6)"
    if route["table"] != TABLES["main"]:
        text += " table %s" % TABLE_NAMES.get(route["table"], route["table"])
    if route["metric"] != default_metric(route["family"]):
        text += " metric %d" % route["metric"]
    return text


def identity(route):
    """What the kernel keys a route on (within a namespace): replace keeps it, delete needs it."""
    return (route["family"], route["table"], route["dest"], route["metric"], route.get("tos", 0))


# --- normalize: user entry -> canonical route dict ----------------------------------------------

def _gateway(value, family, what):
    gw = core.parse_address(value, "%s: gateway" % what)
    if core.family_of(gw) != family:
        raise FabricError("%s: gateway %s is not of the destination's address family" % (what, gw))
    return str(gw)


def _weight(value, what):
    weight = 1 if value is None else int(value)
    if not 1 <= weight <= 256:
        raise FabricError("%s: nexthop weight %d is outside 1..256" % (what, weight))
    return weight


def normalize(spec):
    """Validate one user entry without looking at the system; returns a canonical dict.

    Keys: family, dest ('10.244.2.0/24', '0.0.0.0/0'), table (int), metric (int), tos, type,
    scope (int), gateway, dev, onlink, src, mtu, nexthops (sorted list of dicts), state.
    """
    raw_dest = spec.get("dest")
    if raw_dest is None or str(raw_dest).strip() == "":
        raise FabricError("route: dest is required (a CIDR such as 10.244.2.0/24, or default)")
    net = core.parse_network(str(raw_dest).strip(), "route %s" % raw_dest)
    family = core.family_of(net)
    out = {"family": family, "dest": str(net), "tos": 0, "state": spec.get("state") or "present"}
    out["table"] = check_table(spec.get("table"), "route %s" % net)
    metric = spec.get("metric")
    if metric is not None and not 0 <= int(metric) <= 2 ** 32 - 1:
        raise FabricError("route %s: metric %s is outside 0..4294967295" % (net, metric))
    out["metric"] = default_metric(family) if metric is None else int(metric)
    what = label(out)

    rtype = (spec.get("type") or "unicast").lower()
    if rtype not in TYPES:
        raise FabricError("%s: type %r is not one of %s" % (what, spec.get("type"), ", ".join(sorted(TYPES))))
    out["type"] = rtype
    out["dev"] = core.check_ifname(spec["dev"], "%s: dev" % what) if spec.get("dev") else None
    out["gateway"] = _gateway(spec["gateway"], family, what) if spec.get("gateway") else None
    out["onlink"] = bool(spec.get("onlink"))
    out["src"] = None
    if spec.get("src"):
        src = core.parse_address(spec["src"], "%s: src" % what)
        if core.family_of(src) != family:
            raise FabricError("%s: src %s is not of the destination's address family" % (what, src))
        out["src"] = str(src)
    mtu = spec.get("mtu")
    if mtu is not None and not (1280 if family == AF_INET6 else 68) <= int(mtu) <= 65535:
        raise FabricError("%s: mtu %s is outside %d..65535" % (what, mtu, 1280 if family == AF_INET6 else 68))
    out["mtu"] = None if mtu is None else int(mtu)
    out["nexthops"] = _normalize_nexthops(spec.get("nexthops"), family, what)

    if out["state"] == "absent":
        out["scope"] = None  # not needed to delete; identity is enough
        return out
    if rtype in NO_NEXTHOP_TYPES:
        if out["gateway"] or out["dev"] or out["nexthops"] or out["onlink"]:
            raise FabricError("%s: a %s route takes no gateway, dev, onlink or nexthops" % (what, rtype))
    elif out["nexthops"]:
        if out["gateway"] or out["dev"] or out["onlink"]:
            raise FabricError("%s: give either nexthops or gateway/dev/onlink, not both" % what)
    elif not out["gateway"] and not out["dev"]:
        raise FabricError("%s: a %s route needs a gateway, a dev or nexthops" % (what, rtype))
    if out["onlink"] and not (out["gateway"] and out["dev"]):
        raise FabricError("%s: onlink needs both gateway and dev (the link the gateway is on)" % what)
    if out["gateway"] and family == AF_INET6 and ipaddress.ip_address(out["gateway"]).is_link_local and not out["dev"]:
        raise FabricError("%s: link-local gateway %s needs a dev" % (what, out["gateway"]))
    out["scope"] = _scope(spec.get("scope"), out, what)
    return out


def _normalize_nexthops(values, family, what):
    if not values:
        return []
    if len(values) < 2:
        raise FabricError("%s: nexthops needs at least two entries (for one, use gateway/dev)" % what)
    hops = []
    for i, nh in enumerate(values):
        nwhat = "%s nexthop %d" % (what, i + 1)
        if not nh.get("gateway") and not nh.get("dev"):
            raise FabricError("%s: needs a gateway or a dev" % nwhat)
        hop = {
            "gateway": _gateway(nh["gateway"], family, nwhat) if nh.get("gateway") else None,
            "dev": core.check_ifname(nh["dev"], "%s: dev" % nwhat) if nh.get("dev") else None,
            "weight": _weight(nh.get("weight"), nwhat),
            "onlink": bool(nh.get("onlink")),
        }
        if hop["onlink"] and not (hop["gateway"] and hop["dev"]):
            raise FabricError("%s: onlink needs both gateway and dev" % nwhat)
        if hop["gateway"] and family == AF_INET6 and ipaddress.ip_address(hop["gateway"]).is_link_local and not hop["dev"]:
            raise FabricError("%s: link-local gateway %s needs a dev" % (nwhat, hop["gateway"]))
        if family == AF_INET6 and not hop["gateway"]:
            raise FabricError("%s: IPv6 multipath nexthops need a gateway" % nwhat)
        hops.append(hop)
    keys = [(h["gateway"], h["dev"]) for h in hops]
    if len(set(keys)) != len(keys):
        raise FabricError("%s: the same nexthop is listed twice" % what)
    return sorted(hops, key=_hop_key)


def _hop_key(hop):
    return (hop["gateway"] or "", hop["dev"] or "", hop["weight"], hop["onlink"])


def _scope(value, route, what):
    """The scope the kernel will report: iproute2's defaults when not given."""
    if route["family"] == AF_INET6:
        # IPv6 routes have no scope: the kernel always reports universe.
        if value is not None and _named_number(value, SCOPES, what, "scope", 0, 255) != 0:
            raise FabricError("%s: IPv6 routes have no scope (always universe); drop the scope option" % what)
        return 0
    if value is None:
        if route["type"] == "local":
            return SCOPES["host"]
        if route["type"] == "unicast" and not route["gateway"] and not route["nexthops"]:
            return SCOPES["link"]
        return SCOPES["universe"]
    scope = _named_number(value, SCOPES, what, "scope", 0, 254)
    if scope >= SCOPES["link"] and (route["gateway"] or route["nexthops"]):
        raise FabricError("%s: a route with a gateway must have scope universe (or site), not %s"
                          % (what, SCOPE_NAMES.get(scope, scope)))
    return scope


# --- observe ------------------------------------------------------------------------------------

def _attrs(nla):
    """Attributes of a nested NLA or of a multipath entry as a dict (both pyroute2 versions)."""
    if nla is None:
        return {}
    attrs = nla.get("attrs") if hasattr(nla, "get") else None
    return dict(attrs or [])


def view(msg, names):
    """A route message as a plain dict (the keys of :func:`normalize` plus protocol, index)."""
    family = msg["family"]
    dst = msg.get_attr("RTA_DST") or ("::" if family == AF_INET6 else "0.0.0.0")
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    oif = msg.get_attr("RTA_OIF")
    metrics = dict((k[5:].lower(), v) for k, v in _attrs(msg.get_attr("RTA_METRICS")).items() if k.startswith("RTAX_"))
    hops = []
    for nh in msg.get_attr("RTA_MULTIPATH") or []:
        attrs = _attrs(nh)
        hops.append({
            "gateway": attrs.get("RTA_GATEWAY"),
            "dev": names.get(nh.get("oif"), nh.get("oif")) if nh.get("oif") else None,
            "weight": nh.get("hops", 0) + 1,
            "onlink": bool(nh.get("flags", 0) & RTNH_F_ONLINK),
        })
    return {
        "family": family,
        "dest": "%s/%d" % (dst, msg["dst_len"]),
        "table": table,
        "metric": msg.get_attr("RTA_PRIORITY") or 0,
        "tos": msg["tos"],
        "type": TYPE_NAMES.get(msg["type"], msg["type"]),  # name, or the number for others
        "scope": msg["scope"],
        "protocol": msg["proto"],
        "gateway": msg.get_attr("RTA_GATEWAY"),
        "dev": names.get(oif, oif) if oif else None,
        "onlink": bool(msg["flags"] & RTNH_F_ONLINK),
        "src": msg.get_attr("RTA_PREFSRC"),
        "mtu": metrics.get("mtu"),
        "metrics": metrics,  # all of them, so undo can put a route back as it was
        "nexthops": sorted(hops, key=_hop_key),
    }


def dump(ipr, names=None):
    """All IPv4 and IPv6 routes of the namespace, every table, as views."""
    if ipr is None:
        return []
    if names is None:
        names = dict((v["index"], n) for n, v in link.dump(ipr).items())
    out = []
    for family in (AF_INET, AF_INET6):
        for msg in ipr.get_routes(family=family):
            if msg["flags"] & 0x200:  # RTM_F_CLONED: cache entries, not routes
                continue
            out.append(view(msg, names))
    return out


def public(route):
    """A route in user terms (what the module returns and diffs)."""
    if route is None:
        return None
    out = {
        "dest": route["dest"],
        "state": route.get("state", "present"),
        "table": TABLE_NAMES.get(route["table"], route["table"]),
        "metric": route["metric"],
        "type": route["type"],
    }
    if out["state"] == "absent":
        return out
    out.update({
        "scope": SCOPE_NAMES.get(route["scope"], route["scope"]),
        "protocol": route.get("protocol"),
        "gateway": route["gateway"],
        "dev": route["dev"],
        "onlink": route["onlink"],
        "src": route["src"],
        "mtu": route["mtu"],
        "nexthops": [dict(h) for h in route["nexthops"]],
    })
    return out


def describe(route):
    """ip-route-like text: 'blackhole 10.0.0.0/24', '10.1.0.0/24 via 10.0.0.2 dev eth0 onlink'."""
    parts = [] if route["type"] == "unicast" else [str(route["type"])]
    parts.append(dest_text(route) if route["family"] == AF_INET else route["dest"])
    if route["gateway"]:
        parts.append("via %s" % route["gateway"])
    if route["dev"]:
        parts.append("dev %s" % route["dev"])
    if route["onlink"]:
        parts.append("onlink")
    for hop in route["nexthops"]:
        text = "nexthop"
        if hop["gateway"]:
            text += " via %s" % hop["gateway"]
        if hop["dev"]:
            text += " dev %s" % hop["dev"]
        text += " weight %d" % hop["weight"]
        if hop["onlink"]:
            text += " onlink"
        parts.append(text)
    if route["table"] != TABLES["main"]:
        parts.append("table %s" % TABLE_NAMES.get(route["table"], route["table"]))
    if route["metric"] != default_metric(route["family"]):
        parts.append("metric %d" % route["metric"])
    if route["family"] == AF_INET and route.get("scope") is not None:
        default = _scope(None, route, "")
        if route["scope"] != default:
            parts.append("scope %s" % SCOPE_NAMES.get(route["scope"], route["scope"]))
    if route["src"]:
        parts.append("src %s" % route["src"])
    if route["mtu"]:
        parts.append("mtu %d" % route["mtu"])
    return " ".join(parts)


# --- validation against the namespace -----------------------------------------------------------

def connected_dev(routes, family, gateway, table, dev=None):
    """The link through which ``gateway`` is directly reachable, or None.

    Mirrors the kernel's check for a gateway without onlink (fib_check_nh): a route covering the
    gateway with scope link or host (a connected route, not one via another gateway), of type
    unicast or local, on ``dev`` when given; longest prefix wins, the route's own table first,
    then local, main and default.
    """
    gw = ipaddress.ip_address(gateway)
    if family == AF_INET6 and gw.is_link_local:
        return dev  # link-local gateways are on whatever link is named
    best = None
    for order, tbl in enumerate((table, TABLES["local"], TABLES["main"], TABLES["default"])):
        for r in routes:
            if r["family"] != family or r["table"] != tbl or r["type"] not in ("unicast", "local"):
                continue
            if r["gateway"] or r["nexthops"] or not r["dev"]:
                continue
            if family == AF_INET and r["scope"] < SCOPES["link"]:
                continue
            if dev is not None and r["dev"] != dev:
                continue
            net = ipaddress.ip_network(r["dest"])
            if gw not in net:
                continue
            rank = (net.prefixlen, -order)
            if best is None or rank > best[0]:
                best = (rank, r["dev"])
        if best is not None:
            return best[1]
    return None


def resolve(route, state, links, assume_links):
    """Fill in the dev the kernel will pick for gateways given without one; check reachability.

    ``state`` is the list of routes as they will be when this route is applied (observed plus
    those planned before it). ``assume_links`` (check mode) tolerates links that do not exist
    yet, skipping what cannot be checked without them. Returns a new dict.
    """
    what = label(route)
    out = dict(route, nexthops=[dict(h) for h in route["nexthops"]])
    hops = out["nexthops"] or ([out] if out["type"] not in NO_NEXTHOP_TYPES else [])
    unknown = False
    for hop in hops:
        if hop["dev"] and hop["dev"] not in links:
            if not assume_links:
                raise FabricError("%s: dev %s does not exist" % (what, hop["dev"]))
            unknown = True
            continue
        if hop["dev"] and not links[hop["dev"]]["up"] and not assume_links:
            raise FabricError("%s: dev %s is down; the kernel takes no route through a link that is not up" % (what, hop["dev"]))
        if not hop["gateway"] or hop["onlink"]:
            continue
        found = connected_dev(state, route["family"], hop["gateway"], route["table"], hop["dev"])
        if found is None:
            if assume_links and not links:
                unknown = True  # the namespace does not exist yet (check mode)
                continue
            where = "dev %s" % hop["dev"] if hop["dev"] else "any link"
            fix = "set onlink: true" if hop["dev"] else "set dev and onlink: true"
            raise FabricError("%s: gateway %s is not on a connected network of %s; %s if it is reachable on that link anyway"
                              % (what, hop["gateway"], where, fix))
        hop["dev"] = found
    if route["src"] and not unknown and links:
        local = [r for r in state if r["type"] == "local" and r["dest"].split("/")[0] == route["src"]]
        if not local:
            raise FabricError("%s: src %s is not an address of this namespace" % (what, route["src"]))
    out["nexthops"] = sorted(out["nexthops"], key=_hop_key)
    return out


# --- actions --------------------------------------------------------------------------------------

def kwargs(ipr, route, protocol=None):
    """pyroute2 ``route()`` arguments for a route dict; link names are looked up now."""
    ip, plen = route["dest"].split("/")
    kw = {
        "family": route["family"],
        "dst": ip,
        "dst_len": int(plen),
        "table": route["table"],
        "priority": route["metric"],
        "tos": route.get("tos", 0),
        "type": TYPES.get(route["type"], route["type"]),
        "proto": route.get("protocol") if protocol is None else protocol,
    }
    if route.get("scope") is not None:
        kw["scope"] = route["scope"]
    if route["gateway"]:
        kw["gateway"] = route["gateway"]
    if route["dev"]:
        kw["oif"] = link.index_of(ipr, route["dev"], wait=1.0)
    if route["onlink"]:
        kw["flags"] = RTNH_F_ONLINK
    if route["src"]:
        kw["prefsrc"] = route["src"]
    metrics = dict(route.get("metrics") or {})
    if route.get("mtu"):
        metrics["mtu"] = route["mtu"]
    elif "mtu" in metrics and route.get("mtu") is None:
        del metrics["mtu"]
    if metrics:
        kw["metrics"] = metrics
    if route["nexthops"]:
        kw["multipath"] = []
        for hop in route["nexthops"]:
            nh = {"hops": hop["weight"] - 1}
            if hop["gateway"]:
                nh["gateway"] = hop["gateway"]
            if hop["dev"]:
                nh["oif"] = link.index_of(ipr, hop["dev"], wait=1.0)
            if hop["onlink"]:
                nh["flags"] = RTNH_F_ONLINK
            kw["multipath"].append(nh)
    return kw


def replace(ipr, route, protocol=None):
    ipr.route("replace", **kwargs(ipr, route, protocol))


def delete_quietly(ipr, route):
    """Delete exactly this route (its protocol, type and scope included); gone is success."""
    ip, plen = route["dest"].split("/")
    kw = {"family": route["family"], "dst": ip, "dst_len": int(plen), "table": route["table"],
          "priority": route["metric"], "tos": route.get("tos", 0), "proto": route["protocol"],
          "type": TYPES.get(route["type"], route["type"]), "scope": route["scope"]}
    try:
        ipr.route("del", **kw)
    except core.NetlinkError as exc:
        if exc.code not in (ESRCH, core.ENOENT, core.ENODEV):
            raise


def differences(want, have):
    """Names of the fields that differ between a desired route and the observed one."""
    fields = ("type", "scope", "gateway", "dev", "onlink", "src", "mtu", "nexthops")
    return [f for f in fields if want.get(f) != have.get(f)]


# --- plan -----------------------------------------------------------------------------------------

def plan_for_owner(ipr, routes, owner, pinned=None, check_mode=False, purge=False, purge_tables=None, registry=None):
    """The route module's plan: the owner's protocol from the registry, then :func:`plan`.

    Returns (plan, protocol number). Registering a new owner's number is planned (with undo) only
    when the routes need changing; in check mode the registry is only read.
    """
    registry = registry if registry is not None else owners.ProtocolRegistry()
    number, registered = registry.lookup(owner, pinned)
    names = owner_names(registry)
    names.setdefault(number, owner)
    routes_plan = plan(ipr, routes, number, purge=purge, assume_links=check_mode, purge_tables=purge_tables, names=names)
    if registered or not routes_plan.changed:
        return routes_plan, number
    result = Plan()
    if check_mode:
        result.add("register route protocol %d for owner %s in %s" % (number, owner, registry.path), noop, noop)
    else:
        # pinned to the number the routes were planned with: taken meanwhile -> an error, not a mix-up
        registry.plan_register(result, owner, number)
    result.extend(routes_plan)
    result.before, result.after = routes_plan.before, routes_plan.after
    return result, number


def plan(ipr, routes, protocol, purge=False, assume_links=False, purge_tables=None, names=None):
    """Plan bringing the namespace's routes to ``routes`` (normalized entries) for the owner whose
    route protocol is ``protocol``.

    Only routes with ``protocol`` are changed or deleted; declared routes found with the legacy
    protocol 149 are adopted (replaced in place). With ``purge`` the routes with ``protocol``
    that are not declared are deleted in exactly the tables the routes use plus ``purge_tables``
    (table numbers). ``names`` ({protocol: owner}, default: the host's registry) names owners in
    messages. ``assume_links``: check mode, where links named by the routes may be created by an
    earlier task.

    Order: adds and replaces first (each undone by deleting the new route or putting the old one
    back), deletions last (they cannot be undone: a deleted route is gone with its attributes).
    """
    if names is None:
        names = owner_names()
    me = _owner_text(protocol, names)
    result = Plan()
    deletes = []
    links = link.dump(ipr)
    ifnames = dict((v["index"], n) for n, v in links.items())
    observed = dump(ipr, ifnames)
    state = list(observed)  # the routes as they will be at each step of the plan
    by_id = {}
    for r in observed:
        by_id.setdefault(identity(r), []).append(r)

    declared = {}
    for spec in routes:
        key = identity(spec)
        if key in declared:
            raise FabricError("%s: declared twice" % label(spec))
        declared[key] = spec

    for spec in routes:
        key = identity(spec)
        existing = by_id.get(key, [])
        for r in existing:
            _check_claim(spec, r, protocol, me, names)
        ours = existing[0] if existing else None
        name = _key_text(spec)
        result.before[name] = public(ours) or {"dest": spec["dest"], "state": "absent"}
        if spec["state"] == "absent":
            result.after[name] = {"dest": spec["dest"], "state": "absent"}
            for r in existing:
                deletes.append(r)
                state.remove(r)
            continue
        want = resolve(spec, state, links, assume_links)
        want["protocol"] = protocol
        if ours is None:
            result.add("add route %s" % describe(want),
                       lambda want=want: replace(ipr, want, protocol),
                       lambda want=want: delete_quietly(ipr, want))
        else:
            diff = differences(want, ours)
            if ours["protocol"] != protocol:
                result.add("adopt route %s of podnet.fabric 0.1 (proto %d) for %s: replace in place%s"
                           % (describe(ours), ours["protocol"], me, " with %s" % describe(want) if diff else ""),
                           lambda want=want: replace(ipr, want, protocol),
                           lambda old=ours: replace(ipr, old))
            elif diff:
                result.add("replace route %s (was %s)" % (describe(want), describe(ours)),
                           lambda want=want: replace(ipr, want, protocol),
                           lambda old=ours: replace(ipr, old))
            deletes.extend(existing[1:])  # `ip route append` duplicates of an owned route
            for r in existing:
                state.remove(r)
        state.append(want)
        result.after[name] = public(want)

    if purge:
        tables = set(r["table"] for r in routes) | set(purge_tables or ())
        for r in observed:
            if r["protocol"] == protocol and r["table"] in tables and identity(r) not in declared:
                name = _key_text(r)
                result.before[name] = public(r)
                result.after[name] = {"dest": r["dest"], "state": "absent"}
                deletes.append(r)
    for r in deletes:
        result.add("delete route %s" % describe(r), lambda r=r: delete_quietly(ipr, r), irreversible=True)
    return result


def _owner_text(protocol, names):
    owner = names.get(protocol)
    return "owner %s" % owner if owner else "protocol %d" % protocol


def _check_claim(spec, have, protocol, me, names):
    """May the owner of ``protocol`` manage the observed route ``have`` that ``spec`` declares?"""
    if have["protocol"] in (protocol, owners.LEGACY_ROUTE_PROTO):
        return
    what = label(spec)
    holder = names.get(have["protocol"])
    if holder is not None:
        raise FabricError("%s: belongs to owner %s (proto %d: %s), not to %s; refusing to take it over"
                          % (what, holder, have["protocol"], describe(have), me))
    raise FabricError("%s: an existing route with this destination, table and metric is not podnet.fabric's "
                      "(proto %s: %s) and %s does not take it over; remove it or pick another metric or table"
                      % (what, proto_name(have["protocol"]), describe(have), me))


def _key_text(route):
    return label(route)[len("route "):]
