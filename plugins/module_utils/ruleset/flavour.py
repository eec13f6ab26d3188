# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which iptables the host uses: legacy (x_tables) or nft (nf_tables), decided like kube-proxy.

kube-proxy's image runs kubernetes-sigs/iptables-wrappers, which looks for the chains kubelet
creates (``KUBE-IPTABLES-HINT`` / ``KUBE-KUBELET-CANARY`` in the mangle table), first in the
nft tables, then in the legacy ones, and otherwise (in its shell version) picks the flavour
holding more rules, nft on a tie. We do the same, with one step added before counting: if
podnet.fabric already owns chains in one flavour, stay there (otherwise a host whose rule
counts shift would end up with two copies of the same chains).

Both dumps are full ``iptables-save`` runs without ``-t``: with legacy iptables, ``-t mangle``
would create the table as a side effect (the wrapper avoids it for the same reason), and the
chosen flavour's dump is reused as the observed state, so auto-detection costs one extra
``iptables-save`` of the other flavour.
"""
from __future__ import annotations

import re

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import REGISTRY_PREFIX

FLAVOURS = ("nft", "legacy")
_HINT_RE = re.compile(r"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) ", re.M)
_VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)(?:\s*\((\w+)\))?")


class Tools(object):
    """Paths of iptables-save/-restore per flavour (None when not installed)."""

    def __init__(self, which):
        """``which(name)`` returns an absolute path or None (AnsibleModule.get_bin_path)."""
        self.save = {}
        self.restore = {}
        for flavour in FLAVOURS:
            self.save[flavour] = which("iptables-%s-save" % flavour)
            self.restore[flavour] = which("iptables-%s-restore" % flavour)
        self.generic_save = which("iptables-save")
        self.generic_restore = which("iptables-restore")

    def available(self):
        return [f for f in FLAVOURS if self.save[f] and self.restore[f]]


class Observation(object):
    """The flavour chosen, why, and the iptables-save text of that flavour."""

    def __init__(self, flavour, reason, save_text, save_cmd, restore_cmd, version=None):
        self.flavour = flavour
        self.reason = reason
        self.save_text = save_text
        self.save_cmd = save_cmd
        self.restore_cmd = restore_cmd
        self.version = version


def _save(run, binary, commands):
    rc, out, err = run([binary])
    commands.append(binary)
    if rc != 0:
        return None, (err or out).strip()
    return out, None


def _count_rules(text):
    return text.count("\n-") + (1 if text.startswith("-") else 0)


def observe(run, tools, requested="auto", owner_registry=None, commands=None):
    """Pick the flavour and return an :class:`Observation` (with that flavour's full dump).

    ``run(argv)`` -> (rc, stdout, stderr) runs inside the target namespace. ``requested`` is
    auto|legacy|nft. ``owner_registry`` is this owner's registry chain name.
    """
    if commands is None:
        commands = []
    available = tools.available()
    if not available:
        return _observe_generic(run, tools, requested, commands)
    if requested != "auto":
        if requested not in available:
            raise FabricError("iptables_flavour=%s: iptables-%s-save/-restore are not installed (found: %s)"
                              % (requested, requested, ", ".join(available) or "none"))
        text, err = _save(run, tools.save[requested], commands)
        if text is None:
            raise FabricError("iptables-%s-save failed: %s" % (requested, err))
        return Observation(requested, "iptables_flavour=%s was requested" % requested, text,
                           tools.save[requested], tools.restore[requested])
    dumps = {}
    errors = {}
    for flavour in available:
        text, err = _save(run, tools.save[flavour], commands)
        if text is None:
            errors[flavour] = err
        else:
            dumps[flavour] = text
    if not dumps:
        raise FabricError("iptables-save failed for every flavour: %s"
                          % "; ".join("%s: %s" % kv for kv in sorted(errors.items())))
    flavour, reason = decide(dumps, owner_registry)
    if len(dumps) == 1 and errors:
        reason += " (iptables-%s-save failed: %s)" % (sorted(errors)[0], errors[sorted(errors)[0]])
    return Observation(flavour, reason, dumps[flavour], tools.save[flavour], tools.restore[flavour])


def decide(dumps, owner_registry=None):
    """{flavour: iptables-save text} -> (flavour, reason). Pure; see the module docstring."""
    if len(dumps) == 1:
        (flavour,) = dumps
        return flavour, "only iptables-%s works here" % flavour
    nft, legacy = dumps["nft"], dumps["legacy"]
    if _HINT_RE.search(_section(nft, "mangle")):
        return "nft", "kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chain is in the nft tables"
    if _HINT_RE.search(legacy):
        return "legacy", "kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chain is in the legacy tables"
    for marker, what in ((owner_registry, "this owner's chains"), (REGISTRY_PREFIX, "podnet.fabric chains")):
        if not marker:
            continue
        needle = "\n:" + marker
        in_nft, in_legacy = needle in "\n" + nft, needle in "\n" + legacy
        if in_nft != in_legacy:
            flavour = "nft" if in_nft else "legacy"
            return flavour, "%s already live in the %s tables" % (what, flavour)
    n_nft, n_legacy = _count_rules(nft), _count_rules(legacy)
    if n_legacy > n_nft:
        return "legacy", "the legacy tables hold more rules (%d) than the nft tables (%d)" % (n_legacy, n_nft)
    return "nft", "nft by default (rules: nft %d, legacy %d)" % (n_nft, n_legacy)


def _section(text, table):
    start = text.find("*%s\n" % table)
    if start < 0:
        return ""
    end = text.find("\nCOMMIT", start)
    return text[start:end if end >= 0 else len(text)]


def _observe_generic(run, tools, requested, commands):
    """Only plain iptables-save/-restore: ask them which flavour they are."""
    if not (tools.generic_save and tools.generic_restore):
        raise FabricError("iptables-save/iptables-restore not found (install the iptables package)")
    _rc, out, err = run([tools.generic_save, "--version"])
    commands.append("%s --version" % tools.generic_save)
    m = _VERSION_RE.search(out + err)
    flavour = "legacy"
    version = None
    if m:
        version = tuple(int(x) for x in m.groups()[:3])
        flavour = "nft" if (m.group(4) or "").startswith("nf_tables") else "legacy"
    if requested not in ("auto", flavour):
        raise FabricError("iptables_flavour=%s: this host only has iptables-save (%s)" % (requested, flavour))
    text, err = _save(run, tools.generic_save, commands)
    if text is None:
        raise FabricError("iptables-save failed: %s" % err)
    return Observation(flavour, "the only iptables here is %s" % flavour, text, tools.generic_save,
                       tools.generic_restore, version)


def restore_argv(obs, wait=None):
    """iptables-restore with the xtables lock wait where supported (>= 1.6.2), never flushing."""
    argv = [obs.restore_cmd]
    if obs.version is None or obs.version >= (1, 6, 2):
        argv += ["-w", str(5 if wait is None else wait)]
    argv.append("--noflush")
    return argv
