#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: trace
short_description: Show where a packet goes on a node and why (iptables rules, routes, VXLAN), read-only
version_added: "0.3.0"
description:
  - Reads the live state of the node, or of the network namespace O(netns), and walks one packet
    (the first packet of a connection) through it the way netfilter and IPv4 routing do; nothing
    is changed, in check mode or not.
  - The state is read through the collection's layers, never by parsing C(ip) output -
    C(iptables-save) of the flavour in use (legacy or nft, detected as the nat_rule module does),
    and through netlink the routes of every table, the addresses, the neighbours, the VXLAN
    devices and their FDB entries, and C(net.ipv4.ip_forward).
  - The packet passes raw, mangle, nat PREROUTING (or, locally generated, the routing decision and
    the OUTPUT chains), the routing decision (local, main, default tables; longest prefix; ECMP
    lists every next hop and follows the first), INPUT or FORWARD, and mangle/nat POSTROUTING.
    Every rule it matches is one hop, named by table, chain, rule number and the rule as
    C(iptables-save) prints it, with its kube-proxy comment; a kube-proxy endpoint choice
    (C(-m statistic)) lists every endpoint with its chance and follows the one O(endpoint)
    selects; session affinity (C(-m recent)) is noted. A route through a VXLAN device is
    encapsulated as the kernel does (neighbour -> MAC -> FDB -> remote VTEP, VNI, port) and the
    outer packet is traced on.
  - The trace stops with its reason at a DROP, a REJECT (a service without endpoints), no route,
    or a rule it cannot evaluate (an unknown match is reported as
    C(cannot evaluate -m NAME in TABLE CHAIN rule N), never guessed).
  - With O(peers) (the RV(state) other nodes returned with O(return_state)) the trace goes on
    across nodes - to the node holding the next hop, or through the VXLAN tunnel to the node holding
    the outer destination, with the inner packet arriving on its VXLAN device.
author:
  - podnet.fabric developers (@podnet)
options:
  dst:
    description:
      - The packet's destination address (a ClusterIP, a node address, a pod, a VIP ...).
      - Omitted, nothing is traced and only the state is read (O(return_state) must be true) - the
        first step of playbooks/trace.yml, which resolves names (a Service, a DNS name, a pod, a
        NodePort) from every host's state on the controller (filter P(podnet.fabric.trace_request#filter)).
    type: str
  dport:
    description: Destination port (required for tcp, udp and sctp).
    type: int
  protocol:
    description: The packet's protocol.
    type: str
    choices: [tcp, udp, sctp, icmp]
    default: tcp
  src:
    description:
      - The packet's source address. For a locally generated packet it may be omitted; the
        source the kernel would pick for the route is used.
    type: str
  sport:
    description: Source port (only rules matching on it need it).
    type: int
  iif:
    description:
      - The interface the packet arrives on (a pod's packet arrives on the bridge, for example
        C(cni0)). Omit for a packet generated on the node itself.
    type: str
  mark:
    description: The packet's firewall mark when it enters.
    type: int
    default: 0
  endpoint:
    description:
      - Which branch of a random endpoint choice the trace follows - C(first), C(last), or an
        endpoint C(IP) or C(IP:PORT) among the choices (every choice is listed either way).
    type: str
    default: first
  nexthop:
    description:
      - Which next hop of an ECMP route the trace follows - C(first), C(last), or a next hop's
        address (or device) among them (every next hop is listed either way). The kernel hashes
        each flow onto one; an address that is not among a route's next hops leaves that route at
        its first.
    type: str
    default: first
  name:
    description: The node's name in the trace (default the namespace name, else the host name).
    type: str
  peers:
    description:
      - Other nodes' states by node name (each the RV(state) this module returned there with
        O(return_state)), to follow the packet beyond this node.
    type: dict
    default: {}
  return_state:
    description: Also return the state read (RV(state)), to pass to another node's O(peers).
    type: bool
    default: false
  lookup:
    description:
      - A DNS name to look up first the way the packet's source would - from inside O(netns),
        through that namespace's resolv.conf (C(/etc/netns/NETNS/resolv.conf) as C(ip netns exec)
        uses it, else C(/etc/resolv.conf)), each search domain tried first for a name with fewer
        dots than C(ndots) - and whose query packet (udp/53 to the first nameserver) is traced as
        well. RV(lookup) has the names tried and the A records answered, and notes when the
        answer is not O(dst). This sends real DNS queries (a read, also in check mode).
    type: str
  host:
    description:
      - This machine's name in the trace (default its host name). The namespaces of one machine
        share it, which is how a pod's veth is matched to its node's bridge port; give the
        inventory name when O(peers) were read under it (playbooks/trace.yml does).
    type: str
  namespaces:
    description:
      - Other network namespaces of this host to read as well, by the name they get in the trace
        (for example a pod's C(default/web-1) -> its namespace C(pod-default-web-1)); returned in
        RV(states) with O(return_state). A missing namespace is skipped and listed in RV(missing).
    type: dict
    default: {}
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.IPTABLES_READ
attributes:
  check_mode:
    support: full
    details: Read-only; the result is the same in check mode.
  diff_mode:
    support: none
notes:
  - Only the first packet of a connection is traced (conntrack state NEW); replies and established
    connections are not. IPv4 only. Policy routing rules (C(ip rule)) are not read - the default
    rules are assumed. Bridged traffic (br_netfilter, C(-m physdev)) is not modelled.
  - Requires pyroute2 (Debian C(python3-pyroute2)) and iptables on the node.
"""

EXAMPLES = r"""
- name: Where does a pod's DNS query go?
  podnet.fabric.trace:
    src: 10.244.1.5
    dst: 10.96.0.10
    protocol: udp
    dport: 53
    iif: cni0
  register: dns_trace

- name: Print it, one line per hop
  ansible.builtin.debug:
    var: dns_trace.text

- name: Follow the endpoint 10.244.3.10 on to node3 (its state read earlier with return_state)
  podnet.fabric.trace:
    src: 10.244.1.5
    dst: 10.96.0.10
    protocol: udp
    dport: 53
    iif: cni0
    endpoint: 10.244.3.10
    peers:
      node3: "{{ hostvars['node3'].node3_trace.state }}"
"""

RETURN = r"""
verdict:
  description: How the trace ends - delivered, forwarded, dropped, rejected, no route, cannot evaluate.
  returned: when O(dst) is given
  type: str
  sample: forwarded
reason:
  description: Why, in one line (the last node's).
  returned: when O(dst) is given
  type: str
  sample: out of flannel.1 to 10.244.3.0
hops:
  description:
    - Every hop in order, each with C(node) and C(kind) (rule, policy, return, route, encap, bridge);
      C(outer) is true on the hops of the VXLAN packet carrying the traced one.
    - A bridge hop is the step between a node's bridge and a pod's veth on the same host (with
      O(namespaces) or peers read there) - C(dev) (the bridge), C(port) (the node's veth), C(peer)
      (the pod's end), C(mac), C(direction) in or out.
    - A rule hop has C(table), C(chain), C(rule_number), C(rule) (as iptables-save prints it),
      C(comment), C(target), C(verdict) (for example C(jump KUBE-SVC-...), C(DNAT to 10.244.1.10:53),
      C(REJECT icmp-port-unreachable)); the rule of an endpoint choice adds C(probability),
      C(chance) and C(alternatives) (each C(rule_number), C(chance), C(leads_to)); an affinity
      rule adds C(affinity).
  returned: when O(dst) is given
  type: list
  elements: dict
traces:
  description: One entry per node passed, with C(node), C(verdict), C(reason), C(hops), C(packet) (as it left) and C(exit).
  returned: when O(dst) is given
  type: list
  elements: dict
text:
  description: The trace as human-readable lines, one per hop, then each node's outcome.
  returned: when O(dst) is given
  type: list
  elements: str
  sample:
    - 'node1 nat PREROUTING #1 -> jump KUBE-SERVICES: -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    - 'node1 => forwarded: out of flannel.1 to 10.244.3.0'
summary:
  description:
    - The trace as the seeds tell it, one line per step that decides the path - NAT, the endpoint
      choice with every alternative, affinity, accept/drop/reject, routes, bridge ports,
      encapsulation - then each node's outcome (RV(text) has every rule passed).
  returned: when O(dst) is given
  type: list
  elements: str
iptables_flavour:
  description: The iptables flavour read.
  returned: always
  type: str
  sample: nft
state:
  description:
    - The state read (iptables-save text, routes, addresses, neighbours, fdb, vxlan, links, ip_forward,
      recent lists), with C(host) (this host's name) and C(netns).
  returned: when O(return_state) is true
  type: dict
states:
  description: The states of O(namespaces) by their names, each like RV(state).
  returned: when O(return_state) is true
  type: dict
lookup:
  description:
    - With O(lookup) - C(name), C(resolv_conf), C(nameserver), C(search), C(ndots), C(tried) (each
      C(qname), C(rcode), C(answers)), C(answers) and C(qname) (the name answered), C(error), C(note)
      (the answer is not O(dst)), C(trace) (the query packet's trace - verdict, reason, hops,
      traces) and C(text).
  returned: when O(lookup) is given
  type: dict
missing:
  description: Names in O(namespaces) whose namespace does not exist.
  returned: when O(return_state) is true
  type: list
  elements: str
"""

import os
import shutil
import socket

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module
from ansible_collections.podnet.fabric.plugins.module_utils.trace import dns, engine, live

ARGUMENT_SPEC = dict(
    dst=dict(type="str"),
    dport=dict(type="int"),
    protocol=dict(type="str", choices=["tcp", "udp", "sctp", "icmp"], default="tcp"),
    src=dict(type="str"),
    sport=dict(type="int"),
    iif=dict(type="str"),
    mark=dict(type="int", default=0),
    endpoint=dict(type="str", default="first"),
    nexthop=dict(type="str", default="first"),
    name=dict(type="str"),
    peers=dict(type="dict", default={}),
    return_state=dict(type="bool", default=False),
    namespaces=dict(type="dict", default={}),
    host=dict(type="str"),
    lookup=dict(type="str"),
    iptables_flavour=dict(type="str", choices=["auto", "nft", "legacy"], default="auto"),
)


def _which(name):
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


def _read(ctx, name, netns, host, flavour):
    state, found = live.read_state(name, netns, lambda argv: ctx.run(argv, netns=netns or ""), _which, flavour)
    state.update(host=host, netns=netns or None)
    return state, found


def _lookup(p, netns, states, name, packet):
    """The DNS lookup the source would make, and its query packet's trace."""
    found = dns.lookup(p["lookup"], netns)
    text = dns.lines(found)
    if found.get("nameserver"):
        query = dict(packet, dst=found["nameserver"], proto="udp", dport=53, sport=None)
        traces = engine.trace_path(states, name, query, endpoint=p["endpoint"], nexthop=p["nexthop"])
        found["trace"] = {"verdict": traces[-1]["verdict"], "reason": traces[-1]["reason"],
                          "hops": [h for t in traces for h in t["hops"]], "traces": traces}
        text += ["dns: " + line for line in engine.summary_lines(traces, query)]
    if found.get("answers") and packet["dst"] not in found["answers"]:
        found["note"] = "the DNS answers %s for %s, the trace follows %s" % (
            ", ".join(found["answers"]), found["qname"], packet["dst"])
        text.append("dns: NOTE " + found["note"])
    found["text"] = text
    return found


def build(ctx):
    p = ctx.params
    host = p["host"] or socket.gethostname()
    name = p["name"] or ctx.netns or host
    if name in p["peers"]:
        raise FabricError("trace: peers holds this node's own name %s" % name)
    if p["dst"] is None and not p["return_state"]:
        raise FabricError("trace: dst is required (omit it only to read the state, with return_state)")
    for other, netns in sorted(p["namespaces"].items()):
        if other == name or other in p["peers"]:
            raise FabricError("trace: namespaces and peers (or name) both hold %s" % other)
        if not netns:
            raise FabricError("trace: namespaces %s: no namespace name" % other)
    state, flavour = _read(ctx, name, ctx.netns, host, p["iptables_flavour"])
    extra, missing = {}, []
    for other, netns in sorted(p["namespaces"].items()):
        if ctx.netns_missing(netns):
            missing.append(other)
            continue
        extra[other] = _read(ctx, other, netns, host, p["iptables_flavour"])[0]
    result = {"iptables_flavour": flavour}
    if p["dst"] is not None:
        packet = {"src": p["src"], "dst": p["dst"], "proto": p["protocol"], "dport": p["dport"], "sport": p["sport"],
                  "iif": p["iif"], "mark": p["mark"]}
        states = dict(p["peers"])
        states.update(extra)
        states[name] = state
        traces = engine.trace_path(states, name, packet, endpoint=p["endpoint"], nexthop=p["nexthop"])
        if p["lookup"]:
            result["lookup"] = _lookup(p, ctx.netns, states, name, packet)
        result.update({
            "verdict": traces[-1]["verdict"], "reason": traces[-1]["reason"],
            "hops": [h for t in traces for h in t["hops"]], "traces": traces,
            "text": engine.text_lines(traces, packet), "summary": engine.summary_lines(traces, packet),
        })
    if p["return_state"]:
        result.update(state=state, states=extra, missing=missing)
    return Plan(), result


def main():
    run_module(ARGUMENT_SPEC, build, owner=False)


if __name__ == "__main__":
    main()
