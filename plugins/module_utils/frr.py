# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""FRR 8.4 (Debian bookworm) as the racks' top-of-rack router: plain data -> ``frr.conf``.

Pure: nothing here runs a command or touches a file. :func:`render` turns the router, its node
neighbors and the cluster's address space into the complete integrated configuration
(``/etc/frr/frr.conf``); :func:`render_daemons` gives ``/etc/frr/daemons`` with bgpd and bfdd on.

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
``frr-reload.py --reload FILE`` applies it without restarting FRR (sessions stay up); install the
file as ``/etc/frr/frr.conf`` (0640 frr:frr) afterwards. A changed daemons file needs
``systemctl restart frr``. See :func:`check_command` and :func:`reload_command`.
"""
from __future__ import annotations

import ipaddress
import re

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

PEER_GROUP = "PODNET-NODES"
BFD_PROFILE = "podnet-nodes"
PODS_LIST = "PODNET-POD-CIDRS"
SERVICES_LIST = "PODNET-SERVICE-IPS"
MAP_IN = "PODNET-FROM-NODES"
MAP_OUT = "PODNET-TO-NODES"
MASK = "********"
MAX_PASSWORD = 80  # TCP_MD5SIG_MAXKEYLEN in Linux
VTYSH = "/usr/bin/vtysh"
FRR_RELOAD = "/usr/lib/frr/frr-reload.py"

BFD_DEFAULTS = {"detect_multiplier": 3, "receive_interval": 100, "transmit_interval": 100}
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
_PASSWORD_LINE_RE = re.compile(r"^(\s*neighbor \S+ password )\S+$", re.M)


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
    return {"cluster_cidr": cluster, "cluster_node_prefix": node_prefix, "pod_prefix_max": pod_max,
            "services": sorted(services), "announce_default": bool(merged["announce_default"]),
            "maximum_paths": _int(what, "maximum_paths", merged["maximum_paths"], 1, 256),
            "bfd": bfd, "keepalive_time": keepalive, "hold_time": hold,
            "graceful_restart": merged["graceful_restart"] is not False, "restart_time": restart}


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
        if settings["restart_time"] is not None:
            lines.append(" bgp graceful-restart restart-time %d" % settings["restart_time"])
    lines += [" bgp bestpath as-path multipath-relax",
              " neighbor %s peer-group" % group]
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
              "  maximum-paths %d" % settings["maximum_paths"],
              " exit-address-family",
              "exit"]
    return lines


def _bfd(settings):
    bfd = settings["bfd"]
    return ["bfd",
            " profile %s" % BFD_PROFILE,
            "  detect-multiplier %d" % bfd["detect_multiplier"],
            "  receive-interval %d" % bfd["receive_interval"],
            "  transmit-interval %d" % bfd["transmit_interval"],
            " exit",
            " !",
            "exit"]


def render(router, neighbors, settings):
    """The complete ``/etc/frr/frr.conf`` for FRR 8.4: same input (in any order) -> same text.

    ``router``: ``hostname``, ``as_number``, ``router_id``. ``neighbors``: one dict per node with
    ``address`` (IPv4), ``as_number`` (per rack or per node), optional ``name``, ``password``
    (MD5), ``bfd`` (default true), ``rack``/``description``. ``settings``: ``cluster_cidr``
    (required), ``cluster_node_prefix``, ``pod_prefix_max``, ``service_cidrs``,
    ``load_balancer_cidrs``, ``announce_default``, ``maximum_paths``, ``bfd``
    (``detect_multiplier``, ``receive_interval``, ``transmit_interval`` in ms),
    ``keepalive_time``/``hold_time`` (seconds), ``graceful_restart``, ``restart_time``.
    Raises FabricError naming the neighbor (or setting) and the field.
    """
    router = normalize_router(router)
    peers = normalize_neighbors(neighbors, router)
    conf = normalize_settings(settings)
    lines = ["! Managed by podnet.fabric (tor_router): changes made here or by vtysh 'write' are replaced.",
             "frr defaults traditional",
             "hostname %s" % router["hostname"],
             "log syslog informational",
             "!"]
    lines += _policy(conf) + ["!"] + _bgp(router, peers, conf) + ["!"] + _bfd(conf) + ["!", "end"]
    return "\n".join(lines) + "\n"


def render_daemons(enabled=("bgpd", "bfdd")):
    """``/etc/frr/daemons`` as Debian's frr 8.4 ships it, with only ``enabled`` set to yes.

    zebra, staticd and watchfrr are always started (the file has no switch for them);
    ``vtysh_enable=yes``; options, watchfrr options and the profile stay at their defaults.
    """
    known = [name for name, options in DAEMONS]
    for name in enabled:
        if name not in known:
            raise FabricError("daemons: %r is not an FRR 8.4 daemon with a switch (%s)" % (name, ", ".join(known)))
    lines = ["# This file tells the frr package which daemons to start.",
             "# Managed by podnet.fabric (tor_router); Debian's frr 8.4 layout.",
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


def check_command(path, vtysh=VTYSH):
    """argv that checks a candidate file's syntax without touching the daemons (rc != 0: error,
    stderr ``line N: % Unknown command[NODE]: TEXT``)."""
    return [vtysh, "--dryrun", "--inputfile", path]


def reload_command(path, test=False, frr_reload=FRR_RELOAD):
    """argv that shows (``test``) or applies the delta between the running daemons and ``path``."""
    return [frr_reload, "--test" if test else "--reload", path]
