# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One iptables rule as the trace evaluates it: matches against a packet, and its target (pure).

A rule's text goes through the ruleset layer's :func:`~..ruleset.canon.canonicalise` (so a rule
written as kube-proxy writes it and one read back from ``iptables-save`` are the same rule), and
the canonical tokens are cut into the header options (``-s -d -i -o -p -f``), the ``-m`` matches
with their options, and the ``-j``/``-g`` target. :func:`evaluate` answers True/False for one
packet, or raises :class:`CannotEvaluate` naming the match it does not model: the trace then
stops and says so instead of guessing.

Modelled matches: the header options (CIDRs, ``!``, ``+`` interface wildcards), tcp/udp/sctp
ports and TCP flags (the first packet is a SYN), icmp type (an echo request), comment, addrtype
(``--src-type``/``--dst-type``), mark, conntrack/state ``--ctstate`` (the first packet is NEW,
plus DNAT/SNAT once NATed), statistic random (a choice the caller makes: see ``dice``), recent
(affinity history given as data), multiport, iprange, physdev (a routed packet is not bridged),
pkttype.
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.canon import canonicalise
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import RuleError, render

TCP_SYN = 0x02
_TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ALL": 0x3F, "NONE": 0}
_HEADER = {"-s", "-d", "-i", "-o", "-p"}
# targets that do something and let the packet go on to the next rule
CONTINUING_TARGETS = frozenset(("MARK", "CONNMARK", "LOG", "NFLOG", "TRACE", "CT", "TCPMSS", "NOTRACK", "CLASSIFY"))
VERDICTS = frozenset(("ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "QUEUE"))


class CannotEvaluate(Exception):
    """A match (or option) the trace does not model; ``str()`` names it."""


class Rule(object):
    """A compiled rule: ``text`` as iptables-save prints it, header, matches, target."""

    __slots__ = ("text", "header", "matches", "target", "target_opts", "goto", "comment", "error")

    def __init__(self, text):
        self.text = text
        self.header = []      # [(neg, "-s", value)]
        self.matches = []     # [(name, [(neg, "--opt", [args])])]
        self.target = None    # "KUBE-SVC-X", "DNAT", ... or None (a rule without a target)
        self.target_opts = {}
        self.goto = False
        self.comment = None
        self.error = None     # why the rule cannot be read (then it cannot be evaluated)

    def option(self, match, opt):
        for name, opts in self.matches:
            if name == match:
                for neg, key, args in opts:
                    if key == opt:
                        return neg, args
        return None

    def has_match(self, name):
        return any(m[0] == name for m in self.matches)


_CACHE = {}


def compile_rule(text):
    """The :class:`Rule` for ``text`` (a rule without ``-A CHAIN``); cached by text."""
    rule = _CACHE.get(text)
    if rule is None:
        rule = _compile(text)
        if len(_CACHE) < 200000:
            _CACHE[text] = rule
    return rule


def compile_rules(text):
    """Like :func:`compile_rule`, but a rule iptables expands (``-s a,b``) gives several."""
    try:
        canon = canonicalise(text)
    except RuleError as exc:
        rule = Rule(text)
        rule.error = str(exc)
        return [rule]
    if len(canon.rules) == 1:
        return [compile_rule(text)]
    return [_from_tokens(list(tokens)) for tokens in canon.rules]


def _compile(text):
    try:
        canon = canonicalise(text)
    except RuleError as exc:
        rule = Rule(text)
        rule.error = str(exc)
        return rule
    return _from_tokens(list(canon.rules[0]))


def _from_tokens(tokens):
    rule = Rule(render(tokens))
    i, n = 0, len(tokens)
    current = None        # the option list being filled (a match's, or the target's)
    neg = False
    while i < n:
        tok = tokens[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        if tok in _HEADER and current is None:
            rule.header.append((neg, tok, tokens[i + 1]))
            neg = False
            i += 2
            continue
        if tok == "-f" and current is None:
            rule.header.append((neg, "-f", None))
            neg = False
            i += 1
            continue
        if tok == "-m":
            current = []
            rule.matches.append((tokens[i + 1], current))
            i += 2
            continue
        if tok in ("-j", "-g"):
            rule.target = tokens[i + 1]
            rule.goto = tok == "-g"
            current = []
            rule.target_opts = current
            i += 2
            continue
        if tok.startswith("--") and current is not None:
            args = []
            i += 1
            if tok == "--comment":
                args.append(tokens[i])
                i += 1
            else:
                while i < n and tokens[i] != "!" and not (tokens[i].startswith("-") and len(tokens[i]) > 1
                                                          and not tokens[i][1].isdigit()):
                    args.append(tokens[i])
                    i += 1
            current.append((neg, tok, args))
            neg = False
            continue
        rule.error = "unexpected %r" % tok
        i += 1
    rule.target_opts = dict((o[1], o[2]) for o in rule.target_opts) if isinstance(rule.target_opts, list) else {}
    found = rule.option("comment", "--comment")
    rule.comment = found[1][0] if found else None
    return rule


# --- evaluation ---------------------------------------------------------------------------------

_NET_CACHE = {}


def _net(text):
    net = _NET_CACHE.get(text)
    if net is None:
        net = _NET_CACHE[text] = ipaddress.ip_network(text, strict=False)
    return net


def in_net(ip, text):
    return ipaddress.ip_address(ip) in _net(text)


def iface_matches(pattern, name):
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _port_in(spec, port):
    if port is None:
        return False
    lo, sep, hi = spec.partition(":")
    return int(lo or 0) <= port <= int(hi or 65535) if sep else port == int(lo)


def _multiport(spec, port):
    return any(_port_in(p, port) for p in spec.split(","))


def _tcp_flags(text):
    value = 0
    for name in text.split(","):
        value |= _TCP_FLAG_BITS[name.upper()]
    return value


class Where(object):
    """Where the rule is evaluated, for error messages and the rest of the packet's context."""

    __slots__ = ("table", "chain", "number")

    def __init__(self, table, chain, number):
        self.table, self.chain, self.number = table, chain, number

    def __str__(self):
        return "%s %s rule %d" % (self.table, self.chain, self.number)


def evaluate(rule, pkt, env, where, dice=None):
    """Does ``rule`` match ``pkt``? ``env`` answers address types; ``dice(rule)`` -> bool decides
    a ``-m statistic`` match (None: the rule's other matches are checked and True is returned with
    the statistic left to the caller). Raises CannotEvaluate."""
    if rule.error:
        raise CannotEvaluate("cannot evaluate %s: %s" % (where, rule.error))
    for neg, opt, value in rule.header:
        if opt == "-s":
            ok = in_net(pkt.src, value)
        elif opt == "-d":
            ok = in_net(pkt.dst, value)
        elif opt == "-p":
            ok = pkt.proto == value
        elif opt == "-i":
            ok = iface_matches(value, pkt.iif)
        elif opt == "-o":
            ok = iface_matches(value, pkt.oif)
        else:              # -f: a first packet is never a later fragment
            ok = False
        if ok == neg:
            return False
    for name, opts in rule.matches:
        fn = _MATCHES.get(name)
        if fn is None:
            raise CannotEvaluate("cannot evaluate -m %s in %s" % (name, where))
        for neg, opt, args in opts:
            ok = fn(opt, args, pkt, env, rule, dice, where)
            if ok is None:
                raise CannotEvaluate("cannot evaluate -m %s %s in %s" % (name, opt, where))
            if ok == neg:
                return False
    return True


def _m_ports(opt, args, pkt, env, rule, dice, where):
    if opt == "--dport":
        return _port_in(args[0], pkt.dport)
    if opt == "--sport":
        return _port_in(args[0], pkt.sport)
    if opt == "--tcp-flags":
        return (TCP_SYN & _tcp_flags(args[0])) == _tcp_flags(args[1])
    if opt == "--syn":
        return True
    return None


def _m_icmp(opt, args, pkt, env, rule, dice, where):
    if opt != "--icmp-type":
        return None
    value = args[0]
    return value in ("any", "8", "8/0", "echo-request")


def _m_comment(opt, args, pkt, env, rule, dice, where):
    return True


def _m_addrtype(opt, args, pkt, env, rule, dice, where):
    if opt in ("--src-type", "--dst-type"):
        ip = pkt.src if opt == "--src-type" else pkt.dst
        return env.addr_type(ip) in args[0].split(",")
    return None          # --limit-iface-in/out


def _mark_pair(text):
    value, sep, mask = text.partition("/")
    return int(value, 0), (int(mask, 0) if sep else 0xFFFFFFFF)


def _m_mark(opt, args, pkt, env, rule, dice, where):
    if opt != "--mark":
        return None
    value, mask = _mark_pair(args[0])
    return (pkt.mark & mask) == value


def _m_ctstate(opt, args, pkt, env, rule, dice, where):
    if opt not in ("--ctstate", "--state"):
        return None
    return bool(set(args[0].split(",")) & pkt.ctstates())


def _m_statistic(opt, args, pkt, env, rule, dice, where):
    if opt == "--mode":
        return True if args[0] == "random" else None
    if opt == "--probability":
        return True if dice is None else dice(rule)
    return None


def _m_recent(opt, args, pkt, env, rule, dice, where):
    if opt in ("--set",):
        return True
    if opt in ("--rcheck", "--update"):
        found = rule.option("recent", "--name")
        name = found[1][0] if found else "DEFAULT"
        use_dst = rule.option("recent", "--rdest") is not None
        return (pkt.dst if use_dst else pkt.src) in env.recent.get(name, ())
    if opt in ("--name", "--seconds", "--reap", "--rsource", "--rdest", "--mask", "--hitcount", "--rttl"):
        return True      # qualifiers of the command above (--seconds: the history given is recent)
    return None


def _m_multiport(opt, args, pkt, env, rule, dice, where):
    if opt == "--dports":
        return _multiport(args[0], pkt.dport)
    if opt == "--sports":
        return _multiport(args[0], pkt.sport)
    if opt == "--ports":
        return _multiport(args[0], pkt.dport) or _multiport(args[0], pkt.sport)
    return None


def _m_iprange(opt, args, pkt, env, rule, dice, where):
    if opt not in ("--src-range", "--dst-range"):
        return None
    lo, hi = (args[0].split("-", 1) + [args[0]])[:2]
    ip = ipaddress.ip_address(pkt.src if opt == "--src-range" else pkt.dst)
    return ipaddress.ip_address(lo) <= ip <= ipaddress.ip_address(hi)


def _m_physdev(opt, args, pkt, env, rule, dice, where):
    # The trace follows routed packets: none of them is bridged (br_netfilter's physdev is unset).
    if opt in ("--physdev-is-bridged", "--physdev-is-in", "--physdev-is-out", "--physdev-in", "--physdev-out"):
        return False
    return None


def _m_pkttype(opt, args, pkt, env, rule, dice, where):
    if opt != "--pkt-type":
        return None
    kind = env.addr_type(pkt.dst)
    actual = {"BROADCAST": "broadcast", "MULTICAST": "multicast"}.get(kind, "unicast")
    return args[0] == actual


_MATCHES = {
    "tcp": _m_ports, "udp": _m_ports, "sctp": _m_ports, "udplite": _m_ports,
    "icmp": _m_icmp, "comment": _m_comment, "addrtype": _m_addrtype, "mark": _m_mark,
    "conntrack": _m_ctstate, "state": _m_ctstate, "statistic": _m_statistic, "recent": _m_recent,
    "multiport": _m_multiport, "iprange": _m_iprange, "physdev": _m_physdev, "pkttype": _m_pkttype,
}


def probability(rule):
    """The ``--probability`` of a statistic rule as a float (``!``: the complement), or None."""
    found = rule.option("statistic", "--probability")
    if found is None:
        return None
    neg, args = found
    p = float(args[0])
    return 1.0 - p if neg else p


def recent_command(rule):
    """('set'|'rcheck'|'update'|'remove', list name, seconds) for a rule with -m recent, else None."""
    if not rule.has_match("recent"):
        return None
    cmd = next((c for c in ("set", "rcheck", "update", "remove") if rule.option("recent", "--" + c)), None)
    name = rule.option("recent", "--name")
    seconds = rule.option("recent", "--seconds")
    return cmd, name[1][0] if name else "DEFAULT", int(seconds[1][0]) if seconds else None
