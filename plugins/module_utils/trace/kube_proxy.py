# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trace's view of a kube-proxy ruleset built by :mod:`..kubeproxy` (pure).

- :func:`save_text` renders a :class:`~..kubeproxy.rules.Ruleset` as the ``iptables-save`` text a
  node with it shows: built-in chains with ACCEPT policies, kube-proxy's jumps inserted at their
  tops (``iptables -I``, in kube-proxy's order), then its chains. Extra rules (an egress
  MASQUERADE, a ``-j TRACE``) can be appended to any chain.
- :func:`trace_packet` is kube-proxy's own test tracer (pkg/proxy/iptables proxier_test.go
  ``tracePacket``): it follows a packet from nat KUBE-SERVICES and the filter service chains,
  fanning out over every probabilistic jump, and returns every DNAT destination or verdict
  reached and whether KUBE-MARK-MASQ was hit. It evaluates rules with the trace engine's matcher
  (:mod:`.rules`), so both tracers agree on what a rule matches.
"""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.trace import rules as rl
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import BUILTIN


def _chains_of(ruleset):
    """{table: {chain: [rule text]}} from a Ruleset or such a dict."""
    if isinstance(ruleset, dict):
        return ruleset
    out = {}
    for c in ruleset.chains:
        out.setdefault(c.table, {})[c.name] = list(c.rules)
    return out


def save_text(ruleset, extra=(), tables=("raw", "mangle", "nat", "filter")):
    """The iptables-save text of a node holding ``ruleset`` (+ ``extra``: (table, chain, rule) appended)."""
    chains = _chains_of(ruleset)
    builtin = dict((t, dict((c, []) for c in BUILTIN[t])) for t in tables)
    for jump in getattr(ruleset, "jumps", ()):
        builtin.setdefault(jump["table"], {}).setdefault(jump["chain"], []).insert(0, jump["rule"])
    user = dict((t, dict(chains.get(t, {}))) for t in tables)
    for table, chain, rule in extra:
        target = builtin[table] if chain in builtin[table] else user[table]
        target.setdefault(chain, []).append(rule)
    out = []
    for t in tables:
        out.append("*" + t)
        out.extend(":%s ACCEPT [0:0]" % c for c in builtin[t])
        out.extend(":%s - [0:0]" % c for c in user[t])
        for group in (builtin[t], user[t]):
            for c, rules in group.items():
                out.extend("-A %s %s" % (c, r) for r in rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


class _Packet(object):
    __slots__ = ("src", "dst", "proto", "sport", "dport", "iif", "oif", "mark")

    def __init__(self, src, dst, proto, dport):
        self.src, self.dst, self.proto, self.dport = src, dst, proto, dport
        self.sport = self.iif = self.oif = None
        self.mark = 0

    @staticmethod
    def ctstates():
        return {"NEW"}


class _LocalIPs(object):
    def __init__(self, local_ips):
        self.local = frozenset(local_ips)
        self.recent = {}

    def addr_type(self, ip):
        return "LOCAL" if ip in self.local else "UNICAST"


class FanOut(object):
    """kube-proxy's iptablesTracer: every probabilistic branch is followed."""

    def __init__(self, ruleset, local_ips):
        self.tables = {}
        for table, chains in _chains_of(ruleset).items():
            self.tables[table] = dict((name, [rl.compile_rule(r) for r in rules]) for name, rules in chains.items())
        self.env = _LocalIPs(local_ips)
        self.outputs = []
        self.masq = False

    def run(self, table, chain, pkt):
        for number, rule in enumerate(self.tables.get(table, {}).get(chain, []), 1):
            if rule.target is None:
                continue
            where = rl.Where(table, chain, number)
            if not rl.evaluate(rule, pkt, self.env, where, dice=lambda r: True):
                continue
            target = rule.target
            if target == "KUBE-MARK-MASQ":
                self.masq = True
            elif target in ("ACCEPT", "REJECT", "DROP"):
                self.outputs.append(target)
                return True
            elif target == "DNAT":
                self.outputs.append(rule.target_opts["--to-destination"][0])
                return True
            elif self.run(table, target, pkt) and not rule.has_match("statistic"):
                return True
        return False


def trace_packet(ruleset, src, dst, dport, proto="tcp", local_ips=()):
    """(every output joined by ", ", masqueraded) as kube-proxy's tracePacket returns them."""
    t = FanOut(ruleset, local_ips)
    pkt = _Packet(src, dst, proto, dport)
    t.run("nat", "KUBE-SERVICES", pkt)       # nat PREROUTING jumps here
    if t.outputs:
        pkt.dst = t.outputs[0].split(":")[0]
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"):
        t.run("filter", chain, pkt)
    return ", ".join(t.outputs), t.masq
