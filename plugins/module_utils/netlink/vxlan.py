# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VXLAN tunnel endpoints (flannel.1 / vxlan.calico style) and their static peers.

A VTEP is a vxlan link with a fixed VNI, UDP port, local underlay IP and uplink, learning off;
each remote node is a peer: its VTEP MAC -> its node IP in the device's FDB, and its tunnel IP ->
its VTEP MAC as a permanent neighbour. Call with a handle opened in the namespace of the VTEP.

Ownership: a VTEP carries the link alias ``podnet.fabric:<owner>``; purge removes only the
owner's. Its peers carry no marker the kernel keeps for every version this collection supports:
checked on Linux 6.x, a vxlan device's FDB entries (AF_BRIDGE) store no NDA_PROTOCOL at all
(sent, it is dropped; dumps never carry it), and ARP/ND neighbours do store NDA_PROTOCOL, but
pyroute2 0.7.2 (Debian's) can neither send nor parse that attribute. So the peers an owner adds
are recorded in a root-only file the collection owns, ``/var/lib/podnet-fabric/<owner>/
vxlan-<host or netns-NAME>:<dev>.json`` (written as a plan action, with undo), and
``purge_peers`` removes only recorded entries that are still exactly as recorded: a user's
static FDB entry or permanent neighbour on the same device is never touched.

The VNI, port, local IP, uplink and learning cannot be changed on an existing vxlan link: the
plan deletes the link (irreversible) and creates it again, puts its peers back (and the user's
entries an in-place run would keep) and re-adds the routes through it that the kernel dropped
with the old link. Deletions come after every
reversible action, except a deletion that frees a VNI and port a declared device needs.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket

from ansible_collections.podnet.fabric.plugins.module_utils import files
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link, neigh, route
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, noop

WHAT = "vxlan"
# VNIs are 24 bits. The kernel takes 0 too, but Flannel/Calico never use it and many VTEPs
# (hardware, EVPN) treat 0 as "no VNI": refused.
VNI_MIN, VNI_MAX = 1, 2 ** 24 - 1
DEFAULT_PORT = 4789  # IANA; flannel uses the kernel's old default 8472
# Outer IP + UDP + VXLAN + inner Ethernet headers: 20+8+8+14 over IPv4, 40+8+8+14 over IPv6.
OVERHEAD = {4: 50, 6: 70}
IMMUTABLE = ("vni", "port", "local", "dev", "learning")
STATE_DIR = "/var/lib/podnet-fabric"


class PeerStore(object):
    """The peers an owner added to its VTEPs in one namespace: a root-only JSON file per device,
    ``{"fdb": {mac: remote}, "neighbours": {ip: mac}}``."""

    def __init__(self, owner, netns=None, base=STATE_DIR):
        self.directory = os.path.join(base, owner)
        self.where = "netns-%s" % netns if netns else "host"

    def path(self, dev):
        return os.path.join(self.directory, "vxlan-%s:%s.json" % (self.where, dev))

    def read(self, dev):
        """The record of ``dev`` ({} when there is none; an unreadable one counts as none, so
        nothing is removed on its account)."""
        try:
            with open(self.path(dev)) as handle:
                data = json.load(handle)
            return {"fdb": dict(data.get("fdb") or {}), "neighbours": dict(data.get("neighbours") or {})}
        except (IOError, OSError, ValueError, AttributeError, TypeError):
            return {}

    def write(self, dev, record):
        if not record:
            self.remove(dev)
            return
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        files.write_json(self.path(dev), record)

    def remove(self, dev):
        try:
            os.unlink(self.path(dev))
        except OSError as exc:
            if exc.errno != core.ENOENT:
                raise

    def plan_write(self, plan, dev, old, new, what):
        """Plan recording ``new`` for ``dev`` (nothing when it equals ``old``); undo puts ``old`` back."""
        if (old or {}) == (new or {}):
            return
        if new:
            text = "record %d fdb entries and %d neighbours of %s in %s" % (len(new["fdb"]), len(new["neighbours"]), what, self.path(dev))
        else:
            text = "forget the peers of %s (%s)" % (what, self.path(dev))
        plan.add(text, lambda: self.write(dev, new), lambda: self.write(dev, old))


def default_mac(name, vni, local):
    """A stable locally administered unicast MAC for a VTEP.

    Derived from the device name, VNI and local IP (the host's machine id when there is no local
    IP), so a recreated VTEP keeps its MAC and the peers' FDB entries and neighbours stay valid.
    """
    seed = "podnet.fabric/vxlan/%s/%d/%s" % (name, vni, local or _host_id())
    raw = bytearray(hashlib.sha256(seed.encode("utf-8")).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join("%02x" % b for b in raw)


def _host_id():
    try:
        with open("/etc/machine-id") as fh:
            value = fh.read().strip()
        if value:
            return value
    except (IOError, OSError):
        pass
    return socket.gethostname()


# --- normalize ------------------------------------------------------------------------------------

def _int(value, what, field, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FabricError("%s: %s %r is not a number" % (what, field, value))
    if not low <= number <= high:
        raise FabricError("%s: %s %d is outside %d..%d" % (what, field, number, low, high))
    return number


def normalize(spec):
    """Validate one user entry without looking at the system; returns a canonical dict."""
    name = core.check_ifname(spec.get("name"), WHAT)
    what = "vxlan %s" % name
    out = {"name": name, "state": spec.get("state") or "present"}
    if out["state"] == "absent":
        return out
    if spec.get("vni") is None:
        raise FabricError("%s: vni is required (%d..%d)" % (what, VNI_MIN, VNI_MAX))
    out["vni"] = _int(spec["vni"], what, "vni", VNI_MIN, VNI_MAX)
    out["port"] = _int(spec["port"] if spec.get("port") is not None else DEFAULT_PORT, what, "port", 1, 65535)
    out["local"] = str(core.parse_address(spec["local"], "%s: local" % what)) if spec.get("local") else None
    version = 6 if out["local"] and ":" in out["local"] else 4
    out["dev"] = core.check_ifname(spec["dev"], "%s: uplink dev" % what) if spec.get("dev") else None
    if out["dev"] == name:
        raise FabricError("%s: cannot be its own uplink" % what)
    out["mtu"] = _int(spec["mtu"], what, "mtu", 68, 65535) if spec.get("mtu") is not None else None
    out["mac"] = core.parse_mac(spec["mac"], "%s: mac" % what) if spec.get("mac") else default_mac(name, out["vni"], out["local"])
    out["learning"] = bool(spec.get("learning", False))
    out["addresses"] = link.normalize_addresses(spec.get("addresses"), what) if spec.get("addresses") is not None else None
    out["purge_peers"] = True if spec.get("purge_peers") is None else bool(spec["purge_peers"])
    out["fdb"], out["neighbours"] = _normalize_peers(spec.get("peers") or [], version, what)
    return out


def _normalize_peers(peers, version, what):
    fdb, neighbours = {}, {}
    for i, peer in enumerate(peers):
        pwhat = "%s peer %s" % (what, peer.get("mac") or i + 1)
        if not peer.get("mac"):
            raise FabricError("%s: mac (the remote VTEP's MAC) is required" % pwhat)
        mac = core.parse_mac(peer["mac"], pwhat)
        if mac == "00:00:00:00:00:00":
            raise FabricError("%s: the all-zeros MAC is a flood entry, not a peer" % pwhat)
        if not peer.get("remote"):
            raise FabricError("%s: remote (the remote node's underlay IP) is required" % pwhat)
        remote = core.parse_address(peer["remote"], "%s: remote" % pwhat)
        if remote.is_unspecified or remote.is_multicast or remote.is_loopback:
            raise FabricError("%s: remote %s is not a unicast node address" % (pwhat, remote))
        if remote.version != version:
            raise FabricError("%s: remote %s is IPv%d but the underlay (local) is IPv%d" % (pwhat, remote, remote.version, version))
        if mac in fdb:
            raise FabricError("%s: listed twice" % pwhat)
        fdb[mac] = str(remote)
        if peer.get("ip"):
            ip = str(core.parse_address(peer["ip"], "%s: ip" % pwhat))
            if ip in neighbours:
                raise FabricError("%s: tunnel ip %s is also given for peer %s" % (pwhat, ip, neighbours[ip]))
            neighbours[ip] = mac
    return fdb, neighbours


# --- observe --------------------------------------------------------------------------------------

def _unset(ip):
    return None if not ip or ipaddress.ip_address(ip).is_unspecified else ip


def settings(cur, names):
    """The immutable settings of an observed vxlan link, in the terms of :func:`normalize`."""
    data = cur["data"]
    uplink = data.get("IFLA_VXLAN_LINK")
    return {
        "vni": data.get("IFLA_VXLAN_ID"),
        "port": data.get("IFLA_VXLAN_PORT"),
        "local": _unset(data.get("IFLA_VXLAN_LOCAL")) or _unset(data.get("IFLA_VXLAN_LOCAL6")),
        "dev": names.get(uplink, uplink) if uplink else None,
        "learning": bool(data.get("IFLA_VXLAN_LEARNING")),
    }


def peers_view(fdb, neighbours):
    """FDB {mac: remote} + neighbours {ip: (mac, permanent)} -> [{mac, remote, ip}] by MAC."""
    ips = {}
    for ip, (mac, permanent) in neighbours.items():
        if permanent and mac:
            ips.setdefault(mac, []).append(ip)
    out = []
    for mac in sorted(set(fdb) | set(ips)):
        for ip in sorted(ips.get(mac, [])) or [None]:
            out.append({"mac": mac, "remote": fdb.get(mac), "ip": ip})
    return out


def _observe(ipr, cur, names):
    if cur is None:
        return None
    out = {"name": cur["name"], "state": "present"}
    out.update(settings(cur, names))
    out.update({
        "mtu": cur["mtu"],
        "mac": cur["mac"],
        "addresses": link.addresses(ipr, cur["index"]),
        "fdb": neigh.fdb_entries(ipr, cur["index"]),
        "neighbours": neigh.neighbours(ipr, cur["index"]),
        "up": cur["up"],
        "alias": cur["alias"],
    })
    return out


def public(obs):
    """An observed or planned VTEP in user terms."""
    if obs.get("state") == "absent":
        return {"name": obs["name"], "state": "absent"}
    keys = ("name", "state", "vni", "port", "local", "dev", "mtu", "mac", "learning", "addresses")
    out = dict((k, obs.get(k)) for k in keys)
    out["peers"] = peers_view(obs["fdb"], obs["neighbours"])
    return out


def _address_owner(ipr, address):
    """The index of the link that holds ``address``, or None."""
    if ipr is None or not address:
        return None
    for msg in ipr.get_addr():
        ip = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if ip == address:
            return msg["index"]
    return None


# --- actions --------------------------------------------------------------------------------------

def create_kwargs(spec, uplink_index):
    kw = {"kind": "vxlan", "vxlan_id": spec["vni"], "vxlan_port": spec["port"],
          "vxlan_learning": 1 if spec["learning"] else 0}
    if spec["local"]:
        kw["vxlan_local6" if ":" in spec["local"] else "vxlan_local"] = spec["local"]
    if uplink_index:
        kw["vxlan_link"] = uplink_index
    return kw


def _describe(spec):
    parts = ["vni %d" % spec["vni"], "port %d" % spec["port"]]
    if spec["local"]:
        parts.append("local %s" % spec["local"])
    if spec["dev"]:
        parts.append("dev %s" % spec["dev"])
    parts.append("learning" if spec["learning"] else "nolearning")
    return ", ".join(parts)


def _routes_through(routes, name):
    """Routes the kernel drops with link ``name`` and does not bring back by itself."""
    out = []
    for r in routes:
        if r["protocol"] == 2:  # proto kernel: connected/local routes follow the addresses
            continue
        if r["dev"] == name or any(h["dev"] == name for h in r["nexthops"]):
            out.append(r)
    return out


# --- plan -----------------------------------------------------------------------------------------

def plan(ipr, vxlans, owner, purge=False, assume_links=False, store=None):
    """Plan bringing the namespace's VTEPs to ``vxlans`` (normalized entries) for ``owner``.

    ``purge`` deletes the owner's other vxlan links. ``store`` (a :class:`PeerStore`, default: the
    host's for the caller's namespace) records the peers the owner adds. ``assume_links``: check
    mode, where the uplink may be created by an earlier task.

    Order: the declared devices' reversible actions first (devices that keep their settings,
    then those recreated, whose old link must go), deletions last - except deletions that free a
    VNI and port a declared device is created with, which must come first.
    """
    store = store if store is not None else PeerStore(owner)
    result = Plan()
    links = link.dump(ipr)
    names = dict((v["index"], n) for n, v in links.items())
    seen = set()
    for spec in vxlans:
        if spec["name"] in seen:
            raise FabricError("vxlan %s: declared twice" % spec["name"])
        seen.add(spec["name"])

    doomed = []  # (name, cur): the owner's vxlan links to delete
    for spec in vxlans:
        if spec["state"] != "absent":
            continue
        name, cur = spec["name"], links.get(spec["name"])
        result.before[name] = public(_observe(ipr, cur, names)) if cur and cur["kind"] == "vxlan" else {"name": name, "state": "absent"}
        result.after[name] = {"name": name, "state": "absent"}
        if cur is not None:
            link.check_takeover(cur, name, "vxlan", WHAT, owner)
            doomed.append((name, cur))
    if purge:
        for name, cur in sorted(links.items()):
            if name not in seen and cur["kind"] == "vxlan" and link.is_owned(cur, owner):
                result.before[name] = public(_observe(ipr, cur, names))
                result.after[name] = {"name": name, "state": "absent"}
                doomed.append((name, cur))
    removed = set(name for name, _cur in doomed)

    present = [s for s in vxlans if s["state"] != "absent"]
    _check_vni_conflicts(present, links, names, removed)
    keep, recreate, needed = Plan(), Plan(), set()
    observed_routes = None
    for spec in present:
        name, what = spec["name"], "vxlan %s" % spec["name"]
        cur = links.get(name)
        link.check_takeover(cur, name, "vxlan", WHAT, owner)
        uplink, mtu = _uplink_and_mtu(ipr, spec, links, assume_links, what)
        before = _observe(ipr, cur, names)
        result.before[name] = public(before) if before else {"name": name, "state": "absent"}
        sub, fresh, recreated, lost = keep, cur is None, False, []
        if fresh:
            needed.add((spec["vni"], spec["port"]))
            link.add_delete_undo(sub, ipr, name, "create vxlan %s (%s)" % (name, _describe(spec)),
                                 create_kwargs(spec, uplink["index"] if uplink else None))
        else:
            have = settings(cur, names)
            changed = [k for k in IMMUTABLE if have[k] != spec[k]]
            if changed:
                if observed_routes is None:
                    observed_routes = route.dump(ipr, names)
                lost = _routes_through(observed_routes, name)
                sub = recreate
                needed.add((spec["vni"], spec["port"]))
                _plan_recreate(sub, ipr, spec, have, changed, uplink)
                fresh = recreated = True
        link.plan_attrs(sub, ipr, name, None if fresh else cur,
                        {"alias": owners.mark(owner), "mtu": mtu, "mac": spec["mac"], "up": True}, WHAT)
        link.plan_addresses(sub, ipr, name, [] if fresh else before["addresses"], spec["addresses"], WHAT)
        old_record = store.read(name)
        removable = old_record if spec["purge_peers"] else {}
        if recreated:
            cur_fdb, cur_neigh = _plan_put_back(sub, ipr, spec, before, removable, what)
        else:
            cur_fdb = {} if fresh else before["fdb"]
            cur_neigh = {} if fresh else before["neighbours"]
        neigh.plan_fdb(sub, ipr, name, cur_fdb, spec["fdb"], removable.get("fdb", {}), what)
        neigh.plan_neighbours(sub, ipr, name, cur_neigh, spec["neighbours"], removable.get("neighbours", {}), what)
        store.plan_write(sub, name, old_record, _record(spec, old_record, cur_fdb, cur_neigh), what)
        if lost:
            sub.add("re-add %d route(s) through vxlan %s that the kernel dropped with the old link: %s"
                    % (len(lost), name, "; ".join(route.describe(r) for r in lost)),
                    lambda lost=lost: [route.replace(ipr, r) for r in lost], noop)
        result.after[name] = _after(spec, mtu, before, cur_fdb, cur_neigh, removable)

    names_first = set()
    for name, cur in doomed:
        have = settings(cur, names)
        if (have["vni"], have["port"]) in needed:
            names_first.add(name)
    for name, cur in doomed:  # deletions that free a VNI: before the creates that need it
        if name in names_first:
            _plan_delete(result, ipr, store, name, "vxlan %s" % name, first=True)
    result.extend(keep)
    result.extend(recreate)
    for name, cur in doomed:
        if name not in names_first:
            _plan_delete(result, ipr, store, name, "vxlan %s" % name)
    return result


def _plan_put_back(result, ipr, spec, before, removable, what):
    """After a recreate: put back the static FDB entries and permanent neighbours the old device
    had that an in-place run would have kept (the user's own, and the owner's when purge_peers is
    off); returns them as the new device's current entries. Undone with the device."""
    gone_fdb, gone_neigh = removable.get("fdb") or {}, removable.get("neighbours") or {}
    fdb = dict((m, d) for m, d in before["fdb"].items() if m not in spec["fdb"] and gone_fdb.get(m) != d)
    neighbours = dict((ip, v) for ip, v in before["neighbours"].items()
                      if v[1] and v[0] and ip not in spec["neighbours"] and gone_neigh.get(ip) != v[0])
    if fdb or neighbours:
        name = spec["name"]

        def do():
            for mac, dst in sorted(fdb.items()):
                neigh.fdb_set(ipr, name, mac, dst)
            for ip, (mac, _permanent) in sorted(neighbours.items()):
                neigh.neigh_set(ipr, name, ip, mac)
        result.add("put back %d fdb entries and %d permanent neighbours the old %s had" % (len(fdb), len(neighbours), what), do, noop)
    return fdb, neighbours


def _plan_delete(result, ipr, store, name, what, first=False):
    """Forget the device's peer record (undone if the delete fails), then delete it (irreversible)."""
    store.plan_write(result, name, store.read(name), {}, what)
    if first:
        result.add("delete vxlan %s first (a declared device needs its VNI and port)" % name,
                   lambda: link.delete_quietly(ipr, name), irreversible=True)
    else:
        link.plan_delete(result, ipr, name, WHAT)


def _record(spec, old, cur_fdb, cur_neigh):
    """What the owner has added to the device after the run: the declared peers, and with
    purge_peers off also what it recorded before and is still there as recorded."""
    fdb, neighbours = {}, {}
    if not spec["purge_peers"]:
        fdb = dict((m, d) for m, d in (old.get("fdb") or {}).items() if cur_fdb.get(m) == d)
        neighbours = dict((ip, m) for ip, m in (old.get("neighbours") or {}).items() if cur_neigh.get(ip) == (m, True))
    fdb.update(spec["fdb"])
    neighbours.update(spec["neighbours"])
    if not fdb and not neighbours:
        return {}
    return {"fdb": fdb, "neighbours": neighbours}


def _check_vni_conflicts(present, links, names, removed):
    """The kernel allows one vxlan link per VNI and UDP port in a namespace (EEXIST otherwise)."""
    declared = {}
    for spec in present:
        key = (spec["vni"], spec["port"])
        if key in declared:
            raise FabricError("vxlan %s: VNI %d on port %d is also declared for vxlan %s" % (spec["name"], key[0], key[1], declared[key]))
        declared[key] = spec["name"]
    for name, cur in sorted(links.items()):
        if cur["kind"] != "vxlan" or name in removed:
            continue
        have = settings(cur, names)
        other = declared.get((have["vni"], have["port"]))
        if other is not None and other != name:
            raise FabricError("vxlan %s: VNI %d on port %d is already used by vxlan %s in this namespace"
                              % (other, have["vni"], have["port"], name))


def _uplink_and_mtu(ipr, spec, links, assume_links, what):
    """The uplink's view (None if not given or not there yet) and the MTU to manage (or None).

    Without ``mtu`` the VTEP gets the uplink's MTU minus the VXLAN overhead; the uplink is
    ``dev``, or else the link holding the ``local`` address.
    """
    overhead = OVERHEAD[6 if spec["local"] and ":" in spec["local"] else 4]
    uplink = None
    if spec["dev"]:
        uplink = links.get(spec["dev"])
        if uplink is None and not assume_links:
            raise FabricError("%s: uplink dev %s does not exist" % (what, spec["dev"]))
    elif spec["local"]:
        index = _address_owner(ipr, spec["local"])
        owner = [v for v in links.values() if v["index"] == index]
        if owner and owner[0]["name"] != spec["name"]:
            return None, spec["mtu"] or (owner[0]["mtu"] - overhead)
    if uplink is None:
        return None, spec["mtu"]
    limit = uplink["mtu"] - overhead
    if spec["mtu"] is not None and spec["mtu"] > limit:
        raise FabricError("%s: mtu %d is more than uplink %s's MTU %d minus %d bytes of VXLAN overhead (at most %d)"
                          % (what, spec["mtu"], spec["dev"], uplink["mtu"], overhead, limit))
    return uplink, spec["mtu"] or limit


def _plan_recreate(result, ipr, spec, have, changed, uplink):
    """Delete the link (irreversible: its peers, addresses and routes go with it) and create it
    with the new settings; what the old one had is planned again after this."""
    name = spec["name"]
    why = ", ".join("%s %s -> %s" % (k, _text(have[k], k), _text(spec[k], k)) for k in changed)
    result.add("delete vxlan %s to recreate it (%s: cannot change in place)" % (name, why),
               lambda: link.delete_quietly(ipr, name), irreversible=True)
    link.add_delete_undo(result, ipr, name, "create vxlan %s (%s)" % (name, _describe(spec)),
                         create_kwargs(spec, uplink["index"] if uplink else None))


def _text(value, key):
    if key == "learning":
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _after(spec, mtu, before, cur_fdb, cur_neigh, removable):
    fdb = dict((m, d) for m, d in cur_fdb.items() if (removable.get("fdb") or {}).get(m) != d)
    neighbours = dict((ip, v) for ip, v in cur_neigh.items() if v[1] and (removable.get("neighbours") or {}).get(ip) != v[0])
    fdb.update(spec["fdb"])
    neighbours.update((ip, (mac, True)) for ip, mac in spec["neighbours"].items())
    after = {
        "name": spec["name"], "state": "present",
        "vni": spec["vni"], "port": spec["port"], "local": spec["local"], "dev": spec["dev"],
        "learning": spec["learning"], "mac": spec["mac"],
        "mtu": mtu if mtu is not None else (before["mtu"] if before else None),
        "addresses": spec["addresses"] if spec["addresses"] is not None else (before["addresses"] if before else []),
        "fdb": fdb, "neighbours": neighbours,
    }
    return public(after)
