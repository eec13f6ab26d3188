# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's Services for the roles: v1 Services with their clusterIP / nodePorts and the
EndpointSlices, as kube-proxy reads them (plugins/module_utils/cluster.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import service_proxy as _service_proxy
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests


def cluster_services(objects, hosts=None, service_cidr=_cluster.DEFAULT_SERVICE_CIDR,
                     node_port_range=_cluster.DEFAULT_NODE_PORT_RANGE, reports=None, manifests=None):
    """The services of the whole cluster, the same on every node::

        objects | podnet.fabric.cluster_services(groups['k8s_cluster'], '10.96.0.0/12', '30000-32767',
                                                 groups['k8s_cluster'] | podnet.fabric.node_reports(hostvars))

    returns ``{"services": [...], "endpoint_slices": [...], "report": {"services": {...}}}``:
    what ``kubeproxy.build_ruleset`` takes, and what each node writes back into its report so that
    clusterIPs and nodePorts never move (see ``cluster.service_model``). ``manifests``: paths of
    manifest files or directories whose objects come before ``objects``."""
    try:
        return _cluster.cluster_services(_manifests.objects(objects, manifests),
                                         list(hosts) if hosts is not None else None,
                                         service_cidr, node_port_range, dict(reports or {}))
    except (_cluster.ClusterError, _manifests.ManifestError) as exc:
        raise AnsibleFilterError("cluster_services: %s" % exc)


def service_proxy_node(objects, me, hosts, reports=None, settings=None, manifests=None):
    """What podnet.fabric.service_proxy applies on node ``me``::

        objects | podnet.fabric.service_proxy_node(inventory_hostname, groups['nodes'], reports,
                                                   {'cluster_cidr': '10.244.0.0/16'})

    returns ``{"ruleset": ..., "sysctls": {...}, "report": {...}, "counts": {...}}``: kube-proxy's
    ruleset for the node plus its pods' hostPorts (CNI portmap) as one nat_rule ``ruleset``, the
    route_localnet settings they need, and the node's service report (see
    plugins/module_utils/service_proxy.py). ``manifests``: as for ``cluster_services``."""
    try:
        return _service_proxy.node_proxy(_manifests.objects(objects, manifests), me, list(hosts or []),
                                         dict(reports or {}), dict(settings or {}))
    except (_cluster.ClusterError, FabricError, _manifests.ManifestError) as exc:
        raise AnsibleFilterError("service_proxy_node: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {
            "cluster_services": cluster_services,
            "service_proxy_node": service_proxy_node,
        }
