# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Links and their addresses: observe as plain dicts, plan reconciliation as Plan actions.

Every function takes an open handle (``ipr``) for the namespace it acts in (see
``core.open_netns``); ``ipr`` may be None in check mode when that namespace does not exist yet,
and the observers then report an empty namespace. Actions look links up by name when they run,
because a link created earlier in the same plan has no index at plan time.
"""
from __future__ import annotations

import time

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, noop

IFF_UP = 0x1
IFF_PROMISC = 0x100


def _linkinfo(msg):
    info = msg.get_attr("IFLA_LINKINFO")
    if not info:
        return None, None, {}, {}
    data = info.get_attr("IFLA_INFO_DATA")
    slave = info.get_attr("IFLA_INFO_SLAVE_DATA")
    data_d = dict(data["attrs"]) if data is not None and hasattr(data, "get") else {}
    slave_d = dict(slave["attrs"]) if slave is not None and hasattr(slave, "get") else {}
    return info.get_attr("IFLA_INFO_KIND"), info.get_attr("IFLA_INFO_SLAVE_KIND"), data_d, slave_d


def view(msg):
    """A link as a plain dict: the fields podnet.fabric manages, in user terms."""
    kind, slave_kind, data, slave = _linkinfo(msg)
    flags = msg["flags"]
    return {
        "index": msg["index"],
        "name": msg.get_attr("IFLA_IFNAME"),
        "kind": kind or "device",
        "alias": msg.get_attr("IFLA_IFALIAS"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "up": bool(flags & IFF_UP),
        "promisc": bool(flags & IFF_PROMISC),
        "master_index": msg.get_attr("IFLA_MASTER"),
        "link_index": msg.get_attr("IFLA_LINK"),  # veth: the peer's index
        "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),  # veth: the peer's namespace (None: this one)
        "slave_kind": slave_kind,
        "data": data,    # kind-specific (IFLA_BR_*, IFLA_VXLAN_* ...)
        "slave": slave,  # port-specific (IFLA_BRPORT_* ...)
    }


def dump(ipr):
    """All links of the namespace by name (empty for a namespace that does not exist yet)."""
    if ipr is None:
        return {}
    return dict((v["name"], v) for v in (view(m) for m in ipr.get_links()))


def get(ipr, name):
    if ipr is None:
        return None
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        return None
    return view(ipr.get_links(idx[0])[0])


def index_of(ipr, name, wait=1.0):
    """Index of ``name``; with ``wait`` retries briefly (RTNL changes arrive asynchronously)."""
    deadline = time.monotonic() + wait
    while True:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            return idx[0]
        if time.monotonic() >= deadline:
            raise FabricError("link %s: not found" % name)
        time.sleep(0.01)


def name_of(links, index):
    for v in links.values():
        if v["index"] == index:
            return v["name"]
    return None


def holder(link):
    """The owner a link's alias names: None (not ours), owner.LEGACY, or the owner."""
    return owners.owner_of_mark(link.get("alias")) if link else None


def is_owned(link, owner):
    """Does ``link`` belong to ``owner`` (legacy links belong to nobody, for purge)?"""
    return link is not None and holder(link) == owner


def check_takeover(link, name, kind, what, owner):
    """May ``owner`` manage the existing link ``name`` as a ``kind``? Another kind, a foreign link
    or another owner's is an error naming both; a legacy link is adopted (True)."""
    if link is None:
        return False
    if link["kind"] != kind:
        raise FabricError("%s %s: the name is taken by a link of kind %s, not %s" % (what, name, link["kind"], kind))
    if holder(link) is None:
        raise FabricError("%s %s: a %s link of that name exists and is not podnet.fabric's (alias %r); remove it or pick another name"
                          % (what, name, kind, link.get("alias")))
    return owners.claim("%s %s" % (what, name), holder(link), owner)


# --- actions ---------------------------------------------------------------------------------------

def add_delete_undo(plan, ipr, name, description, create_kwargs):
    """Plan creating link ``name`` with pyroute2 ``link('add', **create_kwargs)``; undo deletes it."""
    def do():
        ipr.link("add", ifname=name, **create_kwargs)

    def undo():
        delete_quietly(ipr, name)
    plan.add(description, do, undo)


def delete_quietly(ipr, name):
    """Delete ``name``; a link already gone is success (CNI cmdDel semantics)."""
    try:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            ipr.link("del", index=idx[0])
    except core.NetlinkError as exc:
        if exc.code not in (core.ENODEV, core.ENOENT):
            raise


def plan_delete(plan, ipr, name, what):
    """Deleting a link cannot be undone (its neighbours, FDB and routes go with it)."""
    plan.add("delete %s %s" % (what, name), lambda: delete_quietly(ipr, name), irreversible=True)


def plan_attrs(plan, ipr, name, current, want, what, current_master=None):
    """Reconcile alias, mtu, mac, promisc, master and up/down of one link.

    ``current`` is the observed view (None when this plan creates the link, whose creation's
    undo deletes it with all of this); ``want`` holds only what the user manages (keys absent or
    None are left alone). ``want['master']`` is a bridge name, or '' to release the link from its
    master; ``current_master`` is the observed one.
    """
    cur = current or {}
    changes, old = {}, {}
    said = []
    for key, kw in (("alias", "ifalias"), ("mtu", "mtu"), ("mac", "address")):
        value = want.get(key)
        if value is not None and (cur.get(key) or None) != value:
            changes[kw], old[kw] = value, cur.get(key)
            said.append("%s %s" % (key, value))
    if changes:
        undo_kw = dict((k, "" if v is None and k == "ifalias" else v) for k, v in old.items())
        undo_kw = dict((k, v) for k, v in undo_kw.items() if v is not None)
        plan.add("set %s %s %s" % (what, name, ", ".join(said)),
                 lambda: ipr.link("set", index=index_of(ipr, name), **changes),
                 (lambda: ipr.link("set", index=index_of(ipr, name), **undo_kw)) if current and undo_kw else noop)
    if want.get("promisc") is not None and bool(cur.get("promisc")) != want["promisc"]:
        flag = IFF_PROMISC if want["promisc"] else 0
        plan.add("set %s %s promisc %s" % (what, name, "on" if want["promisc"] else "off"),
                 lambda: ipr.link("set", index=index_of(ipr, name), flags=flag, change=IFF_PROMISC),
                 (lambda: ipr.link("set", index=index_of(ipr, name), flags=IFF_PROMISC - flag, change=IFF_PROMISC)) if current else noop)
    target = want.get("master")
    if target is not None and target != (current_master or ""):
        if target:
            plan.add("attach %s %s to bridge %s" % (what, name, target),
                     lambda: ipr.link("set", index=index_of(ipr, name), master=index_of(ipr, target)),
                     (lambda: ipr.link("set", index=index_of(ipr, name), master=index_of(ipr, current_master) if current_master else 0))
                     if current else noop)
        else:
            plan.add("release %s %s from bridge %s" % (what, name, current_master),
                     lambda: ipr.link("set", index=index_of(ipr, name), master=0),
                     lambda: ipr.link("set", index=index_of(ipr, name), master=index_of(ipr, current_master)))
    if want.get("up") is not None and bool(cur.get("up")) != want["up"]:
        state = "up" if want["up"] else "down"
        plan.add("set %s %s %s" % (what, name, state),
                 lambda: ipr.link("set", index=index_of(ipr, name), state=state),
                 (lambda: ipr.link("set", index=index_of(ipr, name), state="down" if want["up"] else "up")) if current else noop)


# --- addresses -------------------------------------------------------------------------------------

def addresses(ipr, index):
    """Addresses on a link as 'ip/prefix' strings, without kernel-made IPv6 link-local ones."""
    if ipr is None or index is None:
        return []
    return address_map(ipr).get(index, [])


def address_map(ipr):
    """{link index: addresses} of a whole namespace from one dump (pyroute2 filters an address
    dump in Python, so asking per link costs a full dump each time)."""
    out = {}
    if ipr is None:
        return out
    for msg in ipr.get_addr():
        ip = msg.get_attr("IFA_ADDRESS")
        if msg["family"] == 2:
            ip = msg.get_attr("IFA_LOCAL") or ip
        if msg["family"] == 10 and ip.lower().startswith("fe80:"):
            continue
        out.setdefault(msg["index"], []).append("%s/%d" % (ip, msg["prefixlen"]))
    return out


def normalize_addresses(values, what):
    """User CIDRs -> canonical 'ip/prefix' strings, in order, duplicates removed."""
    seen = []
    for value in values or []:
        iface = core.parse_interface(value, what)
        text = "%s/%d" % (iface.ip, iface.network.prefixlen)
        if text not in seen:
            seen.append(text)
    return seen


def plan_addresses(plan, ipr, name, current, desired, what):
    """Make the link's addresses exactly ``desired`` (None: leave addresses alone)."""
    if desired is None:
        return
    for cidr in current:
        if cidr not in desired:
            ip, plen = cidr.split("/")
            plan.add("remove address %s from %s %s" % (cidr, what, name),
                     lambda ip=ip, plen=plen: _addr(ipr, "del", name, ip, int(plen)),
                     lambda ip=ip, plen=plen: _addr(ipr, "add", name, ip, int(plen)))
    for cidr in desired:
        if cidr not in current:
            ip, plen = cidr.split("/")
            plan.add("add address %s to %s %s" % (cidr, what, name),
                     lambda ip=ip, plen=plen: _addr(ipr, "add", name, ip, int(plen)),
                     lambda ip=ip, plen=plen: _addr(ipr, "del", name, ip, int(plen)))


def _addr(ipr, op, name, ip, prefixlen):
    family = 10 if ":" in ip else 2
    try:
        ipr.addr(op, index=index_of(ipr, name, wait=1.0), address=ip, prefixlen=prefixlen, family=family)
    except core.NetlinkError as exc:
        if op == "add" and exc.code == core.EEXIST:
            return
        if op == "del" and exc.code in (core.EADDRNOTAVAIL, core.ENODEV):
            return
        raise
