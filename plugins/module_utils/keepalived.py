# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MetalLB's layer-2 announcements as keepalived VRRPv3 instances (pure: announcements in, one
node's keepalived configuration out).

MetalLB's speakers pick one node per VIP (sha256 order, :func:`metallb.l2_announcements`) and
find out that it died through memberlist, which takes about 10 s. Here the same order becomes
VRRP priorities, and keepalived, a well-kept VRRP implementation, moves the VIP within
3 x advert_int + skew (about 0.65 s at advert_int 0.2) and sends gratuitous ARP itself:

- VIPs announced by the same ordered list of nodes share one VRRP instance (one router id on
  the segment for all of them); the router ids are given out over the whole cluster in one
  order, so every node computes the same ones;
- the node at position k of the order gets priority ``top - k * step``: the first announces,
  the next takes over, and so on;
- every instance starts as BACKUP with ``nopreempt``, so a node that comes back does not take
  the VIP back (no flap); keepalived refuses nopreempt with an initial MASTER state, and the
  first election goes to whoever is up first, so each instance runs in a keepalived process of
  its own whose start is delayed by ``startup_step`` seconds per position
  (``vrrp_startup_delay``): when the candidates start together (a converge, a power cut) the
  first of MetalLB's order wins;
- peers by unicast on the node segment (the nodes' own addresses), VRRP version 3.
"""
from __future__ import annotations

import hashlib
import re

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

DEFAULTS = {
    "advert_int": 0.2,          # seconds; VRRPv3 allows centiseconds
    "priority_top": 200,
    "priority_step": 10,
    "interface": "eth0",        # when the L2Advertisement names none
    "garp_master_delay": 1,     # a second burst of GARP 1 s after taking over (MetalLB repeats for 5 s)
    "garp_master_repeat": 3,
    "garp_master_refresh": 5,   # and again every 5 s while master (VIPs that "drop off", metallb #259)
    "label": "lb",              # the VIP's address label: <interface>:lb
    "startup_step": 2.0,        # seconds of vrrp_startup_delay per position in MetalLB's order
}


# Interfaces MetalLB's speaker never announces on (pkg/speaker: the "ignored" name patterns):
# pod, container and overlay devices.
SKIPPED_INTERFACE = re.compile(r"^(lo|veth.*|cni.*|flannel.*|cali.*|docker.*|vxlan.*|tunl.*|kube-ipvs.*|nodelocaldns)$")


def settings_with_defaults(settings):
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise FabricError("keepalived: unknown settings %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    out = dict(DEFAULTS)
    out.update(dict((k, v) for k, v in (settings or {}).items() if v is not None))
    advert = float(out["advert_int"])
    if not 0.01 <= advert <= 40.95:
        raise FabricError("keepalived: advert_int %s is not within 0.01-40.95 s (VRRPv3)" % out["advert_int"])
    out["advert_int"] = advert
    return out


def groups(announcements):
    """[{"key", "nodes", "vips": [...], "node_interfaces": {node: iface or None}, "vrid"}]: one
    per ordered node list, the same on every node."""
    by_key = {}
    for ann in announcements:
        if not ann.get("nodes"):
            continue
        key = tuple(ann["nodes"])
        group = by_key.setdefault(key, {"key": key, "nodes": list(key), "vips": [], "node_interfaces": {}})
        if ann["ip"] not in group["vips"]:
            group["vips"].append(ann["ip"])
        for node in key:
            names = [n for n in (ann.get("node_interfaces") or {}).get(node) or [] if not SKIPPED_INTERFACE.match(n)]
            if names and node not in group["node_interfaces"]:
                group["node_interfaces"][node] = names[0]
    for group in by_key.values():
        group["vips"].sort(key=_ip_key)
    out = sorted(by_key.values(), key=lambda g: (g["nodes"], g["vips"]))
    _router_ids(out)
    return out


def _router_ids(group_list):
    """VRRP router ids 1-255: a slot from the hash of the group's first VIP and nodes, the next
    free one on a collision, groups taken in their sorted order."""
    if len(group_list) > 255:
        raise FabricError("keepalived: %d VRRP instances needed (distinct node orders), at most 255 on one segment"
                          % len(group_list))
    taken = set()
    for group in group_list:
        digest = hashlib.sha256(("%s#%s" % (group["vips"][0], ",".join(group["nodes"]))).encode()).digest()
        vrid = digest[0] % 255 + 1
        while vrid in taken:
            vrid = vrid % 255 + 1
        taken.add(vrid)
        group["vrid"] = vrid


def node_instances(announcements, nodes, me, settings=None):
    """The VRRP instances node ``me`` takes part in. ``nodes``: {name: address on the segment}."""
    settings = settings_with_defaults(settings)
    out = []
    for group in groups(announcements):
        if me not in group["nodes"]:
            continue
        position = group["nodes"].index(me)
        interface = group["node_interfaces"].get(me) or settings["interface"]
        if SKIPPED_INTERFACE.match(interface):
            raise FabricError("keepalived: VIP %s: %s is an interface MetalLB never announces on (a pod, container or"
                              " overlay device); name the node's uplink" % (group["vips"][0], interface))
        missing = [n for n in group["nodes"] if not nodes.get(n)]
        if missing:
            raise FabricError("keepalived: VIP %s: node %s has no address" % (group["vips"][0], ", ".join(missing)))
        out.append({
            "name": "PODNET_VI_%d" % group["vrid"],
            "vrid": group["vrid"],
            "interface": interface,
            "priority": max(1, int(settings["priority_top"]) - position * int(settings["priority_step"])),
            "position": position,
            "source": nodes[me],
            "peers": [nodes[n] for n in group["nodes"] if n != me],
            "vips": sorted(group["vips"], key=_ip_key),
            "nodes": group["nodes"],
        })
    return out


def _ip_key(text):
    return tuple(int(part) for part in text.split("."))


def render(inst, me, owner, settings=None):
    """The keepalived.conf of one VRRP instance of node ``me`` (one keepalived process each)."""
    settings = settings_with_defaults(settings)
    advert = ("%.2f" % settings["advert_int"]).rstrip("0").rstrip(".")
    delay = inst["position"] * float(settings["startup_step"])
    label = "%s:%s" % (inst["interface"][:15 - len(settings["label"]) - 1], settings["label"])
    lines = [
        "# podnet.fabric load balancer (owner %s) on %s: MetalLB's layer-2 announcement of" % (owner, me),
        "# %s by %s (this node: %d), as VRRPv3." % (", ".join(inst["vips"]), ", ".join(inst["nodes"]), inst["position"] + 1),
        "# Written by podnet.fabric.load_balancer; changes here are replaced at the next converge.",
        "global_defs {",
        "    router_id %s-%d" % (me, inst["vrid"]),
        "    vrrp_version 3",
    ]
    if delay:
        lines.append("    vrrp_startup_delay %s" % ("%g" % delay))
    lines += [
        "}",
        "",
        "vrrp_instance %s {" % inst["name"],
        "    state BACKUP",
        "    nopreempt",
        "    interface %s" % inst["interface"],
        "    virtual_router_id %d" % inst["vrid"],
        "    priority %d" % inst["priority"],
        "    advert_int %s" % advert,
    ]
    if inst["peers"]:
        # (a single candidate, e.g. the one node with a Local endpoint, has no peer: keepalived
        # then advertises by multicast, to nobody, and holds the VIP alone)
        lines.append("    unicast_src_ip %s" % inst["source"])
        lines.append("    unicast_peer {")
        lines += ["        %s" % peer for peer in inst["peers"]]
        lines.append("    }")
    lines.append("    virtual_ipaddress {")
    lines += ["        %s/32 dev %s label %s" % (vip, inst["interface"], label) for vip in inst["vips"]]
    lines += [
        "    }",
        "    garp_master_delay %d" % int(settings["garp_master_delay"]),
        "    garp_master_repeat %d" % int(settings["garp_master_repeat"]),
        "    garp_master_refresh %d" % int(settings["garp_master_refresh"]),
        "}",
    ]
    return "\n".join(lines) + "\n"
