# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Walk one packet through one node the way netfilter and IPv4 routing do (pure).

:func:`trace_node` follows the first packet of a connection (conntrack NEW) through the hooks in
the kernel's order -- arriving: raw, mangle, nat PREROUTING, the routing decision, then either
mangle/filter/nat INPUT (local delivery) or mangle/filter FORWARD and mangle/nat POSTROUTING;
locally generated: routing, raw/mangle/nat/filter OUTPUT (re-routing after a DNAT), mangle/nat
POSTROUTING, and for a local destination back in through raw/mangle PREROUTING and mangle/filter
INPUT (the NAT hooks are not consulted again for a connection that already has its bindings). A
route through a VXLAN device encapsulates: the next hop's neighbour gives the MAC, the device's
FDB the remote VTEP, and the outer UDP packet takes the output path itself.

Every matched rule is one hop (table, chain, rule number, the rule as iptables-save prints it,
its comment, what it did); a ``-m statistic`` choice lists every alternative with its chance and
the endpoint it leads to, and follows the one chosen by ``endpoint`` ("first", "last", or an
"ip" / "ip:port" among the alternatives). The trace stops with a reason on DROP, REJECT, no
route, or a match it cannot evaluate.

:func:`trace_path` chains node traces: a packet forwarded to another node's address, or
encapsulated towards it, goes on there (the inner packet, on the VXLAN device that decapsulates
it).
"""
from __future__ import annotations

import copy

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.trace import rules as rl
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import TABLE_NAMES, NodeState

PROTOCOLS = ("tcp", "udp", "icmp", "sctp")
DEFAULT_VXLAN_PORT = 8472     # the Linux default when a device is created without dstport
MAX_JUMPS = 1000


class Packet(object):
    """The packet being traced, and what netfilter knows about its connection."""

    __slots__ = ("src", "dst", "proto", "sport", "dport", "iif", "oif", "mark", "dnat", "snat")

    def __init__(self, src, dst, proto="tcp", dport=None, sport=None, iif=None, mark=0):
        self.src, self.dst, self.proto = src, dst, proto
        self.sport, self.dport = sport, dport
        self.iif, self.oif, self.mark = iif, None, mark
        self.dnat = self.snat = False

    @classmethod
    def from_dict(cls, data):
        if isinstance(data, Packet):
            return data
        unknown = set(data) - {"src", "dst", "proto", "protocol", "dport", "sport", "iif", "mark"}
        if unknown:
            raise FabricError("packet: unknown key(s) %s" % ", ".join(sorted(unknown)))
        if not data.get("dst"):
            raise FabricError("packet: dst is required")
        proto = (data.get("proto") or data.get("protocol") or "tcp").lower()
        if proto not in PROTOCOLS:
            raise FabricError("packet: protocol %r is not one of %s" % (proto, ", ".join(PROTOCOLS)))
        dport = data.get("dport")
        if proto in ("tcp", "udp", "sctp") and dport is None:
            raise FabricError("packet: a %s packet needs dport" % proto)
        return cls(data.get("src"), data["dst"], proto, int(dport) if dport is not None else None,
                   int(data["sport"]) if data.get("sport") is not None else None, data.get("iif"),
                   int(data.get("mark") or 0))

    def ctstates(self):
        out = {"NEW"}
        if self.dnat:
            out.add("DNAT")
        if self.snat:
            out.add("SNAT")
        return out

    def copy(self):
        return copy.copy(self)

    def to_dict(self):
        return {"src": self.src, "dst": self.dst, "proto": self.proto, "sport": self.sport, "dport": self.dport,
                "iif": self.iif, "oif": self.oif, "mark": "0x%x" % self.mark}

    def describe(self):
        ports = ""
        if self.dport is not None:
            ports = ":%d" % self.dport
        return "%s %s -> %s%s" % (self.proto, self.src or "?", self.dst, ports)


class Stop(Exception):
    """The packet goes no further: ``verdict`` (dropped, rejected, no route, cannot evaluate) and why."""

    def __init__(self, verdict, reason):
        Exception.__init__(self, reason)
        self.verdict = verdict
        self.reason = reason


class _Frame(object):
    __slots__ = ("chain", "rules", "index", "builtin", "dice")

    def __init__(self, chain, rules, builtin):
        self.chain, self.rules, self.index, self.builtin = chain, rules, 0, builtin
        self.dice = None      # index of the statistic rule chosen in this visit


class _Env(object):
    """What rule evaluation asks of the node: address types and affinity history."""

    def __init__(self, state):
        self.state = state
        self.recent = state.recent
        self._types = {}

    def addr_type(self, ip):
        t = self._types.get(ip)
        if t is None:
            t = self._types[ip] = self.state.addr_type(ip)
        return t


class NodeTracer(object):
    """One trace through one node (see :func:`trace_node`)."""

    def __init__(self, state, endpoint="first", nexthop="first"):
        self.state = state
        self.nexthop = nexthop or "first"
        self.env = _Env(state)
        self.endpoint = endpoint if endpoint is not None else "first"
        self.hops = []
        self._last_chain = None

    # --- hops ------------------------------------------------------------------------------------

    def _hop(self, **fields):
        hop = dict(node=self.state.name, **fields)
        self.hops.append(hop)
        return hop

    # --- one hook: a built-in chain and the chains it jumps to ------------------------------------

    def hook(self, table, chain, pkt, record=True, route=None):
        """Run ``table chain`` for ``pkt``: "ACCEPT" (go on), or raise Stop."""
        verdict = self._walk(table, chain, pkt, record, route)
        if verdict == "DROP":
            raise Stop("dropped", "dropped in %s %s" % (table, self._last_chain))
        if verdict == "REJECT":
            raise Stop("rejected", "rejected in %s %s" % (table, self._last_chain))
        return verdict

    def _walk(self, table, chain, pkt, record, route):
        found = self.state.chain(table, chain)
        if found is None:
            return "ACCEPT"
        policy, rules = found
        stack = [_Frame(chain, rules, True)]
        base_policy = policy or "ACCEPT"
        steps = 0
        self._last_chain = chain
        while stack:
            frame = stack[-1]
            if frame.index >= len(frame.rules):
                stack.pop()
                if frame.builtin or not stack:
                    if record and (rules or base_policy != "ACCEPT"):
                        self._hop(kind="policy", table=table, chain=chain, verdict=base_policy)
                    return base_policy
                if record:
                    self._hop(kind="return", table=table, chain=frame.chain, verdict="return")
                continue
            i = frame.index
            frame.index += 1
            rule = frame.rules[i]
            where = rl.Where(table, frame.chain, i + 1)
            try:
                if rule.has_match("statistic") and frame.dice is None:
                    if rl.evaluate(rule, pkt, self.env, where, dice=None):
                        frame.dice = self._roll(table, frame, i, pkt, record, route)
                matched = rl.evaluate(rule, pkt, self.env, where,
                                      dice=lambda r, f=frame: f.dice is not None and f.rules[f.dice[0]] is r)
            except rl.CannotEvaluate as exc:
                raise Stop("cannot evaluate", str(exc))
            if not matched:
                continue
            steps += 1
            if steps > MAX_JUMPS:
                raise Stop("cannot evaluate", "more than %d rules matched in %s %s: a loop?" % (MAX_JUMPS, table, chain))
            self._last_chain = frame.chain
            hop = None
            if record:
                hop = self._hop(kind="rule", table=table, chain=frame.chain, rule_number=i + 1, rule=rule.text,
                                comment=rule.comment, target=rule.target)
                if frame.dice is not None and frame.rules[frame.dice[0]] is rule:
                    hop["probability"] = rl.probability(rule)
                    hop["chance"] = frame.dice[1]["chance"]
                    hop["alternatives"] = frame.dice[2]
                    if frame.dice[3]:
                        hop["note"] = frame.dice[3]
                recent = rl.recent_command(rule)
                if recent is not None:
                    hop["affinity"] = self._affinity_note(recent, pkt)
            verdict = self._target(table, frame, rule, pkt, stack, hop, route)
            if verdict is not None:
                if record:
                    hop["verdict"] = verdict if not isinstance(verdict, tuple) else verdict[1]
                if isinstance(verdict, tuple):
                    verdict = verdict[0]
                return verdict
        return base_policy

    def _affinity_note(self, recent, pkt):
        cmd, name, seconds = recent
        if cmd == "set":
            return ("session affinity: records %s in recent list %s; for %ss later connections from it go to this "
                    "endpoint" % (pkt.src, name, seconds if seconds else "ever"))
        return "session affinity: %s is in recent list %s (seen within %ss)" % (pkt.src, name, seconds)

    def _target(self, table, frame, rule, pkt, stack, hop, route):
        """Apply the rule's target. Returns None (next rule) or a verdict (a tuple: verdict, what was done)."""
        target = rule.target
        if target is None:
            if hop is not None:
                hop["verdict"] = "continue"
            return None
        sub = self.state.chain(table, target) if target not in rl.VERDICTS else None
        if sub is not None:
            new = _Frame(target, sub[1], False)
            if rule.goto:
                stack.pop()
            stack.append(new)
            if hop is not None:
                hop["verdict"] = ("goto " if rule.goto else "jump ") + target
            return None
        opts = rule.target_opts
        if target == "RETURN":
            if len(stack) == 1:
                frame.index = len(frame.rules)   # from the base chain: its policy decides
            else:
                stack.pop()                      # the caller goes on after its jump
            if hop is not None:
                hop["verdict"] = "return"
            return None
        if target in ("ACCEPT", "DROP"):
            return target
        if target == "REJECT":
            return ("REJECT", "REJECT " + " ".join(opts.get("--reject-with", ["icmp-port-unreachable"])))
        if target == "MARK":
            value, mask = rl._mark_pair(opts["--set-xmark"][0])  # pylint: disable=protected-access
            pkt.mark = (pkt.mark & ~mask & 0xFFFFFFFF) ^ value
            if hop is not None:
                hop["verdict"] = "mark 0x%x" % pkt.mark
            return None
        if target == "DNAT":
            dest = opts["--to-destination"][0]
            ip, port = (dest.split(":", 1) + [""])[:2]
            ip = ip.split("-", 1)[0]
            pkt.dst = ip
            if port:
                pkt.dport = int(port.split("-")[0])
            pkt.dnat = True
            return ("ACCEPT", "DNAT to %s" % dest)
        if target == "SNAT":
            src = opts["--to-source"][0].split(":")[0].split("-")[0]
            pkt.src = src
            pkt.snat = True
            return ("ACCEPT", "SNAT to %s" % src)
        if target == "MASQUERADE":
            src = self.state.source_for(pkt.oif, route.get("next_hop") if route else None,
                                        route.get("route") if route else None)
            if src is None:
                raise Stop("cannot evaluate", "MASQUERADE in %s %s: %s has no IPv4 address" % (table, frame.chain, pkt.oif))
            pkt.src = src
            pkt.snat = True
            flags = [o[2:] for o in ("--random-fully", "--random") if o in opts]
            return ("ACCEPT", "MASQUERADE to %s%s" % (src, " (%s)" % ", ".join(flags) if flags else ""))
        if target == "REDIRECT":
            ports = opts.get("--to-ports", [None])[0]
            pkt.dst = "127.0.0.1" if pkt.iif is None else (self._primary(pkt.iif) or pkt.dst)
            if ports:
                pkt.dport = int(ports.split("-")[0])
            pkt.dnat = True
            return ("ACCEPT", "REDIRECT to %s:%s" % (pkt.dst, pkt.dport))
        if target in rl.CONTINUING_TARGETS:
            if hop is not None:
                hop["verdict"] = "continue"
                if target not in ("TRACE", "LOG", "NFLOG"):
                    hop["note"] = "%s is not modelled: the trace assumes it does not change the packet's path" % target
            return None
        raise Stop("cannot evaluate", "cannot evaluate target %s in %s %s rule %d" % (
            target, table, frame.chain, frame.index))

    def _primary(self, dev):
        addrs = self.state.addresses.get(dev) or []
        return addrs[0].split("/")[0] if addrs else None

    # --- the dice ---------------------------------------------------------------------------------

    def _roll(self, table, frame, start, pkt, record, route):
        """The statistic rules from ``start`` on: every alternative, and the one ``endpoint`` picks.

        Returns (chosen rule index, chosen alternative, alternatives, note)."""
        alts = []
        remaining = 1.0
        for j in range(start, len(frame.rules)):
            rule = frame.rules[j]
            where = rl.Where(table, frame.chain, j + 1)
            if not rl.evaluate(rule, pkt, self.env, where, dice=None):
                continue
            p = rl.probability(rule)
            chance = remaining * (p if p is not None else 1.0)
            alts.append({"rule_number": j + 1, "target": rule.target, "chance": round(chance, 10),
                         "probability": p, "leads_to": self._leads_to(table, rule, pkt, route)})
            if p is None:
                break
            remaining *= 1.0 - p
        pick = self._pick(alts, frame)
        note = None
        checks = [r for r in frame.rules[:start] if rl.recent_command(r) and rl.recent_command(r)[0] == "rcheck"]
        if checks:
            note = ("session affinity: %s is in none of the %d recent lists checked before (a first connection): "
                    "the dice decide" % (pkt.src, len(checks)))
        return pick["rule_number"] - 1, pick, alts, note

    def _leads_to(self, table, rule, pkt, route):
        if rule.target is None or self.state.chain(table, rule.target) is None:
            return rule.target
        probe = pkt.copy()
        sub = NodeTracer(self.state, "first")
        try:
            verdict = sub._walk(table, rule.target, probe, False, route)  # pylint: disable=protected-access
        except Stop as exc:
            return exc.verdict
        if probe.dst != pkt.dst or probe.dport != pkt.dport:
            return "%s:%s" % (probe.dst, probe.dport) if probe.dport is not None else probe.dst
        return verdict

    def _pick(self, alts, frame):
        sel = str(self.endpoint)
        if sel == "first":
            return alts[0]
        if sel == "last":
            return alts[-1]
        for a in alts:
            led = str(a["leads_to"])
            if led == sel or led.split(":", 1)[0] == sel or a["target"] == sel:
                return a
        raise Stop("cannot evaluate", "endpoint %s is not among the choices of %s: %s" % (
            sel, frame.chain, ", ".join(str(a["leads_to"]) for a in alts)))

    # --- routing -------------------------------------------------------------------------------------

    def route(self, pkt, label="route"):
        """The routing decision for ``pkt``: a dict (kind local|forward, dev, next_hop, route) or Stop."""
        r = self.state.lookup(pkt.dst)
        if r is None:
            self._hop(kind="route", table=None, verdict="no route", rule=None)
            raise Stop("no route", "no route to %s" % pkt.dst)
        table = TABLE_NAMES.get(r.table, str(r.table))
        if r.type in ("local", "broadcast"):
            self._hop(kind="route", table=table, route=r.text, verdict="local delivery", dev="lo")
            return {"kind": "local", "dev": "lo", "next_hop": None, "route": r}
        if r.type != "unicast":
            self._hop(kind="route", table=table, route=r.text, verdict=r.type)
            raise Stop("no route", "route to %s is %s (%s)" % (pkt.dst, r.type, r.text))
        alternatives = None
        gateway, dev, onlink = r.gateway, r.dev, r.onlink
        if r.nexthops:
            alternatives = [dict(h) for h in r.nexthops]
            hop = self._pick_nexthop(r)
            gateway, dev, onlink = hop["gateway"], hop["dev"], hop["onlink"]
        hop = self._hop(kind="route", table=table, route=r.text, dev=dev, next_hop=gateway or pkt.dst, onlink=onlink,
                        verdict="%s %s%s dev %s%s" % (label, "via " if gateway else "to ", gateway or pkt.dst, dev,
                                                      " onlink" if onlink else ""))
        if alternatives:
            hop["ecmp"] = alternatives
            hop["note"] = "ECMP: the kernel hashes the flow over %d next hops; the trace follows %s" % (
                len(alternatives), "the first" if self.nexthop == "first" else gateway)
        return {"kind": "forward", "dev": dev, "next_hop": gateway or pkt.dst, "onlink": onlink, "route": r}

    def _pick_nexthop(self, r):
        sel = str(self.nexthop)
        if sel == "first":
            return r.nexthops[0]
        if sel == "last":
            return r.nexthops[-1]
        for hop in r.nexthops:
            if sel in (hop["gateway"], hop["dev"]):
                return hop
        return r.nexthops[0]    # this route's next hops do not include it: another node's choice

    # --- paths ---------------------------------------------------------------------------------------

    def arrive(self, pkt):
        """A packet arriving on ``pkt.iif``: PREROUTING, routing, INPUT or FORWARD/POSTROUTING."""
        for table in ("raw", "mangle", "nat"):
            self.hook(table, "PREROUTING", pkt)
        rt = self.route(pkt)
        if rt["kind"] == "local":
            pkt.oif = None
            for table in ("mangle", "filter", "nat"):
                self.hook(table, "INPUT", pkt)
            return self._delivered(pkt)
        if not self.state.ip_forward:
            raise Stop("dropped", "net.ipv4.ip_forward is 0 on %s: the packet is not forwarded" % self.state.name)
        pkt.oif = rt["dev"]
        for table in ("mangle", "filter"):
            self.hook(table, "FORWARD", pkt, route=rt)
        return self._post(pkt, rt)

    def originate(self, pkt):
        """A locally generated packet: routing, OUTPUT, POSTROUTING (and back in when local)."""
        rt = self.route(pkt)
        pkt.oif = rt["dev"]
        if pkt.src is None:
            pkt.src = self.state.source_for(rt["dev"], rt["next_hop"], rt["route"]) if rt["kind"] == "forward" else pkt.dst
            if pkt.src is None:
                raise Stop("no route", "no source address for %s out of %s" % (pkt.dst, rt["dev"]))
        for table in ("raw", "mangle", "nat"):
            before = (pkt.dst, pkt.mark)
            self.hook(table, "OUTPUT", pkt, route=rt)
            if (pkt.dst, pkt.mark) != before:
                rt = self.route(pkt, label="reroute")
                pkt.oif = rt["dev"]
        self.hook("filter", "OUTPUT", pkt, route=rt)
        if rt["kind"] == "local":
            for table in ("mangle", "nat"):
                self.hook(table, "POSTROUTING", pkt, route=rt)
            pkt.iif, pkt.oif = "lo", None
            for table, chain in (("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("mangle", "INPUT"),
                                 ("filter", "INPUT")):
                self.hook(table, chain, pkt)
            return self._delivered(pkt)
        return self._post(pkt, rt)

    def _post(self, pkt, rt):
        for table in ("mangle", "nat"):
            self.hook(table, "POSTROUTING", pkt, route=rt)
        exit_ = {"dev": rt["dev"], "next_hop": rt["next_hop"], "onlink": rt["onlink"]}
        vx = self.state.vxlan.get(rt["dev"])
        if vx is not None:
            exit_["encap"], exit_["outer"] = self._encapsulate(pkt, rt, vx)
        return "forwarded", "out of %s to %s" % (rt["dev"], rt["next_hop"]), exit_

    def _delivered(self, pkt):
        for dev, vx in sorted(self.state.vxlan.items()):
            if pkt.proto == "udp" and pkt.dport == (vx.get("port") or DEFAULT_VXLAN_PORT) \
                    and (not vx.get("local") or vx.get("local") == pkt.dst):
                return "delivered", "to the VXLAN device %s (VNI %s)" % (dev, vx.get("vni")), {"decap": dev}
        return "delivered", "to a local socket (%s)" % pkt.describe(), None

    def _encapsulate(self, pkt, rt, vx):
        dev = rt["dev"]
        hop_ip = rt["next_hop"]
        mac = self.state.neighbours.get(dev, {}).get(hop_ip)
        if mac is None:
            self._hop(kind="encap", dev=dev, verdict="no neighbour")
            raise Stop("dropped", "VXLAN %s: no neighbour entry for next hop %s (no MAC for the inner frame)" % (dev, hop_ip))
        fdb = self.state.fdb.get(dev, {})
        remote = fdb.get(mac) or fdb.get("00:00:00:00:00:00")
        if remote is None:
            self._hop(kind="encap", dev=dev, mac=mac, verdict="no fdb entry")
            raise Stop("dropped", "VXLAN %s: no FDB entry for %s (next hop %s): no remote VTEP" % (dev, mac, hop_ip))
        port = vx.get("port") or DEFAULT_VXLAN_PORT
        outer = Packet(vx.get("local"), remote, "udp", port, None, None)
        encap = {"dev": dev, "vni": vx.get("vni"), "port": port, "mac": mac, "remote": remote, "local": vx.get("local")}
        self._hop(kind="encap", dev=dev, vni=vx.get("vni"), port=port, mac=mac, outer_dst=remote,
                  outer_src=vx.get("local"), verdict="encapsulate VNI %s to %s udp/%d" % (vx.get("vni"), remote, port))
        first = len(self.hops)
        result = self.originate(outer)
        for hop in self.hops[first:]:
            hop["outer"] = True       # the UDP packet carrying the inner one, not the traced packet itself
        return encap, {"packet": outer.to_dict(), "exit": result[2]}


def _result(state, tracer, pkt, verdict, reason, exit_):
    return {"node": state.name, "verdict": verdict, "reason": reason, "hops": tracer.hops,
            "packet": pkt.to_dict(), "exit": exit_}


def trace_node(state, packet, endpoint="first", nexthop="first"):
    """One node's trace of ``packet`` (a dict, see :class:`Packet`; ``iif`` None: locally generated).

    Returns {"node", "verdict" (delivered|forwarded|dropped|rejected|no route|cannot evaluate),
    "reason", "hops" [...], "packet" (as it leaves: after NAT), "exit" (forwarded: dev, next_hop,
    encap/outer for VXLAN; delivered to a VXLAN device: decap)}.
    """
    state = NodeState.from_dict(state)
    pkt = Packet.from_dict(packet).copy()
    tracer = NodeTracer(state, endpoint, nexthop)
    try:
        if pkt.iif is None:
            verdict, reason, exit_ = tracer.originate(pkt)
        else:
            verdict, reason, exit_ = tracer.arrive(pkt)
    except Stop as stop:
        return _result(state, tracer, pkt, stop.verdict, stop.reason, None)
    return _result(state, tracer, pkt, verdict, reason, exit_)


def _owner(states, ip, skip=None):
    for name, st in states.items():
        if name != skip and st.interface_of(ip):
            return name, st.interface_of(ip)
    return None, None


def _bridge_port(bridge_state, bridge, veth_state, veth):
    """The port of ``bridge`` (on ``bridge_state``) whose veth peer is ``veth`` in ``veth_state`` (a
    namespace of the same host): the link the pod's frames pass. None when the links do not say."""
    if bridge_state.host is None or bridge_state.host != veth_state.host:
        return None
    br = bridge_state.links.get(bridge) or {}
    end = veth_state.links.get(veth) or {}
    if br.get("kind") != "bridge" or end.get("kind") != "veth" or end.get("peer_index") is None:
        return None
    for name, port in sorted(bridge_state.links.items()):
        if port.get("index") == end["peer_index"] and port.get("master") == bridge:
            return name, port, end
    return None


def _l2_hop(states, a, a_dev, b, b_dev):
    """The bridge step between a node and one of its pods, as a hop of the node (or None)."""
    sides = ((a, a_dev, b, b_dev, "out", "to"), (b, b_dev, a, a_dev, "in", "from"))
    for node, bridge, pod, pod_dev, direction, way in sides:
        found = _bridge_port(states[node], bridge, states[pod], pod_dev)
        if found is not None:
            port, _link, end = found
            return {"node": node, "kind": "bridge", "dev": bridge, "port": port, "peer": "%s %s" % (pod, pod_dev),
                    "mac": end.get("mac"), "direction": direction, "verdict": "%s through port %s %s %s %s (MAC %s)" % (
                        direction, port, way, pod, pod_dev, end.get("mac"))}
    return None


def _switched(states, a, a_dev, b, b_dev):
    """Two namespaces on one bridge of a third (pods of one node): the frame is switched there."""
    for name, st in sorted(states.items()):
        if name in (a, b):
            continue
        for bridge, link in sorted(st.links.items()):
            if link.get("kind") != "bridge":
                continue
            one, two = _bridge_port(st, bridge, states[a], a_dev), _bridge_port(st, bridge, states[b], b_dev)
            if one is not None and two is not None:
                return {"node": name, "kind": "bridge", "dev": bridge, "port": two[0], "peer": "%s %s" % (b, b_dev),
                        "mac": two[2].get("mac"), "direction": "switched",
                        "verdict": "switched from port %s (%s %s) to port %s (%s %s, MAC %s): bridged, not routed" % (
                            one[0], a, a_dev, two[0], b, b_dev, two[2].get("mac"))}
    return None


def _hand_over(states, out, node, exit_dev, name, dev):
    """Record the L2 step of a packet leaving ``node`` by ``exit_dev`` for ``name`` arriving on ``dev``."""
    hop = _l2_hop(states, node, exit_dev, name, dev)
    if hop is None:
        hop = _switched(states, node, exit_dev, name, dev)
        if hop is not None:
            out[-1]["hops"].append(hop)
        return None
    if hop["direction"] == "out":
        out[-1]["hops"].append(hop)
        return None
    return hop


def trace_path(states, start, packet, endpoint="first", max_nodes=10, nexthop="first"):
    """Chain node traces: from node ``start`` on to every node the packet reaches.

    ``states`` maps node (or namespace) names to their state. A packet forwarded to an address
    another node holds arrives there on the interface holding it; a VXLAN packet is traced on the
    remote node as its outer packet until the VXLAN device takes it, then as the inner packet
    arriving on that device. Returns the list of node traces.
    """
    states = dict((name, NodeState.from_dict(dict(s, name=s.get("name", name)) if isinstance(s, dict) else s))
                  for name, s in states.items())
    if start not in states:
        raise FabricError("trace: no state for node %s (have: %s)" % (start, ", ".join(sorted(states))))
    out = []
    node, pkt = start, dict(packet) if isinstance(packet, dict) else packet.to_dict()
    arriving = None      # the bridge step into this node, from the namespace the packet left
    for _step in range(max_nodes):
        result = trace_node(states[node], pkt, endpoint, nexthop)
        if arriving is not None:
            result["hops"].insert(0, arriving)
        out.append(result)
        exit_ = result["exit"]
        if result["verdict"] != "forwarded" or not exit_:
            return out
        inner = dict(result["packet"])
        inner.pop("oif", None)
        inner["mark"] = 0
        if "encap" in exit_:
            outer = exit_["outer"]["packet"]
            name, dev = _owner(states, outer["dst"], skip=node)
            if name is None:
                return out
            outer_in = dict(outer, iif=dev, mark=0)
            outer_in.pop("oif", None)
            got = trace_node(states[name], outer_in, endpoint, nexthop)
            got["role"] = "outer"
            for hop in got["hops"]:
                hop["outer"] = True
            out.append(got)
            if got["verdict"] != "delivered" or not got["exit"] or "decap" not in got["exit"]:
                return out
            vdev = got["exit"]["decap"]
            if states[name].vxlan[vdev].get("vni") != exit_["encap"]["vni"]:
                got["verdict"], got["reason"] = "dropped", "VNI %s does not match %s's VNI %s" % (
                    exit_["encap"]["vni"], vdev, states[name].vxlan[vdev].get("vni"))
                return out
            node, pkt, arriving = name, dict(inner, iif=vdev), None
            continue
        name, dev = _owner(states, exit_["next_hop"], skip=node)
        if name is None:
            name, dev = _owner(states, inner["dst"], skip=node)
        if name is None:
            return out
        arriving = _hand_over(states, out, node, exit_["dev"], name, dev)
        node, pkt = name, dict(inner, iif=dev)
    return out


def _rule_line(hop):
    verdict = hop.get("verdict") or ""
    extra = ""
    if hop.get("alternatives"):
        alts = ", ".join("%s %.1f%%" % (a["leads_to"], 100 * a["chance"]) for a in hop["alternatives"])
        extra = " [chance %.1f%%; choices: %s]" % (100 * hop["chance"], alts)
    if hop.get("affinity"):
        extra += " [%s]" % hop["affinity"]
    if hop.get("note"):
        extra += " [%s]" % hop["note"]
    return "%s %s %s #%d -> %s: %s%s" % (hop["node"], hop["table"], hop["chain"], hop["rule_number"], verdict,
                                         hop["rule"], extra)


def hop_text(hop):
    """One human-readable line for a hop."""
    kind = hop.get("kind")
    if kind == "rule":
        return _rule_line(hop)
    if kind == "policy":
        return "%s %s %s policy %s" % (hop["node"], hop["table"], hop["chain"], hop["verdict"])
    if kind == "return":
        return "%s %s %s end of chain: return" % (hop["node"], hop["table"], hop["chain"])
    if kind == "route":
        where = " (table %s)" % hop["table"] if hop.get("table") else ""
        note = " [%s]" % hop["note"] if hop.get("note") else ""
        return "%s route%s: %s -> %s%s" % (hop["node"], where, hop.get("route") or "-", hop["verdict"], note)
    if kind == "bridge":
        return "%s bridge %s: %s" % (hop["node"], hop["dev"], hop["verdict"])
    if kind == "encap":
        outer = ""
        if hop.get("outer_dst"):
            outer = " (inner next hop MAC %s, outer %s -> %s)" % (hop["mac"], hop.get("outer_src"), hop["outer_dst"])
        return "%s vxlan %s: %s%s" % (hop["node"], hop["dev"], hop["verdict"], outer)
    return "%s %s" % (hop["node"], hop)


_TELLING = ("DNAT", "SNAT", "MASQUERADE", "REDIRECT", "REJECT", "DROP", "mark")


def _summary_hop(hop):
    kind = hop.get("kind")
    if kind == "rule":
        verdict = hop.get("verdict") or ""
        if hop.get("alternatives"):
            others = ", ".join("%s %.1f%%" % (a["leads_to"], 100 * a["chance"]) for a in hop["alternatives"])
            return "endpoint choice in %s (%s): %s, chance %.1f%% [of %s]" % (
                hop["chain"], hop.get("comment") or "-", hop["target"], 100 * hop["chance"], others)
        if hop.get("affinity"):
            return "%s in %s: %s" % (verdict, hop["chain"], hop["affinity"])
        if verdict.startswith(_TELLING) or (verdict == "ACCEPT" and hop["table"] == "filter"):
            return "%s (%s %s #%d%s)" % (verdict, hop["table"], hop["chain"], hop["rule_number"],
                                         ": " + hop["comment"] if hop.get("comment") else "")
        return None
    if kind in ("route", "encap", "bridge"):
        return hop_text(hop)[len(hop["node"]) + 1:]
    return None


def summary_lines(traces, packet=None):
    """The trace the way the seeds tell it: per node, only what decides the path (NAT, the
    endpoint choice, affinity, accept/drop/reject, routes, bridge ports, encapsulation), then the
    outcome; the VXLAN outer packet's own passage is left to :func:`text_lines`."""
    lines = []
    if packet is not None:
        lines.append(text_lines(traces, packet)[0])
    for t in traces:
        if t.get("role") == "outer":
            lines.append("%s: the VXLAN packet arrives and is decapsulated (%s)" % (t["node"], t["reason"]))
            continue
        for hop in t["hops"]:
            if hop.get("outer"):
                continue
            line = _summary_hop(hop)
            if line:
                lines.append("%s: %s" % (hop["node"], line))
        lines.append("%s => %s: %s" % (t["node"], t["verdict"], t["reason"]))
    return lines


def text_lines(traces, packet=None):
    """Human-readable lines for a list of node traces (one per hop, then each node's outcome)."""
    lines = []
    if packet is not None:
        pkt = Packet.from_dict(packet).copy()
        if pkt.src is None and traces and traces[0]["packet"].get("src"):
            pkt.src = traces[0]["packet"]["src"]      # the source the kernel picked for the route
        lines.append("packet: %s%s" % (pkt.describe(), " arriving on %s" % pkt.iif if pkt.iif else " (locally generated)"))
    for t in traces:
        lines.extend(("  [outer] " if h.get("outer") else "") + hop_text(h) for h in t["hops"])
        lines.append("%s => %s: %s" % (t["node"], t["verdict"], t["reason"]))
    return lines
