# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""FRR 8.4 (Debian bookworm) as the racks' top-of-rack router: plain data -> ``frr.conf``.

Two halves. The renderer is pure: :func:`render` turns the router, its node neighbors and the
cluster's address space into the complete integrated configuration (``/etc/frr/frr.conf``, its
first line the owner mark ``podnet.fabric:OWNER``); :func:`render_daemons` gives
``/etc/frr/daemons`` with bgpd and bfdd on. The daemon side (:class:`Frr`, :func:`plan`,
:func:`wait_established`) runs vtysh, frr-reload.py and systemctl through an injected runner
for podnet.fabric.frr_router, and writes only those two files.

What FRR leaves out of its running configuration (BFD profile defaults, ``restart-time 120``,
``maximum-paths 256``, ``ip forwarding`` when on) is left out here too, so ``frr-reload.py
--test`` on an applied file finds no difference (the tests check it against FRR 8.4.4); the
``hostname`` vtysh shows is the host's own, never the daemons', so it is never a difference.

Policy (``frr defaults traditional`` keeps ``bgp ebgp-requires-policy`` on, and so do we: every
eBGP session has an explicit route-map both ways, nothing is accepted or sent by accident):

- from the nodes (``PODNET-FROM-NODES``): pod CIDRs inside the cluster CIDR with a length from
  ``cluster_node_prefix`` to ``pod_prefix_max`` (``PODNET-POD-CIDRS``), and service ranges -
  ClusterIP/external ranges and LoadBalancer pools, each the range itself or anything inside it,
  so both Calico's aggregate and MetalLB-style /32s pass (``PODNET-SERVICE-IPS``). Everything
  else is denied (explicit ``deny 100``).
- to the nodes (``PODNET-TO-NODES``): the pod CIDRs only. The router relays one rack's pod
  routes to the other racks (that is how pods reach pods across racks without encapsulation;
  with AS per rack a node drops its own rack's routes by AS-path loop, as Calico expects).
  Service IPs are never sent back (every node serves them itself). A default route
  (``default-originate``) only with ``announce_default``.

BFD: one profile ``podnet-nodes``, 100 ms receive/transmit x 3 by default. LAB.md measured a
0.94 s withdrawal with FRR's default 300 ms x 3; the issue wants "well under a second" and the
bench <= 0.5 s, so 100 ms x 3 (about 0.3 s detection plus the route withdrawal). Detection at
the router uses the *node's* multiplier and max(router's receive, node's transmit) interval
(RFC 5880 6.8.4): BIRD's defaults (multiplier 5, tx 100 ms) would give 0.5 s, so the nodes'
``protocol bfd`` must use ``multiplier 3`` and ``interval 100 ms`` too.

Graceful restart: ``bgp graceful-restart``. FRR 8.4 keeps a restarting peer's routes as stale
when the TCP session closes (a BIRD restart or kill), but a BFD down event stops the session at
once without stale retention (bgpd/bgp_bfd.c: BGP_Stop; no ``check-control-plane-failure``), so
a dead node's routes still leave within the BFD detection time. A killed BIRD, however, is no
longer "seen at once": its routes stay up to ``restart_time`` (default 120 s) - by design.

ECMP: ``maximum-paths`` (default 16; Debian builds FRR with ``--enable-multipath=256``) plus
``bgp bestpath as-path multipath-relax``, because the nodes announcing one LoadBalancer /32 may
sit in different racks, hence different AS paths.

Validating before replacing (for the role; FRR 8.4.4 vtysh/vtysh_main.c): write the candidate to a
temporary file and run ``vtysh --dryrun --inputfile FILE`` (short ``vtysh -C -f FILE``): vtysh
parses every line with its own copy of all daemons' command trees, without connecting to the
daemons, exits non-zero on error and prints ``line N: % Unknown command[NODE]: TEXT`` (or
``Ambiguous``/``Command incomplete``) on stderr - quote that line. It checks grammar only, not
semantics (a value a daemon would refuse, a route-map naming a missing prefix-list). Then
``/usr/lib/frr/frr-reload.py --test FILE`` (Debian package ``frr-pythontools``) prints the
delta against the running daemons without changing anything (diff mode), and
``frr-reload.py --reload FILE`` applies it without restarting FRR (sessions stay up). The file is
installed as ``/etc/frr/frr.conf`` (0640 frr:frr) first and reloaded from there: given the
configuration file itself, frr-reload.py does not ``write`` the running configuration over it
(it does for any other path, which would drop the owner mark); a failed reload puts the old file
back and reloads it. A changed daemons file needs ``systemctl restart frr``. See
:func:`check_command`, :func:`reload_command` and :func:`plan`.
"""
from __future__ import annotations

import grp
import ipaddress
import json
import os
import pwd
import re
import tempfile
import time

from ansible_collections.podnet.fabric.plugins.module_utils import files
from ansible_collections.podnet.fabric.plugins.module_utils import owner as _owner
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

PEER_GROUP = "PODNET-NODES"
BFD_PROFILE = "podnet-nodes"
PODS_LIST = "PODNET-POD-CIDRS"
SERVICES_LIST = "PODNET-SERVICE-IPS"
MAP_IN = "PODNET-FROM-NODES"
MAP_OUT = "PODNET-TO-NODES"
MASK = "********"
DEFAULT_OWNER = "tor_router"
MAX_PASSWORD = 80  # TCP_MD5SIG_MAXKEYLEN in Linux
VTYSH = "/usr/bin/vtysh"
FRR_RELOAD = "/usr/lib/frr/frr-reload.py"

BFD_DEFAULTS = {"detect_multiplier": 3, "receive_interval": 100, "transmit_interval": 100}
# What FRR 8.4 itself defaults to, hence leaves out of ``show running-config``.
FRR_BFD_DEFAULTS = {"detect_multiplier": 3, "receive_interval": 300, "transmit_interval": 300}
FRR_RESTART_TIME = 120
# Calico's BIRD peers are all multihop (``ttl security off; multihop;``), so BIRD runs their BFD
# sessions as multihop BFD (RFC 5883, UDP 4784) with its default TTL 64. FRR speaks multihop BFD
# to a neighbor only with ebgp-multihop set, and drops multihop BFD packets below the profile's
# minimum-ttl (default 254): both are set, or BFD never comes up.
EBGP_MULTIHOP = 2
BFD_MINIMUM_TTL = 1
FRR_MULTIPATH = 256     # Debian builds FRR with --enable-multipath=256
SETTINGS_DEFAULTS = {
    "cluster_cidr": None,
    "cluster_node_prefix": 24,
    "pod_prefix_max": None,
    "service_cidrs": [],
    "load_balancer_cidrs": [],
    "announce_default": False,
    "maximum_paths": 16,
    "bfd": None,
    "keepalive_time": None,
    "hold_time": None,
    "graceful_restart": True,
    "restart_time": None,
    "ipv6_forwarding": False,
    "extra_config": [],
}
NEIGHBOR_FIELDS = ("name", "address", "as_number", "password", "bfd", "rack", "description")
ROUTER_FIELDS = ("hostname", "as_number", "router_id")

# The daemons of FRR 8.4's tools/etc/frr/daemons (Debian installs it as /etc/frr/daemons), in its
# order, with its option strings. watchfrr, zebra and staticd are always started.
DAEMONS = (
    ("bgpd", "   -A 127.0.0.1"), ("ospfd", "  -A 127.0.0.1"), ("ospf6d", " -A ::1"),
    ("ripd", "   -A 127.0.0.1"), ("ripngd", " -A ::1"), ("isisd", "  -A 127.0.0.1"),
    ("pimd", "   -A 127.0.0.1"), ("pim6d", "  -A ::1"), ("ldpd", "   -A 127.0.0.1"),
    ("nhrpd", "  -A 127.0.0.1"), ("eigrpd", " -A 127.0.0.1"), ("babeld", " -A 127.0.0.1"),
    ("sharpd", " -A 127.0.0.1"), ("pbrd", "   -A 127.0.0.1"), ("bfdd", "   -A 127.0.0.1"),
    ("fabricd", "-A 127.0.0.1"), ("vrrpd", "  -A 127.0.0.1"), ("pathd", "  -A 127.0.0.1"),
)
# zebra and staticd options sit between them in the shipped file.
_OPTION_ORDER = ("zebra", "bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d",
                 "ldpd", "nhrpd", "eigrpd", "babeld", "sharpd", "pbrd", "staticd", "bfdd",
                 "fabricd", "vrrpd", "pathd")
_OPTIONS = dict(DAEMONS, zebra="  -A 127.0.0.1 -s 90000000", staticd="-A 127.0.0.1")

_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_PASSWORD_CHARS_RE = re.compile(r"^[\x21-\x7e]+$")
_PASSWORD_LINE_RE = re.compile(r"(\bneighbor \S+ password )\S+", re.M)
_MARK_RE = re.compile(r"^[!#] %s:(\S+): " % re.escape(_owner.MARK), re.M)


# --- input checks ---------------------------------------------------------------------------------

def _unknown(what, data, fields):
    extra = sorted(set(data) - set(fields))
    if extra:
        raise FabricError("%s: unknown field %s (known: %s)" % (what, extra[0], ", ".join(fields)))


def _as_number(what, value):
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise FabricError("%s: as_number %r is not a number" % (what, value))
    if not 0 < number < 2 ** 32:
        raise FabricError("%s: as_number %d is not 1-4294967295" % (what, number))
    return number


def _int(what, field, value, low, high):
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise FabricError("%s: %s %r is not a whole number" % (what, field, value))
    if not low <= number <= high:
        raise FabricError("%s: %s %d is not %d-%d" % (what, field, number, low, high))
    return number


def _ipv4(what, field, value):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise FabricError("%s: %s %r is not an IPv4 address" % (what, field, value))


def _network(what, field, value):
    try:
        return ipaddress.IPv4Network(str(value).strip())
    except ValueError as exc:
        raise FabricError("%s: %s %r is not an IPv4 network (%s)" % (what, field, value, exc))


def _password(what, value):
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _PASSWORD_CHARS_RE.match(value):
        raise FabricError("%s: password must be printable ASCII without whitespace (TCP MD5 key)" % what)
    if len(value) > MAX_PASSWORD:
        raise FabricError("%s: password is %d characters, TCP MD5 keys are at most %d" % (what, len(value), MAX_PASSWORD))
    return value


def normalize_router(router):
    """The router (``hostname``, ``as_number``, ``router_id``) -> validated dict."""
    router = dict(router or {})
    _unknown("router", router, ROUTER_FIELDS)
    hostname = str(router.get("hostname") or "")
    if not _HOSTNAME_RE.match(hostname):
        raise FabricError("router: hostname %r must be letters, digits, '.', '-' (at most 63)" % hostname)
    what = "router %s" % hostname
    if router.get("as_number") is None:
        raise FabricError("%s: as_number is required" % what)
    if router.get("router_id") is None:
        raise FabricError("%s: router_id is required" % what)
    return {"hostname": hostname, "as_number": _as_number(what, router["as_number"]),
            "router_id": str(_ipv4(what, "router_id", router["router_id"]))}


def normalize_neighbors(neighbors, router):
    """The node neighbors -> validated dicts sorted by address (so input order never matters)."""
    seen_address, seen_name, result = {}, {}, []
    for raw in neighbors or []:
        raw = dict(raw)
        what = "neighbor %s" % (raw.get("name") or raw.get("address"))
        _unknown(what, raw, NEIGHBOR_FIELDS)
        if raw.get("address") is None:
            raise FabricError("%s: address is required" % what)
        address = _ipv4(what, "address", raw["address"])
        name = str(raw.get("name") or address)
        what = "neighbor %s (%s)" % (name, address)
        if raw.get("as_number") is None:
            raise FabricError("%s: as_number is required" % what)
        as_number = _as_number(what, raw["as_number"])
        if as_number == router["as_number"]:
            raise FabricError("%s: as_number %d is the router's own AS (the ToR peers eBGP only)" % (what, as_number))
        if str(address) == router["router_id"]:
            raise FabricError("%s: address is the router's own router_id" % what)
        if address in seen_address:
            raise FabricError("%s: address duplicates neighbor %s" % (what, seen_address[address]))
        if name in seen_name:
            raise FabricError("%s: name duplicates neighbor %s" % (what, seen_name[name]))
        seen_address[address] = seen_name[name] = name
        description = raw.get("description") or name
        if raw.get("rack") not in (None, "") and not raw.get("description"):
            description = "%s rack %s" % (name, raw["rack"])
        description = " ".join(str(description).split())
        result.append({"name": name, "address": address, "as_number": as_number,
                       "password": _password(what, raw.get("password")),
                       "bfd": raw.get("bfd", True) is not False, "description": description})
    return sorted(result, key=lambda n: n["address"])


def _seconds(what, field, value, low, high):
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.endswith("s") and text[:-1].isdigit():
        text = text[:-1]
    return _int(what, field, text, low, high)


def normalize_settings(settings):
    """Cluster address space, BFD, timers, ECMP -> validated dict with defaults filled in."""
    settings = dict(settings or {})
    _unknown("settings", settings, tuple(SETTINGS_DEFAULTS))
    merged = dict(SETTINGS_DEFAULTS, **{k: v for k, v in settings.items() if v is not None})
    what = "settings"
    if not merged["cluster_cidr"]:
        raise FabricError("settings: cluster_cidr is required")
    cluster = _network(what, "cluster_cidr", merged["cluster_cidr"])
    node_prefix = _int(what, "cluster_node_prefix", merged["cluster_node_prefix"], cluster.prefixlen, 32)
    pod_max = merged["pod_prefix_max"]
    pod_max = node_prefix if pod_max is None else _int(what, "pod_prefix_max", pod_max, node_prefix, 32)
    services = set()
    for field in ("service_cidrs", "load_balancer_cidrs"):
        values = merged[field]
        if isinstance(values, str):
            values = [values]
        for value in values:
            net = _network(what, field, value)
            if net.overlaps(cluster):
                raise FabricError("settings: %s %s overlaps cluster_cidr %s" % (field, net, cluster))
            services.add(net)
    bfd = dict(BFD_DEFAULTS)
    bfd_in = dict(merged["bfd"] or {})
    _unknown("settings.bfd", bfd_in, tuple(BFD_DEFAULTS))
    bfd.update({k: v for k, v in bfd_in.items() if v is not None})
    bfd = {"detect_multiplier": _int("settings.bfd", "detect_multiplier", bfd["detect_multiplier"], 2, 255),
           "receive_interval": _int("settings.bfd", "receive_interval", bfd["receive_interval"], 10, 60000),
           "transmit_interval": _int("settings.bfd", "transmit_interval", bfd["transmit_interval"], 10, 60000)}
    keepalive = _seconds(what, "keepalive_time", merged["keepalive_time"], 0, 65535)
    hold = _seconds(what, "hold_time", merged["hold_time"], 0, 65535)
    if (keepalive is None) != (hold is None):
        raise FabricError("settings: keepalive_time and hold_time go together (FRR: neighbor timers KEEPALIVE HOLD)")
    if hold is not None and hold != 0 and (hold < 3 or keepalive > hold // 3):
        raise FabricError("settings: hold_time %d must be 0 or at least 3 and 3x keepalive_time %d" % (hold, keepalive))
    restart = merged["restart_time"]
    restart = None if restart is None else _seconds(what, "restart_time", restart, 1, 4095)
    extra = merged["extra_config"]
    if isinstance(extra, str):
        extra = extra.splitlines()
    extra = [str(line).rstrip() for line in extra or []]
    for number, line in enumerate(extra, 1):
        if "\n" in line or "\r" in line:
            raise FabricError("settings: extra_config line %d holds a line break (one FRR line per entry)" % number)
        if line.strip() in ("end", "exit") and not line.startswith(" "):
            raise FabricError("settings: extra_config line %d: %r would end the configuration early" % (number, line.strip()))
    return {"cluster_cidr": cluster, "cluster_node_prefix": node_prefix, "pod_prefix_max": pod_max,
            "services": sorted(services), "announce_default": bool(merged["announce_default"]),
            "maximum_paths": _int(what, "maximum_paths", merged["maximum_paths"], 1, 256),
            "bfd": bfd, "keepalive_time": keepalive, "hold_time": hold,
            "graceful_restart": merged["graceful_restart"] is not False, "restart_time": restart,
            "ipv6_forwarding": bool(merged["ipv6_forwarding"]), "extra_config": [line for line in extra if line.strip()]}


# --- rendering ------------------------------------------------------------------------------------

def _prefix_entry(net, low, high):
    """``NET [ge N] [le M]`` as FRR accepts it (len < ge <= le); ``ge`` alone would mean ``le 32``,
    so ``le`` is always written with it."""
    text = str(net)
    if low > net.prefixlen:
        text += " ge %d le %d" % (low, high)
    elif high > net.prefixlen:
        text += " le %d" % high
    return text


def _policy(settings):
    lines = ["ip prefix-list %s seq 10 permit %s" % (
        PODS_LIST, _prefix_entry(settings["cluster_cidr"], settings["cluster_node_prefix"], settings["pod_prefix_max"]))]
    for seq, net in enumerate(settings["services"], 1):
        lines.append("ip prefix-list %s seq %d permit %s" % (SERVICES_LIST, seq * 10, _prefix_entry(net, net.prefixlen, 32)))
    lines += ["!",
              "route-map %s permit 10" % MAP_IN,
              " match ip address prefix-list %s" % PODS_LIST,
              "exit"]
    if settings["services"]:
        lines += ["route-map %s permit 20" % MAP_IN,
                  " match ip address prefix-list %s" % SERVICES_LIST,
                  "exit"]
    lines += ["route-map %s deny 100" % MAP_IN,
              "exit",
              "!",
              "route-map %s permit 10" % MAP_OUT,
              " match ip address prefix-list %s" % PODS_LIST,
              "exit",
              "route-map %s deny 100" % MAP_OUT,
              "exit"]
    return lines


def _bgp(router, neighbors, settings):
    group = PEER_GROUP
    lines = ["router bgp %d" % router["as_number"],
             " bgp router-id %s" % router["router_id"],
             " bgp log-neighbor-changes",
             " no bgp default ipv4-unicast"]
    if settings["graceful_restart"]:
        lines.append(" bgp graceful-restart")
        if settings["restart_time"] not in (None, FRR_RESTART_TIME):
            lines.append(" bgp graceful-restart restart-time %d" % settings["restart_time"])
    lines += [" bgp bestpath as-path multipath-relax",
              " neighbor %s peer-group" % group,
              " neighbor %s ebgp-multihop %d" % (group, EBGP_MULTIHOP)]
    if settings["keepalive_time"] is not None:
        lines.append(" neighbor %s timers %d %d" % (group, settings["keepalive_time"], settings["hold_time"]))
    # FRR's own order (bgp_config_write_peer_global): remote-as, peer-group, description, bfd,
    # bfd profile, password.
    for nb in neighbors:
        addr = str(nb["address"])
        lines += [" neighbor %s remote-as %d" % (addr, nb["as_number"]),
                  " neighbor %s peer-group %s" % (addr, group),
                  " neighbor %s description %s" % (addr, nb["description"])]
        if nb["bfd"]:
            lines += [" neighbor %s bfd" % addr, " neighbor %s bfd profile %s" % (addr, BFD_PROFILE)]
        if nb["password"]:
            lines.append(" neighbor %s password %s" % (addr, nb["password"]))
    lines += [" !", " address-family ipv4 unicast", "  neighbor %s activate" % group]
    if settings["announce_default"]:
        lines.append("  neighbor %s default-originate" % group)
    lines += ["  neighbor %s route-map %s in" % (group, MAP_IN),
              "  neighbor %s route-map %s out" % (group, MAP_OUT),
              "  maximum-paths %d" % settings["maximum_paths"]]
    if settings["maximum_paths"] == FRR_MULTIPATH:
        lines.pop()     # FRR's default: not in the running configuration either
    lines += [" exit-address-family",
              "exit"]
    return lines


def _bfd(settings):
    """The BFD profile. FRR leaves its defaults (detect-multiplier 3, intervals 300 ms) out of
    the running configuration, so they are left out here too: otherwise ``frr-reload.py``
    would see a difference between this file and the daemons that is none."""
    bfd = settings["bfd"]
    lines = ["bfd", " profile %s" % BFD_PROFILE, "  minimum-ttl %d" % BFD_MINIMUM_TTL]
    if bfd["detect_multiplier"] != FRR_BFD_DEFAULTS["detect_multiplier"]:
        lines.append("  detect-multiplier %d" % bfd["detect_multiplier"])
    for key in ("receive_interval", "transmit_interval"):
        if bfd[key] != FRR_BFD_DEFAULTS[key]:
            lines.append("  %s %d" % (key.replace("_", "-"), bfd[key]))
    return lines + [" exit", " !", "exit"]


def header(owner):
    """The first line of an owner's frr.conf: the owner mark (see :func:`file_owner`)."""
    return ("! %s: frr.conf of owner %s, written by podnet.fabric.frr_router; "
            "changes made here or by vtysh 'write' are replaced." % (_owner.mark(owner), owner))


def file_owner(text):
    """The owner a podnet.fabric frr.conf or daemons file names in its first line; None when
    it has no mark."""
    match = _MARK_RE.search(text or "")
    return match.group(1) if match else None


def holds_nothing(text):
    """True for a frr.conf without any configuration worth keeping: only comments, ``!`` and the
    housekeeping lines Debian's own file has (``log syslog informational``) or vtysh writes
    (``frr version``, ``frr defaults``, ``hostname``, ``service integrated-vtysh-config``)."""
    for line in (text or "").splitlines():
        words = line.split()
        if not words or words[0].startswith(("!", "#")) or words[0] == "end":
            continue
        if words[0] in ("log", "hostname") or words[:2] in (["frr", "version"], ["frr", "defaults"]) \
                or line.strip() == "service integrated-vtysh-config":
            continue
        return False
    return True


def render(router, neighbors, settings, owner=DEFAULT_OWNER):
    """The complete ``/etc/frr/frr.conf`` for FRR 8.4: same input (in any order) -> same text.

    ``router``: ``hostname``, ``as_number``, ``router_id``. ``neighbors``: one dict per node with
    ``address`` (IPv4), ``as_number`` (per rack or per node), optional ``name``, ``password``
    (MD5), ``bfd`` (default true), ``rack``/``description``. ``settings``: ``cluster_cidr``
    (required), ``cluster_node_prefix``, ``pod_prefix_max``, ``service_cidrs``,
    ``load_balancer_cidrs``, ``announce_default``, ``maximum_paths``, ``bfd``
    (``detect_multiplier``, ``receive_interval``, ``transmit_interval`` in ms),
    ``keepalive_time``/``hold_time`` (seconds), ``graceful_restart``, ``restart_time``,
    ``ipv6_forwarding`` (default false: ``no ipv6 forwarding``), ``extra_config`` (FRR lines
    appended as they are, e.g. the router's own static routes). The first line carries the
    ``owner`` mark. Raises FabricError naming the neighbor (or setting) and the field.

    IPv4 forwarding is not written: FRR leaves it out of the running configuration when it is
    on, so a file with ``ip forwarding`` would always differ from the daemons; a reload of this
    file turns it on (what a router needs), and the host's sysctl keeps it on across restarts.
    """
    _owner.check(owner)
    router = normalize_router(router)
    peers = normalize_neighbors(neighbors, router)
    conf = normalize_settings(settings)
    lines = [header(owner),
             "frr defaults traditional",
             "hostname %s" % router["hostname"],
             "log syslog informational"]
    if not conf["ipv6_forwarding"]:
        lines.append("no ipv6 forwarding")
    lines += ["!"]
    lines += _policy(conf) + ["!"] + _bgp(router, peers, conf) + ["!"] + _bfd(conf) + ["!"]
    if conf["extra_config"]:
        lines += conf["extra_config"] + ["!"]
    lines += ["end"]
    return "\n".join(lines) + "\n"


def render_daemons(enabled=("bgpd", "bfdd"), owner=DEFAULT_OWNER):
    """``/etc/frr/daemons`` as Debian's frr 8.4 ships it, with only ``enabled`` set to yes.

    zebra, staticd and watchfrr are always started (the file has no switch for them);
    ``vtysh_enable=yes``; options, watchfrr options and the profile stay at their defaults.
    """
    known = [name for name, options in DAEMONS]
    for name in enabled:
        if name not in known:
            raise FabricError("daemons: %r is not an FRR 8.4 daemon with a switch (%s)" % (name, ", ".join(known)))
    _owner.check(owner)
    lines = ["# This file tells the frr package which daemons to start.",
             "# %s: FRR's daemons of owner %s, written by podnet.fabric.frr_router (Debian's frr 8.4 layout)." % (
                 _owner.mark(owner), owner),
             "#",
             "# The watchfrr, zebra and staticd daemons are always started.",
             "#"]
    lines += ["%s=%s" % (name, "yes" if name in enabled else "no") for name in known]
    lines += ["",
              "#",
              "# If this option is set the /etc/init.d/frr script automatically loads",
              '# the config via "vtysh -b" when the servers are started.',
              "#",
              "vtysh_enable=yes"]
    lines += ['%s_options="%s"' % (name, _OPTIONS[name]) for name in _OPTION_ORDER]
    lines += ["",
              "#frr_global_options=\"\"",
              "#watchfrr_options=\"\"",
              "#frr_profile=\"traditional\"",
              "#MAX_FDS=1024",
              "#all_wrap=\"\""]
    return "\n".join(lines) + "\n"


def mask(text):
    """The configuration with MD5 passwords masked, for ``--diff`` and error output."""
    return _PASSWORD_LINE_RE.sub(lambda m: m.group(1) + MASK, text)


def check_command(path, vtysh=VTYSH, options=()):
    """argv that checks a candidate file's syntax without touching the daemons (rc != 0: error,
    stderr ``line N: % Unknown command[NODE]: TEXT``)."""
    return [vtysh] + list(options) + ["--dryrun", "--inputfile", path]


def reload_command(path, test=False, frr_reload=FRR_RELOAD, options=()):
    """argv that shows (``test``) or applies the delta between the running daemons and ``path``."""
    return [frr_reload, "--test" if test else "--reload"] + list(options) + [path]


# --- the daemons: validate, reload, observe ---------------------------------------------------------
# Everything below runs commands through an injected ``run(argv) -> (rc, stdout, stderr)`` and
# touches only the two files of the configuration directory.

DEFAULT_CONFIG_DIR = "/etc/frr"
DEFAULT_RUN_DIR = "/var/run/frr"
SERVICE = "frr.service"
_VTYSH_ERROR_RE = re.compile(r"^line (\d+): (%[^\[:]*)(?:\[\d+\])?:\s?(.*)$", re.M)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# Lines frr-reload.py reports that are no difference: vtysh prints the host's own name, not the
# daemons', and the version line is FRR's.
_NOT_A_DIFFERENCE_RE = re.compile(r"^\s*(no )?(hostname \S+|frr version .*)$")


class Frr(object):
    """One FRR instance: its configuration directory (``frr.conf``, ``daemons``), the directory
    of its vty sockets (None: FRR's own), the tools, and whether systemd's ``frr.service`` runs
    it (``manage_service``; off for daemons started by hand, as the tests do in a namespace).

    vtysh reaches the daemons through their sockets, so nothing here needs their namespace."""

    def __init__(self, run, config_dir=DEFAULT_CONFIG_DIR, vty_socket=None, vtysh=VTYSH, frr_reload=FRR_RELOAD,
                 systemctl="systemctl", service=SERVICE, manage_service=True):
        self.run = run
        self.config_dir = config_dir.rstrip("/") or "/"
        self.config = os.path.join(self.config_dir, "frr.conf")
        self.daemons = os.path.join(self.config_dir, "daemons")
        self.vty_socket = vty_socket
        self.vtysh_bin = vtysh
        self.frr_reload = frr_reload
        self.systemctl = systemctl
        self.service = service
        self.manage_service = manage_service

    def vtysh_options(self):
        options = ["--config_dir", self.config_dir]
        if self.vty_socket:
            options += ["--vty_socket", self.vty_socket]
        return options

    def reload_options(self):
        return ["--stdout", "--confdir", self.config_dir, "--bindir", os.path.dirname(self.vtysh_bin) or "/usr/bin",
                "--rundir", self.vty_socket or DEFAULT_RUN_DIR] + (["--vty_socket", self.vty_socket] if self.vty_socket else [])

    def require_tools(self, reload=True):
        for path, package in ((self.vtysh_bin, "frr"), (self.frr_reload, "frr-pythontools")):
            if (reload or path == self.vtysh_bin) and not os.access(path, os.X_OK):
                raise FabricError("%s: not found; install the Debian package %s" % (path, package))
        if not os.path.isdir(self.config_dir):
            raise FabricError("config_dir %s: does not exist (is FRR installed?)" % self.config_dir)

    def vtysh(self, *commands):
        argv = [self.vtysh_bin] + self.vtysh_options()
        for command in commands:
            argv += ["-c", command]
        return self.run(argv)

    def running(self):
        """The daemons answer vtysh."""
        rc, out, _err = self.vtysh("show version")
        return rc == 0 and "FRRouting" in out

    def validate(self, text, secrets=(), labels=None):
        """``vtysh --dryrun`` on ``text`` (a private temporary copy). Raises FabricError quoting
        vtysh's message and the offending line, passwords masked; ``labels`` ({address: name})
        names the neighbor a rejected neighbor line is about."""
        fd, path = tempfile.mkstemp(prefix=".podnet-frr-", suffix=".conf")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            rc, out, err = self.run(check_command(path, self.vtysh_bin, self.vtysh_options()))
        finally:
            os.unlink(path)
        if rc == 0:
            return
        output = (err + "\n" + out).strip()
        match = _VTYSH_ERROR_RE.search(output)
        if not match:
            last = [line for line in output.splitlines() if line.strip()]
            raise FabricError("frr.conf candidate: vtysh --dryrun rejects it: %s (nothing was changed)"
                              % hide(last[-1] if last else "exit status %d" % rc, secrets))
        number = int(match.group(1))
        lines = text.splitlines()
        quoted = lines[number - 1].strip() if 0 < number <= len(lines) else match.group(3).strip()
        subject = "frr.conf candidate"
        words = quoted.split()
        if labels and len(words) > 1 and words[0] == "neighbor" and words[1] in labels:
            subject = "neighbor %s (%s)" % (labels[words[1]], words[1])
        raise FabricError("%s: vtysh rejects line %d: %s: `%s` (nothing was changed)"
                          % (subject, number, match.group(2).strip(), hide(mask(quoted), secrets)))

    def delta(self, path, secrets=()):
        """What ``frr-reload.py --test`` would run to make the daemons run ``path``: its commands
        (deletions first, context lines joined with `` / ``), passwords masked."""
        rc, out, err = self.run(reload_command(path, True, self.frr_reload, self.reload_options()))
        if rc != 0:
            raise FabricError("%s --test %s: %s" % (self.frr_reload, path, _last_error(out, err, secrets)))
        return parse_delta(out, secrets)

    def reload(self, path, secrets=()):
        rc, out, err = self.run(reload_command(path, False, self.frr_reload, self.reload_options()))
        if rc != 0:
            raise FabricError("frr-reload.py --reload %s: %s" % (path, _last_error(out, err, secrets)))

    def service_state(self):
        """(active, enabled) of the service; (None, None) when service management is off."""
        if not self.manage_service:
            return None, None
        active = self.run([self.systemctl, "is-active", "--quiet", self.service])[0] == 0
        enabled = self.run([self.systemctl, "is-enabled", "--quiet", self.service])[0] == 0
        return active, enabled

    def systemd(self, verb):
        rc, out, err = self.run([self.systemctl, verb, self.service])
        if rc != 0:
            raise FabricError("systemctl %s %s: %s" % (verb, self.service, (err or out).strip().splitlines()[-1:] or rc))

    def neighbors(self):
        """``show bgp neighbors json``: {address: FRR's dict}; {} when bgpd does not answer."""
        rc, out, _err = self.vtysh("show bgp neighbors json")
        if rc != 0:
            return {}
        try:
            data = json.loads(out or "{}")
        except ValueError:
            return {}
        return dict((k, v) for k, v in data.items() if isinstance(v, dict))


def hide(text, secrets):
    for secret in secrets or ():
        if secret:
            text = text.replace(secret, MASK)
    return text


def _last_error(out, err, secrets):
    lines = [_ANSI_RE.sub("", line).strip() for line in (out + "\n" + err).splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.search(r"\b(ERROR|error|failed|Failed|%)", line)]
    picked = (errors or lines or ["no output"])[-3:]
    return hide(mask(" / ".join(re.sub(r"^\S+ \S+\s+(ERROR|WARNING|INFO):\s*", "", line) for line in picked)), secrets)


def parse_delta(text, secrets=()):
    """``frr-reload.py --test`` output -> the commands it would run, deletions (``no ...``)
    first, each with its context (``router bgp 65000 / no neighbor 10.0.0.1 bfd``), without the
    lines that are no difference (the host name vtysh prints, FRR's version)."""
    out, block, section = [], [], [None]

    def flush():
        if section[0] and block and not all(_NOT_A_DIFFERENCE_RE.match(line) for line in block):
            out.append(hide(mask(" / ".join(line.strip() for line in block)), secrets))
        del block[:]

    for raw in text.splitlines():
        line = _ANSI_RE.sub("", raw.rstrip())
        if line in ("Lines To Delete", "Lines To Add"):
            flush()
            section[0] = line
            continue
        if not line.strip() or set(line.strip()) == {"="} or section[0] is None or re.match(r"^\d{4}-\d\d-\d\d ", line):
            continue
        if not line.startswith(" "):
            flush()
        block.append(line)
    flush()
    return out


# --- ownership and files ------------------------------------------------------------------------------

read = files.read


def claim(path, text, owner, force, kind):
    """May ``owner`` write ``path`` (now holding ``text``)? Returns a note for the action when
    it adopts the file, raises FabricError naming both owners otherwise. ``kind`` is
    ``config`` (frr.conf: a file without our mark is refused unless it holds nothing, like
    Debian's own) or ``daemons`` (Debian's switch file: taken when it has no mark)."""
    if text is None:
        return None
    holder = file_owner(text)
    if holder == owner:
        return None
    if force:
        return "adopt %s from %s" % (path, "owner %s" % holder if holder else "its writer (no podnet.fabric mark)")
    if holder is not None:
        raise FabricError("%s: belongs to owner %s, not to owner %s; refusing to take it over (force: true adopts it)"
                          % (path, holder, owner))
    if kind == "daemons" or holds_nothing(text):
        return "take %s over (FRR's own file, no configuration in it)" % path if kind == "config" else None
    raise FabricError("%s: was written by hand or by another tool (no podnet.fabric mark), not by owner %s; "
                      "refusing to replace it (force: true adopts it)" % (path, owner))


def frr_ids():
    """(uid, gid) of FRR's user and group where they exist (Debian: frr:frr), else (-1, -1)."""
    try:
        uid = pwd.getpwnam("frr").pw_uid
    except KeyError:
        uid = -1
    try:
        gid = grp.getgrnam("frr").gr_gid
    except KeyError:
        gid = -1
    return uid, gid


def put(path, text, mode=0o640):
    """Write ``path`` by rename, mode 0640, owned by frr:frr where they exist; None removes it."""
    if text is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s.tmp-" % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        uid, gid = frr_ids()
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- plan -----------------------------------------------------------------------------------------------

def plan(daemon, owner, config_text, daemons_text, force=False, secrets=(), labels=None, warn=None):
    """Plan the router's two files and what FRR must do about them. Returns (Plan, info).

    Also in check mode: the ownership checks, vtysh's check of a changed frr.conf, and (FRR
    running, files unchanged) ``frr-reload.py --test`` for a running configuration that drifted
    from the file (someone used vtysh). Then, in this order: the daemons file; frr.conf - when
    FRR runs and the daemons file is unchanged, installed and applied by ``frr-reload.py
    --reload`` (no restart, sessions stay up; when the reload fails the old file is put back and
    reloaded), else only written; with service management ``systemctl enable``, then ``restart``
    (the daemons file changed) or ``start`` (not running)."""
    warn = warn or (lambda text: None)
    daemon.require_tools()
    old_config, old_daemons = read(daemon.config), read(daemon.daemons)
    config_note = claim(daemon.config, old_config, owner, force, "config")
    daemons_note = claim(daemon.daemons, old_daemons, owner, force, "daemons")
    config_changed = old_config != config_text
    daemons_changed = daemons_text is not None and old_daemons != daemons_text
    if config_changed:
        daemon.validate(config_text, secrets, labels)
    running = daemon.running()
    active, enabled = daemon.service_state()
    drift = []
    if running and not config_changed and not daemons_changed:
        drift = daemon.delta(daemon.config, secrets)

    result = Plan()
    info = {"config": daemon.config, "daemons": daemon.daemons, "running": running, "reload": False, "restart": False,
            "start": False, "drift": drift}
    if config_changed:
        result.before[daemon.config] = hide(mask(old_config), secrets) if old_config is not None else None
        result.after[daemon.config] = hide(mask(config_text), secrets)
    if daemons_changed:
        result.before[daemon.daemons] = old_daemons
        result.after[daemon.daemons] = daemons_text
    if drift:
        key = "running configuration (frr-reload.py --test)"
        result.before[key] = "differs from %s" % daemon.config
        result.after[key] = "\n".join(drift)

    def noted(note, text):
        return "%s; %s" % (note, text) if note else text

    restart = bool(daemon.manage_service and daemons_changed and active)
    start = bool(daemon.manage_service and not active)
    if daemons_changed:
        result.add(noted(daemons_note, "write %s (bgpd, bfdd on)" % daemon.daemons),
                   lambda: put(daemon.daemons, daemons_text), lambda: put(daemon.daemons, old_daemons))
    if (config_changed or drift) and running and not restart and not start:
        info["reload"] = True
        what = ("install %s, then frr-reload.py --reload (no restart: sessions stay up)" % daemon.config
                if config_changed else
                "frr-reload.py --reload %s: the running configuration differs from it (%d lines)" % (daemon.config, len(drift)))
        result.add(noted(config_note, what), lambda: install_and_reload(daemon, config_text, old_config, secrets),
                   lambda: install_and_reload(daemon, old_config, config_text, secrets))
    elif config_changed:
        result.add(noted(config_note, "write %s" % daemon.config), lambda: put(daemon.config, config_text),
                   lambda: put(daemon.config, old_config))
    if daemon.manage_service:
        if not enabled:
            result.add("systemctl enable %s" % daemon.service, lambda: daemon.systemd("enable"),
                       lambda: daemon.systemd("disable"))
        if restart:
            info["restart"] = True
            result.add("systemctl restart %s (the daemons file changed)" % daemon.service,
                       lambda: daemon.systemd("restart"), irreversible=True)
        elif start:
            info["start"] = True
            result.add("systemctl start %s" % daemon.service, lambda: daemon.systemd("start"),
                       lambda: daemon.systemd("stop"))
    elif daemons_changed and running:
        warn("%s changed: restart FRR for it to take effect (service management is off)" % daemon.daemons)
    elif config_changed and not running:
        warn("FRR is not running (vtysh gets no answer): %s takes effect when it starts" % daemon.config)
    return result, info


def install_and_reload(daemon, text, previous, secrets=()):
    """Put ``text`` in place as frr.conf and ``frr-reload.py --reload`` it (the file being the
    configuration file itself, frr-reload.py does not ``write`` the running configuration over
    it). When the reload fails, the previous file is put back and reloaded before the error is
    raised."""
    put(daemon.config, text)
    if text is None:
        return
    try:
        daemon.reload(daemon.config, secrets)
    except FabricError as exc:
        put(daemon.config, previous)
        back = "the previous frr.conf is back in place"
        if previous is not None:
            try:
                daemon.reload(daemon.config, secrets)
                back += " and running"
            except FabricError as again:
                back += ", but reloading it failed too: %s" % again
        raise FabricError("%s (%s)" % (exc, back))


# --- sessions ---------------------------------------------------------------------------------------------

def session(address, name, data):
    """The module's view of one neighbor in ``show bgp neighbors json``."""
    if not data:
        return {"name": name, "address": address, "state": "missing"}
    state = data.get("bgpState") or "unknown"
    af = (data.get("addressFamilyInfo") or {}).get("ipv4Unicast") or {}
    out = {"name": name, "address": address, "state": state,
           "uptime": int(data.get("bgpTimerUpMsec", 0)) // 1000 if state == "Established" else None,
           "prefixes_received": af.get("acceptedPrefixCounter", 0),
           "prefixes_sent": af.get("sentPrefixCounter", 0),
           "bfd": ((data.get("peerBfdInfo") or {}).get("status") or None)}
    if state != "Established":
        reasons = []
        if data.get("lastResetDueTo"):
            reasons.append("last reset: %s" % data["lastResetDueTo"])
        if data.get("lastNotificationReason"):
            reasons.append("last notification: %s" % data["lastNotificationReason"])
        if state in ("Idle", "Connect", "Active"):
            if data.get("authenticationEnabled"):
                reasons.append("no TCP session: the node is down or not peering with this address, or the TCP MD5 "
                               "passwords differ (the kernel drops every segment with a wrong one)")
            else:
                reasons.append("no TCP session: the node is down or not peering with this address")
        out["last_error"] = "; ".join(reasons)
    return out


def up(sess, neighbor):
    """Established, and with BFD on the session, BFD up too (BIRD drops a session whose BFD
    goes down, so a session without BFD up yet is not settled)."""
    return sess["state"] == "Established" and (not neighbor.get("bfd") or (sess.get("bfd") or "").lower() == "up")


def wait_established(daemon, neighbors, timeout, interval=0.3, clock=None, sleep=None):
    """Poll ``show bgp neighbors json`` until every neighbor ({name, address, bfd}) is
    Established (and its BFD session up), at most ``timeout`` seconds. Returns (sessions,
    not_up)."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + timeout
    while True:
        data = daemon.neighbors()
        sessions = [session(str(n["address"]), n["name"], data.get(str(n["address"]))) for n in neighbors]
        not_up = [s for s, n in zip(sessions, neighbors) if not up(s, n)]
        if not not_up or clock() >= deadline:
            return sessions, not_up
        sleep(interval)
