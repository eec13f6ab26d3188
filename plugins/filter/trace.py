# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/trace.yml's controller side: the hosts' states in one map, and the packet a user's
names stand for (plugins/module_utils/trace/resolve.py does the work)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.trace import resolve as _resolve


def trace_states(hosts, hostvars, var="trace_read"):
    """``{name: state}`` of every host in ``hosts`` and of the namespaces each read::

        ansible_play_hosts | podnet.fabric.trace_states(hostvars, 'trace_read')

    ``var`` is the variable each host registered the podnet.fabric.trace task (``return_state``) in.
    A state's ``host`` becomes the inventory host, so the trace knows where to run and which
    namespaces share a machine (a pod's veth and its node's bridge)."""
    out = {}
    for host in hosts:
        result = (hostvars.get(host) or {}).get(var)
        if not isinstance(result, dict) or "state" not in result:
            raise AnsibleFilterError("trace_states: %s has no state in %s (did the trace task run there?)" % (host, var))
        for name, state in [(host, result["state"])] + sorted((result.get("states") or {}).items()):
            if name in out:
                raise AnsibleFilterError("trace_states: %s was read twice (on %s and %s)" % (name, out[name]["host"], host))
            out[name] = dict(state, name=name, host=host)
    return out


def trace_request(states, source, destination, protocol="tcp", port=None, via=None):
    """The trace module's arguments for a packet named the way users name things::

        states | podnet.fabric.trace_request('default/client-1', 'web.default.svc.cluster.local')

    returns ``{"name", "host", "netns", "packet": {src, dst, proto, dport, iif}, "peers": [...],
    "resolved": [how each name was resolved]}`` (see plugins/module_utils/trace/resolve.py)."""
    try:
        return _resolve.request(dict(states or {}), source, destination, protocol, port, via)
    except FabricError as exc:
        raise AnsibleFilterError(str(exc))


FLOW_KEYS = ("from", "to", "protocol", "port", "via", "endpoint", "nexthop")


def trace_requests(states, flows):
    """:func:`trace_request` for each flow of a list (``{from, to, protocol?, port?, via?,
    endpoint?, nexthop?}``), in order; each plan keeps the flow's ``endpoint`` and ``nexthop``
    (default first)."""
    out = []
    for i, flow in enumerate(flows or []):
        if not isinstance(flow, dict) or not flow.get("from") or not flow.get("to"):
            raise AnsibleFilterError("trace: flow %d needs from and to (-e trace_from=... -e trace_to=..., or trace_flows)"
                                     " - got %r" % (i + 1, flow))
        unknown = sorted(set(flow) - set(FLOW_KEYS))
        if unknown:
            raise AnsibleFilterError("trace_requests: flow %d: unknown key(s) %s (known: %s)" % (
                i + 1, ", ".join(unknown), ", ".join(FLOW_KEYS)))
        plan = trace_request(states, flow["from"], flow["to"], flow.get("protocol") or "tcp", flow.get("port"),
                             flow.get("via"))
        plan["endpoint"] = str(flow.get("endpoint") or "first")
        plan["nexthop"] = str(flow.get("nexthop") or "first")
        plan["flow"] = "%s -> %s" % (flow["from"], flow["to"])
        out.append(plan)
    return out


class FilterModule(object):
    def filters(self):
        return {
            "trace_states": trace_states,
            "trace_request": trace_request,
            "trace_requests": trace_requests,
        }
