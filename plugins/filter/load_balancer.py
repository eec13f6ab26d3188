# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layer-2 load balancer for the roles (plugins/module_utils/load_balancer.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import load_balancer as _load_balancer
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests


def load_balancer_node(objects, me, hosts, reports=None, settings=None, manifests=None):
    """What podnet.fabric.load_balancer applies on node ``me``::

        objects | podnet.fabric.load_balancer_node(inventory_hostname, groups['nodes'], reports,
                                                   {'mode': 'vrrp'}, manifests=paths)

    returns ``{"vips", "interfaces", "pools", "keepalived", "instances", "announcements"}`` (see
    plugins/module_utils/load_balancer.py)."""
    try:
        return _load_balancer.node_plan(_manifests.objects(objects, manifests), me, list(hosts or []),
                                        dict(reports or {}), dict(settings or {}))
    except (_cluster.ClusterError, FabricError, _manifests.ManifestError) as exc:
        raise AnsibleFilterError("load_balancer_node: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"load_balancer_node": load_balancer_node}
