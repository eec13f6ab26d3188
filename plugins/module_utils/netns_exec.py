# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way into a named network namespace, for netlink sockets and for programs.

- :func:`joined`: the calling thread joins ``/run/netns/NAME`` with setns(2) and returns to its
  own namespace afterwards; a netlink socket opened inside stays bound to the namespace (about a
  millisecond, where pyroute2's ``NetNS`` starts a helper process per namespace).
- :func:`preexec`: the same join between fork and exec, for tools without a netlink API of their
  own (iptables-save/-restore now; birdc, arping, keepalived next), run by :func:`run`.

Nothing here ever creates a namespace.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_LIBC = []


class NetnsNotFound(Exception):
    """The named network namespace does not exist."""


def netns_path(name):
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name):
    return os.path.exists(netns_path(name))


def setns(fd):
    """Move the calling thread into the network namespace open at ``fd``."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if _LIBC[0].setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def joined(path):
    """Run the body with the calling thread in the namespace at ``path``, then come back.

    Raises OSError (ENOENT for a missing namespace) before the body runs.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            setns(target)
            try:
                yield
            finally:
                setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def preexec(path):
    """A ``preexec_fn`` that joins the namespace at ``path`` in the child before exec."""
    def enter():
        fd = os.open(path, os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)
    return enter


def run(argv, netns=None, input_text=None, timeout=300):
    """Run ``argv`` (in ``netns`` when given) and return (rc, stdout, stderr) as text."""
    hook = None
    if netns:
        path = netns_path(netns)
        if not os.path.exists(path):
            raise NetnsNotFound("network namespace %r does not exist (no %s)" % (netns, path))
        hook = preexec(path)
    proc = subprocess.run(  # noqa: S603 - argv is built by the caller, never a shell string
        argv,
        input=input_text,
        capture_output=True,
        text=True,
        preexec_fn=hook,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr
