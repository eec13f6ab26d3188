# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network as a picture for playbooks/show.yml (plugins/module_utils/show.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils import show as _show


def network_dot(views, name="podnet"):
    """{host: the RV(view) podnet.fabric.node_view returned there} -> Graphviz DOT text::

        dict(groups['nodes'] | zip(groups['nodes'] | map('extract', hostvars, ['node_view', 'view'])))
        | podnet.fabric.network_dot

    A cluster per node (its bridge and pods), VXLAN tunnels between VTEPs, BGP sessions, host-gw
    routes and VIPs with their owner as edges."""
    if not isinstance(views, dict):
        raise AnsibleFilterError("network_dot: expects {host: view}, got %s" % type(views).__name__)
    try:
        return _show.dot(dict((str(k), v) for k, v in views.items()), name=name)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("network_dot: not a node_view view: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"network_dot": network_dot}
