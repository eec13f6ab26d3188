# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a program inside a named network namespace without shelling out to ``ip netns exec``.

The child joins ``/run/netns/NAME`` with setns(2) between fork and exec, so tools that have no
netlink API of their own (iptables-save, iptables-restore) see the namespace's tables.
"""
from __future__ import annotations

import ctypes
import os
import subprocess

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


class NetnsNotFound(Exception):
    """The named network namespace does not exist."""


def netns_path(name):
    return os.path.join(NETNS_RUN_DIR, name)


def _setns_preexec(path):
    def enter():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "setns(%s): %s" % (path, os.strerror(err)))
        finally:
            os.close(fd)
    return enter


def run(argv, netns=None, input_text=None, timeout=300):
    """Run ``argv`` (in ``netns`` when given) and return (rc, stdout, stderr) as text."""
    preexec = None
    if netns:
        path = netns_path(netns)
        if not os.path.exists(path):
            raise NetnsNotFound("network namespace %r does not exist (no %s)" % (netns, path))
        preexec = _setns_preexec(path)
    proc = subprocess.run(  # noqa: S603 - argv is built by the caller, never a shell string
        argv,
        input=input_text,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr
