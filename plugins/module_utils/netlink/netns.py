# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named network namespaces (``/run/netns/NAME``), the way ``ip netns add`` makes them.

A namespace is created in-thread: a short-lived thread unshares its network namespace and
bind-mounts ``/proc/thread-self/ns/net`` onto ``/run/netns/NAME`` (libc mount(2) through ctypes;
no helper process, no dependency on pyroute2's internals). ``/run/netns`` is made a shared mount
point first, as iproute2 does, so the namespaces are visible in every mount namespace. Removal is
umount2(MNT_DETACH) + unlink, which is what ``ip netns del`` does; both tools work on both.

A namespace podnet.fabric creates carries its owner as the alias ``podnet.fabric:<owner>`` on its
loopback. Purge removes only the owner's namespaces: ``ip netns add`` namespaces (the user's,
podman's, a CNI runtime's) and other owners' are never touched. Release 0.1's namespaces (alias
exactly ``podnet.fabric``) are adopted when declared and never purged.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import threading

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, link
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

RUN_DIR = netns_exec.NETNS_RUN_DIR
# Concurrent first creations race on mounting /run/netns (pyroute2 #633 and friends): serialise.
LOCK_PATH = "/run/podnet-fabric-netns.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
EINVAL = 22
LOOPBACK_INDEX = 1  # lo is always the first link of a network namespace
_LIBC = []
_RUN_DIR_READY = []


def check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FabricError("netns %r: invalid name (letters, digits, '.', '_', '-'; at most 128 characters)" % (name,))
    return name


def existing():
    """Names in /run/netns (what ``ip netns list`` shows)."""
    try:
        return sorted(n for n in os.listdir(RUN_DIR) if not n.startswith("."))
    except OSError:
        return []


# --- the kernel side: libc mount(2), umount2(2), unshare(2) --------------------------------------

def _libc():
    if not _LIBC:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        _LIBC.append(lib)
    return _LIBC[0]


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _mount(source, target, flags):
    src = source.encode() if source is not None else None
    return _libc().mount(src, target.encode(), b"none", flags, None)


@contextlib.contextmanager
def _lock():
    fd = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare_run_dir():
    """Make /run/netns a shared mount point, as ``ip netns add`` does (once per process)."""
    if _RUN_DIR_READY:
        return
    with _lock():
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        bound = False
        while _mount(None, RUN_DIR, MS_SHARED | MS_REC) != 0:
            err = ctypes.get_errno()
            if err != EINVAL or bound:
                raise OSError(err, "mount --make-rshared %s: %s" % (RUN_DIR, os.strerror(err)))
            # Not a mount point yet: bind it onto itself, then make that shared.
            _check(_mount(RUN_DIR, RUN_DIR, MS_BIND | MS_REC), "mount --rbind %s %s" % (RUN_DIR, RUN_DIR))
            bound = True
    _RUN_DIR_READY.append(True)


def _bind_new_netns(path):
    """In a short-lived thread: unshare(CLONE_NEWNET) and bind its namespace onto ``path``."""
    errors = []

    def body():
        try:
            _check(_libc().unshare(netns_exec.CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _check(_mount("/proc/thread-self/ns/net", path, MS_BIND), "mount --bind to %s" % path)
        except OSError as exc:
            errors.append(exc)
    thread = threading.Thread(target=body, name="podnet-netns")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def create(name, owner, ipr=None):
    """Create ``/run/netns/NAME`` with its loopback up and marked for ``owner``.

    ``ipr``: a handle that opens the namespace on first use (veth.Namespaces.lazy), which then
    serves the caller's later actions there too; by default a handle is opened for the loopback.
    Fails (EEXIST) when the name exists; on any later failure the namespace is removed again.
    """
    _prepare_run_dir()
    path = netns_exec.netns_path(name)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    try:
        _bind_new_netns(path)
        if ipr is None:
            set_loopback(name, owners.mark(owner), True)
        else:
            ipr.link("set", index=LOOPBACK_INDEX, ifalias=owners.mark(owner), state="up")
    except Exception:
        remove(name)
        raise


def remove(name):
    """``ip netns del``: detach the bind mount and unlink; a namespace already gone is success."""
    path = netns_exec.netns_path(name)
    if _libc().umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (EINVAL, core.ENOENT):  # EINVAL: not a mount point (a half-made one)
            raise OSError(err, "umount %s: %s" % (path, os.strerror(err)))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def set_loopback(name, alias=None, up=None):
    with core.open_netns(name) as ipr:
        kw = {}
        if alias is not None:
            kw["ifalias"] = alias
        if up is not None:
            kw["state"] = "up" if up else "down"
        ipr.link("set", index=LOOPBACK_INDEX, **kw)


# --- observe and plan ----------------------------------------------------------------------------

def observe(name, ipr=None):
    """{'state', 'owner', 'loopback_up'} of a namespace (owner: None = not podnet.fabric's,
    '' = release 0.1's), or {'state': 'absent'}; None when it vanished while we looked.

    ``ipr``: a handle already open in the namespace (its link dump is used), if the caller has one.
    """
    if ipr is not None:
        lo = link.dump(ipr).get("lo")
        return {"state": "present", "owner": link.holder(lo), "loopback_up": bool(lo and lo["up"])}
    if not netns_exec.exists(name):
        return {"state": "absent"}
    try:
        with core.open_netns(name) as handle:
            msg = handle.link("get", index=LOOPBACK_INDEX)[0]
    except FabricError:  # vanished meanwhile (pyroute2 #633)
        return None
    return {"state": "present", "owner": owners.owner_of_mark(msg.get_attr("IFLA_IFALIAS")),
            "loopback_up": bool(msg["flags"] & 1)}


def public(view):
    """The namespace as results and diffs show it (legacy owner shown as 'podnet.fabric 0.1')."""
    if view is None or view["state"] == "absent":
        return {"state": "absent"}
    holder = view["owner"]
    return {"state": "present", "owner": holder if holder else (None if holder is None else "podnet.fabric 0.1"),
            "loopback_up": view["loopback_up"]}


def plan_present(result, name, cur, owner, ipr=None):
    """Plan namespace ``name`` present for ``owner`` (``cur``: :func:`observe`; ``ipr``: see
    :func:`create`)."""
    want = owners.mark(owner)
    if cur is None or cur["state"] == "absent":
        result.add("create netns %s" % name, lambda: create(name, owner, ipr), lambda: remove(name))
    else:
        adopt = owners.claim("netns %s" % name, cur["owner"], owner)
        if adopt:
            result.add("set netns %s loopback alias %s (adopt)" % (name, want),
                       lambda: set_loopback(name, want), lambda: set_loopback(name, owners.MARK))
        if not cur["loopback_up"]:
            result.add("set lo up in netns %s" % name, lambda: set_loopback(name, up=True), lambda: set_loopback(name, up=False))
    result.after[name] = {"state": "present", "owner": owner, "loopback_up": True}


def plan_delete(result, name):
    """Deleting a namespace cannot be undone (everything in it goes with it)."""
    result.add("delete netns %s" % name, lambda: remove(name), irreversible=True)
    result.after[name] = {"state": "absent"}


def plan(namespaces, owner, purge=False):
    """``namespaces``: [{'name', 'state'}]. Returns a Plan; before/after map name -> state.

    Deletions (state absent, purge) come after every creation. Purge is host-wide: the owner's
    namespaces not declared are deleted, nobody else's.
    """
    result = Plan()
    declared, deletes = set(), []
    for spec in namespaces:
        name = check_name(spec["name"])
        if name in declared:
            raise FabricError("netns %s: declared twice" % name)
        declared.add(name)
        cur = observe(name)
        result.before[name] = public(cur)
        if spec.get("state", "present") == "absent":
            result.after[name] = {"state": "absent"}
            if cur is not None and cur["state"] == "present":
                owners.claim("netns %s" % name, cur["owner"], owner)
                deletes.append(name)
            continue
        plan_present(result, name, cur, owner)
    if purge:
        for name in existing():
            if name in declared:
                continue
            cur = observe(name)
            if cur is not None and cur["state"] == "present" and cur["owner"] == owner:
                result.before[name] = public(cur)
                deletes.append(name)
    for name in deletes:
        plan_delete(result, name)
    return result
