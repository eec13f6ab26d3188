# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netlink layer's foundation: opening a namespace, ownership markers, input validation.

Everything here works with Debian's python3-pyroute2 0.7.2 (what nodes get from apt) and PyPI's
0.9.x. Namespaces are entered with setns(2) around opening an ``IPRoute`` (see :func:`_ipr_in`),
which behaves the same in both versions and never creates a missing namespace.
IPDB and NDB are never used (deprecated / goes stale); every call goes through IPRoute/NetNS.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError  # pylint: disable=unused-import  # re-exported for the cores
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module with missing_required_lib
    IPRoute = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc

    class NetlinkError(Exception):
        code = 0

# Ownership marks (link aliases, route protocols) live in module_utils/owner.py.

IFNAMSIZ = 16  # including the trailing NUL: names are at most 15 characters
_IFNAME_RE = re.compile(r"^[^\s/:%]+$")

ENOENT = 2
EEXIST = 17
ENODEV = 19
ESRCH = 3
EADDRNOTAVAIL = 99


def require_pyroute2(module):
    if not HAS_PYROUTE2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("pyroute2 (Debian: python3-pyroute2)"), exception=str(PYROUTE2_IMPORT_ERROR))


def _ipr_in(path):
    """An IPRoute whose socket lives in the namespace at ``path`` (see netns_exec.joined)."""
    with netns_exec.joined(path):
        return IPRoute()


@contextlib.contextmanager
def open_netns(netns=None, missing_ok=False):
    """Yield an IPRoute handle for ``netns`` (None: the caller's own namespace).

    Raises FabricError naming the namespace when it does not exist; never creates one. With
    ``missing_ok`` (check mode, where an earlier task would have created the namespace) a missing
    namespace yields None, which the observers treat as an empty namespace.
    """
    if netns:
        path = netns_exec.netns_path(netns)
        if missing_ok and not os.path.exists(path):
            yield None
            return
        try:
            handle = _ipr_in(path)
        except (OSError, IOError) as exc:
            if getattr(exc, "errno", None) == ENOENT:
                raise FabricError("netns %s: does not exist" % netns)
            raise FabricError("netns %s: cannot open: %s" % (netns, exc))
    else:
        handle = IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def netns_exists(name):
    return netns_exec.exists(name)


# --- validation: one clear line naming the object and the reason --------------------------------

def check_ifname(name, what="interface"):
    if not isinstance(name, str) or not name:
        raise FabricError("%s name %r: must be a non-empty string" % (what, name))
    if len(name) >= IFNAMSIZ:
        raise FabricError("%s %s: name is %d characters, the kernel allows at most %d" % (what, name, len(name), IFNAMSIZ - 1))
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise FabricError("%s %s: name may not contain whitespace, '/', ':' or '%%'" % (what, name))
    return name


def parse_interface(cidr, what):
    """'10.0.0.1/24' -> ipaddress.IPv4Interface; a bare address gets a host prefix."""
    try:
        return ipaddress.ip_interface(str(cidr))
    except ValueError:
        raise FabricError("%s: %r is not a valid IP address with prefix (e.g. 10.244.1.1/24)" % (what, cidr))


def parse_network(cidr, what):
    """'10.244.1.0/24' or 'default' -> ipaddress network (host bits must be zero)."""
    text = str(cidr)
    if text in ("default", "0.0.0.0/0"):
        return ipaddress.ip_network("0.0.0.0/0")
    if text == "::/0":
        return ipaddress.ip_network("::/0")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise FabricError("%s: %r is not a valid network: %s" % (what, cidr, exc))


def parse_address(addr, what):
    try:
        return ipaddress.ip_address(str(addr))
    except ValueError:
        raise FabricError("%s: %r is not a valid IP address" % (what, addr))


_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def parse_mac(mac, what):
    text = str(mac).lower().replace("-", ":")
    if not _MAC_RE.match(text):
        raise FabricError("%s: %r is not a MAC address (aa:bb:cc:dd:ee:ff)" % (what, mac))
    if int(text[:2], 16) & 1:
        raise FabricError("%s: %s is a multicast MAC address" % (what, text))
    return text


def family_of(ip):
    return 10 if ip.version == 6 else 2  # AF_INET6 / AF_INET
