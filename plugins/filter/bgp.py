# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's BGP speaker for the bgp role (plugins/module_utils/bgp.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import bgp as _bgp
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests


def bgp_node(objects, me, hosts, reports=None, settings=None, manifests=None):
    """What podnet.fabric.bgp applies on node ``me``::

        objects | podnet.fabric.bgp_node(inventory_hostname, groups['nodes'], reports,
                                         {'cluster_cidr': '10.244.0.0/16'}, manifests=paths)

    returns ``{"enabled", "router_id", "as_number", "pod_cidr", "peers", "originate", "export",
    "program", "route_reflector", "announcements"}`` (see plugins/module_utils/bgp.py)."""
    try:
        return _bgp.node_plan(_manifests.objects(objects, manifests), me, list(hosts or []),
                              dict(reports or {}), dict(settings or {}))
    except (_cluster.ClusterError, _manifests.ManifestError, ValueError) as exc:
        raise AnsibleFilterError("bgp_node: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"bgp_node": bgp_node}
