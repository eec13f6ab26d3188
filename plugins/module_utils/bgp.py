# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the bgp role applies on one node (pure: the cluster's objects and the nodes' reports in,
one plan out), computed on the controller like every other role's slice.

One BGP speaker (BIRD) per node carries both what Calico announces and what MetalLB's BGP mode
announces, so the two never fight over port 179:

- the peers: Calico's BGPConfiguration/BGPPeer semantics (:func:`calico.node_bgp`: mesh, global
  and per-node peers, route reflectors), every session exporting through the main
  configuration's filter ``podnet_export`` (eBGP sessions ``podnet_export_own``: only what the
  node originates, a node is not a transit AS); BFD towards peers that are not Calico nodes (the
  top-of-rack router) when ``bfd`` is set; ``rr client`` on a reflector's sessions to its clients;
- what the node originates (kept inside BIRD, never put in the kernel): its pod CIDR block (as
  Calico's ``route <block> blackhole``), the BGPConfiguration's serviceClusterIPs /
  serviceExternalIPs / serviceLoadBalancerIPs ranges (Calico advertises them from every node),
  and a /32 for each LoadBalancer IP inside serviceLoadBalancerIPs that this node serves:
  every node for externalTrafficPolicy Cluster (when the service has a serving endpoint at all),
  only the nodes with a serving endpoint for Local (Calico's and MetalLB's rule) - so the router
  installs one ECMP route over exactly those nodes;
- what goes to the kernel: BGP-learned routes inside the cluster CIDR when ``program_routes``
  (pod_routing's ``bgp`` mode: native routes, no encapsulation), nothing otherwise.

    plan = node_plan(objects, "node1", ["node1", "node2", "node3"], reports, {"cluster_cidr": ...})
    plan["enabled"]     # any BGPConfiguration or BGPPeer in the cluster
    plan["peers"]       # podnet.fabric.calico_bgp_peer's peers
    plan["originate"], plan["export"], plan["program"]   # podnet.fabric.bird_config's lists
    plan["announcements"]  # every LoadBalancer IP announced by BGP: service, nodes
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils import bird as _bird
from ansible_collections.podnet.fabric.plugins.module_utils import calico as _calico
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import metallb as _metallb

EXPORT_FILTER = "podnet_export"        # bird_config's filters (plugins/module_utils/bird_main.py)
OWN_FILTER = "podnet_export_own"
DEFAULTS = {
    "cluster_cidr": "10.244.0.0/16",
    "node_prefix": 24,
    "service_cidr": _cluster.DEFAULT_SERVICE_CIDR,     # the same as the service proxy's
    "node_port_range": _cluster.DEFAULT_NODE_PORT_RANGE,
    "program_routes": True,     # learned pod routes into the kernel (pod_routing mode bgp)
    "bfd": True,                # BFD on sessions to peers that are not Calico nodes
    "import_filter": "all",
    "export_filter": EXPORT_FILTER,
    "ebgp_export_filter": OWN_FILTER,
}


def settings_with_defaults(settings):
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise _cluster.ClusterError("bgp: unknown setting(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    out = dict(DEFAULTS)
    out.update(dict((k, v) for k, v in (settings or {}).items() if v is not None))
    return out


def load_balancer_announcements(cluster, model, ranges):
    """Each LoadBalancer IP inside ``ranges`` (serviceLoadBalancerIPs) with the nodes that announce
    its /32, sorted by address: [{"ip", "service", "local", "nodes", "reason"}]."""
    nets = [ipaddress.ip_network(r) for r in ranges]
    allocated = (model.get("report") or {}).get("services") or {}
    out = []
    names = [n["name"] for n in cluster.nodes]
    for svc in cluster.services:
        ip = (allocated.get(svc["id"]) or {}).get("loadBalancerIP")
        if svc["type"] != "LoadBalancer" or not ip or not any(ipaddress.ip_address(ip) in n for n in nets):
            continue
        local = svc["externalTrafficPolicy"] == "Local"
        endpoints = [ep for sl in _metallb.service_slices(model, svc["namespace"], svc["name"])
                     for ep in sl.get("endpoints") or [] if _metallb.can_serve(ep)]
        if not endpoints:
            nodes, reason = [], "the service has no serving endpoint"
        elif local:
            with_endpoint = set(ep.get("nodeName") for ep in endpoints)
            nodes, reason = [n for n in names if n in with_endpoint], None
        else:
            nodes, reason = list(names), None
        out.append({"ip": ip, "service": svc["id"], "local": local, "nodes": nodes, "reason": reason})
    return sorted(out, key=lambda a: (int(ipaddress.IPv4Address(a["ip"])), a["service"]))


def _ranges(values):
    return [str(ipaddress.ip_network(v)) for v in values]


def node_plan(objects, me, hosts, reports=None, settings=None):
    settings = settings_with_defaults(settings)
    cluster = _cluster.parse_objects(objects, hosts)
    cluster.node(me)
    enabled = bool(cluster.bgp_configurations or cluster.bgp_peers)
    cidrs = _cluster.allocate_pod_cidrs(cluster, settings["cluster_cidr"], settings["node_prefix"], reports)
    speaker = _calico.node_bgp(cluster, me, pod_cidr=cidrs[me], import_filter=settings["import_filter"],
                               export_filter=settings["export_filter"])
    node_ips = set(n["ip"] for n in cluster.nodes)
    rr = speaker["route_reflector"]
    peers = []
    for peer in speaker["peers"]:
        peer = dict(peer)
        ip = str(_bird.parse_peer_ip(peer["peer_ip"])[0])
        if settings["bfd"] and ip not in node_ips:
            peer["bfd"] = True
        if peer["as_number"] != (peer.get("local_as_number") or speaker["as_number"]):
            # eBGP: only what this node originates (a node is not a transit AS)
            peer["export_filter"] = settings["ebgp_export_filter"]
        if rr and peer["name"] in rr["clients"]:
            peer["rr_client"] = True
            peer["rr_cluster_id"] = rr["cluster_id"]
        peers.append(peer)
    origin = speaker["originate"]
    service_ranges = _ranges(origin["service_cluster_ips"] + origin["service_external_ips"] + origin["service_load_balancer_ips"])
    announcements = []
    if origin["service_load_balancer_ips"]:
        model = _cluster.service_model(cluster, settings["service_cidr"], settings["node_port_range"], dict(reports or {}))
        announcements = load_balancer_announcements(cluster, model, origin["service_load_balancer_ips"])
    host_routes = sorted(set("%s/32" % a["ip"] for a in announcements if me in a["nodes"]),
                         key=lambda n: int(ipaddress.ip_network(n).network_address))
    cluster_cidr = str(ipaddress.ip_network(settings["cluster_cidr"]))
    return {
        "enabled": enabled,
        "router_id": speaker["router_id"],
        "as_number": speaker["as_number"],
        "listen_port": speaker["listen_port"],
        "pod_cidr": cidrs[me],
        "peers": peers if enabled else [],
        "originate": ([cidrs[me]] + service_ranges + host_routes) if enabled else [],
        "export": [cluster_cidr] + service_ranges,
        "program": [cluster_cidr] if enabled and settings["program_routes"] else [],
        "route_reflector": rr,
        "announcements": announcements,
    }
