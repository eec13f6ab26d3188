# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""All of a node's pods in one plan, the way a runtime calls CNI ADD for each pod.

For each pod: its namespace (loopback up, the owner's alias; see :mod:`netns`), an address from
IPAM unless it has a fixed one (host-local style; see :mod:`ipam`), a veth pair with the peer in
the pod's namespace as ``eth0``, MTU and MAC, the host end on the bridge with hairpin mode, and
the pod's default route via the gateway with the owner's route protocol (see :mod:`veth`).
Nothing here talks to the kernel itself: it composes the single-purpose cores, so there is one
implementation of each verb.

The host ends and the bridge live in the namespace of ``ipr`` (the node's, or the task's
``netns``). Purge removes the owner's pods *of this node* that are no longer declared: the
owner's veths on that side, the owner's namespaces at their other end, and the owner's IPAM
allocations in the network.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import resource

from ansible_collections.podnet.fabric.plugins.module_utils import ipam
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import bridge, core, link, netns, veth
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


def veth_name(pod):
    """A stable host-end name for a pod: 'veth' + 8 hex digits of its name's sha256 (CNI style)."""
    return "veth" + hashlib.sha256(pod.encode()).hexdigest()[:8]


def mac_for(ip):
    """0a:58 + the IPv4 address, as the CNI bridge plugin derives a pod's MAC (stable, local)."""
    return "0a:58:" + ":".join("%02x" % b for b in ip.packed)


def host_mac_for(veth_name):
    """The host end's MAC, derived from its name: the same after every boot, so the node's link
    and bridge FDB state is what it was (the kernel would pick a random one). Locally
    administered, unicast."""
    digest = bytearray(hashlib.sha256(("podnet.fabric host end " + veth_name).encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return ":".join("%02x" % b for b in digest)


def normalize(params):
    """Validate the module's parameters into a config dict (plain data)."""
    cfg = {"bridge": core.check_ifname(params["bridge"], "pods bridge"), "manage_bridge": bool(params.get("manage_bridge")),
           "bridge_mac": params.get("bridge_mac")}
    ipam_cfg = params.get("ipam")
    rng = None
    if ipam_cfg:
        network = ipam_cfg.get("network") or cfg["bridge"]
        what = "pods ipam network %s" % network
        rng = ipam.Range(ipam_cfg["subnet"], ipam_cfg.get("range_start"), ipam_cfg.get("range_end"), params.get("gateway"), what=what)
        cfg["ipam"] = {"directory": os.path.join(ipam_cfg.get("data_dir") or DEFAULT_DATA_DIR, network), "range": rng, "network": network}
    else:
        cfg["ipam"] = None
    gateway = params.get("gateway") or (str(rng.gateway) if rng else None)
    cfg["gateway"] = str(core.parse_address(gateway, "pods gateway")) if gateway else None
    cfg["mtu"] = bridge.check_mtu(params.get("mtu"), "pods")
    pods, names, veths = [], set(), set()
    for entry in params["pods"]:
        name = netns.check_name(entry.get("name"))
        if name in names:
            raise FabricError("pod %s: declared twice" % name)
        names.add(name)
        what = "pod %s" % name
        pod = {
            "name": name,
            "veth": core.check_ifname(entry.get("veth") or veth_name(name), "%s veth" % what),
            "ifname": core.check_ifname(entry.get("ifname") or "eth0", "%s ifname" % what),
            "addresses": link.normalize_addresses(entry.get("addresses"), what) if entry.get("addresses") else None,
            "mtu": bridge.check_mtu(entry.get("mtu") or cfg["mtu"], what),
            "mac": core.parse_mac(entry["mac"], "%s mac" % what) if entry.get("mac") else None,
            "hairpin": entry.get("hairpin") if entry.get("hairpin") is not None else params.get("hairpin"),
        }
        if pod["veth"] in veths:
            raise FabricError("pod %s: veth %s is declared for another pod too" % (name, pod["veth"]))
        veths.add(pod["veth"])
        if pod["addresses"] is None and rng is None:
            raise FabricError("pod %s: has no addresses and the task has no ipam to allocate one from" % name)
        pods.append(pod)
    cfg["pods"] = pods
    return cfg


# --- IPAM: the ipam core's plan (host-local's files, lock and format; the owner's ids) -----------

def plan_ipam(cfg, pods, owner, purge):
    """(Plan, {pod name: 'ip/prefix'}) for the pods without fixed addresses; fixed ones in the
    range are reserved."""
    if cfg["ipam"] is None:
        return Plan(), {}
    rng = cfg["ipam"]["range"]
    allocations = [{"id": p["name"], "ifname": p["ifname"]} for p in pods if p["addresses"] is None]
    # A fixed address inside the range is reserved too, as host-local does for a requested IP,
    # so that no other pod is ever handed it.
    fixed = []
    for p in pods:
        inside = [a.split("/")[0] for a in p["addresses"] or () if ipaddress.ip_interface(a).ip in rng.subnet]
        if inside:
            fixed.append({"id": p["name"], "ifname": p["ifname"], "ip": inside[0]})
    sub = ipam.plan(cfg["ipam"]["directory"], rng, allocations + fixed, owner=owner, purge=purge)
    out = {}
    for entry in allocations:
        ip = sub.after.get(entry["id"])
        if not ip:
            raise FabricError("pod %s: ipam gave no address" % entry["id"])
        out[entry["id"]] = "%s/%d" % (ip, rng.subnet.prefixlen)
    return sub, out


# --- the plan -------------------------------------------------------------------------------------

def plan(ipr, cfg, owner, purge=False, check_mode=False, registry=None):
    """Plan the node's pods (``cfg`` from :func:`normalize`) for ``owner``; host ends in the
    namespace of ``ipr`` (None in check mode when that namespace does not exist yet).

    Returns the Plan (its ``spaces`` hold the pods' handles until :func:`veth.close`) and the
    per-pod results. Reversible actions first: register the protocol, allocate addresses, the
    bridge, then per pod netns, veth, addresses, hairpin, route; the irreversible ones (stale
    ends, purge) and IPAM releases last.
    """
    _enough_files(len(cfg["pods"]))
    result = Plan()
    ipr = veth.Snapshot(ipr) if ipr is not None else None  # one link and one address dump for all
    spaces = veth.Namespaces(ipr, missing_ok=True)
    result.spaces = spaces
    try:
        pods = _plan(result, ipr, spaces, cfg, owner, purge, check_mode, registry)
    except Exception:
        spaces.close()
        raise
    spaces.planned()
    return result, pods


def _enough_files(pods):
    """Each pod's namespace handle holds a few descriptors until the run ends (3 with pyroute2
    0.7, 4 with 0.9): raise the soft RLIMIT_NOFILE towards the hard one when 1024 is too few."""
    need = 64 + 6 * pods
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _merge(result, sub, key, before, after):
    result.extend(sub)
    result.before[key] = before
    result.after[key] = after


def _plan(result, ipr, spaces, cfg, owner, purge, check_mode, registry):
    pods = cfg["pods"]
    if cfg["gateway"]:
        result_protocol = (registry or owners.ProtocolRegistry()).plan_register(result, owner)
    else:
        result_protocol = None
    ipam_plan, allocated = plan_ipam(cfg, pods, owner, purge)
    later = []  # irreversible ipam actions (releases) go last
    for action in ipam_plan.actions:
        (later if action.irreversible else result.actions).append(action)
    if ipam_plan.actions:
        result.before["ipam %s" % cfg["ipam"]["network"]] = ipam_plan.before
        result.after["ipam %s" % cfg["ipam"]["network"]] = ipam_plan.after

    if cfg["manage_bridge"]:
        spec = {"name": cfg["bridge"], "mtu": cfg["mtu"], "mac": cfg["bridge_mac"]}
        if cfg["gateway"]:
            plen = cfg["ipam"]["range"].subnet.prefixlen if cfg["ipam"] else _prefix_for(cfg["gateway"], pods)
            spec["addresses"] = ["%s/%d" % (cfg["gateway"], plen)]
        sub = bridge.plan(ipr, [bridge.normalize(spec)], owner, missing_ok=check_mode)
        _merge(result, sub, "bridge %s" % cfg["bridge"], sub.before[cfg["bridge"]], sub.after[cfg["bridge"]])

    links = link.dump(ipr)
    if not cfg["manage_bridge"] and not check_mode:
        br = links.get(cfg["bridge"])
        if br is None or br["kind"] != "bridge":
            raise FabricError("pods: bridge %s %s" % (cfg["bridge"], "does not exist" if br is None else "is a %s, not a bridge" % br["kind"]))
    host_addrs = link.address_map(ipr)
    declared, deletes, out = set(), [], []
    for pod in pods:
        name = pod["name"]
        addresses = pod["addresses"] or [allocated[name]]
        mac = pod["mac"] or _default_mac(addresses)
        ns_plan = Plan()
        handle = spaces.observe(name)  # None: not there yet; the veth plan shares this handle
        cur = netns.observe(name, handle) if handle is not None else netns.observe(name)
        netns.plan_present(ns_plan, name, cur, owner, spaces.lazy(name))
        v_plan = Plan()
        try:
            vspec = veth.normalize({
                "name": pod["veth"], "peer": pod["ifname"], "peer_netns": name, "addresses": addresses, "mtu": pod["mtu"],
                "mac": mac, "host_mac": host_mac_for(pod["veth"]), "bridge": cfg["bridge"], "hairpin": pod["hairpin"], "gateway": cfg["gateway"]})
            veth.plan_one(v_plan, ipr, links, host_addrs, spaces, vspec, owner, result_protocol, declared, deletes,
                          bridge_missing_ok=check_mode or cfg["manage_bridge"])
        except FabricError as exc:
            raise FabricError("pod %s: %s" % (name, exc))
        result.extend(ns_plan)
        result.extend(v_plan)
        result.before["pod %s" % name] = {"netns": netns.public(cur), "veth": v_plan.before[pod["veth"]]}
        result.after["pod %s" % name] = {"netns": ns_plan.after[name], "veth": v_plan.after[pod["veth"]]}
        out.append({"name": name, "netns": name, "veth": pod["veth"], "ifname": pod["ifname"],
                    "ip": addresses[0].split("/")[0], "addresses": addresses, "mac": mac,
                    "gateway": cfg["gateway"], "state": "present"})
    for name in deletes:
        link.plan_delete(result, ipr, name, veth.WHAT)
    if purge:
        _plan_purge(result, ipr, spaces, links, declared, set(p["name"] for p in pods), owner)
    result.actions.extend(later)
    return out


def _plan_purge(result, ipr, spaces, links, declared, pod_names, owner):
    """The owner's veths on this side that no pod declares go, with the owner's namespace at
    their other end (the veth goes with it)."""
    stale = veth.purgeable(links, declared, owner)
    if not stale:
        return
    by_nsid = {}
    for name in netns.existing():
        nsid = spaces.nsid(name)
        if nsid is not None:
            by_nsid[nsid] = name
    for host in stale:
        cur = links[host]
        peer_ns = by_nsid.get(cur["link_netnsid"]) if cur["link_netnsid"] is not None else None
        gone = {"state": "absent"}
        if peer_ns and peer_ns not in pod_names:
            view = netns.observe(peer_ns)
            if view is not None and view["state"] == "present" and view["owner"] == owner:
                result.before["pod %s" % peer_ns] = {"netns": netns.public(view), "veth": {"state": "present", "name": host}}
                result.after["pod %s" % peer_ns] = {"netns": gone, "veth": gone}
                result.add("delete netns %s" % peer_ns, lambda n=peer_ns: netns.remove(n), irreversible=True)
                link.plan_delete(result, ipr, host, veth.WHAT)  # gone with the namespace: a no-op then
                continue
        result.before["veth %s" % host] = {"state": "present"}
        result.after["veth %s" % host] = gone
        link.plan_delete(result, ipr, host, veth.WHAT)


def _default_mac(addresses):
    for cidr in addresses:
        ip = ipaddress.ip_interface(cidr).ip
        if ip.version == 4:
            return mac_for(ip)
    return None


def _prefix_for(gateway, pods):
    gw = ipaddress.ip_address(gateway)
    for pod in pods:
        for cidr in pod["addresses"] or []:
            iface = ipaddress.ip_interface(cidr)
            if gw in iface.network:
                return iface.network.prefixlen
    return 32 if gw.version == 4 else 128
