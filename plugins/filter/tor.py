# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The top-of-rack router's side of Calico's BGP, computed on the controller from the cluster's
objects (the same objects and ``manifests=`` paths every role gets), for podnet.fabric.frr_router.

- ``tor_neighbors``: every node whose Calico BGP peers (as Calico's confd computes them,
  plugins/module_utils/calico.py ``node_bgp``) include one of the router's addresses becomes one
  FRR neighbor: its node IP, the AS it presents (the BGPPeer's ``localASNumber``, else the
  node's AS: annotation ``projectcalico.org/ASNumber`` or the global one), the BGPPeer's
  password (annotation ``podnet.fabric/password``), BFD, and its rack (label
  ``topology.kubernetes.io/zone``).
- ``tor_settings``: the address space the router accepts from the nodes: the cluster CIDR, the
  ranges of the default BGPConfiguration's ``serviceClusterIPs`` and ``serviceExternalIPs``
  (``service_cidrs``) and ``serviceLoadBalancerIPs`` (``load_balancer_cidrs``).

The logic stays here, on the controller: frr_router's module_utils never import the cluster
model, so nothing of it is shipped to the router.
"""
from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import bird as _bird
from ansible_collections.podnet.fabric.plugins.module_utils import calico as _calico
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests

RACK_LABEL = "topology.kubernetes.io/zone"
BGP_PORT = 179


def _addresses(addresses):
    if isinstance(addresses, str):
        addresses = [addresses]
    out = []
    for value in addresses or []:
        text = str(value).split("/", maxsplit=1)[0].strip()     # 172.31.1.254/24 (an interface address) is fine
        try:
            out.append(str(ipaddress.IPv4Address(text)))
        except ValueError:
            raise FabricError("router address %r is not an IPv4 address" % (value,))
    if not out:
        raise FabricError("the router's addresses are required (the addresses the nodes peer with)")
    return out


def neighbors(cluster, addresses, as_number=None, bfd=True):
    """The router's FRR neighbors from a parsed :class:`cluster.Cluster` (see the module doc)."""
    mine = _addresses(addresses)
    out = []
    for node in cluster.nodes:
        bgp = _calico.node_bgp(cluster, node["name"])
        matches = []
        for peer in bgp["peers"]:
            ip, port = _bird.parse_peer_ip(peer["peer_ip"])
            if str(ip) in mine:
                matches.append((str(ip), port, peer))
        if not matches:
            continue
        what = "Node %s" % node["name"]
        if len(matches) > 1:
            raise FabricError("%s: peers with the router at %s; the router keeps one session per node address "
                              "(select one router address per node)" % (what, " and ".join(m[0] for m in matches)))
        ip, port, peer = matches[0]
        if port not in (None, BGP_PORT):
            raise FabricError("%s: peers with the router at %s port %d; the router listens on port %d"
                              % (what, ip, port, BGP_PORT))
        if as_number is not None and int(peer["as_number"]) != int(as_number):
            raise FabricError("%s: its BGPPeer expects AS %s at %s, but the router is AS %s"
                              % (what, peer["as_number"], ip, as_number))
        entry = {"name": node["name"], "address": node["ip"],
                 "as_number": int(peer.get("local_as_number") or bgp["as_number"]), "bfd": bool(bfd)}
        if peer.get("password"):
            entry["password"] = peer["password"]
        rack = (node.get("labels") or {}).get(RACK_LABEL)
        if rack:
            entry["rack"] = rack
        out.append(entry)
    return out


def settings(cluster, cluster_cidr, node_prefix=24):
    """frr_router's ``settings`` address space from the default BGPConfiguration."""
    glob = _calico.settings(cluster)
    return {"cluster_cidr": str(cluster_cidr), "cluster_node_prefix": int(node_prefix),
            "service_cidrs": list(glob["service_cluster_ips"]) + list(glob["service_external_ips"]),
            "load_balancer_cidrs": list(glob["service_load_balancer_ips"])}


def tor_neighbors(objects, addresses, hosts=None, as_number=None, bfd=True, manifests=None):
    """The FRR neighbors of a router with ``addresses``::

        objects | podnet.fabric.tor_neighbors(['172.31.1.254', '172.31.2.254'], groups['nodes'],
                                              as_number=65000, manifests=paths)

    ``hosts`` (optional): the inventory's nodes, which must be exactly the Node objects.
    ``as_number`` (optional): the router's AS; a BGPPeer expecting another one is an error."""
    try:
        cluster = _cluster.parse_objects(_manifests.objects(objects, manifests), list(hosts) if hosts is not None else None)
        return neighbors(cluster, addresses, as_number, bfd)
    except (_cluster.ClusterError, FabricError, _manifests.ManifestError, ValueError) as exc:
        raise AnsibleFilterError("tor_neighbors: %s" % exc)


def tor_settings(objects, cluster_cidr, node_prefix=24, hosts=None, manifests=None):
    """frr_router's ``settings`` address space::

        objects | podnet.fabric.tor_settings('10.244.0.0/16', 24, manifests=paths)"""
    try:
        cluster = _cluster.parse_objects(_manifests.objects(objects, manifests), list(hosts) if hosts is not None else None)
        return settings(cluster, cluster_cidr, node_prefix)
    except (_cluster.ClusterError, FabricError, _manifests.ManifestError, ValueError) as exc:
        raise AnsibleFilterError("tor_settings: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"tor_neighbors": tor_neighbors, "tor_settings": tor_settings}
