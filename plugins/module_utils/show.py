# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection built on a node, as one structured view, text and a picture (pure).

:func:`node_view` takes what :func:`.trace.live.read_state` reads from a node (the iptables-save
text, the netlink views of routes, addresses, neighbours, FDB, VXLAN devices and links), the
same for each pod namespace (at least ``links`` and ``addresses``), BIRD's ``birdc show
protocols [all]`` text and the uplink's address labels, and returns::

    {"node": "node1", "uplink": {"dev": "eth0", "address": "172.31.1.11/24"},
     "bridges": [{"name": "cni0", "addresses": [...], "mtu": 1450, "mac": .., "ports": [veth]}],
     "pods": [{"netns", "name", "ifname", "address", "addresses", "mac", "veth", "bridge", "gateway"}],
     "routes": [{"dest", "kind", "dev", "gateway", "metric", "protocol", "active", "nexthops",
                 "vxlan": {"vni", "port", "mac", "remote"}}],   # kind: direct vxlan bgp local ...
     "vxlan": [{"dev", "vni", "port", "local", "uplink", "mac",
                "peers": [{"ip", "mac", "remote"}]}],          # neighbours joined with the FDB
     "services": [{"name", "protocol", "cluster_ip", "port", "chain", "node_port", "external_ips",
                   "external_chain", "endpoints": [{"address", "chance", "chain"}], "reject"}],
     "bgp": {"sessions": [{"name", "state", "since", "info", "neighbor_address", "neighbor_as"}],
             "routes": [{"dest", "gateway", "dev", "metric"}]},       # learned: proto bird
     "vips": [{"address", "dev", "label", "owner"}]}

Routes are those of the main table inside ``cluster_cidr`` (when given; otherwise every main
route but the default and the connected subnets of non-bridge devices), classified: ``bgp``
(protocol bird, 12), ``vxlan`` (out of a VXLAN device: the neighbour's MAC and the FDB's remote
VTEP), ``direct`` (host-gw: through a gateway), ``local`` (the node's own pod CIDR on its
bridge), ``multipath``, ``blackhole``/``unreachable``/``prohibit``, else ``connected``.

:func:`text_lines` prints one view as a compact block; :func:`dot` draws all nodes' views as one
Graphviz digraph (a cluster per node with its bridge and pods; VXLAN tunnels between VTEPs, BGP
sessions, host-gw routes, VIPs and their owner as edges).
"""
from __future__ import annotations

import ipaddress
import re

from ansible_collections.podnet.fabric.plugins.module_utils.bird import parse_protocols
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import parse_save
from ansible_collections.podnet.fabric.plugins.module_utils.trace.rules import compile_rule
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import _addresses, _fdb, _neighbours

# iproute2's /etc/iproute2/rt_protos
PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
             11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp", 42: "babel", 186: "bgp",
             187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
BIRD_PROTO = "bird"
UNREACHABLE_TYPES = ("blackhole", "unreachable", "prohibit", "throw")
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw"}
_SERVICE_RE = re.compile(r"^(?P<name>\S+/\S+?)(?::(?P<port>\S+))?(?: (?P<what>.*))?$")


# --- small readers ---------------------------------------------------------------------------------

def protocol_name(value):
    """Route protocol number or name -> iproute2's name ('bird' for 12)."""
    if value is None:
        return "unspec"
    if isinstance(value, int) or str(value).isdigit():
        return PROTOCOLS.get(int(value), str(value))
    return str(value)


def _route_type(value):
    if value is None:
        return "unicast"
    if isinstance(value, int):
        return _ROUTE_TYPES.get(value, str(value))
    return str(value)


def _table(value):
    if value in (None, "main", 254, "254"):
        return 254
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    return {"local": 255, "default": 253}.get(str(value), -1)


def _dest(obj):
    dest = obj.get("dest", obj.get("dst"))
    if dest in (None, "default"):
        return "0.0.0.0/0"
    dest = str(dest)
    return dest if "/" in dest else dest + "/32"


def _net(text):
    return ipaddress.ip_network(text, strict=False)


def pod_name(netns, prefix="pod-"):
    """'pod-default-web-1' -> 'default/web-1' (the namespace is taken up to the first dash)."""
    rest = netns[len(prefix):] if prefix and netns.startswith(prefix) else netns
    ns, sep, name = rest.partition("-")
    return "%s/%s" % (ns, name) if sep and name else rest


# --- the node's pieces -------------------------------------------------------------------------------

def uplink_of(links, addresses, routes, vxlans, given=None):
    """The interface holding the node's address: ``given``, else a VXLAN device's underlay, else
    the default route's device, else the first plain device with a network address."""
    if given:
        return given
    for settings in vxlans.values():
        if settings.get("dev"):
            return settings["dev"]
    for r in routes:
        if _dest(r) == "0.0.0.0/0" and _table(r.get("table")) == 254 and r.get("dev"):
            return r["dev"]
    for name in sorted(addresses):
        kind = (links.get(name) or {}).get("kind")
        if name != "lo" and kind not in ("bridge", "veth", "vxlan") and any(
                not a.endswith("/32") for a in addresses[name]):
            return name
    return None


def primary_address(addresses, dev):
    """The uplink's network address (the first that is not a /32)."""
    for a in addresses.get(dev, []):
        if not a.endswith("/32"):
            return a
    return None


def bridges_of(links, addresses):
    out = []
    for name, cur in sorted(links.items()):
        if cur.get("kind") == "bridge":
            ports = sorted(n for n, other in links.items() if other.get("master") == name)
            out.append({"name": name, "addresses": list(addresses.get(name, [])), "mtu": cur.get("mtu"),
                        "mac": cur.get("mac"), "up": cur.get("up"), "ports": ports})
    return out


def pods_of(links, pods, prefix="pod-", names=None):
    """Each pod namespace's interface towards the node (a veth whose peer is a link of the node:
    the node's veth is the link whose index is the pod side's ``peer_index``), its addresses,
    the node's veth and that veth's bridge. ``names``: {netns: "ns/name"} (else :func:`pod_name`)."""
    names = names or {}
    by_index = dict((cur["index"], name) for name, cur in links.items() if cur.get("index") is not None)
    out = []
    for netns in sorted(pods):
        state = pods[netns] or {}
        addrs = _addresses(state.get("addresses") or {})
        plinks = state.get("links") or {}
        entry = {"netns": netns, "name": names.get(netns) or pod_name(netns, prefix), "ifname": None, "address": None, "addresses": [],
                 "mac": None, "veth": None, "bridge": None, "gateway": None}
        candidates = sorted((n for n, cur in plinks.items() if cur.get("kind") == "veth"),
                            key=lambda n: (n != "eth0", n))
        for ifname in candidates:
            cur = plinks[ifname]
            veth = by_index.get(cur.get("peer_index"))
            node_side = links.get(veth) if veth else None
            if node_side is None or node_side.get("kind") != "veth" or (
                    node_side.get("peer_index") not in (None, cur.get("index"))):
                continue
            entry.update(ifname=ifname, veth=veth, bridge=node_side.get("master"), mac=cur.get("mac"))
            break
        if entry["ifname"] is None and candidates:
            entry.update(ifname=candidates[0], mac=plinks[candidates[0]].get("mac"))
        if entry["ifname"]:
            entry["addresses"] = list(addrs.get(entry["ifname"], []))
            entry["address"] = entry["addresses"][0] if entry["addresses"] else None
        for r in state.get("routes") or []:
            if _dest(r) == "0.0.0.0/0" and _table(r.get("table")) == 254 and r.get("gateway"):
                entry["gateway"] = r["gateway"]
        out.append(entry)
    return out


def vxlan_of(vxlans, links, neighbours, fdb):
    """VXLAN devices with their peers: each permanent neighbour (inner IP -> MAC) joined with the
    FDB (MAC -> remote VTEP); FDB rows without a neighbour are listed with ip None."""
    out = []
    for dev in sorted(vxlans):
        settings = vxlans[dev] or {}
        rows, seen = [], set()
        remote = fdb.get(dev, {})
        for ip, mac in sorted(neighbours.get(dev, {}).items(), key=lambda kv: _sort_ip(kv[0])):
            rows.append({"ip": ip, "mac": mac, "remote": remote.get(mac)})
            seen.add(mac)
        for mac, dst in sorted(remote.items()):
            if mac not in seen and mac != "00:00:00:00:00:00":
                rows.append({"ip": None, "mac": mac, "remote": dst})
        out.append({"dev": dev, "vni": settings.get("vni"), "port": settings.get("port"),
                    "local": settings.get("local"), "uplink": settings.get("dev"),
                    "mac": (links.get(dev) or {}).get("mac"), "peers": rows})
    return out


def _sort_ip(text):
    try:
        return (0, int(ipaddress.ip_address(text)))
    except ValueError:
        return (1, text)


def _sort_net(text):
    net = _net(text)
    return (int(net.network_address), net.prefixlen)


def routes_of(routes, links, vxlans, neighbours, fdb, cluster_cidr=None):
    """Main-table IPv4 routes to pod CIDRs, classified (see the module docstring), sorted by
    destination then metric; ``active``: the lowest metric of its destination."""
    cluster = _net(cluster_cidr) if cluster_cidr else None
    picked = []
    for r in routes:
        if r.get("family") not in (None, 2) or ":" in _dest(r) or _table(r.get("table")) != 254:
            continue
        dest = _dest(r)
        net = _net(dest)
        dev = r.get("dev")
        kind_of_dev = (links.get(dev) or {}).get("kind")
        if cluster is not None:
            if net.version != 4 or not net.subnet_of(cluster):
                continue
        elif net.prefixlen == 0 or (not r.get("gateway") and not r.get("nexthops") and dev
                                    and kind_of_dev not in ("bridge", "vxlan")
                                    and _route_type(r.get("type")) == "unicast"):
            continue
        picked.append(_classify(r, dest, links, vxlans, neighbours, fdb))
    picked.sort(key=lambda v: (_sort_net(v["dest"]), v["metric"]))
    best = {}
    for v in picked:
        best.setdefault(v["dest"], v["metric"])
    for v in picked:
        v["active"] = v["metric"] == best[v["dest"]] and v["kind"] not in UNREACHABLE_TYPES
    return picked


def _classify(r, dest, links, vxlans, neighbours, fdb):
    dev, gateway = r.get("dev"), r.get("gateway")
    proto = protocol_name(r.get("protocol"))
    rtype = _route_type(r.get("type"))
    hops = [{"gateway": h.get("gateway"), "dev": h.get("dev"), "weight": h.get("weight") or 1}
            for h in r.get("nexthops") or []]
    view = {"dest": dest, "dev": dev, "gateway": gateway, "metric": r.get("metric") or 0, "protocol": proto,
            "nexthops": hops, "vxlan": None}
    if proto == BIRD_PROTO:
        kind = "bgp"
    elif rtype in UNREACHABLE_TYPES:
        kind = rtype
    elif hops:
        kind = "multipath"
    elif dev in vxlans or (links.get(dev) or {}).get("kind") == "vxlan":
        kind = "vxlan"
    elif gateway:
        kind = "direct"
    elif (links.get(dev) or {}).get("kind") == "bridge":
        kind = "local"
    else:
        kind = "connected"
    if dev in vxlans or (links.get(dev) or {}).get("kind") == "vxlan":
        settings = vxlans.get(dev) or {}
        mac = neighbours.get(dev, {}).get(gateway) if gateway else None
        view["vxlan"] = {"vni": settings.get("vni"), "port": settings.get("port"), "mac": mac,
                         "remote": fdb.get(dev, {}).get(mac) if mac else None}
    view["kind"] = kind
    return view


def bgp_of(protocols_text, routes):
    """BGP sessions from ``birdc show protocols [all]`` and the routes BIRD installed (proto bird)."""
    sessions = []
    for name, proto in sorted(parse_protocols(protocols_text or "").items()):
        if proto.get("proto") != "BGP":
            continue
        sessions.append({"name": name, "state": proto.get("bgp_state") or proto.get("info") or proto.get("state"),
                         "protocol_state": proto.get("state"), "since": proto.get("since"), "info": proto.get("info"),
                         "neighbor_address": proto.get("neighbor_address"), "neighbor_as": proto.get("neighbor_as"),
                         "local_as": proto.get("local_as")})
    learned = []
    for r in routes:
        if protocol_name(r.get("protocol")) != BIRD_PROTO or ":" in _dest(r) or _table(r.get("table")) != 254:
            continue
        learned.append({"dest": _dest(r), "gateway": r.get("gateway"), "dev": r.get("dev"),
                        "metric": r.get("metric") or 0,
                        "nexthops": [{"gateway": h.get("gateway"), "dev": h.get("dev")} for h in r.get("nexthops") or []]})
    learned.sort(key=lambda v: (_sort_net(v["dest"]), v["metric"]))
    return {"sessions": sessions, "routes": learned}


def vips_of(addresses, uplink, owner, labels=None):
    """/32 addresses on the uplink besides its network address: the VIPs this node holds."""
    out = []
    labels = labels or {}
    for a in addresses.get(uplink, []) if uplink else []:
        if a.endswith("/32"):
            ip = a[:-3]
            out.append({"address": ip, "dev": uplink, "label": labels.get(ip), "owner": owner})
    return out


# --- Services from the nat table ---------------------------------------------------------------------

def _header(rule, opt):
    for neg, key, value in rule.header:
        if key == opt and not neg:
            return value
    return None


def _dport(rule):
    for name in ("tcp", "udp", "sctp"):
        found = rule.option(name, "--dport")
        if found and not found[0]:
            return int(found[1][0])
    return None


def _service_comment(comment):
    """'ns/web:http cluster IP' -> ('ns/web:http', 'cluster IP'); None when it names no service."""
    m = _SERVICE_RE.match(comment or "")
    if not m or " " in m.group("name"):
        return None
    name = m.group("name") + (":" + m.group("port") if m.group("port") else "")
    return name, (m.group("what") or "").strip()


def _endpoints(chains, chain, seen=None):
    """The KUBE-SEP-* a KUBE-SVC-/KUBE-SVL- chain picks from, with each one's chance (the
    statistic rules' probabilities in order; affinity (recent --rcheck) rules are not choices)."""
    seen = seen or set()
    if chain in seen:
        return []
    seen.add(chain)
    out, left = [], 1.0
    for text in chains.get(chain, []):
        rule = compile_rule(text)
        target = rule.target or ""
        if not target.startswith("KUBE-SEP-"):
            continue
        recent = rule.option("recent", "--rcheck")
        if recent is not None:
            continue
        prob = rule.option("statistic", "--probability")
        p = float(prob[1][0]) if prob else 1.0
        chance = left * p
        left -= chance
        dest = None
        for sep_text in chains.get(target, []):
            sep_rule = compile_rule(sep_text)
            if sep_rule.target == "DNAT":
                dest = (sep_rule.target_opts.get("--to-destination") or [None])[0]
        out.append({"address": dest, "chance": round(chance, 4), "chain": target})
    return out


def services_of(iptables_text):
    """Services as kube-proxy wrote them in the nat table (KUBE-SERVICES, KUBE-NODEPORTS) and
    the filter table's REJECTs of services without endpoints."""
    tables = parse_save(iptables_text or "", tables=("nat", "filter"))
    nat = dict((c.name, c.rules) for c in tables["nat"].chains.values()) if "nat" in tables else {}
    filt = dict((c.name, c.rules) for c in tables["filter"].chains.values()) if "filter" in tables else {}
    found = {}

    def entry(name, proto):
        return found.setdefault((name, proto), {
            "name": name, "protocol": proto, "cluster_ip": None, "port": None, "chain": None, "node_port": None,
            "external_ips": [], "external_chain": None, "endpoints": [], "reject": False})

    for text in nat.get("KUBE-SERVICES", []):
        rule = compile_rule(text)
        named = _service_comment(rule.comment)
        target = rule.target or ""
        if not named or not target.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")):
            continue
        name, what = named
        svc = entry(name, _header(rule, "-p"))
        ip = (_header(rule, "-d") or "").split("/")[0] or None
        if what == "cluster IP":
            svc.update(cluster_ip=ip, port=_dport(rule), chain=target)
        elif ip and ip not in svc["external_ips"]:
            svc["external_ips"].append(ip)
            svc["external_chain"] = svc["external_chain"] or target
            if svc["port"] is None:
                svc["port"] = _dport(rule)
    for text in nat.get("KUBE-NODEPORTS", []):
        rule = compile_rule(text)
        named = _service_comment(rule.comment)
        if named and (rule.target or "").startswith("KUBE-"):
            svc = entry(named[0], _header(rule, "-p"))
            svc["node_port"] = _dport(rule)
            svc["external_chain"] = svc["external_chain"] or rule.target
    for text in filt.get("KUBE-SERVICES", []):
        rule = compile_rule(text)
        named = _service_comment(rule.comment)
        if named and rule.target == "REJECT" and named[1] == "has no endpoints":
            svc = entry(named[0], _header(rule, "-p"))
            svc.update(reject=True, cluster_ip=svc["cluster_ip"] or (_header(rule, "-d") or "").split("/")[0] or None,
                       port=svc["port"] or _dport(rule))
    for svc in found.values():
        chain = svc["chain"]
        if chain is None and svc["external_chain"]:
            # only external ways in (a Local policy's KUBE-EXT): its endpoints are the SVL's
            for text in nat.get(svc["external_chain"], []):
                target = compile_rule(text).target or ""
                if target.startswith(("KUBE-SVC-", "KUBE-SVL-")):
                    chain = target
        if chain:
            svc["endpoints"] = _endpoints(nat, chain)
    return sorted(found.values(), key=lambda s: (s["name"], s["protocol"] or ""))


# --- the whole view ------------------------------------------------------------------------------------

def node_view(name, state, pods=None, protocols_text=None, labels=None, cluster_cidr=None, uplink=None,
              netns_prefix="pod-", pod_names=None):
    """One node's view (see the module docstring) from its state and its pods' states
    ({netns: state}; ``pod_names``: {netns: "ns/name"} where the cluster's objects are known)."""
    links = dict(state.get("links") or {})
    addresses = _addresses(state.get("addresses") or {})
    neighbours = _neighbours(state.get("neighbours") or {})
    fdb = _fdb(state.get("fdb") or {})
    vxlans = dict(state.get("vxlan") or {})
    routes = list(state.get("routes") or [])
    up = uplink_of(links, addresses, routes, vxlans, uplink)
    vx = vxlan_of(vxlans, links, neighbours, fdb)
    return {
        "node": name,
        "uplink": {"dev": up, "address": primary_address(addresses, up) if up else None},
        "bridges": bridges_of(links, addresses),
        "pods": pods_of(links, pods or {}, netns_prefix, pod_names),
        "routes": routes_of(routes, links, vxlans, neighbours, fdb, cluster_cidr),
        "vxlan": vx,
        "neighbours": dict((v["dev"], neighbours.get(v["dev"], {})) for v in vx),
        "fdb": dict((v["dev"], fdb.get(v["dev"], {})) for v in vx),
        "services": services_of(state.get("iptables")),
        "bgp": bgp_of(protocols_text, routes),
        "vips": vips_of(addresses, up, name, labels),
    }


# --- text -------------------------------------------------------------------------------------------------

def _percent(chance):
    value = chance * 100
    return "%d%%" % round(value) if abs(value - round(value)) < 0.05 else "%.1f%%" % value


def route_line(r):
    kind = r["kind"]
    standby = "" if r["active"] or kind in UNREACHABLE_TYPES else ", standby"
    metric = " metric %d" % r["metric"] if r["metric"] else ""
    if kind == "vxlan":
        vx = r["vxlan"] or {}
        how = "VXLAN VNI %s -> %s" % (vx.get("vni"), vx.get("remote") or "no FDB entry")
        return "%s via %s%s (%s%s)" % (r["dest"], r["dev"], metric, how, standby)
    if kind in UNREACHABLE_TYPES:
        return "%s %s%s" % (r["dest"], kind, metric)
    if r["nexthops"]:
        hops = " ".join("%s dev %s" % (h["gateway"], h["dev"]) for h in r["nexthops"])
        via = "via " + hops
    elif r["gateway"]:
        via = "via %s dev %s" % (r["gateway"], r["dev"])
    else:
        via = "dev %s" % r["dev"]
    label = {"direct": "direct, host-gw", "bgp": "BGP, proto bird", "local": "this node's pods",
             "multipath": "multipath"}.get(kind, kind)
    return "%s %s%s (%s%s)" % (r["dest"], via, metric, label, standby)


def service_line(s):
    head = "%s %s:%s/%s" % (s["name"], s["cluster_ip"] or "-", s["port"] if s["port"] is not None else "-",
                            (s["protocol"] or "?"))
    if s["endpoints"]:
        ends = " ".join("%s (%s)" % (e["address"], _percent(e["chance"])) for e in s["endpoints"])
    else:
        ends = "no endpoints" + (" (REJECT)" if s["reject"] else "")
    extra = []
    if s["node_port"]:
        extra.append("nodePort %d" % s["node_port"])
    if s["external_ips"]:
        extra.append("external " + ",".join(s["external_ips"]))
    return "%s -> %s%s" % (head, ends, ("  [" + "; ".join(extra) + "]") if extra else "")


def text_lines(view):
    """The view as the seeds draw a node: one line each for the node, its bridges, pods, routes,
    VXLAN peers, services, BGP sessions and learned routes, VIPs."""
    up = view["uplink"]
    lines = ["%s  %s %s" % (view["node"], up["dev"] or "-", up["address"] or "-")]
    for b in view["bridges"]:
        addrs = " ".join(b["addresses"]) or "-"
        lines.append("  bridge %s %s mtu %s, %d port(s)" % (b["name"], addrs, b["mtu"], len(b["ports"])))
    for p in view["pods"]:
        lines.append("  pod %-24s %-15s %s <-> %s @ %s" % (p["name"], (p["address"] or "-").split("/")[0],
                                                           p["ifname"] or "-", p["veth"] or "?", p["bridge"] or "-"))
    for r in view["routes"]:
        lines.append("  route " + route_line(r))
    for v in view["vxlan"]:
        lines.append("  vxlan %s VNI %s port %s local %s dev %s" % (v["dev"], v["vni"], v["port"], v["local"], v["uplink"]))
        for peer in v["peers"]:
            lines.append("    %s %s -> %s" % (peer["ip"] or "(fdb)", peer["mac"], peer["remote"] or "no FDB entry"))
    for s in view["services"]:
        lines.append("  service " + service_line(s))
    for s in view["bgp"]["sessions"]:
        who = " (%s" % s["neighbor_address"] if s["neighbor_address"] else ""
        if who and s["neighbor_as"]:
            who += " AS %s" % s["neighbor_as"]
        lines.append("  bgp %s %s since %s%s" % (s["name"], s["state"], s["since"], who + ")" if who else ""))
    for r in view["bgp"]["routes"]:
        via = " ".join("%s dev %s" % (h["gateway"], h["dev"]) for h in r["nexthops"]) or \
            ("%s dev %s" % (r["gateway"], r["dev"]) if r["gateway"] else "dev %s" % r["dev"])
        lines.append("  bgp learned %s via %s metric %d" % (r["dest"], via, r["metric"]))
    for v in view["vips"]:
        lines.append("  vip %s on %s%s owner %s" % (v["address"], v["dev"], " (%s)" % v["label"] if v["label"] else "",
                                                    v["owner"]))
    return lines


# --- Graphviz ------------------------------------------------------------------------------------------

def _q(text):
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _local_ips(view):
    ips = set()
    if view["uplink"]["address"]:
        ips.add(view["uplink"]["address"].split("/")[0])
    for v in view["vxlan"]:
        if v["local"]:
            ips.add(v["local"])
    for v in view["vips"]:
        ips.add(v["address"])
    return ips


def dot(views, name="podnet"):
    """All nodes' views ({host: view}) as one Graphviz digraph (DOT text)."""
    owner_of = {}
    for host, view in sorted(views.items()):
        for ip in _local_ips(view):
            owner_of.setdefault(ip, host)
    out = ["digraph %s {" % _q(name), "  graph [rankdir=LR, fontname=\"Helvetica\", compound=true];",
           "  node [fontname=\"Helvetica\", fontsize=10];", "  edge [fontname=\"Helvetica\", fontsize=9];"]
    for i, (host, view) in enumerate(sorted(views.items())):
        up = view["uplink"]
        out.append("  subgraph %s {" % _q("cluster_%d" % i))
        out.append("    label=%s;" % _q("%s\n%s %s" % (host, up["dev"] or "", up["address"] or "")))
        out.append("    %s [shape=box3d, label=%s];" % (_q(host), _q("%s\n%s" % (host, up["address"] or ""))))
        for b in view["bridges"]:
            bid = "%s/%s" % (host, b["name"])
            out.append("    %s [shape=ellipse, label=%s];" % (_q(bid), _q("%s\n%s" % (b["name"], " ".join(b["addresses"])))))
            out.append("    %s -> %s [dir=none];" % (_q(bid), _q(host)))
        for p in view["pods"]:
            pid = "%s/%s" % (host, p["netns"])
            out.append("    %s [shape=box, style=rounded, label=%s];" % (
                _q(pid), _q("%s\n%s" % (p["name"], (p["address"] or "").split("/")[0]))))
            target = "%s/%s" % (host, p["bridge"]) if p["bridge"] else host
            out.append("    %s -> %s [dir=none, label=%s];" % (_q(pid), _q(target), _q(p["veth"] or "")))
        for v in view["vips"]:
            vid = "vip %s" % v["address"]
            out.append("    %s [shape=diamond, label=%s];" % (_q(vid), _q("VIP %s\n%s" % (v["address"], v["label"] or ""))))
            out.append("    %s -> %s [label=\"owner\"];" % (_q(host), _q(vid)))
        out.append("  }")
    drawn, outside = set(), set()
    for host, view in sorted(views.items()):
        for v in view["vxlan"]:
            for peer in v["peers"]:
                other = owner_of.get(peer["remote"])
                if not other or other == host:
                    continue
                key = ("vxlan",) + tuple(sorted((host, other)))
                if key not in drawn:
                    drawn.add(key)
                    out.append("  %s -> %s [dir=both, style=dashed, color=blue, label=%s];" % (
                        _q(host), _q(other), _q("VXLAN VNI %s" % v["vni"])))
        for r in view["routes"]:
            other = owner_of.get(r["gateway"]) if r["kind"] == "direct" and r["active"] else None
            key = ("host-gw",) + tuple(sorted((host, other or host)))
            if other and other != host and key not in drawn:
                drawn.add(key)
                out.append("  %s -> %s [dir=both, color=darkgreen, label=\"host-gw\"];" % (_q(host), _q(other)))
        for s in view["bgp"]["sessions"]:
            peer = s["neighbor_address"]
            other = owner_of.get(peer) if peer else None
            if other is None:
                other = "peer %s" % (peer or s["name"])
                if other not in outside:
                    outside.add(other)
                    out.append("  %s [shape=octagon, label=%s];" % (_q(other), _q("%s\n%s" % (s["name"], peer or ""))))
            key = ("bgp",) + tuple(sorted((host, other)))
            if key in drawn:
                continue
            drawn.add(key)
            color = "black" if s["state"] == "Established" else "red"
            out.append("  %s -> %s [dir=none, style=dotted, color=%s, label=%s];" % (
                _q(host), _q(other), color, _q("BGP %s" % s["state"])))
    out.append("}")
    return "\n".join(out) + "\n"
