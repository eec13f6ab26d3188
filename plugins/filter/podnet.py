# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster model for the roles (plugins/module_utils/cluster.py does the work) and small
deterministic helpers the roles share (no netaddr needed on the controller)."""
from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils.cluster import stable_mac, veth_name
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests


def nth_address(cidr, n, with_prefix=False):
    """The n-th address of a network (0 = network address): ``'10.244.1.0/24' | nth_address(1)``."""
    net = ipaddress.ip_network(cidr, strict=False)
    ip = net.network_address + int(n)
    if ip not in net:
        raise AnsibleFilterError("nth_address: %s has no address number %s" % (net, n))
    return "%s/%d" % (ip, net.prefixlen) if with_prefix else str(ip)


def same_subnet(ip, cidr):
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def _wrap(func, name):
    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (_cluster.ClusterError, _manifests.ManifestError) as exc:
            raise AnsibleFilterError("%s: %s" % (name, exc))
    call.__doc__ = func.__doc__
    return call


def node_reports(nodes, hostvars, fact="podnet_fabric"):
    """{node: what it reported} from each node's reports (``podnet_fabric_reports[fact]``, read by
    podnet.fabric.node_report; ``ansible_local[fact]`` when only setup read them), written by
    podnet.fabric.pod_network: the pod CIDR it has and its pods' IPs. Nodes without facts (or
    without the file: never converged) report nothing.

    ``fact`` may be a list of local facts, each written by one role (``['podnet_fabric',
    'podnet_fabric_services']``: pod IPs and the service addresses): a node's report is their
    union, later facts winning on a key both have."""
    facts_wanted = [fact] if isinstance(fact, str) else list(fact or [])
    out = {}
    for node in nodes or []:
        facts = (hostvars or {}).get(node) or {}
        local = facts.get("podnet_fabric_reports")
        if local is None:
            local = facts.get("ansible_local") or {}
        for name in facts_wanted:
            report = local.get(name) if isinstance(local, dict) else None
            if isinstance(report, dict):
                out.setdefault(node, {}).update(report)
    return out


def cluster_node(objects, me, hosts, cluster_cidr, node_prefix=24, reports=None, netns_prefix="pod-",
                 manifests=None):
    """Node ``me``'s slice of the cluster model (see plugins/module_utils/cluster.py).
    ``manifests``: paths of manifest files or directories whose objects come before ``objects``
    (read as plain data: much cheaper than a large variable, see plugin_utils/manifests.py)."""
    return _cluster.cluster_node(_manifests.objects(objects, manifests), me, list(hosts or []), cluster_cidr,
                                 node_prefix, dict(reports or {}), netns_prefix)


def cluster_pods(objects, me, hosts, netns_prefix="pod-", manifests=None):
    """Node ``me``'s pods (see plugins/module_utils/cluster.py), without allocating CIDRs."""
    return _cluster.cluster_pods(_manifests.objects(objects, manifests), me, list(hosts or []), netns_prefix)


def node_address(objects, name, manifests=None):
    """The InternalIP of Node ``name`` (see plugins/module_utils/cluster.py)."""
    return _cluster.node_address(_manifests.objects(objects, manifests), name)


def pod_entries(pods, pod_cidr):
    """podnet.fabric.pods entries for a node's pods (cluster_node's ``pods``): the namespace, the
    host end's name, a fixed address (Calico's ipAddrs annotation) with the pod CIDR's prefix,
    and a MAC stable across runs."""
    prefix = ipaddress.ip_network(pod_cidr).prefixlen
    out = []
    for pod in pods:
        entry = {"name": pod["netns"], "veth": pod["veth"], "mac": stable_mac("pod/" + pod["id"])}
        if pod.get("ip"):
            entry["addresses"] = ["%s/%d" % (pod["ip"], prefix)]
        out.append(entry)
    return out


def pod_ips(pods, wired):
    """{pod id: IP} from cluster_node's ``pods`` and the podnet.fabric.pods result (by netns)."""
    by_netns = dict((w["netns"], w.get("ip")) for w in wired)
    return dict((pod["id"], by_netns[pod["netns"]]) for pod in pods if by_netns.get(pod["netns"]))


def vtep_peer(peer):
    """A podnet.fabric.vxlan peer entry for a node (from pod_routing's peer list)."""
    return {"mac": peer["vtep_mac"], "remote": peer["node_ip"], "ip": peer["vtep_ip"]}


def direct_route(peer, uplink):
    """host-gw: the peer's pod CIDR via its node IP on the shared segment."""
    return {"dest": peer["pod_cidr"], "gateway": peer["node_ip"], "dev": uplink}


def tunnel_route(peer, vtep):
    """vxlan: the peer's pod CIDR via its tunnel address, onlink on the VTEP (flannel's way)."""
    return {"dest": peer["pod_cidr"], "gateway": peer["vtep_ip"], "dev": vtep, "onlink": True}


def served_pods(pods):
    """What the pod_workload server needs of pods_on() entries with TCP container ports."""
    out = []
    for pod in pods or []:
        ports = sorted(set(p["containerPort"] for p in pod.get("ports") or [] if p.get("protocol", "TCP") == "TCP"))
        if ports:
            out.append({"id": pod["id"], "netns": pod["netns"], "ports": ports})
    return out


class FilterModule(object):
    def filters(self):
        return {
            "cluster_node": _wrap(cluster_node, "cluster_node"),
            "node_reports": node_reports,
            "cluster_pods": _wrap(cluster_pods, "cluster_pods"),
            "node_address": _wrap(node_address, "node_address"),
            "selector_matches": _wrap(_cluster.selector_matches, "selector_matches"),
            "nth_address": nth_address,
            "veth_name": veth_name,
            "stable_mac": stable_mac,
            "same_subnet": same_subnet,
            "pod_entries": pod_entries,
            "pod_ips": pod_ips,
            "served_pods": served_pods,
            "vtep_peer": vtep_peer,
            "direct_route": direct_route,
            "tunnel_route": tunnel_route,
        }
