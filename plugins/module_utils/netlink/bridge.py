# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridges (cni0 style): the device, its gateway addresses, MTU, MAC, STP, promisc and ports.

Call with a handle opened in the namespace the bridges live in.
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, noop

WHAT = "bridge"


def check_mtu(mtu, what):
    if mtu is not None and not 68 <= int(mtu) <= 65535:
        raise FabricError("%s: mtu %s is outside 68..65535" % (what, mtu))
    return mtu


def normalize(spec):
    """Validate one user entry; returns a new dict with canonical values."""
    name = core.check_ifname(spec.get("name"), WHAT)
    what = "bridge %s" % name
    out = dict(spec)
    out["name"] = name
    out["mtu"] = check_mtu(spec.get("mtu"), what)
    out["mac"] = core.parse_mac(spec["mac"], what) if spec.get("mac") else None
    out["addresses"] = link.normalize_addresses(spec.get("addresses"), what) if spec.get("addresses") is not None else None
    out["ports"] = [core.check_ifname(p, "%s port" % what) for p in (spec.get("ports") or [])]
    if name in out["ports"]:
        raise FabricError("%s: cannot be a port of itself" % what)
    return out


def _observe(links, ipr, name):
    cur = links.get(name)
    if cur is None:
        return None
    ports = sorted(v["name"] for v in links.values() if v["master_index"] == cur["index"])
    return {
        "name": name,
        "state": "present",
        "mtu": cur["mtu"],
        "mac": cur["mac"],
        "stp": bool(cur["data"].get("IFLA_BR_STP_STATE")),
        "promisc": cur["promisc"],
        "addresses": link.addresses(ipr, cur["index"]),
        "ports": ports,
        "hairpin_ports": sorted(v["name"] for v in links.values()
                                if v["master_index"] == cur["index"] and v["slave"].get("IFLA_BRPORT_MODE")),
    }


def plan(ipr, bridges, owner, purge=False, missing_ok=False):
    """Plan bringing the namespace's bridges to ``bridges`` (normalized entries) for ``owner``;
    ``purge`` deletes the owner's other bridges.

    ``missing_ok`` (check mode): a port that does not exist yet may be created by an earlier task.
    """
    result = Plan()
    links = link.dump(ipr)
    declared = set()
    for spec in bridges:
        name = spec["name"]
        declared.add(name)
        cur = links.get(name)
        before = _observe(links, ipr, name)
        result.before[name] = before or {"name": name, "state": "absent"}
        if spec.get("state", "present") == "absent":
            result.after[name] = {"name": name, "state": "absent"}
            if cur is not None:
                link.check_takeover(cur, name, "bridge", WHAT, owner)
                link.plan_delete(result, ipr, name, WHAT)
            continue
        link.check_takeover(cur, name, "bridge", WHAT, owner)
        for port in spec["ports"]:
            if port not in links:
                if missing_ok:
                    continue
                raise FabricError("bridge %s: port %s does not exist" % (name, port))
            if links[port]["kind"] == "bridge":
                raise FabricError("bridge %s: port %s is itself a bridge" % (name, port))
        stp = spec.get("stp")
        if cur is None:
            link.add_delete_undo(result, ipr, name, "create bridge %s" % name,
                                 {"kind": "bridge", "br_stp_state": 1 if stp else 0})
        elif stp is not None and bool(cur["data"].get("IFLA_BR_STP_STATE")) != stp:
            result.add("set bridge %s stp %s" % (name, "on" if stp else "off"),
                       lambda name=name, stp=stp: ipr.link("set", index=link.index_of(ipr, name), kind="bridge", br_stp_state=1 if stp else 0),
                       lambda name=name, stp=stp: ipr.link("set", index=link.index_of(ipr, name), kind="bridge", br_stp_state=0 if stp else 1))
        link.plan_attrs(result, ipr, name, cur, {
            "alias": owners.mark(owner), "mtu": spec.get("mtu"), "mac": spec.get("mac"),
            "promisc": spec.get("promisc"), "up": True}, WHAT)
        link.plan_addresses(result, ipr, name, before["addresses"] if before else [], spec["addresses"], WHAT)
        hairpin = spec.get("hairpin")
        for port in spec["ports"]:
            pcur = links.get(port)
            if pcur is None:  # check mode only (see above)
                result.add("attach port %s to bridge %s" % (port, name), noop, irreversible=True)
                continue
            master = link.name_of(links, pcur["master_index"]) if pcur["master_index"] else None
            link.plan_attrs(result, ipr, port, pcur, {"master": name, "up": True}, "port", current_master=master)
            plan_hairpin(result, ipr, port, pcur if master == name else None, hairpin)
        result.after[name] = _after(before, spec, hairpin)
    if purge:
        for name, cur in sorted(links.items()):
            if name not in declared and cur["kind"] == "bridge" and link.is_owned(cur, owner):
                result.before[name] = _observe(links, ipr, name)
                result.after[name] = {"name": name, "state": "absent"}
                link.plan_delete(result, ipr, name, WHAT)
    return result


def plan_hairpin(result, ipr, port, current, hairpin):
    """Set hairpin mode on a bridge port (``current``: its view when already on that bridge)."""
    if hairpin is None:
        return
    have = bool(current["slave"].get("IFLA_BRPORT_MODE")) if current else False
    if have != hairpin:
        result.add("set port %s hairpin %s" % (port, "on" if hairpin else "off"),
                   lambda: ipr.brport("set", index=link.index_of(ipr, port), mode=1 if hairpin else 0),
                   lambda: ipr.brport("set", index=link.index_of(ipr, port), mode=1 if have else 0) if current else None)


def _after(before, spec, hairpin):
    after = dict(before or {"name": spec["name"], "mtu": None, "mac": None, "stp": False, "promisc": False,
                            "addresses": [], "ports": [], "hairpin_ports": []})
    after["state"] = "present"
    for key in ("mtu", "mac", "stp", "promisc", "addresses"):
        if spec.get(key) is not None:
            after[key] = spec[key]
    after["ports"] = sorted(set(after["ports"]) | set(spec["ports"]))
    hp = set(after["hairpin_ports"])
    if hairpin is True:
        hp |= set(spec["ports"])
    elif hairpin is False:
        hp -= set(spec["ports"])
    after["hairpin_ports"] = sorted(hp)
    return after
