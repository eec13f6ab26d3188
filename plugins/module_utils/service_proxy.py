# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the service proxy applies on one node (pure: objects and node reports in, one plan out).

The cluster's Services are computed once from the objects (:func:`cluster.service_model`: the
same clusterIPs, nodePorts and EndpointSlices on every node), then turned into the node's
iptables rules the two ways a Kubernetes node has them:

- kube-proxy's ruleset (:func:`kubeproxy.build_ruleset`, iptables mode) for this node's view:
  its name (which endpoints are local), its address, the cluster CIDR it treats as local traffic;
- the hostPorts of this node's pods, as the CNI portmap plugin writes them
  (:func:`kubeproxy.hostport.build_hostports`), for the pods that are wired (that have an IP).

Both go into one ``ruleset`` text for one podnet.fabric.nat_rule task (kube-proxy's chains are
``KUBE-*``, portmap's ``CNI-*``: no name is shared), so nat_rule rewrites only the chains that
changed: an endpoint change rewrites that service's chains and nothing else::

    plan = node_proxy(objects, "node1", ["node1", "node2"], reports, {"cluster_cidr": "10.244.0.0/16"})
    plan["ruleset"]     # nat_rule's ruleset parameter
    plan["sysctls"]     # {"net.ipv4.conf.all.route_localnet": "1", ...}: nat_rule's sysctls
    plan["report"]      # {"services": {...}}: what the node writes back so that addresses never move
    plan["report_changed"]  # the report differs from the one the node gave (it must be written)

Bad input is a :class:`cluster.ClusterError` (or FabricError from the rule builders), one line
naming the object.
"""
from __future__ import annotations

import gc
import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.hostport import build_hostports, pod_mappings

ROUTE_LOCALNET_ALL = "net.ipv4.conf.all.route_localnet"

DEFAULTS = {
    "service_cidr": _cluster.DEFAULT_SERVICE_CIDR,   # kube-apiserver --service-cluster-ip-range
    "node_port_range": _cluster.DEFAULT_NODE_PORT_RANGE,
    "cluster_cidr": "",              # kube-proxy --cluster-cidr: traffic from it is not masqueraded
    "masquerade_bit": 14,            # --iptables-masquerade-bit: mark 0x4000
    "masquerade_all": False,         # --masquerade-all
    "random_fully": True,            # MASQUERADE --random-fully
    "localhost_nodeports": True,     # --iptables-localhost-nodeports (sets all.route_localnet)
    "nodeport_addresses": [],        # --nodeport-addresses CIDRs; [] = every local address
    "hostports": True,               # map containers[].ports[].hostPort (CNI portmap)
    "bridge": "cni0",                # portmap's route_localnet interface
    "network": "podnet",             # the CNI network name (pod_network's IPAM network)
    "netns_prefix": "pod-",          # the pods' namespaces: portmap's container ids
}


def settings_with_defaults(settings):
    """The settings with defaults filled; an unknown key is an error (a typo would be ignored)."""
    out = dict(DEFAULTS)
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise _cluster.ClusterError("service proxy: unknown setting(s) %s (known: %s)"
                                    % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    out.update(settings or {})
    return out


def node_proxy(objects, me, hosts, reports=None, settings=None):
    """Node ``me``'s plan: ``{"ruleset", "sysctls", "report", "report_changed", "counts"}`` (see
    the module docstring). Python's cyclic garbage collector is paused meanwhile: the plan makes
    millions of small acyclic objects, and the collector walking a heap that grows with them is
    what bent the cost per service upwards (bench/service_proxy.py: 1.47x per service at 5,000 vs
    1,000 with it, 1.11x without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _node_proxy(objects, me, hosts, reports, settings)
    finally:
        if enabled:
            gc.enable()


def _node_proxy(objects, me, hosts, reports, settings):
    settings = settings_with_defaults(settings)
    reports = dict(reports or {})
    cluster = _cluster.parse_objects(objects, hosts)
    node = cluster.node(me)
    model = _cluster.service_model(cluster, settings["service_cidr"], settings["node_port_range"], reports)
    ruleset = build_ruleset(model["services"], model["endpoint_slices"], node_view(node, settings))
    pods = wired_hostport_pods(cluster, me, reports, settings["netns_prefix"]) if settings["hostports"] else []
    hostports = build_hostports(pods, {"bridge": settings["bridge"], "network": settings["network"],
                                       "pod_cidr": _cluster.reported_cidr(reports.get(me)) or ""})
    sysctls = dict(hostports.sysctls)
    if settings["localhost_nodeports"] and nodeports_on_localhost(settings["nodeport_addresses"]):
        # what kube-proxy sets at start for localhost NodePorts; the kernel ORs "all" with each
        # interface's route_localnet, so the bridge's own (portmap's) is not needed then
        sysctls = {ROUTE_LOCALNET_ALL: "1"}
    chains = ruleset.nat_rule_params()["chains"] + hostports.nat_rule_params()["chains"]
    return {
        "ruleset": ruleset_text(chains, ruleset.jumps + hostports.jumps),
        "sysctls": dict(sorted(sysctls.items())),
        "report": model["report"],
        # compared here, not in the role: a Jinja comparison of two large reports costs seconds
        "report_changed": any((reports.get(me) or {}).get(key) != value for key, value in model["report"].items()),
        "counts": {"services": len(model["services"]), "endpoint_slices": len(model["endpoint_slices"]),
                   "chains": len(chains), "rules": sum(len(c["rules"]) for c in chains),
                   "hostport_pods": len(pods)},
    }


def node_view(node, settings):
    """kube-proxy's view of its own node (``kubeproxy.NodeView`` keys) from the Node and the settings."""
    return {"name": node["name"], "node_ip": node["ip"], "ips": [node["ip"]],
            "cluster_cidr": settings["cluster_cidr"], "masquerade_bit": int(settings["masquerade_bit"]),
            "masquerade_all": bool(settings["masquerade_all"]), "random_fully": bool(settings["random_fully"]),
            "localhost_nodeports": bool(settings["localhost_nodeports"]),
            "nodeport_addresses": list(settings["nodeport_addresses"] or [])}


def nodeports_on_localhost(nodeport_addresses):
    """kube-proxy's ContainsIPv4Loopback: NodePorts answer on 127.0.0.1 unless --nodeport-addresses
    leaves loopback out."""
    if not nodeport_addresses:
        return True
    loopback = ipaddress.ip_address("127.0.0.1")
    for cidr in nodeport_addresses:
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError as exc:
            raise _cluster.ClusterError("service proxy: nodeport_addresses entry %r is not a network: %s" % (cidr, exc))
        if net.version == 4 and loopback in net:
            return True
    return False


def wired_hostport_pods(cluster, me, reports, netns_prefix):
    """The node's pods that declare hostPorts and have an IP (``build_hostports`` entries), in
    manifest order. A pod without an IP is not wired yet: portmap maps it once it is (next run);
    its hostPorts are checked all the same (a port two pods claim is an error before anything
    is applied)."""
    out = []
    claims = {}
    for pod in cluster.pods:
        if pod["nodeName"] != me or not any(p.get("hostPort") for p in pod["ports"]):
            continue
        pod_mappings({"id": pod["id"], "ports": pod["ports"]}, claims)   # two pods on one hostPort: an error now
        ip = _cluster.pod_ip(pod, reports)
        if ip is None or not _cluster.reported_cidr(reports.get(me)):
            continue
        out.append({"id": pod["id"], "netns": _cluster.netns_name(netns_prefix, pod["namespace"], pod["name"]),
                    "ip": ip, "ports": pod["ports"]})
    return out


def ruleset_text(chains, jumps):
    """nat_rule's ``ruleset``: per table, each chain's ``:CHAIN`` line and rules, then the jumps
    (``-I`` for position first, ``-A`` for last), tables in a fixed order."""
    tables = []
    for item in list(chains) + list(jumps):
        if item["table"] not in tables:
            tables.append(item["table"])
    out = []
    for table in sorted(tables, key=lambda t: ("filter", "nat").index(t) if t in ("filter", "nat") else 2):
        out.append("*" + table)
        for chain in chains:
            if chain["table"] == table:
                out.append(":%s - [0:0]" % chain["name"])
                out.extend("-A %s %s" % (chain["name"], rule) for rule in chain["rules"])
        out.extend("%s %s %s" % ("-A" if jump.get("position") == "last" else "-I", jump["chain"], jump["rule"])
                   for jump in jumps if jump["table"] == table)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
