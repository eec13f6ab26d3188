# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""veth pairs: a pod's wiring. The host end stays in the namespace the handle was opened in
(``netns`` of the module, the node's own by default), the peer end is created directly inside the
pod's namespace under its final name (eth0), so there is no rename step to race with.

Both ends carry the alias ``podnet.fabric``. The peer end gets the pod's addresses, MTU and MAC;
the host end may be enslaved to a bridge (cni0) with hairpin mode, or get addresses itself
(ptp style).
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link, route
from ansible_collections.podnet.fabric.plugins.module_utils.netlink.bridge import check_mtu, plan_hairpin
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

WHAT = "veth"


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
        out["gateway"] = route.normalize({"dest": "default" if ":" not in str(spec["gateway"]) else "::/0",
                                          "gateway": spec["gateway"], "dev": out["peer"]})
        gw = core.parse_address(spec["gateway"], "%s gateway" % what)
        if out["addresses"] is not None and not any(gw in core.parse_interface(a, what).network for a in out["addresses"]):
            raise FabricError("%s: gateway %s is not in the subnet of any of the pod's addresses %s" % (what, gw, ", ".join(out["addresses"])))
    return out


class _Peers(object):
    """Handles for the peers' namespaces, opened once each and closed together."""

    def __init__(self, host_ipr, missing_ok):
        self.host_ipr = host_ipr
        self.missing_ok = missing_ok
        self.handles = {}
        self.contexts = []

    def get(self, netns):
        if not netns:
            return self.host_ipr
        if netns not in self.handles:
            ctx = core.open_netns(netns, missing_ok=self.missing_ok)
            self.handles[netns] = ctx.__enter__()
            self.contexts.append(ctx)
        return self.handles[netns]

    def close(self):
        for ctx in reversed(self.contexts):
            ctx.__exit__(None, None, None)


def _observe(host, peer, peer_ipr, host_addrs, links):
    if host is None:
        return None
    master = link.name_of(links, host["master_index"]) if host["master_index"] else None
    return {
        "state": "present",
        "mtu": host["mtu"],
        "host_mac": host["mac"],
        "mac": peer["mac"] if peer else None,
        "peer": peer["name"] if peer else None,
        "addresses": link.addresses(peer_ipr, peer["index"]) if peer else [],
        "host_addresses": host_addrs.get(host["index"], []),
        "bridge": master,
        "hairpin": bool(host["slave"].get("IFLA_BRPORT_MODE")) if master else False,
    }


def _paired(host, peer):
    """Is ``peer`` (found by name in the peer namespace) the other end of ``host``?"""
    if host is None or peer is None or peer["kind"] != "veth":
        return False
    # IFLA_LINK of each end is the other end's index (indexes are per namespace, so with the
    # peer in another namespace this is as close as netlink lets us check without netnsids).
    return host["link_index"] == peer["index"] and peer["link_index"] == host["index"]


def plan(ipr, veths, purge=False, missing_ok=False):
    """Plan the pairs in ``veths`` (normalized) with host ends in ``ipr``'s namespace."""
    result = Plan()
    links = link.dump(ipr)
    host_addrs = link.address_map(ipr)  # one dump for all host ends
    peers = _Peers(ipr, missing_ok)
    declared = set()
    try:
        for spec in veths:
            _plan_one(result, ipr, links, host_addrs, peers, spec, declared)
        if purge:
            for name, cur in sorted(links.items()):
                if name not in declared and cur["kind"] == "veth" and link.is_owned(cur):
                    result.before[name] = {"state": "present"}
                    result.after[name] = {"state": "absent"}
                    link.plan_delete(result, ipr, name, WHAT)
    except Exception:
        peers.close()
        raise
    # The peers' handles stay open until the plan is applied: the caller closes them (close()).
    result.peers = peers
    return result


def close(result):
    peers = getattr(result, "peers", None)
    if peers is not None:
        peers.close()


def _plan_one(result, ipr, links, host_addrs, peers, spec, declared):
    name = spec["name"]
    if name in declared:
        raise FabricError("veth %s: declared twice" % name)
    declared.add(name)
    host = links.get(name)
    link.check_takeover(host, name, "veth", WHAT)
    peer_ns = spec.get("peer_netns")
    try:
        peer_ipr = peers.get(peer_ns)
    except FabricError:
        raise FabricError("veth %s: peer netns %s does not exist" % (name, peer_ns))
    peer_name = spec["peer"]
    peer = link.get(peer_ipr, peer_name) if peer_ipr is not None else None
    paired = _paired(host, peer)
    before = _observe(host, peer if paired else None, peer_ipr, host_addrs, links)
    result.before[name] = before or {"state": "absent"}

    if spec.get("state", "present") == "absent":
        result.after[name] = {"state": "absent"}
        if host is not None:
            link.plan_delete(result, ipr, name, WHAT)  # deleting one end removes the pair
        return

    if spec.get("bridge"):
        br = links.get(spec["bridge"])
        # In check mode an earlier task of the play may be about to create the bridge.
        if (br is None and not peers.missing_ok) or (br is not None and br["kind"] != "bridge"):
            raise FabricError("veth %s: bridge %s %s" % (name, spec["bridge"], "does not exist" if br is None else "is a %s, not a bridge" % br["kind"]))

    recreate = host is not None and not paired
    if peer is not None and not paired:
        # The peer's name is taken in the pod namespace by something that is not this pair's end.
        if peer["kind"] != "veth" or not link.is_owned(peer):
            raise FabricError("veth %s: peer name %s is taken in netns %s by a %s link not owned by podnet.fabric"
                              % (name, peer_name, peer_ns or "(host)", peer["kind"]))
        link.plan_delete(result, peer_ipr, peer_name, "stale veth end")
    if recreate:
        link.plan_delete(result, ipr, name, WHAT)
    if host is None or recreate:
        peer_kw = {"ifname": peer_name}
        if peer_ns:
            peer_kw["net_ns_fd"] = peer_ns
        link.add_delete_undo(result, ipr, name, "create veth %s with peer %s in netns %s" % (name, peer_name, peer_ns or "(host)"),
                             {"kind": "veth", "peer": peer_kw})
        host = peer = None
    host_master = link.name_of(links, host["master_index"]) if host and host["master_index"] else None
    link.plan_attrs(result, ipr, name, host, {
        "alias": core.OWNER_ALIAS, "mtu": spec.get("mtu"), "mac": spec.get("host_mac"),
        "master": spec.get("bridge") if spec.get("bridge") is not None else None, "up": True},
        WHAT, current_master=host_master)
    if spec.get("bridge"):
        plan_hairpin(result, ipr, name, host if host_master == spec["bridge"] else None, spec.get("hairpin"))
    link.plan_addresses(result, ipr, name, before["host_addresses"] if (before and host) else [], spec.get("host_addresses"), WHAT)
    link.plan_attrs(result, peer_ipr, peer_name, peer, {
        "alias": core.OWNER_ALIAS, "mtu": spec.get("mtu"), "mac": spec.get("mac"), "up": True},
        "veth peer")
    link.plan_addresses(result, peer_ipr, peer_name, before["addresses"] if (before and peer) else [], spec.get("addresses"), "veth peer")
    _plan_gateway(result, peer_ipr, spec, peer is not None and before is not None and
                  (spec.get("addresses") is None or sorted(before["addresses"]) == sorted(spec["addresses"])))
    after = dict(before or {"state": "present", "mtu": None, "host_mac": None, "mac": None, "addresses": [],
                            "host_addresses": [], "bridge": None, "hairpin": False})
    after.update({"state": "present", "peer": peer_name})
    for key in ("mtu", "mac", "host_mac", "addresses", "host_addresses", "bridge", "hairpin"):
        if spec.get(key) is not None:
            after[key] = spec[key]
    if spec.get("gateway"):
        after["gateway"] = spec["gateway"]["gateway"]
    result.after[name] = after


def _plan_gateway(result, peer_ipr, spec, observable):
    """The pod's default route. Planned now when the pod end and its addresses are already in
    place; otherwise (a new pair, changed addresses) it is planned when applied, because the
    route's gateway is only reachable once the address is on the link."""
    gw = spec.get("gateway")
    if not gw:
        return
    if observable:
        result.extend(route.plan(peer_ipr, [gw], purge=True))
        return
    result.add("set default route via %s dev %s in netns %s" % (gw["gateway"], spec["peer"], spec.get("peer_netns") or "(host)"),
               lambda: route.plan(peer_ipr, [gw], purge=True).apply())
