# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a live node's (or namespace's) state for the trace, through the project's layers.

Only reads: ``iptables-save`` through the ruleset layer's flavour detection (the same dump the
nat_rule module plans from), links, addresses, routes of every table, neighbours, VXLAN FDB
entries and VXLAN settings through the netlink layer (pyroute2, both 0.7.2 and 0.9.x), and
net.ipv4.ip_forward through the sysctl layer. Call with the namespace's name (None: the
caller's own namespace); ``run(argv)`` runs a program inside that namespace.
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils import sysctl
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link, neigh, route, vxlan
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import flavour

AF_INET = 2


def read_netlink(ipr):
    """Routes, addresses, neighbours, FDB and VXLAN devices of the namespace ``ipr`` is open in."""
    links = link.dump(ipr)
    names = dict((v["index"], n) for n, v in links.items())
    by_index = link.address_map(ipr)
    addresses = dict((names[i], [a for a in addrs if ":" not in a]) for i, addrs in by_index.items() if i in names)
    routes = [r for r in route.dump(ipr, names) if r["family"] == AF_INET]
    neighbours, fdb, vxlans, bridge_ports = {}, {}, {}, {}
    for name, cur in sorted(links.items()):
        found = dict((ip, mac) for ip, (mac, _permanent) in neigh.neighbours(ipr, cur["index"]).items()
                     if ":" not in ip and mac)
        if found:
            neighbours[name] = found
        if cur["kind"] == "vxlan":
            vxlans[name] = vxlan.settings(cur, names)
            fdb[name] = neigh.fdb_entries(ipr, cur["index"])
    return {"routes": routes, "addresses": addresses, "neighbours": neighbours, "fdb": fdb, "vxlan": vxlans,
            "links": link_views(links, names)}


def link_views(links, names):
    """{name: {index, kind, mac, up, mtu, master, peer_index, peer_netnsid}}: what the trace's L2 steps
    (which bridge port leads to which pod's veth) and the show view need. ``peer_index`` is a
    veth's peer's index in the peer's namespace (``peer_netnsid`` None: this namespace)."""
    out = {}
    for name, cur in links.items():
        out[name] = {"index": cur["index"], "kind": cur["kind"], "mac": (cur["mac"] or "").lower() or None,
                     "up": cur["up"], "mtu": cur["mtu"], "alias": cur["alias"],
                     "master": names.get(cur["master_index"]) if cur["master_index"] else None,
                     "peer_index": cur["link_index"] if cur["kind"] == "veth" else None,
                     "peer_netnsid": cur["link_netnsid"] if cur["kind"] == "veth" else None}
    return out


def read_state(name, netns, run, which, iptables_flavour="auto"):
    """The state dict :class:`.state.NodeState` takes, read from the live namespace ``netns``."""
    obs = flavour.observe(run, flavour.Tools(which), iptables_flavour)
    with core.open_netns(netns or None) as ipr:
        state = read_netlink(ipr)
    forward = sysctl.Settings(netns or None).read(["net.ipv4.ip_forward"]).get("net.ipv4.ip_forward")
    state.update(name=name, iptables=obs.save_text, ip_forward=forward != "0", recent=read_recent(run))
    return state, obs.flavour


RECENT_DIR = "/proc/net/xt_recent"
# /proc/net follows the reader's namespace: one small program run inside it lists every list
_RECENT_DUMP = 'for f in %s/*; do [ -f "$f" ] && echo "== ${f##*/}" && cat "$f"; done; true' % RECENT_DIR


def parse_recent(text):
    """``-m recent`` lists (session affinity) from the dump above: {list name: [source IP]}."""
    out, current = {}, None
    for line in (text or "").splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None and line.startswith("src="):
            current.append(line.split()[0][4:])
    return out


def read_recent(run):
    """The namespace's recent lists (kube-proxy's ClientIP affinity); {} when xt_recent is not loaded."""
    rc, out, _err = run(["sh", "-c", _RECENT_DUMP])
    return parse_recent(out) if rc == 0 else {}
