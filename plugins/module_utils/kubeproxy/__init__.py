# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube-proxy's iptables mode as a pure function: Services + EndpointSlices + node -> ruleset.

    from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset
    rs = build_ruleset(services, endpoint_slices, {"name": "node1", "node_ip": "172.31.1.11",
                                                   "cluster_cidr": "10.244.0.0/16"})
    rs.restore_text()        # what kube-proxy feeds iptables-restore --noflush
    rs.nat_rule_params()     # {"chains": [...], "jumps": [...]} for podnet.fabric.nat_rule

See :mod:`.rules` for the ruleset and :mod:`.model` for how the objects are read.
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.model import (  # noqa: F401
    Endpoint, ServicePort, categorize, endpoints_map, service_ports,
)
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy.rules import (  # noqa: F401
    JUMPS, Chain, NodeView, Ruleset, build_ruleset,
)
