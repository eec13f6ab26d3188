# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static FDB entries (``bridge fdb ... dst``) and permanent neighbours (``ip neigh ... permanent``).

These are what a flannel/Calico-style VTEP needs per remote node: the remote VTEP MAC -> remote
node IP in the VXLAN device's FDB, and the remote tunnel IP -> remote VTEP MAC as a permanent
neighbour. Call with a handle opened in the namespace of the device; devices are looked up by
name when an action runs (a device created earlier in the same plan has no index at plan time).
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link

AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


# --- observe --------------------------------------------------------------------------------------

def fdb_entries(ipr, index):
    """Static FDB entries with a remote on device ``index``: {mac: remote IP}.

    Entries without NDA_DST (the device's own unicast/multicast addresses the kernel lists) and
    learned ones (not permanent/noarp) are not ours to manage and are left out.
    """
    out = {}
    if ipr is None or index is None:
        return out
    for msg in ipr.fdb("dump", ifindex=index):
        if msg["ifindex"] != index:
            continue
        dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
        if not dst or not mac or not msg["state"] & (NUD_PERMANENT | NUD_NOARP):
            continue
        out.setdefault(mac.lower(), dst)
    return out


def neighbours(ipr, index):
    """IPv4/IPv6 neighbours on device ``index``: {ip: (mac, permanent)}."""
    out = {}
    if ipr is None or index is None:
        return out
    for msg in ipr.get_neighbours(ifindex=index):
        if msg["ifindex"] != index or msg["family"] not in (AF_INET, AF_INET6):
            continue
        dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
        if not dst:
            continue
        out[dst] = ((mac or "").lower() or None, bool(msg["state"] & NUD_PERMANENT))
    return out


# --- verbs ------------------------------------------------------------------------------------------

def fdb_set(ipr, dev, mac, dst):
    """Make ``dst`` the (only) remote of ``mac`` on ``dev`` (a unicast MAC has one remote)."""
    ipr.fdb("replace", ifindex=link.index_of(ipr, dev, wait=1.0), lladdr=mac, dst=dst,
            state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)


def fdb_delete(ipr, dev, mac, dst):
    """Delete one FDB entry; an entry or device already gone is success."""
    idx = ipr.link_lookup(ifname=dev)
    if not idx:
        return
    try:
        ipr.fdb("del", ifindex=idx[0], lladdr=mac, dst=dst, state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)
    except core.NetlinkError as exc:
        if exc.code not in (core.ENOENT, core.ENODEV):
            raise


def neigh_set(ipr, dev, ip, mac):
    """A permanent neighbour ``ip`` -> ``mac`` on ``dev`` (replacing a dynamic or other entry)."""
    ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=link.index_of(ipr, dev, wait=1.0),
              state=NUD_PERMANENT, family=AF_INET6 if ":" in ip else AF_INET)


def neigh_delete(ipr, dev, ip):
    idx = ipr.link_lookup(ifname=dev)
    if not idx:
        return
    try:
        ipr.neigh("del", dst=ip, ifindex=idx[0], family=AF_INET6 if ":" in ip else AF_INET)
    except core.NetlinkError as exc:
        if exc.code not in (core.ENOENT, core.ENODEV):
            raise


# --- plans ------------------------------------------------------------------------------------------

def plan_fdb(plan, ipr, dev, current, desired, removable, what):
    """Make the static FDB of ``dev`` hold ``desired`` ({mac: remote}); entries not desired are
    removed only when ``removable`` ({mac: remote}: what the owner recorded adding) has exactly
    them - a user's own static entries on the device are never touched."""
    for mac, dst in sorted(current.items()):
        if mac not in desired and removable.get(mac) == dst:
            plan.add("remove fdb entry %s dst %s from %s" % (mac, dst, what),
                     lambda mac=mac, dst=dst: fdb_delete(ipr, dev, mac, dst),
                     lambda mac=mac, dst=dst: fdb_set(ipr, dev, mac, dst))
    for mac, dst in sorted(desired.items()):
        old = current.get(mac)
        if old == dst:
            continue
        if old is None:
            plan.add("add fdb entry %s dst %s to %s" % (mac, dst, what),
                     lambda mac=mac, dst=dst: fdb_set(ipr, dev, mac, dst),
                     lambda mac=mac, dst=dst: fdb_delete(ipr, dev, mac, dst))
        else:
            plan.add("change fdb entry %s on %s: dst %s -> %s" % (mac, what, old, dst),
                     lambda mac=mac, dst=dst: fdb_set(ipr, dev, mac, dst),
                     lambda mac=mac, old=old: fdb_set(ipr, dev, mac, old))


def plan_neighbours(plan, ipr, dev, current, desired, removable, what):
    """Make ``desired`` ({ip: mac}) permanent neighbours on ``dev``; permanent ones not desired
    are removed only when ``removable`` ({ip: mac}, what the owner recorded adding) has exactly
    them (dynamic entries the kernel resolves and a user's own are left alone)."""
    for ip, (mac, permanent) in sorted(current.items()):
        if permanent and ip not in desired and mac and removable.get(ip) == mac:
            plan.add("remove permanent neighbour %s lladdr %s from %s" % (ip, mac, what),
                     lambda ip=ip: neigh_delete(ipr, dev, ip),
                     lambda ip=ip, mac=mac: neigh_set(ipr, dev, ip, mac))
    for ip, mac in sorted(desired.items()):
        old_mac, permanent = current.get(ip, (None, False))
        if permanent and old_mac == mac:
            continue
        if permanent and old_mac:
            plan.add("change permanent neighbour %s on %s: lladdr %s -> %s" % (ip, what, old_mac, mac),
                     lambda ip=ip, mac=mac: neigh_set(ipr, dev, ip, mac),
                     lambda ip=ip, old=old_mac: neigh_set(ipr, dev, ip, old))
        else:
            plan.add("add permanent neighbour %s lladdr %s to %s" % (ip, mac, what),
                     lambda ip=ip, mac=mac: neigh_set(ipr, dev, ip, mac),
                     lambda ip=ip: neigh_delete(ipr, dev, ip))
