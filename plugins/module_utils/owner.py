# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ownership model for every podnet.fabric module.

Ownership belongs to the caller: every object a module creates carries the ``owner`` the task
names, and "remove what is no longer declared" (``purge``) removes only that owner's objects.
Where the kernel keeps a marker, the marker is the owner:

- links, and a namespace's loopback: the link alias ``podnet.fabric:<owner>``;
- routes: a route protocol number registered for the owner in
  ``/etc/iproute2/rt_protos.d/podnet-fabric.conf`` (so ``ip route`` prints the owner's name);
- iptables: the owner's registry chain and the comment ``podnet.fabric:<owner>`` on jumps;
- IPAM files: the container id written as ``podnet.fabric:<owner>:<id>``.

Objects made by release 0.1 carry the plain mark ``podnet.fabric`` (alias) or protocol 149
(routes): they are *legacy*. The owner that declares a legacy object adopts it in place (the mark
is rewritten, the object is not recreated); purge never removes a legacy object, because any
owner may still declare it.

A task without ``owner`` works under the owner ``default``, but ``purge`` then is an error: two
playbooks that forgot to name themselves must not silently remove each other's objects.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

MARK = "podnet.fabric"
DEFAULT_OWNER = "default"
# Legacy: what release 0.1 put on everything (no owner in it).
LEGACY = ""

# Fits a link alias, an rt_protos name and an iptables comment; no ':' (the separator).
_OWNER_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,30}[a-z0-9])?$")
# Names iproute2 already gives to protocol numbers: an owner of that name would print ambiguously.
_IPROUTE2_NAMES = frozenset((
    "unspec", "redirect", "kernel", "boot", "static", "gated", "ra", "mrt", "zebra", "bird",
    "dnrouted", "xorp", "ntk", "dhcp", "keepalived", "babel", "openr", "bgp", "isis", "ospf",
    "rip", "eigrp", "mrouted", "calico",
))


def check(owner, purge=False, what="owner"):
    """Validate a task's owner; None means the default owner, which may not purge."""
    if owner is None:
        if purge:
            raise FabricError("purge needs an explicit owner: name the role or playbook whose objects these are "
                              "(owner: NAME), so that it can never remove another owner's objects")
        return DEFAULT_OWNER
    text = str(owner)
    if not _OWNER_RE.match(text):
        raise FabricError("%s %r: must be 1-32 characters of a-z, 0-9, '_', '.', '-', "
                          "starting and ending with a letter or digit" % (what, owner))
    if text in _IPROUTE2_NAMES:
        raise FabricError("%s %r: iproute2 already uses that name for a route protocol; pick another" % (what, owner))
    return text


def mark(owner):
    """The marker text for ``owner``: link alias, iptables comment, IPAM id prefix."""
    return "%s:%s" % (MARK, owner)


def owner_of_mark(text):
    """The owner a marker names; LEGACY ('') for release 0.1's plain mark; None when not ours."""
    if not text:
        return None
    if text == MARK:
        return LEGACY
    prefix = MARK + ":"
    if text.startswith(prefix) and len(text) > len(prefix):
        return text[len(prefix):]
    return None


def describe(holder):
    """How an error message names the holder of an object."""
    if holder is None:
        return "not podnet.fabric"
    if holder == LEGACY:
        return "podnet.fabric 0.1 (no owner)"
    return "owner %s" % holder


def claim(what, holder, owner):
    """May ``owner`` manage an object held by ``holder`` (see owner_of_mark)?

    Returns True when the object must be adopted (legacy mark), False when it is already the
    owner's; raises FabricError naming both owners otherwise.
    """
    if holder == owner:
        return False
    if holder == LEGACY:
        return True
    if holder is None:
        raise FabricError("%s: exists and is not podnet.fabric's; refusing to take it over (remove it or pick another name)" % what)
    raise FabricError("%s: belongs to owner %s, not to owner %s; refusing to take it over" % (what, holder, owner))


# --- route protocols ------------------------------------------------------------------------------

LEGACY_ROUTE_PROTO = 149
RT_PROTOS_DIR = "/etc/iproute2/rt_protos.d"
REGISTRY_NAME = "podnet-fabric.conf"
# Unassigned in iproute2's rt_protos and in FRR's (186-198) and Calico's (80) numbers.
ROUTE_PROTO_RANGE = range(150, 180)
_HEADER = ("# Route protocols of podnet.fabric owners: `ip route` prints the owner's name.\n"
           "# Written by podnet.fabric (one line per owner); numbers never change once given.\n")


class ProtocolRegistry(object):
    """The owners' route protocol numbers, kept in one rt_protos.d file.

    ``lookup`` never writes; ``plan_register`` adds the line as a plan action (with undo), under
    a lock, so that two modules on one host never hand out one number twice.
    """

    def __init__(self, directory=RT_PROTOS_DIR):
        self.directory = directory
        self.path = os.path.join(directory, REGISTRY_NAME)

    def read(self):
        """{owner: number} as the file has it (empty when it does not exist)."""
        out = {}
        try:
            with open(self.path) as handle:
                for line in handle:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) == 2 and parts[0].isdigit():
                        out[parts[1]] = int(parts[0])
        except (IOError, OSError):
            pass
        return out

    def lookup(self, owner, pinned=None):
        """(number, registered) for ``owner``: its registered number, else the one it would get."""
        table = self.read()
        if owner in table:
            if pinned is not None and pinned != table[owner]:
                raise FabricError("owner %s: route protocol %d was asked for, but %s registers it as %d"
                                  % (owner, pinned, self.path, table[owner]))
            return table[owner], True
        taken = set(table.values())
        if pinned is not None:
            if pinned in taken:
                holder = [o for o, n in table.items() if n == pinned][0]
                raise FabricError("owner %s: route protocol %d is registered for owner %s in %s" % (owner, pinned, holder, self.path))
            return pinned, False
        for number in ROUTE_PROTO_RANGE:
            if number not in taken:
                return number, False
        raise FabricError("owner %s: no free route protocol number left in %d..%d (%s)"
                          % (owner, ROUTE_PROTO_RANGE[0], ROUTE_PROTO_RANGE[-1], self.path))

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(os.path.join(self.directory, ".podnet-fabric.lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def register(self, owner, number):
        """Write ``number owner`` (idempotent; the number must still be free)."""
        with self._locked():
            table = self.read()
            if table.get(owner) == number:
                return
            if owner in table or number in table.values():
                raise FabricError("owner %s: route protocol %d was taken meanwhile in %s; run again" % (owner, number, self.path))
            table[owner] = number
            self._write(table)

    def unregister(self, owner):
        with self._locked():
            table = self.read()
            if table.pop(owner, None) is not None:
                self._write(table)

    def _write(self, table):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(_HEADER)
            for name, number in sorted(table.items(), key=lambda item: item[1]):
                handle.write("%d\t%s\n" % (number, name))
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.path)

    def plan_register(self, plan, owner, pinned=None):
        """The owner's protocol number; plans registering it when it is new."""
        number, registered = self.lookup(owner, pinned)
        if not registered:
            plan.add("register route protocol %d for owner %s in %s" % (number, owner, self.path),
                     lambda: self.register(owner, number), lambda: self.unregister(owner))
        return number
