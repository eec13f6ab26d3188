# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""veth pairs: a pod's wiring. The host end stays in the namespace the handle was opened in
(``netns`` of the module, the node's own by default), the peer end is created directly inside the
pod's namespace under its final name (eth0), so there is no rename step to race with.

Both ends carry the owner's alias ``podnet.fabric:<owner>``. The peer end gets the pod's
addresses, MTU and MAC, and the pod's default route (``gateway``, with the owner's route
protocol); the host end may be enslaved to a bridge (cni0) with hairpin mode, or get addresses
itself (ptp style).

A pair is recognised by what the kernel says, not guessed: the host end's IFLA_LINK is the peer's
index *in the namespace* IFLA_LINK_NETNSID names, and that netnsid is compared with the one the
host end's namespace has for the peer namespace (RTM_GETNSID on ``/run/netns/NAME``).
"""
from __future__ import annotations

import os

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link, route
from ansible_collections.podnet.fabric.plugins.module_utils.netlink.bridge import check_mtu, plan_hairpin
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, noop

WHAT = "veth"
NSID_UNASSIGNED = (None, -1, 4294967295)


def normalize(spec):
    name = core.check_ifname(spec.get("name"), WHAT)
    what = "veth %s" % name
    out = dict(spec)
    out["name"] = name
    out["peer"] = core.check_ifname(spec.get("peer") or "eth0", "%s peer" % what)
    if not spec.get("peer_netns") and out["peer"] == name:
        raise FabricError("%s: peer has the same name in the same namespace" % what)
    out["mtu"] = check_mtu(spec.get("mtu"), what)
    out["mac"] = core.parse_mac(spec["mac"], "%s peer mac" % what) if spec.get("mac") else None
    out["host_mac"] = core.parse_mac(spec["host_mac"], "%s host_mac" % what) if spec.get("host_mac") else None
    for key in ("addresses", "host_addresses"):
        out[key] = link.normalize_addresses(spec.get(key), what) if spec.get(key) is not None else None
    if spec.get("bridge"):
        core.check_ifname(spec["bridge"], "%s bridge" % what)
    if spec.get("hairpin") is not None and not spec.get("bridge"):
        raise FabricError("%s: hairpin needs a bridge" % what)
    out["gateway"] = None
    if spec.get("gateway"):
        # The pod's default route, as the CNI bridge plugin's isDefaultGateway installs it.
        gw = core.parse_address(spec["gateway"], "%s gateway" % what)
        if out["addresses"] is not None and not any(gw in core.parse_interface(a, what).network for a in out["addresses"]):
            raise FabricError("%s: gateway %s is not in the subnet of any of the pod's addresses %s" % (what, gw, ", ".join(out["addresses"])))
        out["gateway"] = route.normalize({"dest": "default" if gw.version == 4 else "::/0", "gateway": str(gw), "dev": out["peer"]})
    return out


class Namespaces(object):
    """Handles for the peers' namespaces, opened once each and closed together.

    ``observe(ns)`` is for planning (None: the namespace does not exist yet and ``missing_ok``);
    ``lazy(ns)`` is what actions use: it opens the namespace when an action first needs it, so a
    plan can act in a namespace that an earlier action of the same plan creates.
    """

    def __init__(self, host_ipr, missing_ok):
        self.host_ipr = host_ipr
        self.missing_ok = missing_ok
        self.handles = {}
        self.contexts = []
        self.nsids = {}

    def _open(self, netns, missing_ok):
        if netns not in self.handles:
            ctx = core.open_netns(netns, missing_ok=missing_ok)
            handle = ctx.__enter__()
            if handle is None:
                return None
            self.handles[netns] = Snapshot(handle)
            self.contexts.append(ctx)
        return self.handles[netns]

    def planned(self):
        """Planning is over: from now on every dump asks the kernel again."""
        for handle in list(self.handles.values()) + [self.host_ipr]:
            if isinstance(handle, Snapshot):
                handle.drop()

    def observe(self, netns):
        if not netns:
            return self.host_ipr
        return self._open(netns, self.missing_ok)

    def lazy(self, netns):
        if not netns:
            return self.host_ipr
        return _Lazy(self, netns)

    def nsid(self, netns):
        """The netnsid the host ends' namespace has for ``netns`` (None when it has none: then no
        link there is paired with one here)."""
        if netns not in self.nsids:
            value = None
            if self.host_ipr is not None and netns_exec.exists(netns):
                fd = os.open(netns_exec.netns_path(netns), os.O_RDONLY)
                try:
                    reply = self.host_ipr.get_netnsid(fd=fd)
                finally:
                    os.close(fd)
                value = reply.get("nsid") if reply else None
                if value in NSID_UNASSIGNED:
                    value = None
            self.nsids[netns] = value
        return self.nsids[netns]

    def close(self):
        for ctx in reversed(self.contexts):
            ctx.__exit__(None, None, None)
        self.contexts, self.handles = [], {}


class Snapshot(object):
    """An IPRoute wrapper for a plan over many objects in one namespace.

    While planning, the whole-namespace link, address and route dumps are read once (every core
    that looks at the namespace shares them; routes of both families in one request); then
    :meth:`drop` ends that for good, so actions see the kernel as it is. Link indexes looked up
    by name are remembered until a link is deleted, renamed or moved, so a plan's actions do not
    each ask the kernel again. Everything else goes straight to the handle.
    """

    def __init__(self, ipr):
        self._ipr = ipr
        self._dumps = {}
        self._live = False
        self._indexes = {}

    def _dump(self, what, call, args, kwargs):
        if args or kwargs or self._live:
            return call(*args, **kwargs)
        if what not in self._dumps:
            self._dumps[what] = list(call())
        return list(self._dumps[what])

    def get_links(self, *args, **kwargs):
        return self._dump("links", self._ipr.get_links, args, kwargs)

    def get_addr(self, *args, **kwargs):
        return self._dump("addr", self._ipr.get_addr, args, kwargs)

    def get_routes(self, *args, **kwargs):
        """Routes of one family from one dump of all families (AF_UNSPEC): one request, not two."""
        if args or set(kwargs) - {"family"} or self._live:
            return self._ipr.get_routes(*args, **kwargs)
        family = kwargs.get("family")
        return [m for m in self._dump("routes", lambda: self._ipr.get_routes(family=0), (), {})
                if family in (None, 0, m["family"])]

    def link_lookup(self, **kwargs):
        name = kwargs.get("ifname")
        if set(kwargs) != {"ifname"}:
            return self._ipr.link_lookup(**kwargs)
        if name not in self._indexes:
            found = self._ipr.link_lookup(ifname=name)
            if not found:
                return []
            self._indexes[name] = found[0]
        return [self._indexes[name]]

    def link(self, command, **kwargs):
        if command in ("del", "delete", "remove") or (command == "set" and set(kwargs) & {"ifname", "net_ns_fd", "net_ns_pid"}):
            self._indexes = {}
        return self._ipr.link(command, **kwargs)

    def drop(self):
        self._dumps = {}
        self._live = True

    def __getattr__(self, attr):
        return getattr(self._ipr, attr)


class _Lazy(object):
    """An IPRoute stand-in that opens its namespace on first use (see Namespaces.lazy)."""

    def __init__(self, spaces, netns):
        self._spaces = spaces
        self._netns = netns

    def __getattr__(self, attr):
        return getattr(self._spaces._open(self._netns, False), attr)


def paired(host, peer, nsid):
    """Is ``peer`` (found by name in the peer namespace) the other end of ``host``?

    ``nsid``: the host namespace's netnsid for the peer's namespace, or None when the peer lives
    in the host ends' own namespace."""
    if host is None or peer is None or host["kind"] != "veth" or peer["kind"] != "veth":
        return False
    if nsid is None:
        return host["link_netnsid"] is None and host["link_index"] == peer["index"] and peer["link_index"] == host["index"]
    return host["link_netnsid"] == nsid and host["link_index"] == peer["index"]


def observe(host, peer, peer_addrs, host_addrs, links):
    if host is None:
        return None
    master = link.name_of(links, host["master_index"]) if host["master_index"] else None
    return {
        "state": "present",
        "mtu": host["mtu"],
        "host_mac": host["mac"],
        "mac": peer["mac"] if peer else None,
        "peer": peer["name"] if peer else None,
        "addresses": peer_addrs if peer else [],
        "host_addresses": host_addrs.get(host["index"], []),
        "bridge": master,
        "hairpin": bool(host["slave"].get("IFLA_BRPORT_MODE")) if master else False,
    }


def route_protocol(result, veths, owner, registry=None):
    """The owner's route protocol number when any pair declares a gateway (planned registering)."""
    if not any(v.get("gateway") and v.get("state", "present") == "present" for v in veths):
        return None
    return (registry or owners.ProtocolRegistry()).plan_register(result, owner)


def plan(ipr, veths, owner, purge=False, missing_ok=False, registry=None, spaces=None):
    """Plan the pairs in ``veths`` (normalized) with host ends in ``ipr``'s namespace, for
    ``owner``; ``purge`` deletes the owner's other veths there. The returned plan holds the
    peers' handles until :func:`close` (``spaces``: a shared :class:`Namespaces`)."""
    result = Plan()
    ipr = Snapshot(ipr) if ipr is not None else None
    spaces = spaces or Namespaces(ipr, missing_ok)
    result.spaces = spaces
    try:
        links = link.dump(ipr)
        host_addrs = link.address_map(ipr)  # one dump for all host ends
        protocol = route_protocol(result, veths, owner, registry)
        deletes = []
        declared = set()
        for spec in veths:
            plan_one(result, ipr, links, host_addrs, spaces, spec, owner, protocol, declared, deletes)
        if purge:
            for name in purgeable(links, declared, owner):
                result.before[name] = {"state": "present"}
                result.after[name] = {"state": "absent"}
                deletes.append(name)
        for name in deletes:
            link.plan_delete(result, ipr, name, WHAT)
    except Exception:
        spaces.close()
        raise
    spaces.planned()
    return result


def purgeable(links, declared, owner):
    """The owner's veth host ends in ``links`` that are not ``declared``."""
    return [name for name, cur in sorted(links.items())
            if name not in declared and cur["kind"] == "veth" and link.is_owned(cur, owner)]


def close(result):
    spaces = getattr(result, "spaces", None)
    if spaces is not None:
        spaces.close()


def plan_one(result, ipr, links, host_addrs, spaces, spec, owner, protocol, declared, deletes, bridge_missing_ok=None):
    """Plan one pair. ``deletes`` collects host ends to delete at the end of the plan.

    ``bridge_missing_ok``: the bridge may not exist yet (check mode, or created by this plan).
    """
    name = spec["name"]
    if name in declared:
        raise FabricError("veth %s: declared twice" % name)
    declared.add(name)
    host = links.get(name)
    adopt = link.check_takeover(host, name, "veth", WHAT, owner)
    peer_ns = spec.get("peer_netns")
    peer_name = spec["peer"]
    try:
        peer_ipr = spaces.observe(peer_ns)
    except FabricError:
        raise FabricError("veth %s: peer netns %s does not exist" % (name, peer_ns))
    lazy = spaces.lazy(peer_ns)
    peer = link.dump(peer_ipr).get(peer_name)  # one dump, shared with the route plan below
    if peer_ns:
        nsid = spaces.nsid(peer_ns) if host is not None and peer is not None else None
        is_pair = nsid is not None and paired(host, peer, nsid)
    else:
        is_pair = paired(host, peer, None)
    peer_addrs = link.addresses(peer_ipr, peer["index"]) if is_pair else []
    before = observe(host, peer if is_pair else None, peer_addrs, host_addrs, links)
    gw = spec.get("gateway")
    if spec.get("state", "present") == "absent":
        result.before[name] = before or {"state": "absent"}
        result.after[name] = {"state": "absent"}
        if host is not None:
            deletes.append(name)  # deleting one end removes the pair
        return

    if spec.get("bridge"):
        br = links.get(spec["bridge"])
        missing_ok = spaces.missing_ok if bridge_missing_ok is None else bridge_missing_ok
        # In check mode an earlier task of the play may be about to create the bridge.
        if (br is None and not missing_ok) or (br is not None and br["kind"] != "bridge"):
            raise FabricError("veth %s: bridge %s %s" % (name, spec["bridge"], "does not exist" if br is None else "is a %s, not a bridge" % br["kind"]))

    recreate = host is not None and not is_pair
    if peer is not None and not is_pair:
        # The peer's name is taken in the pod namespace by something that is not this pair's end.
        if peer["kind"] != "veth" or link.holder(peer) is None:
            raise FabricError("veth %s: peer name %s is taken in netns %s by a %s link not owned by podnet.fabric"
                              % (name, peer_name, peer_ns or "(host)", peer["kind"]))
        owners.claim("veth %s: peer %s in netns %s" % (name, peer_name, peer_ns or "(host)"), link.holder(peer), owner)
        # Must go before the new pair can take the name: irreversible, and so reported honestly.
        link.plan_delete(result, lazy, peer_name, "stale veth end")
    if recreate:
        link.plan_delete(result, ipr, name, WHAT)
    mark = owners.mark(owner)
    if host is None or recreate:
        plan_create(result, ipr, lazy, spec, mark)
        if spec.get("bridge"):
            plan_hairpin(result, ipr, name, None, spec.get("hairpin"))
        link.plan_addresses(result, ipr, name, [], spec.get("host_addresses"), WHAT)
        link.plan_addresses(result, lazy, peer_name, [], spec.get("addresses"), "veth peer")
        if gw:
            plan_gateway(result, None, lazy, spec, protocol, False)
    else:
        host_master = link.name_of(links, host["master_index"]) if host["master_index"] else None
        link.plan_attrs(result, ipr, name, host, {
            "alias": mark, "mtu": spec.get("mtu"), "mac": spec.get("host_mac"), "master": spec.get("bridge"), "up": True},
            WHAT, current_master=host_master)
        if spec.get("bridge"):
            plan_hairpin(result, ipr, name, host if host_master == spec["bridge"] else None, spec.get("hairpin"))
        link.plan_addresses(result, ipr, name, before["host_addresses"], spec.get("host_addresses"), WHAT)
        link.plan_attrs(result, lazy, peer_name, peer, {"alias": mark, "mtu": spec.get("mtu"), "mac": spec.get("mac"), "up": True},
                        "veth peer")
        link.plan_addresses(result, lazy, peer_name, peer_addrs, spec.get("addresses"), "veth peer")
        if gw:
            observable = peer["up"] and (spec.get("addresses") is None or sorted(peer_addrs) == sorted(spec["addresses"]))
            before["gateway"] = plan_gateway(result, lazy, lazy, spec, protocol, observable)
    after = dict(before or {"state": "present", "mtu": None, "host_mac": None, "mac": None, "addresses": [],
                            "host_addresses": [], "bridge": None, "hairpin": False})
    after.update({"state": "present", "peer": peer_name})
    for key in ("mtu", "mac", "host_mac", "addresses", "host_addresses", "bridge", "hairpin"):
        if spec.get(key) is not None:
            after[key] = spec[key]
    if gw:
        after["gateway"] = gw["gateway"]
    if adopt:
        after["adopted_from"] = "podnet.fabric 0.1"
    result.before[name] = before or {"state": "absent"}
    result.after[name] = after


def plan_create(result, ipr, peer_ipr, spec, mark):
    """Create the pair with everything the kernel takes in one request: names, the peer's
    namespace, MTU and MACs of both ends, the bridge; then mark and bring up each end (one
    request each). The create's undo deletes the pair, and everything on it with it."""
    name, peer_name, peer_ns = spec["name"], spec["peer"], spec.get("peer_netns")
    peer_kw = {"ifname": peer_name}
    kw = {"kind": "veth"}
    if peer_ns:
        peer_kw["net_ns_fd"] = peer_ns
    if spec.get("mtu"):
        kw["mtu"] = peer_kw["mtu"] = spec["mtu"]
    if spec.get("mac"):
        peer_kw["address"] = spec["mac"]
    if spec.get("host_mac"):
        kw["address"] = spec["host_mac"]
    said = ["peer %s in netns %s" % (peer_name, peer_ns or "(host)")]
    said += ["%s %s" % (k, spec[k]) for k in ("mtu", "mac", "host_mac") if spec.get(k)]
    if spec.get("bridge"):
        said.append("bridge %s" % spec["bridge"])

    def do():
        extra = {}
        if spec.get("bridge"):
            extra["master"] = link.index_of(ipr, spec["bridge"], wait=0)
        ipr.link("add", ifname=name, peer=dict(peer_kw), **dict(kw, **extra))

    result.add("create veth %s with %s" % (name, ", ".join(said)), do, lambda: link.delete_quietly(ipr, name))
    result.add("set veth %s alias %s, up" % (name, mark),
               lambda: ipr.link("set", index=link.index_of(ipr, name, wait=0), ifalias=mark, state="up"), noop)
    result.add("set veth peer %s in netns %s alias %s, up" % (peer_name, peer_ns or "(host)", mark),
               lambda: peer_ipr.link("set", index=link.index_of(peer_ipr, peer_name, wait=0), ifalias=mark, state="up"), noop)


def plan_gateway(result, peer_ipr, lazy, spec, protocol, observable):
    """The pod's default route with the owner's protocol; returns the gateway seen now (or None).

    Planned now when the pod end and its addresses are already in place; otherwise (a new pair,
    changed addresses) it is planned when applied, because the route's gateway is only reachable
    once the address is on the link. The undo of a new pair's creation takes the route with it.
    """
    gw = spec["gateway"]
    if observable:
        sub = route.plan(lazy, [gw], protocol, purge=True)
        result.extend(sub)
        return _seen_gateway(sub, gw)
    have = _observed_default(peer_ipr, gw, protocol)
    done = {}

    def do():
        snap = Snapshot(lazy)  # one link and one route dump for planning the pod's routes now
        done["plan"] = route.plan(snap, [gw], protocol, purge=True)
        snap.drop()
        done["plan"].apply()

    def undo():
        sub = done.get("plan")
        for action in reversed(sub.actions if sub else []):
            if action.undo is not None:
                action.undo()
    result.add("set default route via %s dev %s in netns %s" % (gw["gateway"], spec["peer"], spec.get("peer_netns") or "(host)"),
               do, undo if have else noop)
    return have


def _seen_gateway(sub, gw):
    for value in sub.before.values():
        if value and value.get("state", "present") == "present" and value.get("dest") == gw["dest"]:
            return value.get("gateway")
    return None


def _observed_default(peer_ipr, gw, protocol):
    if peer_ipr is None:
        return None
    for r in route.dump(peer_ipr):
        if r["dest"] == gw["dest"] and r["table"] == gw["table"] and r["protocol"] == protocol:
            return r["gateway"]
    return None
