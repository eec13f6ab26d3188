"""A stand-in for a pyroute2 IPRoute handle: serves canned dumps, records every change request.

Dumps are shaped like pyroute2's messages (``msg["field"]``, ``msg.get_attr("NLA")``, nested
NLAs with ``["attrs"]``) so the netlink layer's observers run unchanged. Change requests
(link/addr/route/fdb/neigh other than dump) are recorded in ``calls`` as
``(method, command, kwargs)``; ``fail`` makes a matching request raise like the kernel would.
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core


class Msg(dict):
    def __init__(self, fields=None, attrs=None):
        super().__init__(fields or {})
        self["attrs"] = [(k, v) for k, v in (attrs or []) if v is not None]

    def get_attr(self, name, default=None):
        for key, value in self["attrs"]:
            if key == name:
                return value
        return default


class KernelError(core.NetlinkError):
    def __init__(self, code, text="kernel says no"):
        super().__init__(code, text)
        self.code = code


class FakeIPR(object):
    def __init__(self):
        self.links, self.addrs, self.routes, self.fdbs, self.neighs = [], [], [], [], []
        self.calls = []
        self.failures = []  # (method, command, predicate, code)

    # --- building the observed state -------------------------------------------------------------
    def add_link(self, name, kind=None, alias=None, mtu=1500, mac="02:00:00:00:00:01", up=True, data=None, index=None):
        index = index or len(self.links) + 1
        info = None
        if kind:
            info = Msg(attrs=[("IFLA_INFO_KIND", kind), ("IFLA_INFO_DATA", Msg(attrs=list((data or {}).items())))])
        self.links.append(Msg({"index": index, "flags": 1 if up else 0}, [
            ("IFLA_IFNAME", name), ("IFLA_IFALIAS", alias), ("IFLA_MTU", mtu), ("IFLA_ADDRESS", mac),
            ("IFLA_LINKINFO", info)]))
        return index

    def add_addr(self, index, cidr, table_routes=True):
        iface = ipaddress.ip_interface(cidr)
        family = 10 if iface.version == 6 else 2
        self.addrs.append(Msg({"index": index, "family": family, "prefixlen": iface.network.prefixlen},
                              [("IFA_ADDRESS", str(iface.ip)), ("IFA_LOCAL", str(iface.ip) if family == 2 else None)]))
        if table_routes:  # what the kernel adds for an address: connected + local routes
            self.add_route(str(iface.network), oif=index, proto=2, scope=253 if family == 2 else 0, prefsrc=str(iface.ip),
                           metric=256 if family == 10 else None)
            self.add_route("%s/%d" % (iface.ip, iface.ip.max_prefixlen), oif=index, proto=2, scope=254, type=2, table=255)

    def add_route(self, dest, table=254, metric=None, proto=150, type=1, scope=0, gateway=None, oif=None,
                  flags=0, multipath=None, prefsrc=None, mtu=None, tos=0):  # proto 150: owner "a" in the tests
        net = ipaddress.ip_network(dest)
        family = 10 if net.version == 6 else 2
        if family == 10 and metric is None:
            metric = 1024
        hops = None
        if multipath:
            hops = [Msg({"oif": h.get("oif", 0), "hops": h.get("hops", 0), "flags": h.get("flags", 0)},
                        [("RTA_GATEWAY", h.get("gateway"))]) for h in multipath]
        self.routes.append(Msg(
            {"family": family, "dst_len": net.prefixlen, "table": table if table < 256 else 252, "tos": tos,
             "proto": proto, "scope": scope, "type": type, "flags": flags},
            [("RTA_TABLE", table), ("RTA_DST", str(net.network_address) if net.prefixlen else None),
             ("RTA_PRIORITY", metric), ("RTA_GATEWAY", gateway), ("RTA_OIF", oif), ("RTA_PREFSRC", prefsrc),
             ("RTA_METRICS", Msg(attrs=[("RTAX_MTU", mtu)]) if mtu else None), ("RTA_MULTIPATH", hops)]))

    def add_fdb(self, index, mac, dst=None, state=0xC0):
        self.fdbs.append(Msg({"ifindex": index, "state": state, "flags": 2, "family": 7},
                             [("NDA_LLADDR", mac), ("NDA_DST", dst)]))

    def add_neigh(self, index, ip, mac, state=0x80):
        self.neighs.append(Msg({"ifindex": index, "state": state, "family": 10 if ":" in ip else 2},
                               [("NDA_DST", ip), ("NDA_LLADDR", mac)]))

    def fail(self, method, command, code, when=lambda kw: True):
        self.failures.append((method, command, when, code))

    # --- the IPRoute API used by the netlink layer -----------------------------------------------
    def get_links(self, *indexes):
        if not indexes:
            return list(self.links)
        return [m for m in self.links if m["index"] in indexes]

    def link_lookup(self, ifname):
        return [m["index"] for m in self.links if m.get_attr("IFLA_IFNAME") == ifname]

    def get_addr(self, index=None, **_):
        return [m for m in self.addrs if index is None or m["index"] == index]

    def get_routes(self, family=None, **_):
        return [m for m in self.routes if family is None or m["family"] == family]

    def get_neighbours(self, ifindex=None, **_):
        return [m for m in self.neighs if ifindex is None or m["ifindex"] == ifindex]

    def _record(self, method, command, kw):
        for m, c, when, code in self.failures:
            if m == method and c == command and when(kw):
                raise KernelError(code)
        self.calls.append((method, command, dict(kw)))

    def fdb(self, command, **kw):
        if command == "dump":
            return [m for m in self.fdbs if kw.get("ifindex") is None or m["ifindex"] == kw["ifindex"]]
        self._record("fdb", command, kw)
        return []

    def link(self, command, **kw):
        self._record("link", command, kw)
        if command == "add":  # so later lookups by name find it
            self.add_link(kw["ifname"], kind=kw.get("kind"))
        return []

    def route(self, command, **kw):
        self._record("route", command, kw)
        return []

    def neigh(self, command, **kw):
        self._record("neigh", command, kw)
        return []

    def addr(self, command, **kw):
        self._record("addr", command, kw)
        return []

    def changes(self, method=None):
        return [(m, c, kw) for m, c, kw in self.calls if method is None or m == method]

    def requests(self, method):
        """(command, kwargs) of the change requests made with ``method``."""
        return [(c, kw) for m, c, kw in self.calls if m == method]
