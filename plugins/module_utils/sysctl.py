# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel settings a ruleset depends on (``net.ipv4.conf.all.route_localnet`` for DNAT to
127.0.0.1, as kube-proxy and the CNI portmap plugin set it), read and written through /proc/sys in
the task's network namespace, planned like everything else: one reversible action per setting
that differs, nothing when all are as wanted.
"""
from __future__ import annotations

import os
import re

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:-]*$")


def proc_path(key):
    """/proc/sys path of a key: ``net.ipv4.conf.cni0.route_localnet`` or, for an interface name
    with dots, the slash form ``net/ipv4/conf/eth0.100/route_localnet``."""
    if not KEY_RE.match(key) or ".." in key or key.startswith("/"):
        raise FabricError("sysctl %r: not a sysctl key" % key)
    rel = key if "/" in key else key.replace(".", "/")
    return os.path.join("/proc/sys", rel)


def normalise(value):
    """What the kernel prints back for a value (whitespace between numbers collapsed to a tab)."""
    if isinstance(value, bool):
        value = int(value)
    return "\t".join(str(value).split())


class Settings(object):
    """Reads and writes keys in one namespace (None: the module's own)."""

    def __init__(self, netns=None):
        self.netns = netns

    def _inside(self):
        if self.netns is None:
            return _Here()
        return netns_exec.joined(netns_exec.netns_path(self.netns))

    def read(self, keys):
        """{key: value or None (no such key)}."""
        out = {}
        with self._inside():
            for key in keys:
                try:
                    with open(proc_path(key), encoding="ascii") as handle:
                        out[key] = normalise(handle.read())
                except FileNotFoundError:
                    out[key] = None
        return out

    def write(self, key, value):
        with self._inside():
            with open(proc_path(key), "w", encoding="ascii") as handle:
                handle.write(value + "\n")


class _Here(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def plan(plan_, wanted, settings, check_mode=False, missing=False):
    """Add one action per key of ``wanted`` ({key: value}) whose value differs; returns the keys
    that change. A key the kernel does not have is an error (a real run) or predicted as set
    (check mode: an earlier task may create its interface). ``missing``: the namespace does not
    exist yet (check mode), so nothing is read."""
    wanted = dict((str(k), normalise(v)) for k, v in sorted((wanted or {}).items()))
    if not wanted:
        return []
    current = dict.fromkeys(wanted) if missing else settings.read(list(wanted))
    changed = []
    for key, value in wanted.items():
        old = current.get(key)
        if old == value:
            continue
        if old is None and not check_mode:
            raise FabricError("sysctl %s: not in this kernel, or its interface does not exist (nothing was changed)"
                              % key)
        plan_.before["sysctl %s" % key] = old
        plan_.after["sysctl %s" % key] = value
        plan_.add("sysctl %s = %s (was %s)" % (key, value, "unset" if old is None else old),
                  _writer(settings, key, value), _writer(settings, key, old) if old is not None else _nothing)
        changed.append(key)
    return changed


def _writer(settings, key, value):
    def write():
        settings.write(key, value)
    return write


def _nothing():
    """Undo of a setting only predicted (check mode)."""
