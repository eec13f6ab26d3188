# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chain names, kube-proxy's hashed names, and how ownership is written into the kernel.

Ownership lives in the tables themselves, written in the same iptables-restore transaction as
the chains it describes, so it can never disagree with them:

- Owned jumps (rules the module puts into chains it does not own, e.g. ``PREROUTING``) carry
  the comment ``podnet.fabric:<owner>``.
- Owned chains are listed in a registry chain per owner and table, ``PODNET-OWN-<hash of
  owner>``. The registry is never jumped to; each of its rules is a bare comment
  ``podnet.fabric:<owner> CHAIN=fp CHAIN=fp ...``. ``fp`` (10 hex digits) is a fingerprint of the rules as
  declared plus the rules as iptables-save printed (or will print) them: when both still match,
  the chain is in sync without canonicalising a single rule (how a no-op run over 15,000 rules
  stays well under a second). Entries are spread over a fixed number of buckets, so a change to
  one chain rewrites one or two registry rules, not the whole registry.

Anything not recorded this way is someone else's and is never modified or deleted.
"""
from __future__ import annotations

import base64
import hashlib
import re
import zlib

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

# XT_EXTENSION_MAXNAMELEN is 29 including the NUL: "chain name ... too long (must be under 29 chars)".
CHAIN_NAME_MAX = 28
MARKER = "podnet.fabric"
REGISTRY_PREFIX = "PODNET-OWN-"
REGISTRY_BUCKETS = 256
COMMENT_MAX = 255            # XT_MAX_COMMENT_LEN is 256 including the NUL

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLES = tuple(BUILTIN_CHAINS)
# The order tables appear in a restore transaction (and are rolled back in reverse).
TABLE_ORDER = ("raw", "mangle", "nat", "filter", "security")

_CHAIN_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]*$")


def _b32(data):
    return base64.b32encode(data).decode("ascii")


def kube_chain_name(prefix, svc_port_name, proto, endpoint=None):
    """kube-proxy's chain name for a service port (KUBE-SVC-/SVL-/EXT-/FW-) or an endpoint (KUBE-SEP-).

    ``svc_port_name`` is "namespace/name:portname" (":portname" omitted for an unnamed port),
    ``proto`` is lowercased as kube-proxy does, ``endpoint`` is "ip:port" for KUBE-SEP-:
    prefix + base32(sha256(svc_port_name + proto [+ endpoint]))[:16], as in
    pkg/proxy/iptables/proxier.go (servicePortChainName / servicePortEndpointChainName).
    """
    text = svc_port_name + proto.lower() + (endpoint or "")
    name = prefix + _b32(hashlib.sha256(text.encode("utf-8")).digest())[:16]
    check_chain_name(name)
    return name


def check_chain_name(name, what="chain"):
    """A chain name the module can own: <= 28 characters, no blanks or quotes, no '-' first."""
    if not isinstance(name, str) or not name:
        raise FabricError("%s name %r: must be a non-empty string" % (what, name))
    if len(name) > CHAIN_NAME_MAX:
        raise FabricError("%s %s: name is %d characters, iptables allows at most %d"
                          % (what, name, len(name), CHAIN_NAME_MAX))
    if not _CHAIN_RE.match(name):
        raise FabricError("%s %s: name may only contain letters, digits and _ . : @ + = - (and may not start with '-')"
                          % (what, name))
    return name


def owner_comment(owner):
    """The comment every owned jump carries."""
    return "%s:%s" % (MARKER, owner)


def jump_marker_text(owner):
    """How that comment appears in iptables-save output (it always needs quotes)."""
    return '--comment "%s:%s"' % (MARKER, owner)


def registry_chain(owner):
    return REGISTRY_PREFIX + _b32(hashlib.sha256(owner.encode("utf-8")).digest())[:16]


def is_registry_chain(name):
    return name.startswith(REGISTRY_PREFIX)


def fingerprint(declared_rules, printed_rules):
    """10 hex digits (40 bits) that change when the declared or the kernel's rules change."""
    h = hashlib.sha256("\n".join(declared_rules).encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update("\n".join(printed_rules).encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:10]


def encode_registry(owner, entries):
    """{chain: fp} -> registry rules, exactly as iptables-save prints them."""
    buckets = {}
    for name in entries:
        buckets.setdefault(zlib.crc32(name.encode("utf-8")) % REGISTRY_BUCKETS, []).append(name)
    head = owner_comment(owner)
    rules = []
    for b in sorted(buckets):
        parts = [head]
        size = len(head)
        for name in sorted(buckets[b]):
            item = "%s=%s" % (name, entries[name])
            if size + 1 + len(item) > COMMENT_MAX and len(parts) > 1:
                rules.append(_registry_rule(parts))
                parts = [head]
                size = len(head)
            parts.append(item)
            size += 1 + len(item)
        rules.append(_registry_rule(parts))
    return rules


def _registry_rule(parts):
    return '-m comment --comment "%s"' % " ".join(parts)


_REGISTRY_RULE_RE = re.compile(r'^-m comment --comment "([^"\\]*)"$')


def decode_registry(rules, chain):
    """Registry rules (as printed) -> (owner, {chain: fp}). Raises FabricError if garbled."""
    owner = None
    entries = {}
    for rule in rules:
        m = _REGISTRY_RULE_RE.match(rule)
        words = m.group(1).split() if m else []
        if not words or not words[0].startswith(MARKER + ":"):
            raise FabricError("ownership registry %s holds a rule podnet.fabric did not write: %r; "
                              "remove that rule (or the chain) by hand" % (chain, rule))
        this = words[0][len(MARKER) + 1:]
        if owner is None:
            owner = this
        elif this != owner:
            raise FabricError("ownership registry %s mixes owners %s and %s" % (chain, owner, this))
        for word in words[1:]:
            name, _sep, fp = word.rpartition("=")
            entries[name] = fp
    return owner, entries
