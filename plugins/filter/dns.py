# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster DNS for the roles (plugins/module_utils/cluster_dns.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import cluster_dns as _cluster_dns
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests


def cluster_dns_node(objects, me, hosts, reports=None, settings=None, manifests=None):
    """What podnet.fabric.cluster_dns applies on node ``me``::

        objects | podnet.fabric.cluster_dns_node(inventory_hostname, groups['nodes'], reports,
                                                 {'upstreams': ['172.31.100.10']})

    returns ``{"resolv_confs": [...], "servers": [...], "nameserver": ..., "counts": {...}}``
    (see ``cluster_dns.node_dns``); ``manifests``: paths whose objects come before ``objects``."""
    try:
        return _cluster_dns.node_dns(_manifests.objects(objects, manifests), me, list(hosts or []),
                                     dict(reports or {}), dict(settings or {}))
    except (_cluster.ClusterError, FabricError, _manifests.ManifestError) as exc:
        raise AnsibleFilterError("cluster_dns_node: %s" % exc)


def without_selected(pods, selector):
    """The pods (entries with ``labels``) a label selector (a map of equalities) does not pick;
    all of them for an empty selector."""
    if not selector:
        return list(pods or [])
    try:
        return [pod for pod in pods or [] if not _cluster.selector_matches(selector, pod.get("labels") or {})]
    except _cluster.ClusterError as exc:
        raise AnsibleFilterError("without_selected: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {
            "cluster_dns_node": cluster_dns_node,
            "without_selected": without_selected,
        }
