# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named network namespaces (``/run/netns/NAME``), created and removed with pyroute2.

A namespace podnet.fabric creates is marked by the alias ``podnet.fabric`` on its loopback, so
"remove what is no longer declared" finds exactly ours: ``ip netns add`` namespaces of the user,
of podman or of a CNI runtime carry no such alias and are never removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

RUN_DIR = "/run/netns"
# Concurrent first creations race on mounting /run/netns (pyroute2 #633 and friends): serialise.
LOCK_PATH = "/run/podnet-fabric-netns.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FabricError("netns %r: invalid name (letters, digits, '.', '_', '-'; at most 128 characters)" % (name,))
    return name


def existing():
    try:
        return sorted(n for n in os.listdir(RUN_DIR) if not n.startswith("."))
    except OSError:
        return []


@contextlib.contextmanager
def _lock():
    fd = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _loopback(name):
    """(owned, lo_up) of an existing namespace, read through its loopback."""
    with core.open_netns(name) as ipr:
        lo = link.get(ipr, "lo")
    return core.is_owned_alias(lo and lo["alias"]), bool(lo and lo["up"])


def create(name):
    from pyroute2 import netns as pr_netns
    with _lock():
        pr_netns.create(name)
    try:
        with core.open_netns(name) as ipr:
            ipr.link("set", index=link.index_of(ipr, "lo"), ifalias=core.OWNER_ALIAS, state="up")
    except Exception:
        remove(name)
        raise


def remove(name):
    from pyroute2 import netns as pr_netns
    with _lock():
        if os.path.exists(os.path.join(RUN_DIR, name)):
            pr_netns.remove(name)


def loopback_up(name):
    with core.open_netns(name) as ipr:
        ipr.link("set", index=link.index_of(ipr, "lo"), state="up")


def plan(namespaces, purge=False):
    """``namespaces``: [{'name', 'state'}]. Returns a Plan; before/after map name -> state."""
    result = Plan()
    present = set(existing())
    declared = set()
    for spec in namespaces:
        name = check_name(spec["name"])
        if name in declared:
            raise FabricError("netns %s: declared twice" % name)
        declared.add(name)
        exists = name in present
        owned, lo_up = _loopback(name) if exists else (False, False)
        result.before[name] = {"state": "present" if exists else "absent", "owned": owned, "loopback_up": lo_up} if exists else {"state": "absent"}
        if spec.get("state", "present") == "absent":
            result.after[name] = {"state": "absent"}
            if exists:
                if not owned:
                    raise FabricError("netns %s: exists but was not created by podnet.fabric (no alias on its loopback); refusing to delete it" % name)
                result.add("delete netns %s" % name, lambda name=name: remove(name))
            continue
        result.after[name] = {"state": "present", "owned": owned or not exists, "loopback_up": True}
        if not exists:
            result.add("create netns %s" % name, lambda name=name: create(name), lambda name=name: remove(name))
        elif not lo_up:
            result.add("set lo up in netns %s" % name, lambda name=name: loopback_up(name))
    if purge:
        for name in sorted(present - declared):
            try:
                owned, lo_up = _loopback(name)
            except FabricError:  # vanished while we looked (pyroute2 #633): not ours to worry about
                continue
            if owned:
                result.before[name] = {"state": "present", "owned": True, "loopback_up": lo_up}
                result.after[name] = {"state": "absent"}
                result.add("delete netns %s" % name, lambda name=name: remove(name))
    return result
