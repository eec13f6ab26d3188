# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables-save / iptables-restore text: tokens, quoting, and parsing a dump.

Pure functions, no commands run here:

- :func:`tokenize` splits a rule exactly like iptables-restore does (double quotes group, a
  backslash escapes inside quotes, single quotes are ordinary characters).
- :func:`quote` / :func:`render` print tokens the way iptables-save does.
- :func:`parse_save` reads ``iptables-save`` output into tables and chains.

How a rule is canonicalised (what the kernel prints back) lives in :mod:`.canon`.
"""
from __future__ import annotations

import re

__all__ = ["RuleError", "tokenize", "quote", "render", "parse_save", "Table", "Chain"]


class RuleError(ValueError):
    """A rule that cannot be accepted as written; the message says why."""


# --- tokenising and quoting ----------------------------------------------------------------------

def tokenize(text):
    """Split ``text`` like iptables-restore's add_param_to_argv().

    Outside quotes, blanks separate tokens and ``"`` opens a quoted part; inside quotes a
    backslash takes the next character literally and the closing ``"`` ends the token.
    """
    if '"' not in text:
        return text.split()
    if "\\" in text:
        return _tokenize_slow(text)
    parts = text.split('"')
    if not len(parts) & 1:
        raise RuleError("unbalanced double quote in %r" % text)
    tokens = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if i & 1:
            tokens.append(part)
        elif part:
            if i < last and not part[-1].isspace():
                return _tokenize_slow(text)   # a"b c": the quoted part continues a token
            tokens.extend(part.split())
    return tokens


def _tokenize_slow(text):
    tokens = []
    buf = []
    quote_open = escaped = False
    in_token = False
    for ch in text:
        if quote_open:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quote_open = False
                tokens.append("".join(buf))
                buf = []
                in_token = False
            else:
                buf.append(ch)
            continue
        if ch == '"':
            quote_open = True
            in_token = True
            continue
        if ch in " \t\n":
            if in_token:
                tokens.append("".join(buf))
                buf = []
                in_token = False
            continue
        buf.append(ch)
        in_token = True
    if quote_open:
        raise RuleError("unbalanced double quote in %r" % text)
    if in_token:
        tokens.append("".join(buf))
    return tokens


_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Options whose value iptables-save prints through xtables_save_string() (quoted when it holds
# anything but [_-0-9a-zA-Z]).
_STRING_OPTIONS = frozenset(("--comment", "--log-prefix", "--nflog-prefix", "--string", "--u32"))


_SAFE_RE = re.compile(r"^[-_0-9a-zA-Z]+$")
_SPECIAL_RE = re.compile(r"[\s\"'\\]")
_ESCAPE_RE = re.compile(r"([\"\\'])")


def quote(value):
    """xtables_save_string(): the value as iptables-save prints it."""
    if _SAFE_RE.match(value):
        return value
    return '"%s"' % _ESCAPE_RE.sub(r"\\\1", value)


def render(tokens):
    """Tokens -> one line in iptables-save's spelling (quotes where iptables-save puts them)."""
    out = list(tokens)
    prev = None
    for i, tok in enumerate(out):
        if prev in _STRING_OPTIONS or not tok or _SPECIAL_RE.search(tok):
            out[i] = quote(tok)
        prev = tok
    return " ".join(out)


# --- iptables-save output ------------------------------------------------------------------------

class Chain(object):
    __slots__ = ("name", "policy", "rules")

    def __init__(self, name, policy):
        self.name = name
        self.policy = policy      # '-' for user chains, ACCEPT/DROP for built-in ones
        self.rules = []           # the text after "-A CHAIN ", exactly as printed

    @property
    def builtin(self):
        return self.policy != "-"


class Table(object):
    __slots__ = ("name", "chains", "lines")

    def __init__(self, name):
        self.name = name
        self.chains = {}          # name -> Chain, in the order iptables-save printed them
        self.lines = []           # the table's lines as printed (for before/after snapshots)


def parse_save(text, tables=None):
    """``iptables-save`` output -> {table name: Table}; only ``tables`` when given."""
    result = {}
    table = None
    chains = None
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        c = line[0]
        if c == "*":
            name = line[1:].strip()
            if tables is not None and name not in tables:
                table = None
                continue
            table = Table(name)
            chains = table.chains
            result[name] = table
            table.lines.append(line)
            continue
        if table is None:
            continue
        table.lines.append(line)
        if c == "-":
            if line.startswith("-A "):
                rest = line[3:]
                sp = rest.find(" ")
                if sp < 0:
                    chain, rule = rest, ""
                else:
                    chain, rule = rest[:sp], rest[sp + 1:]
                ch = chains.get(chain)
                if ch is None:
                    ch = chains[chain] = Chain(chain, "-")
                ch.rules.append(rule)
        elif c == ":":
            parts = line[1:].split()
            if parts:
                chains[parts[0]] = Chain(parts[0], parts[1] if len(parts) > 1 else "-")
        elif line.startswith("COMMIT"):
            table = None
    return result
