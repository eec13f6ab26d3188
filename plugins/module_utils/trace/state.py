# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One node's (or namespace's) live state as the trace reads it, from plain data (pure).

:meth:`NodeState.from_dict` takes::

    {"name": "node1",
     "iptables": "<iptables-save text>",           # raw, mangle, nat, filter (missing: empty)
     "routes": [...],                               # the netlink layer's route views, or the
                                                    # objects of `ip -json route show table all`
     "addresses": {"eth0": ["172.31.1.11/24"]},     # or `ip -json addr` objects
     "neighbours": {"flannel.1": {"10.244.3.0": "aa:bb:.."}},   # value: mac or (mac, permanent)
     "fdb": {"flannel.1": {"aa:bb:..": "172.31.1.13"}},         # VXLAN FDB: mac -> remote
     "vxlan": {"flannel.1": {"vni": 1, "port": 8472, "local": "172.31.1.11", "dev": "eth0"}},
     "ip_forward": True,
     "recent": {"KUBE-SEP-X": ["10.244.1.5"]},      # -m recent history (session affinity)
     "links": {"veth1a2b": {"index": 7, "kind": "veth", "mac": "..", "master": "cni0",
                            "peer_index": 2, "peer_netnsid": 0}},   # optional: the L2 steps
     "host": "node1", "netns": "pod-default-web-1"}  # optional: where it was read (not used here)

and answers what the routing code and the rules ask: the route for a destination, address types,
the address an interface would masquerade to. Policy routing rules are not read: the default
rules (local, main, default) are assumed.
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import parse_save
from ansible_collections.podnet.fabric.plugins.module_utils.trace.rules import compile_rules

TABLE_IDS = {"local": 255, "main": 254, "default": 253, "unspec": 0}
TABLE_NAMES = dict((v, k) for k, v in TABLE_IDS.items())
LOOKUP_ORDER = (255, 254, 253)
RTN_NAMES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
             7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
BUILTIN = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


class Route(object):
    """One IPv4 route, whichever source it came from."""

    __slots__ = ("net", "table", "type", "gateway", "dev", "onlink", "src", "metric", "nexthops", "text")

    def __init__(self, net, table, rtype, gateway, dev, onlink, src, metric, nexthops, text):
        self.net, self.table, self.type = net, table, rtype
        self.gateway, self.dev, self.onlink = gateway, dev, onlink
        self.src, self.metric, self.nexthops, self.text = src, metric, nexthops, text


def _table_id(value):
    if value is None:
        return 254
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    if text not in TABLE_IDS:
        raise FabricError("route table %r: not a number nor local/main/default" % value)
    return TABLE_IDS[text]


def _route_text(net, rtype, gateway, dev, onlink, table, nexthops, src):
    parts = [] if rtype == "unicast" else [rtype]
    parts.append("default" if net.prefixlen == 0 else (str(net.network_address) if net.prefixlen == 32 else str(net)))
    if gateway:
        parts.append("via " + gateway)
    if dev:
        parts.append("dev " + dev)
    if onlink:
        parts.append("onlink")
    for hop in nexthops:
        onlink = " onlink" if hop["onlink"] else ""
        parts.append("nexthop via %s dev %s weight %d%s" % (hop["gateway"], hop["dev"], hop["weight"], onlink))
    if table != 254:
        parts.append("table " + TABLE_NAMES.get(table, str(table)))
    if src:
        parts.append("src " + src)
    return " ".join(parts)


def route_from(obj):
    """A netlink-layer route view or an `ip -json route` object -> Route (None for IPv6)."""
    if obj.get("family") not in (None, 2):
        return None
    dest = obj.get("dest", obj.get("dst"))
    if dest in (None, "default"):
        dest = "0.0.0.0/0"
    if ":" in str(dest):
        return None
    net = ipaddress.ip_network(dest, strict=False)
    flags = obj.get("flags") or []
    onlink = bool(obj.get("onlink")) or "onlink" in flags
    hops = []
    for hop in obj.get("nexthops") or []:
        hops.append({"gateway": hop.get("gateway"), "dev": hop.get("dev"), "weight": hop.get("weight") or 1,
                     "onlink": bool(hop.get("onlink")) or "onlink" in (hop.get("flags") or [])})
    rtype = obj.get("type") or "unicast"
    if isinstance(rtype, int):
        rtype = RTN_NAMES.get(rtype, str(rtype))
    table = _table_id(obj.get("table"))
    src = obj.get("src", obj.get("prefsrc"))
    return Route(net, table, str(rtype), obj.get("gateway"), obj.get("dev"), onlink, src,
                 obj.get("metric") or 0, hops, _route_text(net, str(rtype), obj.get("gateway"), obj.get("dev"), onlink,
                                                           table, hops, src))


def _addresses(value):
    """{dev: [ip/prefix]} from {dev: [...]} or `ip -json addr` objects."""
    if isinstance(value, dict):
        return dict((dev, list(addrs)) for dev, addrs in value.items())
    out = {}
    for link in value or []:
        for a in link.get("addr_info") or []:
            if a.get("family") == "inet":
                out.setdefault(link["ifname"], []).append("%s/%d" % (a["local"], a["prefixlen"]))
    return out


def _neighbours(value):
    out = {}
    if isinstance(value, dict):
        for dev, entries in value.items():
            for ip, mac in entries.items():
                if isinstance(mac, (list, tuple)):
                    mac = mac[0]
                if mac:
                    out.setdefault(dev, {})[ip] = mac.lower()
        return out
    for n in value or []:
        if n.get("lladdr"):
            out.setdefault(n["dev"], {})[n["dst"]] = n["lladdr"].lower()
    return out


def _fdb(value):
    out = {}
    if isinstance(value, dict):
        for dev, entries in value.items():
            out[dev] = dict((mac.lower(), dst) for mac, dst in entries.items())
        return out
    for e in value or []:
        if e.get("dst"):
            out.setdefault(e.get("ifname") or e.get("dev"), {}).setdefault(e["mac"].lower(), e["dst"])
    return out


class NodeState(object):
    """A node's state ready for tracing (see the module docstring for the input)."""

    def __init__(self, name, tables, routes, addresses, neighbours, fdb, vxlan, ip_forward=True, recent=None,
                 links=None):
        self.name = name
        self.tables = tables          # {table: {chain: (policy, [rule text])}}
        self.routes = routes          # [Route]
        self.addresses = addresses    # {dev: [ip/prefix]}
        self.neighbours = neighbours  # {dev: {ip: mac}}
        self.fdb = fdb                # {dev: {mac: remote ip}}
        self.vxlan = vxlan            # {dev: {vni, port, local, dev}}
        self.ip_forward = ip_forward
        self.links = links or {}      # {dev: {index, kind, mac, master, peer_index, ...}}
        self.host = None              # the machine it was read on (namespaces of one host share it)
        self.recent = dict((k, set(v)) for k, v in (recent or {}).items())
        self._compiled = {}
        self._local = None
        self._by_table = None

    @classmethod
    def from_dict(cls, data):
        if isinstance(data, NodeState):
            return data
        unknown = set(data) - {"name", "iptables", "routes", "addresses", "neighbours", "fdb", "vxlan",
                               "ip_forward", "recent", "links", "host", "netns"}
        if unknown:
            raise FabricError("node state %s: unknown key(s) %s" % (data.get("name"), ", ".join(sorted(unknown))))
        tables = {}
        for tname, table in parse_save(data.get("iptables") or "").items():
            tables[tname] = dict((c.name, (c.policy, c.rules)) for c in table.chains.values())
        routes = [r for r in (route_from(o) for o in data.get("routes") or []) if r is not None]
        state = cls(data.get("name") or "node", tables, routes, _addresses(data.get("addresses") or {}),
                    _neighbours(data.get("neighbours") or {}), _fdb(data.get("fdb") or {}),
                    dict(data.get("vxlan") or {}), data.get("ip_forward", True), data.get("recent"),
                    dict(data.get("links") or {}))
        state.host = data.get("host")
        return state

    # --- iptables ------------------------------------------------------------------------------

    def chain(self, table, name):
        """(policy or None, [Rule]) of a chain; built-in chains that are absent are empty ACCEPT."""
        key = (table, name)
        found = self._compiled.get(key)
        if found is None:
            policy, texts = self.tables.get(table, {}).get(name, (None, None))
            if texts is None:
                if name in BUILTIN.get(table, ()):
                    policy, texts = "ACCEPT", []
                else:
                    return None
            rules = []
            for text in texts:
                rules.extend(compile_rules(text))
            found = self._compiled[key] = (policy if policy != "-" else None, rules)
        return found

    # --- addresses and routes ------------------------------------------------------------------

    def _tables_index(self):
        if self._by_table is None:
            by = {}
            for r in self.routes:
                by.setdefault(r.table, []).append(r)
            for rs in by.values():
                rs.sort(key=lambda r: (-r.net.prefixlen, r.metric))
            self._by_table = by
        return self._by_table

    def local_addresses(self):
        """{ip: dev} of every local address (interface addresses and local routes)."""
        if self._local is None:
            out = {}
            for dev, addrs in self.addresses.items():
                for a in addrs:
                    out.setdefault(a.split("/")[0], dev)
            for r in self._tables_index().get(255, []):
                if r.type == "local":
                    if r.net.prefixlen == 32:
                        out.setdefault(str(r.net.network_address), r.dev)
            self._local = out
        return self._local

    def is_local(self, ip):
        if ip in self.local_addresses():
            return True
        addr = ipaddress.ip_address(ip)
        return any(r.type == "local" and addr in r.net for r in self._tables_index().get(255, []))

    def lookup(self, dst):
        """The route the kernel picks for ``dst``: local, then main, then default table. None: no route."""
        addr = ipaddress.ip_address(dst)
        by = self._tables_index()
        if 255 not in by and dst in self.local_addresses():
            # no local table given: the kernel's local route for an interface address
            dev = self.local_addresses()[dst]
            net = ipaddress.ip_network(dst)
            return Route(net, 255, "local", None, dev, False, None, 0, [], "local %s dev %s table local" % (dst, dev))
        for table in LOOKUP_ORDER:
            for r in by.get(table, []):
                if addr in r.net:
                    if r.type == "throw":
                        break
                    return r
        return None

    def addr_type(self, ip):
        """iptables addrtype of ``ip`` as seen from this node (LOCAL, BROADCAST, MULTICAST, UNICAST, ...)."""
        addr = ipaddress.ip_address(ip)
        if addr.is_multicast:
            return "MULTICAST"
        if str(addr) == "255.255.255.255":
            return "BROADCAST"
        if self.is_local(ip):
            return "LOCAL"
        for r in self._tables_index().get(255, []):
            if r.type == "broadcast" and addr in r.net:
                return "BROADCAST"
        r = self.lookup(ip)
        if r is None:
            return "UNREACHABLE"
        return {"unicast": "UNICAST", "blackhole": "BLACKHOLE", "unreachable": "UNREACHABLE",
                "prohibit": "PROHIBIT"}.get(r.type, "UNICAST")

    def source_for(self, dev, next_hop, route=None):
        """The source address the kernel picks for a packet out of ``dev`` (MASQUERADE's choice)."""
        if route is not None and route.src:
            return route.src
        addrs = [a for a in self.addresses.get(dev, []) if ":" not in a]
        hop = ipaddress.ip_address(next_hop) if next_hop else None
        for a in addrs:
            if hop is not None and hop in ipaddress.ip_interface(a).network:
                return a.split("/")[0]
        if addrs:
            return addrs[0].split("/")[0]
        for d, others in sorted(self.addresses.items()):
            for a in others:
                if ":" not in a and not a.startswith("127."):
                    return a.split("/")[0]
        return None

    def interface_of(self, ip):
        """The interface holding the local address ``ip`` (where a packet for it arrives)."""
        return self.local_addresses().get(ip)
