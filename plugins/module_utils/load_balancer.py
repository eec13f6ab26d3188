# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the load balancer applies on one node (pure: objects and node reports in, one plan out).

The cluster's LoadBalancer IPs come from the same service model as the service proxy's rules
(:func:`cluster.service_model`: MetalLB's IPAddressPools, addresses remembered in the nodes'
reports), so VIP:port reaches the pods through kube-proxy's chains on whichever node holds the
VIP. Who announces a VIP is MetalLB's layer-2 choice (:func:`metallb.l2_announcements`); how:

- ``vrrp`` (default): keepalived VRRPv3 on the candidate nodes, priorities in MetalLB's order
  (:mod:`keepalived`): the first candidate holds the VIP, the next takes over within about
  0.65 s when it dies, without Ansible; podnet.fabric.vip_arp prepares the candidates'
  interfaces (arp_ignore/arp_announce, promiscuous on Wi-Fi);
- ``arp``: no failover; podnet.fabric.vip_arp adds each VIP on its announcer only and sends
  gratuitous ARP (what a converge does is all that moves it).

    plan = node_plan(objects, "node1", ["node1", "node2"], reports, {"mode": "vrrp"})
    plan["vips"]           # podnet.fabric.vip_arp vips (mode arp: this node's VIPs)
    plan["interfaces"]     # podnet.fabric.vip_arp interfaces (mode vrrp: the instances' interfaces)
    plan["pools"]          # the pools' address ranges (vip_arp refuses a VIP outside them)
    plan["keepalived"]     # [{"name": "<owner>-vi<vrid>", "config": keepalived.conf}]: one process each
    plan["announcements"]  # every VIP of the cluster: its service, pool, nodes in order
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import keepalived as _keepalived
from ansible_collections.podnet.fabric.plugins.module_utils import metallb as _metallb

DEFAULTS = {
    "service_cidr": _cluster.DEFAULT_SERVICE_CIDR,   # the same as the service proxy's
    "node_port_range": _cluster.DEFAULT_NODE_PORT_RANGE,
    "mode": "vrrp",                  # vrrp (keepalived failover) | arp (vip_arp on the announcer only)
    "interface": "eth0",             # when the L2Advertisement names no interface
    "owner": "load_balancer",
    "keepalived": {},                # keepalived.DEFAULTS overrides (advert_int ...)
}


def settings_with_defaults(settings):
    out = dict(DEFAULTS)
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise _cluster.ClusterError("load balancer: unknown setting(s) %s (known: %s)"
                                    % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    out.update(dict((k, v) for k, v in (settings or {}).items() if v is not None))
    if out["mode"] not in ("vrrp", "arp"):
        raise _cluster.ClusterError("load balancer: mode %r is not vrrp or arp" % (out["mode"],))
    return out


def node_plan(objects, me, hosts, reports=None, settings=None):
    settings = settings_with_defaults(settings)
    cluster = _cluster.parse_objects(objects, hosts)
    cluster.node(me)
    model = _cluster.service_model(cluster, settings["service_cidr"], settings["node_port_range"], dict(reports or {}))
    announcements = _metallb.l2_announcements(cluster, model)
    addresses = dict((n["name"], n["ip"]) for n in cluster.nodes)
    ka_settings = dict(settings["keepalived"] or {}, interface=settings["interface"])
    vips, interfaces, configs, instances = [], [], [], []
    if settings["mode"] == "vrrp":
        instances = _keepalived.node_instances(announcements, addresses, me, ka_settings)
        configs = [{"name": "%s-vi%d" % (settings["owner"], i["vrid"]),
                    "config": _keepalived.render(i, me, settings["owner"], ka_settings)} for i in instances]
        interfaces = sorted(set(i["interface"] for i in instances))
    else:
        seen = set()
        for ann in announcements:
            if ann["nodes"] and ann["nodes"][0] == me and ann["ip"] not in seen:
                seen.add(ann["ip"])
                vips.append({"address": ann["ip"], "interface": (ann["interfaces"] or [settings["interface"]])[0]})
    return {
        "vips": vips,
        "interfaces": interfaces,
        "pools": pool_ranges(cluster.pools),
        "keepalived": configs,
        "instances": [dict((k, i[k]) for k in ("name", "vrid", "interface", "priority", "vips", "nodes"))
                      for i in instances],
        "announcements": announcements,
    }


def pool_ranges(pools):
    """The pools' IPv4 spans as vip_arp's ``pools`` (``first-last``), in the pools' order."""
    out = []
    for pool in pools:
        for first, last in pool["ranges"]:
            out.append("%s-%s" % (ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)))
    return out
