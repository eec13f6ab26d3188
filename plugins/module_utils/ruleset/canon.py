# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rule as written -> the rule(s) iptables-save will print for it.

:func:`canonicalise` rewrites what iptables rewrites: ``-p tcp --dport 80`` ->
``-p tcp -m tcp --dport 80``, ``-d 10.0.0.1`` -> ``-d 10.0.0.1/32``, ``--probability
0.5000000000`` -> ``0.50000000000``, header options first (``-s -d -i -o -p -f``), each
extension's options in its own print order, aliases and abbreviations resolved the way getopt
does, defaults iptables adds (``-j REJECT`` -> ``--reject-with icmp-port-unreachable``,
``-m recent`` -> ``--name DEFAULT --mask 255.255.255.255 --rsource``) and ``-s a,b`` expanded
into one rule per address. Every rewrite was checked against iptables 1.8.9, legacy and nft
(tests/unit/.../ruleset/test_canon.py holds that corpus; the integration tests replay it
against the kernel).

Matches and targets not modelled here are kept exactly as written and the result is flagged
``certain=False``: the caller verifies such rules against iptables-save after applying.
"""
from __future__ import annotations

import math
import re
import socket

from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import RuleError, tokenize

__all__ = ["Canon", "canonicalise", "canonical_cidr", "canonical_proto", "STANDARD_VERDICTS"]


# --- small value parsers (C semantics where iptables uses them) ---------------------------------

def _strtoul(text):
    """strtoul(text, NULL, 0): 0x.. hex, 0.. octal, else decimal; ValueError otherwise."""
    t = text.strip()
    if t[:2] in ("0x", "0X"):
        return int(t[2:], 16)
    if len(t) > 1 and t[0] == "0":
        return int(t[1:], 8)
    return int(t, 10)


def _mark_pair(text, default_mask=0xFFFFFFFF):
    value, sep, mask = text.partition("/")
    v = _strtoul(value)
    m = _strtoul(mask) if mask else default_mask
    if not (0 <= v <= 0xFFFFFFFF and 0 <= m <= 0xFFFFFFFF):
        raise ValueError(text)
    return v, m


def _hex_mark(v, m=0xFFFFFFFF):
    return "0x%x" % v if m == 0xFFFFFFFF else "0x%x/0x%x" % (v, m)


_IPV4_RE = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\."
                      r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$")


def _ipv4_int(text, what="address"):
    m = _IPV4_RE.match(text)
    if m is None:
        if re.match(r"^[0-9.]+$", text):
            raise RuleError("%s %r: write IPv4 addresses as four decimal octets without leading zeros" % (what, text))
        raise RuleError("%s %r is not an IPv4 address (host names are not allowed: iptables would resolve them once, at apply time)" % (what, text))
    a, b, c, d = m.groups()
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def _int_ipv4(n):
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


_CIDR_CACHE = {}


def canonical_cidr(text):
    """'10.0.0.5/24' -> '10.0.0.0/24', '1.2.3.4' -> '1.2.3.4/32', '/0' -> None (matches all)."""
    try:
        return _CIDR_CACHE[text]
    except KeyError:
        pass
    value = _canonical_cidr(text)
    if len(_CIDR_CACHE) < 65536:
        _CIDR_CACHE[text] = value
    return value


def _canonical_cidr(text):
    """'10.0.0.5/24' -> '10.0.0.0/24', '1.2.3.4' -> '1.2.3.4/32', '/0' -> None (matches all)."""
    addr, slash, mask = text.partition("/")
    a = _ipv4_int(addr)
    if not slash:
        bits = 32
        m = 0xFFFFFFFF
    elif "." in mask:
        m = _ipv4_int(mask, "netmask")
        inv = (~m) & 0xFFFFFFFF
        bits = 32 - inv.bit_length() if (inv & (inv + 1)) == 0 else None
    else:
        if not mask.isdigit() or int(mask) > 32:
            raise RuleError("bad prefix length in %r" % text)
        bits = int(mask)
        m = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    if bits == 0:
        return None
    net = _int_ipv4(a & m)
    return "%s/%d" % (net, bits) if bits is not None else "%s/%s" % (net, _int_ipv4(m))


# Protocols: iptables' own table first (xtables_chain_protos), then /etc/protocols.
_PROTO_BUILTIN = [("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1),
                  ("ipv6-icmp", 58), ("icmpv6", 58), ("esp", 50), ("ah", 51), ("ipv6-mh", 135),
                  ("mh", 135), ("all", 0)]
_etc_protocols = None


def _protocols():
    global _etc_protocols
    if _etc_protocols is None:
        by_name, by_num = {}, {}
        try:
            with open("/etc/protocols") as f:
                for line in f:
                    fields = line.split("#", 1)[0].split()
                    if len(fields) >= 2 and fields[1].isdigit():
                        num = int(fields[1])
                        for name in [fields[0]] + fields[2:]:
                            by_name.setdefault(name.lower(), num)
                        by_num.setdefault(num, fields[0])
        except (IOError, OSError):
            pass
        _etc_protocols = (by_name, by_num)
    return _etc_protocols


_PROTO_CACHE = {}


def canonical_proto(text):
    """'TCP' / '6' -> 'tcp'; '47' -> 'gre'; 'all' / '0' -> None; ValueError when unknown."""
    try:
        return _PROTO_CACHE[text]
    except KeyError:
        pass
    value = _PROTO_CACHE[text] = _canonical_proto(text)
    return value


def _canonical_proto(text):
    t = text.lower()
    num = None
    if t.isdigit():
        num = int(t)
    else:
        for name, n in _PROTO_BUILTIN:
            if name == t:
                num = n
                break
        else:
            num = _protocols()[0].get(t)
    if num is None or num > 255:
        raise ValueError(text)
    if num == 0:
        return None
    for name, n in _PROTO_BUILTIN:
        if n == num:
            return name
    return _protocols()[1].get(num, str(num))


def _port(text, proto):
    if text.isdigit():
        n = int(text)
    else:
        n = socket.getservbyname(text, proto or "tcp")  # OSError when unknown
    if not 0 <= n <= 65535:
        raise ValueError(text)
    return n


def _port_range(text, proto):
    """tcp/udp --sport/--dport spec -> (lo, hi)."""
    if ":" in text:
        lo, hi = text.split(":", 1)
        lo = _port(lo, proto) if lo else 0
        hi = _port(hi, proto) if hi else 65535
    else:
        lo = hi = _port(text, proto)
    if lo > hi:
        raise ValueError(text)
    return lo, hi


def _fmt_range(lo, hi, sep=":"):
    return str(lo) if lo == hi else "%d%s%d" % (lo, sep, hi)


# --- extensions ---------------------------------------------------------------------------------

class _Uncertain(Exception):
    """The normaliser cannot say for sure how iptables prints this; keep it as written."""


class Ext(object):
    """One match (``-m name``) or target (``-j NAME``) in a rule being parsed."""

    __slots__ = ("name", "spec", "opts", "raw", "implicit")

    def __init__(self, name, spec, implicit=False):
        self.name = name
        self.spec = spec          # _Spec or None (unknown extension)
        self.opts = []            # [(key, neg, [args])]
        self.raw = []             # the tokens as written, for the uncertain fallback
        self.implicit = implicit


class _Spec(object):
    """Options (long name -> (key, nargs)) and a printer for one extension."""

    def __init__(self, options, printer):
        self.options = options
        self.printer = printer


def _opts_dict(opts):
    d = {}
    for key, neg, args in opts:
        if key in d:
            raise _Uncertain("option given twice")
        d[key] = (neg, args)
    return d


def _neg(n):
    return ["!"] if n else []


def _print_ports(proto):
    def printer(opts, ctx):
        d = _opts_dict(opts)
        out = []
        for key, flag in (("sport", "--sport"), ("dport", "--dport")):
            if key in d:
                neg, args = d[key]
                lo, hi = _port_range(args[0], proto)
                if (lo, hi) == (0, 65535):
                    raise _Uncertain("a port range that matches every port")
                out += _neg(neg) + [flag, _fmt_range(lo, hi)]
        if proto == "tcp":
            if "option" in d:
                neg, args = d["option"]
                out += _neg(neg) + ["--tcp-option", str(int(args[0]))]
            flags = None
            if "syn" in d:
                flags = (d["syn"][0], 0x17, 0x02)
            if "flags" in d:
                if flags is not None:
                    raise _Uncertain("--syn with --tcp-flags")
                neg, args = d["flags"]
                flags = (neg, _tcp_flags(args[0]), _tcp_flags(args[1]))
            if flags is not None:
                out += _neg(flags[0]) + ["--tcp-flags", _fmt_tcp_flags(flags[1]), _fmt_tcp_flags(flags[2])]
        unknown = set(d) - {"sport", "dport", "option", "syn", "flags"}
        if unknown:
            raise _Uncertain("options %s" % sorted(unknown))
        return out
    return printer


_TCP_FLAGS = [("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)]


def _tcp_flags(text):
    value = 0
    for name in text.split(","):
        u = name.upper()
        if u == "ALL":
            value |= 0x3F
        elif u == "NONE":
            continue
        else:
            for n, bit in _TCP_FLAGS:
                if n == u:
                    value |= bit
                    break
            else:
                raise ValueError(name)
    return value


def _fmt_tcp_flags(value):
    if not value:
        return "NONE"
    return ",".join(n for n, bit in _TCP_FLAGS if value & bit)


def _print_multiport(opts, ctx):
    d = _opts_dict(opts)
    if len(d) != 1:
        raise _Uncertain("multiport takes one of --sports/--dports/--ports")
    key, (neg, args) = next(iter(d.items()))
    ports = []
    for item in args[0].split(","):
        if ":" in item:
            lo, hi = item.split(":", 1)
            lo, hi = _port(lo, ctx.proto), _port(hi, ctx.proto)
            if lo >= hi:
                raise _Uncertain("port range")
            ports.append("%d:%d" % (lo, hi))
        else:
            ports.append(str(_port(item, ctx.proto)))
    return _neg(neg) + ["--" + key, ",".join(ports)]


_ICMP_TYPES = [
    ("any", 0xFF, 0, 0xFF), ("echo-reply", 0, 0, 0xFF), ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF), ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1), ("protocol-unreachable", 3, 2, 2), ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4), ("source-route-failed", 3, 5, 5), ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7), ("network-prohibited", 3, 9, 9), ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11), ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13), ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15), ("source-quench", 4, 0, 0xFF), ("redirect", 5, 0, 0xFF),
    ("network-redirect", 5, 0, 0), ("host-redirect", 5, 1, 1), ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3), ("echo-request", 8, 0, 0xFF), ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF), ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF), ("ttl-exceeded", 11, 0, 0xFF), ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1), ("parameter-problem", 12, 0, 0xFF),
    ("ip-header-bad", 12, 0, 0), ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF), ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF), ("address-mask-reply", 18, 0, 0xFF),
]


def _print_icmp(opts, ctx):
    d = _opts_dict(opts)
    if set(d) != {"type"}:
        raise _Uncertain("icmp options")
    neg, args = d["type"]
    text = args[0]
    if text[:1].isdigit():
        t, sep, c = text.partition("/")
        typ = int(t)
        lo, hi = (int(c), int(c)) if c else (0, 0xFF)
    else:
        found = [e for e in _ICMP_TYPES if e[0].lower().startswith(text.lower())]
        exact = [e for e in found if e[0].lower() == text.lower()]
        if exact:
            found = exact
        if len(found) != 1:
            raise _Uncertain("icmp type %s" % text)
        typ, lo, hi = found[0][1:]
    if typ == 0xFF:
        value = "any"
    elif lo == 0 and hi == 0xFF:
        value = str(typ)
    elif lo == hi:
        value = "%d/%d" % (typ, lo)
    else:
        raise _Uncertain("icmp code range")
    return _neg(neg) + ["--icmp-type", value]


def _print_comment(opts, ctx):
    d = _opts_dict(opts)
    if set(d) != {"comment"} or d["comment"][0]:
        raise _Uncertain("comment")
    return ["--comment", d["comment"][1][0]]


def _probability(text):
    p = float(text)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(text)
    stored = int(math.floor(0x80000000 * p + 0.5))  # lround() for p >= 0
    return "%.11f" % (1.0 * stored / 0x80000000)


def _print_statistic(opts, ctx):
    d = _opts_dict(opts)
    if "mode" not in d or d["mode"][0]:
        raise _Uncertain("--mode")
    mode = d["mode"][1][0]
    if mode == "random" and set(d) <= {"mode", "probability"} and "probability" in d:
        neg, args = d["probability"]
        return ["--mode", "random"] + _neg(neg) + ["--probability", _probability(args[0])]
    if mode == "nth" and set(d) <= {"mode", "every", "packet"} and "every" in d and "packet" in d:
        neg, args = d["every"]
        if d["packet"][0]:
            raise _Uncertain("! --packet")
        every = _strtoul(args[0])
        packet = _strtoul(d["packet"][1][0])
        return ["--mode", "nth"] + _neg(neg) + ["--every", str(every), "--packet", str(packet)]
    raise _Uncertain("statistic options")


def _print_mark_match(opts, ctx):
    d = _opts_dict(opts)
    if set(d) != {"mark"}:
        raise _Uncertain("mark options")
    neg, args = d["mark"]
    return _neg(neg) + ["--mark", _hex_mark(*_mark_pair(args[0]))]


def _print_mark_target(connmark):
    def printer(opts, ctx):
        d = _opts_dict(opts)
        if len(d) == 0 or any(n for n, args in d.values()):
            raise _Uncertain("MARK options")
        if connmark and ("save" in d or "restore" in d):
            which = "save" if "save" in d else "restore"
            masks = {"nfmask": 0xFFFFFFFF, "ctmask": 0xFFFFFFFF}
            for key in d:
                if key == which:
                    continue
                if key == "mask":
                    masks["nfmask"] = masks["ctmask"] = _strtoul(d[key][1][0])
                elif key in masks:
                    masks[key] = _strtoul(d[key][1][0])
                else:
                    raise _Uncertain("CONNMARK options")
            return ["--%s-mark" % which, "--nfmask", "0x%x" % masks["nfmask"], "--ctmask", "0x%x" % masks["ctmask"]]
        if len(d) != 1:
            raise _Uncertain("MARK options")
        key, (neg, args) = next(iter(d.items()))
        if key in ("set-xmark", "set-mark"):
            v, m = _mark_pair(args[0])
        elif key == "or-mark":
            v = m = _strtoul(args[0])
        elif key == "and-mark":
            v, m = 0, (~_strtoul(args[0])) & 0xFFFFFFFF
        elif key == "xor-mark":
            v, m = _strtoul(args[0]), 0
        else:
            raise _Uncertain("MARK option %s" % key)
        return ["--set-xmark", "0x%x/0x%x" % (v, m)]
    return printer


_CT_STATES = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT"]


def _print_states(option, allowed):
    def printer(opts, ctx):
        d = _opts_dict(opts)
        if set(d) != {option}:
            raise _Uncertain("conntrack options")
        neg, args = d[option]
        wanted = set(s.upper() for s in args[0].split(","))
        if not wanted <= set(allowed):
            raise _Uncertain("state names")
        return _neg(neg) + ["--" + option, ",".join(s for s in allowed if s in wanted)]
    return printer


_ADDRTYPES = ["UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"]


def _print_addrtype(opts, ctx):
    d = _opts_dict(opts)
    if not set(d) <= {"src-type", "dst-type", "limit-iface-in", "limit-iface-out"}:
        raise _Uncertain("addrtype options")
    out = []
    for key in ("src-type", "dst-type"):
        if key in d:
            neg, args = d[key]
            wanted = set(s.upper() for s in args[0].split(","))
            if not wanted <= set(_ADDRTYPES):
                raise _Uncertain("address type")
            out += _neg(neg) + ["--" + key, ",".join(t for t in _ADDRTYPES if t in wanted)]
    for key in ("limit-iface-in", "limit-iface-out"):
        if key in d:
            out.append("--" + key)
    return out


def _print_recent(opts, ctx):
    d = _opts_dict(opts)
    commands = [k for k in ("set", "rcheck", "update", "remove") if k in d]
    if len(commands) != 1 or not set(d) <= {"set", "rcheck", "update", "remove", "seconds", "reap",
                                            "hitcount", "rttl", "name", "mask", "rsource", "rdest"}:
        raise _Uncertain("recent options")
    if any(d[k][0] for k in d if k != commands[0]):
        raise _Uncertain("recent negation")
    out = _neg(d[commands[0]][0]) + ["--" + commands[0]]
    if "seconds" in d and int(d["seconds"][1][0]):
        out += ["--seconds", str(int(d["seconds"][1][0]))]
    if "reap" in d:
        out.append("--reap")
    if "hitcount" in d and int(d["hitcount"][1][0]):
        out += ["--hitcount", str(int(d["hitcount"][1][0]))]
    if "rttl" in d:
        out.append("--rttl")
    out += ["--name", d["name"][1][0] if "name" in d else "DEFAULT"]
    out += ["--mask", _int_ipv4(_ipv4_int(d["mask"][1][0], "mask")) if "mask" in d else "255.255.255.255"]
    out.append("--rdest" if "rdest" in d else "--rsource")
    return out


def _print_iprange(opts, ctx):
    d = _opts_dict(opts)
    if not d or not set(d) <= {"src-range", "dst-range"}:
        raise _Uncertain("iprange options")
    out = []
    for key in ("src-range", "dst-range"):
        if key in d:
            neg, args = d[key]
            lo, sep, hi = args[0].partition("-")
            lo_s = _int_ipv4(_ipv4_int(lo))
            hi_s = _int_ipv4(_ipv4_int(hi)) if hi else lo_s
            out += _neg(neg) + ["--" + key, "%s-%s" % (lo_s, hi_s)]
    return out


def _print_physdev(opts, ctx):
    d = _opts_dict(opts)
    keys = ("physdev-in", "physdev-out", "physdev-is-in", "physdev-is-out", "physdev-is-bridged")
    if not d or not set(d) <= set(keys):
        raise _Uncertain("physdev options")
    out = []
    for key in keys:
        if key in d:
            neg, args = d[key]
            out += _neg(neg) + ["--" + key] + list(args)
    return out


def _print_simple(option_order, value_fn=None):
    """Extensions whose options print in a fixed order with their values as given."""
    def printer(opts, ctx):
        d = _opts_dict(opts)
        if not d or not set(d) <= set(option_order):
            raise _Uncertain("options")
        out = []
        for key in option_order:
            if key in d:
                neg, args = d[key]
                vals = [value_fn(key, a) for a in args] if value_fn else list(args)
                out += _neg(neg) + ["--" + key] + vals
        return out
    return printer


def _length_value(key, text):
    lo, sep, hi = text.partition(":")
    lo_i = int(lo)
    hi_i = int(hi) if hi else lo_i
    return _fmt_range(lo_i, hi_i)


def _owner_value(key, text):
    if key == "socket-exists":
        return text
    lo, sep, hi = text.partition("-")

    def one(v):
        if v.isdigit():
            return int(v)
        import grp
        import pwd
        return (pwd.getpwnam(v).pw_uid if key == "uid-owner" else grp.getgrnam(v).gr_gid)
    lo_i = one(lo)
    hi_i = one(hi) if hi else lo_i
    return _fmt_range(lo_i, hi_i, "-")


_LIMIT_RATES = [("day", 10000 * 24 * 60 * 60), ("hour", 10000 * 60 * 60), ("min", 10000 * 60), ("sec", 10000)]


def _limit_rate(text):
    num, sep, unit = text.partition("/")
    mult = 1
    if unit:
        for name, m in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
            if name.startswith(unit.lower()):
                mult = m
                break
        else:
            raise ValueError(text)
    r = int(num)
    if r <= 0:
        raise ValueError(text)
    period = 10000 * mult // r
    if period == 0:
        raise _Uncertain("rate too fast")
    i = 1
    while i < len(_LIMIT_RATES):
        mult_i = _LIMIT_RATES[i][1]
        if period > mult_i or mult_i // period < mult_i % period:
            break
        i += 1
    return "%d/%s" % (_LIMIT_RATES[i - 1][1] // period, _LIMIT_RATES[i - 1][0])


def _print_limit(opts, ctx):
    d = _opts_dict(opts)
    if not set(d) <= {"limit", "limit-burst"} or any(n for n, args in d.values()):
        raise _Uncertain("limit options")
    out = ["--limit", _limit_rate(d["limit"][1][0] if "limit" in d else "3/hour")]
    if "limit-burst" in d and int(d["limit-burst"][1][0]) != 5:
        out += ["--limit-burst", str(int(d["limit-burst"][1][0]))]
    return out


def _print_no_options(opts, ctx):
    if opts:
        raise _Uncertain("options")
    return []


_REJECT_WITH = [("icmp-net-unreachable", "net-unreach"), ("icmp-host-unreachable", "host-unreach"),
                ("icmp-proto-unreachable", "proto-unreach"), ("icmp-port-unreachable", "port-unreach"),
                ("icmp-net-prohibited", "net-prohib"), ("icmp-host-prohibited", "host-prohib"),
                ("tcp-reset", "tcp-rst"), ("icmp-admin-prohibited", "admin-prohib")]


def _print_reject(opts, ctx):
    d = _opts_dict(opts)
    if not set(d) <= {"reject-with"}:
        raise _Uncertain("REJECT options")
    value = "icmp-port-unreachable"
    if "reject-with" in d:
        arg = d["reject-with"][1][0].lower()
        for name, alias in _REJECT_WITH:
            if name.startswith(arg) or alias.startswith(arg):
                value = name
                break
        else:
            raise _Uncertain("reject type")
    return ["--reject-with", value]


def _nat_range(text):
    """DNAT/SNAT address spec: collapse a-a ranges the way iptables prints them."""
    if text.startswith("["):
        raise _Uncertain("bracketed address")
    addr, colon, ports = text.partition(":")
    if addr:
        lo, sep, hi = addr.partition("-")
        lo_s = _int_ipv4(_ipv4_int(lo))
        hi_s = _int_ipv4(_ipv4_int(hi)) if hi else lo_s
        addr = lo_s if lo_s == hi_s else "%s-%s" % (lo_s, hi_s)
    if colon:
        plo, sep, phi = ports.partition("-")
        plo_i = int(plo)
        phi_i = int(phi) if phi else plo_i
        ports = _fmt_range(plo_i, phi_i, "-")
        return "%s:%s" % (addr, ports)
    return addr


def _print_nat(to_option, flags, fmt):
    def printer(opts, ctx):
        d = _opts_dict(opts)
        if not set(d) <= {to_option} | set(flags) or any(n for n, args in d.values()):
            raise _Uncertain("NAT options")
        out = []
        if to_option in d:
            out += ["--" + to_option, fmt(d[to_option][1][0])]
        for flag in flags:
            if flag in d:
                out.append("--" + flag)
        return out
    return printer


def _fmt_ports_dash(text):
    lo, sep, hi = text.partition("-")
    lo_i = int(lo)
    hi_i = int(hi) if hi else lo_i
    return _fmt_range(lo_i, hi_i, "-")


_LOG_LEVELS = {"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4,
               "warn": 4, "notice": 5, "info": 6, "debug": 7}


def _print_log(opts, ctx):
    d = _opts_dict(opts)
    flags = ["log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode"]
    if not set(d) <= {"log-prefix", "log-level"} | set(flags) or any(n for n, args in d.values()):
        raise _Uncertain("LOG options")
    out = []
    if "log-prefix" in d and d["log-prefix"][1][0] != "":
        out += ["--log-prefix", d["log-prefix"][1][0]]
    if "log-level" in d:
        text = d["log-level"][1][0]
        level = int(text) if text.isdigit() else _LOG_LEVELS[text.lower()]
        if level != 4:
            out += ["--log-level", str(level)]
    for flag in flags:
        if flag in d:
            out.append("--" + flag)
    return out


def _print_tcpmss(opts, ctx):
    d = _opts_dict(opts)
    if set(d) == {"clamp-mss-to-pmtu"}:
        return ["--clamp-mss-to-pmtu"]
    if set(d) == {"set-mss"}:
        return ["--set-mss", str(int(d["set-mss"][1][0]))]
    raise _Uncertain("TCPMSS options")


def _print_ct(opts, ctx):
    d = _opts_dict(opts)
    if set(d) == {"notrack"}:
        return ["--notrack"]
    raise _Uncertain("CT options")


def _o(*names, **kw):
    """Option table helper: _o('sport', 'source-port', key='sport', nargs=1)."""
    key = kw.get("key", names[0])
    nargs = kw.get("nargs", 1)
    return dict((n, (key, nargs)) for n in names)


def _merge(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


_PORT_OPTS = _merge(_o("sport", "source-port", key="sport"), _o("dport", "destination-port", key="dport"))

MATCHES = {
    "tcp": _Spec(_merge(_PORT_OPTS, _o("syn", nargs=0), _o("tcp-flags", key="flags", nargs=2),
                        _o("tcp-option", key="option")), _print_ports("tcp")),
    "udp": _Spec(_PORT_OPTS, _print_ports("udp")),
    "udplite": _Spec(_PORT_OPTS, _print_ports("udplite")),
    "sctp": _Spec(_merge(_PORT_OPTS, _o("chunk-types", nargs=2)), _print_ports("sctp")),
    "dccp": _Spec(_merge(_PORT_OPTS, _o("dccp-types"), _o("dccp-option")), _print_ports("dccp")),
    "icmp": _Spec(_o("icmp-type", key="type"), _print_icmp),
    "multiport": _Spec(_merge(_o("sports", "source-ports", key="sports"), _o("dports", "destination-ports", key="dports"),
                              _o("ports")), _print_multiport),
    "comment": _Spec(_o("comment"), _print_comment),
    "statistic": _Spec(_merge(_o("mode"), _o("probability"), _o("every"), _o("packet")), _print_statistic),
    "mark": _Spec(_o("mark"), _print_mark_match),
    "connmark": _Spec(_o("mark"), _print_mark_match),
    "conntrack": _Spec(_merge(_o("ctstate"), _o("ctproto"), _o("ctorigsrc"), _o("ctorigdst"), _o("ctreplsrc"),
                              _o("ctrepldst"), _o("ctorigsrcport"), _o("ctorigdstport"), _o("ctreplsrcport"),
                              _o("ctrepldstport"), _o("ctstatus"), _o("ctexpire"), _o("ctdir")),
                       _print_states("ctstate", _CT_STATES)),
    "state": _Spec(_o("state"), _print_states("state", _CT_STATES[:5])),
    "addrtype": _Spec(_merge(_o("src-type"), _o("dst-type"), _o("limit-iface-in", nargs=0),
                             _o("limit-iface-out", nargs=0)), _print_addrtype),
    "recent": _Spec(_merge(_o("set", nargs=0), _o("rcheck", nargs=0), _o("update", nargs=0), _o("remove", nargs=0),
                           _o("seconds"), _o("reap", nargs=0), _o("hitcount"), _o("rttl", nargs=0), _o("name"),
                           _o("mask"), _o("rsource", nargs=0), _o("rdest", nargs=0)), _print_recent),
    "iprange": _Spec(_merge(_o("src-range"), _o("dst-range")), _print_iprange),
    "physdev": _Spec(_merge(_o("physdev-in"), _o("physdev-out"), _o("physdev-is-in", nargs=0),
                            _o("physdev-is-out", nargs=0), _o("physdev-is-bridged", nargs=0)), _print_physdev),
    "pkttype": _Spec(_o("pkt-type"), _print_simple(["pkt-type"], lambda k, v: v.lower())),
    "length": _Spec(_o("length"), _print_simple(["length"], _length_value)),
    "owner": _Spec(_merge(_o("uid-owner"), _o("gid-owner"), _o("socket-exists", nargs=0)),
                   _print_simple(["uid-owner", "gid-owner", "socket-exists"], _owner_value)),
    "ttl": _Spec(_merge(_o("ttl-eq"), _o("ttl-lt"), _o("ttl-gt")),
                 _print_simple(["ttl-eq", "ttl-gt", "ttl-lt"], lambda k, v: str(int(v)))),
    "limit": _Spec(_merge(_o("limit"), _o("limit-burst")), _print_limit),
}

TARGETS = {
    "ACCEPT": _Spec({}, _print_no_options), "DROP": _Spec({}, _print_no_options),
    "RETURN": _Spec({}, _print_no_options), "QUEUE": _Spec({}, _print_no_options),
    "DNAT": _Spec(_merge(_o("to-destination"), _o("random", nargs=0), _o("persistent", nargs=0)),
                  _print_nat("to-destination", ["random", "persistent"], _nat_range)),
    "SNAT": _Spec(_merge(_o("to-source"), _o("random", nargs=0), _o("random-fully", nargs=0), _o("persistent", nargs=0)),
                  _print_nat("to-source", ["random", "random-fully", "persistent"], _nat_range)),
    "MASQUERADE": _Spec(_merge(_o("to-ports"), _o("random", nargs=0), _o("random-fully", nargs=0)),
                        _print_nat("to-ports", ["random", "random-fully"], _fmt_ports_dash)),
    "REDIRECT": _Spec(_merge(_o("to-ports"), _o("random", nargs=0)), _print_nat("to-ports", ["random"], _fmt_ports_dash)),
    "MARK": _Spec(_merge(_o("set-xmark"), _o("set-mark"), _o("and-mark"), _o("or-mark"), _o("xor-mark")),
                  _print_mark_target(False)),
    "CONNMARK": _Spec(_merge(_o("set-xmark"), _o("set-mark"), _o("and-mark"), _o("or-mark"), _o("xor-mark"),
                             _o("save-mark", key="save", nargs=0), _o("restore-mark", key="restore", nargs=0),
                             _o("nfmask"), _o("ctmask"), _o("mask")), _print_mark_target(True)),
    "REJECT": _Spec(_o("reject-with"), _print_reject),
    "LOG": _Spec(_merge(_o("log-level"), _o("log-prefix"), _o("log-tcp-sequence", nargs=0), _o("log-tcp-options", nargs=0),
                        _o("log-ip-options", nargs=0), _o("log-uid", nargs=0), _o("log-macdecode", nargs=0)), _print_log),
    "TCPMSS": _Spec(_merge(_o("set-mss"), _o("clamp-mss-to-pmtu", nargs=0)), _print_tcpmss),
    "CT": _Spec(_merge(_o("notrack", nargs=0), _o("zone"), _o("helper"), _o("ctevents"), _o("expevents"),
                       _o("timeout"), _o("zone-orig"), _o("zone-reply")), _print_ct),
}
STANDARD_VERDICTS = frozenset(("ACCEPT", "DROP", "RETURN", "QUEUE"))

# Implicit protocol matches: iptables loads "-m <proto>" when an option is unknown and -p is set.
_IMPLICIT = frozenset(("tcp", "udp", "udplite", "sctp", "dccp", "icmp"))

# Base options of iptables (getopt long names) -> what they mean in a rule.
_BASE_LONG = {
    "source": "s", "src": "s", "destination": "d", "dst": "d", "protocol": "p", "in-interface": "i",
    "out-interface": "o", "fragment": "f", "match": "m", "jump": "j", "goto": "g",
    "append": "A", "check": "C", "delete": "D", "insert": "I", "replace": "R", "list": "L",
    "list-rules": "S", "flush": "F", "zero": "Z", "new-chain": "N", "delete-chain": "X",
    "policy": "P", "rename-chain": "E", "table": "t", "set-counters": "c", "wait": "w",
    "wait-interval": "W", "numeric": "n", "verbose": "v", "exact": "x", "line-numbers": "0",
    "modprobe": "M", "version": "V", "help": "h", "ipv4": "4", "ipv6": "6",
}
_RULE_SHORT = frozenset("sdpiofmjg")
FORBIDDEN = {"A": "-A", "C": "-C", "D": "-D", "I": "-I", "R": "-R", "L": "-L", "S": "-S", "F": "-F",
             "Z": "-Z", "N": "-N", "X": "-X", "P": "-P", "E": "-E", "t": "-t", "c": "-c", "w": "-w",
             "W": "-W", "n": "-n", "v": "-v", "x": "-x", "0": "--line-numbers", "M": "--modprobe",
             "V": "-V", "h": "-h", "4": "-4", "6": "-6"}


class Canon(object):
    """What the kernel will print for one declared rule.

    ``rules``: tuple of token tuples (iptables expands ``-s a,b`` into one rule per address);
    ``certain``: False when a match/target was kept as written; ``jump``: (``"j"``|``"g"``, name)
    or None; ``why``: what made it uncertain.
    """

    __slots__ = ("rules", "certain", "jump", "why")

    def __init__(self, rules, certain, jump, why=None):
        self.rules = rules
        self.certain = certain
        self.jump = jump
        self.why = why


class _Ctx(object):
    __slots__ = ("proto",)

    def __init__(self, proto):
        self.proto = proto


def _find_option(name, loaded, target):
    """getopt_long over base options + loaded extensions' options (newest first).

    Returns (owner, key, nargs) with owner None for base options, or None when unknown.
    Raises _Uncertain for an ambiguous abbreviation.
    """
    base = _BASE_LONG.get(name)
    if base is not None:
        return (None, base, 1)
    if target is not None and target.spec is not None:
        hit = target.spec.options.get(name)
        if hit is not None:
            return (target, hit[0], hit[1])
    for k in range(len(loaded) - 1, -1, -1):
        ext = loaded[k]
        if ext.spec is not None:
            hit = ext.spec.options.get(name)
            if hit is not None:
                return (ext, hit[0], hit[1])
    exts = loaded + [target] if target is not None else loaded
    if any(ext.spec is None for ext in exts):
        return None  # may well be an option of the extension we do not model
    cands = set()
    found = None
    for full, letter in _BASE_LONG.items():
        if full.startswith(name):
            cands.add((None, letter))
            found = (None, letter, 1)
    for ext in reversed(exts):
        for full, (key, nargs) in ext.spec.options.items():
            if full.startswith(name):
                cands.add((id(ext), key))
                found = (ext, key, nargs)
    if len(cands) > 1:
        raise _Uncertain("ambiguous option --%s" % name)
    return found


_NOT_ALLOWED = "rule %r: %s is not allowed in a rule (the module writes the -A/-I/-D/-N/-X commands itself)"


def canonicalise(text):
    """The rule(s) iptables-save will print for ``text`` (a rule without ``-A CHAIN``).

    Returns a :class:`Canon`. Raises RuleError for input the module refuses outright (commands
    such as ``-A``/``-X``/``-t`` inside a rule, host names, unbalanced quotes).
    """
    tokens = tokenize(text)
    hdr = {}
    loaded = []           # matches, in order
    target = None         # Ext for -j
    goto = None
    jump = None
    neg = False
    why = []
    last = None           # the Ext that received the last option (for unknown ones)
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            if neg:
                raise RuleError("rule %r: '!' given twice" % text)
            neg = True
            i += 1
            continue
        if tok[:1] != "-" or tok == "-" or tok == "--":
            # a value nobody asked for: it belongs to an option of an extension we do not model
            if last is None:
                raise RuleError("rule %r: unexpected %r" % (text, tok))
            if last.spec is not None:
                why.append("unexpected %r" % tok)
                last.spec = None
            last.raw.append(tok)
            i += 1
            continue
        inline = None
        if tok[1] != "-":
            # short option: -s -d -p -i -o -f -m -j -g (value may be glued: -ptcp)
            key = tok[1]
            if key not in _RULE_SHORT:
                raise RuleError(_NOT_ALLOWED % (text, FORBIDDEN.get(key, tok)))
            if len(tok) > 2:
                inline = tok[2:]
            owner = None
            resolved = True
        else:
            name = tok
            if "=" in tok:
                name, sep, inline = tok.partition("=")
            try:
                found = _find_option(name[2:], loaded, target)
            except _Uncertain as exc:
                why.append(str(exc))
                found = None
            if found is None and "p" in hdr and not hdr["p"][0]:
                proto = _proto_or_none(hdr["p"][1])
                if proto in _IMPLICIT and not any(e.name == proto for e in loaded):
                    loaded.append(Ext(proto, MATCHES.get(proto), implicit=True))
                    try:
                        found = _find_option(name[2:], loaded, target)
                    except _Uncertain as exc:
                        why.append(str(exc))
                        found = None
            if found is None:
                # unknown option: it belongs to an extension we do not model
                owner = last if last is not None else (target or (loaded[-1] if loaded else None))
                if owner is None:
                    raise RuleError("rule %r: unknown option %s" % (text, name))
                why.append("option %s" % name)
                if neg:
                    owner.raw.append("!")
                owner.raw.append(name)
                if inline is not None:
                    owner.raw.append(inline)
                owner.spec = None
                last = owner
                neg = False
                i += 1
                continue
            owner, key, nargs = found
            resolved = owner is None
        if resolved:
            # a base option
            if key in FORBIDDEN:
                raise RuleError(_NOT_ALLOWED % (text, FORBIDDEN[key]))
            if key == "f":
                hdr["f"] = (neg, None)
                neg = False
                i += 1
                continue
            if inline is not None:
                value = inline
                i += 1
            else:
                if i + 1 >= n:
                    raise RuleError("rule %r: %s needs a value" % (text, tok))
                value = tokens[i + 1]
                i += 2
            if key == "m":
                if neg:
                    raise RuleError("rule %r: '!' before -m" % text)
                last = Ext(value, MATCHES.get(value))
                loaded.append(last)
            elif key == "j" or key == "g":
                if jump is not None:
                    raise RuleError("rule %r: more than one -j/-g" % text)
                jump = (key, value)
                if key == "j":
                    target = last = Ext(value, TARGETS.get(value))
                else:
                    goto = value
            else:
                if key in hdr:
                    raise RuleError("rule %r: -%s given twice" % (text, key))
                hdr[key] = (neg, value)
            neg = False
            continue
        # an option of a known extension
        if inline is not None:
            args = [inline] + tokens[i + 1:i + nargs]
            i += nargs
        else:
            args = tokens[i + 1:i + 1 + nargs]
            i += nargs + 1
        if len(args) < nargs:
            raise RuleError("rule %r: %s needs %d value(s)" % (text, tok, nargs))
        owner.opts.append((key, neg, args))
        if neg:
            owner.raw.append("!")
        owner.raw.append(name)
        owner.raw += args
        last = owner
        neg = False
    if neg:
        raise RuleError("rule %r: '!' at the end" % text)
    return _assemble(hdr, loaded, target, goto, jump, why)


def _assemble(hdr, loaded, target, goto, jump, why):
    """Print the parsed rule in iptables-save's order."""
    proto = None
    head = []
    for key in "io":
        if key in hdr:
            kneg, value = hdr[key]
            if kneg:
                head.append("!")
            head += ("-" + key, value)
    if "p" in hdr:
        kneg, value = hdr["p"]
        proto = _proto_or_none(value)
        if proto is None and value.lower() not in ("all", "0"):
            why.append("protocol %s" % value)
            proto = value
        if proto is not None:
            if kneg:
                head.append("!")
            head += ("-p", proto)
    if "f" in hdr:
        if hdr["f"][0]:
            head.append("!")
        head.append("-f")
    ctx = _Ctx(proto)
    for ext in loaded:
        head += ("-m", ext.name)
        head += _print_ext(ext, ctx, why)
    if target is not None:
        head += ("-j", target.name)
        head += _print_ext(target, ctx, why)
    elif goto is not None:
        head += ("-g", goto)
    srcs = _addresses(hdr, "s", why)
    dsts = _addresses(hdr, "d", why)
    if len(srcs) == 1 and len(dsts) == 1:
        rules = (tuple(srcs[0] + dsts[0] + head),)
    else:
        rules = tuple(tuple(s + d + head) for s in srcs for d in dsts)
    return Canon(rules, not why, jump, "; ".join(why) or None)


def _addresses(hdr, key, why):
    """-s/-d value -> list of token lists (one per address; [] when it matches everything)."""
    if key not in hdr:
        return [[]]
    kneg, value = hdr[key]
    out = []
    for item in value.split(","):
        net = canonical_cidr(item)
        if net is None:
            if kneg:
                why.append("! -%s 0/0" % key)
                out.append(["!", "-" + key, "0.0.0.0/0"])
            else:
                out.append([])
        else:
            out.append(["!", "-" + key, net] if kneg else ["-" + key, net])
    return out


def _proto_or_none(text):
    try:
        return canonical_proto(text)
    except ValueError:
        return None


def _print_ext(ext, ctx, why):
    if ext.spec is not None:
        try:
            return ext.spec.printer(ext.opts, ctx)
        except _Uncertain as exc:
            why.append("%s: %s" % (ext.name, exc))
        except (ValueError, OSError, KeyError, IndexError) as exc:
            why.append("%s: cannot read %s" % (ext.name, exc))
    elif ext.raw or ext.name[:1].islower():
        # a target without options is a chain (or an option-less target): nothing to normalise
        why.append("%s is not modelled" % ext.name)
    return list(ext.raw)
