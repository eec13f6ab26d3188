# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a packet goes on a node and why: netfilter + routing + VXLAN, from plain data (pure).

    from ansible_collections.podnet.fabric.plugins.module_utils.trace import trace_node, text_lines
    result = trace_node({"name": "node1", "iptables": save_text, "routes": routes, ...},
                        {"src": "10.244.1.5", "dst": "10.96.0.10", "proto": "udp", "dport": 53,
                         "iif": "cni0"}, endpoint="first")
    print("\\n".join(text_lines([result])))

- :mod:`.state`       a node's state (iptables-save text, routes, addresses, neighbours, FDB, VXLAN).
- :mod:`.rules`       one rule: its matches evaluated against a packet (or "cannot evaluate").
- :mod:`.engine`      the walk: hooks, chains, the dice, routing, encapsulation; chained over nodes.
- :mod:`.kube_proxy`  kube-proxy rulesets as iptables-save text, and kube-proxy's fan-out tracer.
- :mod:`.live`        reading a live node's state through the ruleset and netlink layers.
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.trace.engine import (  # noqa: F401
    Packet, hop_text, text_lines, trace_node, trace_path,
)
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import NodeState  # noqa: F401
