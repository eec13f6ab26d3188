# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BIRD 2's main configuration as Calico's confd writes it (``bird.cfg.template``,
``bird_ipam.cfg``, ``bird_aggr.cfg``), from plain data, and the daemon around it.

What :func:`render` writes (BIRD 2.0.12 syntax; names fixed so peers can refer to them):

- ``router id``, ``timeformat protocol iso long`` (exact uptimes), ``protocol device`` with
  ``scan time 2`` and ``protocol direct`` (connected networks, so that ``gateway recursive``
  resolves the peers' next hops; Calico's interface list);
- ``protocol static podnet_originate4`` (``6``): what the node originates, each prefix as
  ``route P blackhole;`` - Calico's block, service ranges, LoadBalancer /32s;
- ``filter podnet_kernel``: what goes to the kernel - BGP-learned routes inside the programmed
  ranges only (Calico's ``calico_kernel_programming``). The originated blackholes never reach
  the kernel: a blackhole for a service range there would break local connects;
- ``filter podnet_export`` (:data:`EXPORT_FILTER`, calico_bgp_peer's ``export_filter``): the
  originated routes, and BGP-learned routes inside the export ranges (so a route reflector
  reflects pool routes); nothing else - no kernel-learned or direct route, never a default;
- ``filter podnet_export_own`` (:data:`OWN_FILTER`): the originated routes only, for eBGP peers
  (the top-of-rack router): a node is not a transit AS;
- ``protocol kernel podnet_kernel4`` (``6``): Calico's ``learn; persist; scan time 2; graceful
  restart; merge paths on`` (ECMP), ``import all``, export through ``podnet_kernel`` (``export
  none`` when nothing is programmed). BIRD 2 installs routes with ``proto bird``
  (RTPROT_BIRD, 12; hardcoded, not configurable) and its default kernel metric 32;
- ``protocol bfd podnet_bfd`` with the timers for single-hop and multihop sessions (Calico's
  peers are ``multihop``, so BIRD asks for multihop BFD sessions);
- free text (``extra``), then the line that includes calico_bgp_peer's directory, last.

The first line carries the owner's mark; another owner's file is never replaced, a file that is
not podnet.fabric's (the package's default) only with ``force``. A new text is parsed by BIRD
itself (:meth:`bird.Bird.validate`, with the peers' files as they are) before it replaces the
old one; then ``birdc configure`` reconfigures the running daemon in place (sessions whose
configuration did not change stay Established).
"""
from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.podnet.fabric.plugins.module_utils import bird
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

EXPORT_FILTER = "podnet_export"
OWN_FILTER = "podnet_export_own"
KERNEL_FILTER = "podnet_kernel"
ORIGINATE_PROTOCOL = "podnet_originate"
RTPROT_BIRD = 12
DEFAULT_SERVICE = "bird.service"
DEFAULT_KERNEL = {"program": [], "merge_paths": True, "scan_time": 2, "graceful_restart": True, "learn": True, "persist": True}
DEFAULT_BFD = {"interval_ms": 100, "multiplier": 3}

_HEADER_RE = re.compile(r"^# %s:(\S+): BIRD main configuration of owner " % re.escape(owners.MARK))
_COUNT_RE = re.compile(r"(\d+) of (\d+) routes for (\d+) networks in table (\S+)")


# --- parameters -> plain validated data ------------------------------------------------------------

def _networks(values, what):
    """CIDRs -> sorted unique ipaddress networks (IPv4 first); a default route is refused."""
    out = []
    for value in values or []:
        try:
            net = ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError as exc:
            raise FabricError("%s %s: not a network: %s" % (what, value, exc))
        if net.prefixlen == 0:
            raise FabricError("%s %s: a default route is never originated, exported or programmed" % (what, value))
        if net not in out:
            out.append(net)
    return sorted(out, key=lambda n: (n.version, n))


def normalize(params):
    """The task's parameters -> plain dict (raises FabricError, one line naming the field)."""
    state = params.get("state") or "present"
    rid = params.get("router_id")
    if state == "present" or rid:
        try:
            rid = str(ipaddress.IPv4Address(str(rid)))
        except ValueError:
            raise FabricError("router_id %r: must be an IPv4 address (BIRD's router id is a 32-bit IPv4-formatted number)" % (rid,))
        if rid == "0.0.0.0":
            raise FabricError("router_id 0.0.0.0: must not be zero")
    kernel = dict(DEFAULT_KERNEL)
    kernel.update((k, v) for k, v in (params.get("kernel") or {}).items() if v is not None)
    kernel["program"] = _networks(kernel["program"], "kernel program")
    if not 1 <= int(kernel["scan_time"]) <= 3600:
        raise FabricError("kernel scan_time %s: must be 1-3600 seconds" % kernel["scan_time"])
    bfd = params.get("bfd")
    if bfd is not None:
        bfd = dict(DEFAULT_BFD, **dict((k, v) for k, v in bfd.items() if v is not None))
        if not 1 <= int(bfd["interval_ms"]) <= 60000:
            raise FabricError("bfd interval_ms %s: must be 1-60000" % bfd["interval_ms"])
        if not 1 <= int(bfd["multiplier"]) <= 255:
            raise FabricError("bfd multiplier %s: must be 1-255" % bfd["multiplier"])
    log = params.get("log") or "syslog"
    if log not in ("syslog", "stderr") and not (log.startswith("/") and '"' not in log and "\n" not in log):
        raise FabricError("log %r: must be syslog, stderr or an absolute file path" % log)
    extra = params.get("extra") or ""
    if bird.include_line(params.get("config_dir") or bird.DEFAULT_DIR) in extra:
        raise FabricError("extra: must not include the peers directory; the module writes that line itself")
    return {
        "state": state,
        "router_id": rid,
        "kernel": kernel,
        "originate": _networks(params.get("originate"), "originate"),
        "export": _networks(params.get("export"), "export"),
        "bfd": bfd,
        "iso_time": params.get("iso_time", True) is not False,
        "log": log,
        "extra": extra,
        "config_dir": (params.get("config_dir") or bird.DEFAULT_DIR).rstrip("/"),
    }


# --- rendering ------------------------------------------------------------------------------------

def header(owner):
    return ("# %s: BIRD main configuration of owner %s, written by podnet.fabric.bird_config.\n"
            "# Do not edit: the next run of that owner rewrites this file.\n" % (owners.mark(owner), owner))


def file_owner(text):
    """The owner named by a main file's header; None when it is not podnet.fabric's."""
    match = _HEADER_RE.match(text or "")
    return match.group(1) if match else None


def _families(cfg):
    return sorted({4} | set(n.version for n in cfg["originate"] + cfg["export"] + cfg["kernel"]["program"]))


def _prefix_set(nets):
    return "[ %s ]" % ", ".join("%s+" % n for n in nets)


def _bgp_routes_in(nets, verb="accept"):
    """Filter lines: BGP-learned routes inside ``nets``, one line per family (a BIRD prefix set
    holds one family)."""
    lines = []
    for version in (4, 6):
        mine = [n for n in nets if n.version == version]
        if mine:
            lines.append("  if source = RTS_BGP && net.type = NET_IP%d && net ~ %s then %s;" % (version, _prefix_set(mine), verb))
    return lines


def render(cfg, owner):
    """The complete main file for ``cfg`` (from :func:`normalize`)."""
    families = _families(cfg)
    kernel = cfg["kernel"]
    log = cfg["log"] if cfg["log"] in ("syslog", "stderr") else '"%s"' % cfg["log"]
    out = [header(owner).rstrip("\n"), "",
           "log %s all;" % log,
           "router id %s;" % cfg["router_id"]]
    if cfg["iso_time"]:
        out.append("timeformat protocol iso long;")
    out += ["",
            "# Interfaces, and connected networks: the peers' next hops resolve through them (gateway recursive).",
            "protocol device podnet_device {", "  scan time 2;", "}", "",
            "protocol direct podnet_direct {"]
    out += ["  ipv%d;" % v for v in families]
    out += ['  interface -"cali*", -"kube-ipvs*", "*";', "}"]
    for version in families:
        nets = [n for n in cfg["originate"] if n.version == version]
        if nets:
            out += ["",
                    "# Originated by this node (its pod CIDR blocks, service ranges): to BGP peers only, never to the kernel.",
                    "protocol static %s%d {" % (ORIGINATE_PROTOCOL, version), "  ipv%d;" % version]
            out += ["  route %s blackhole;" % n for n in nets]
            out.append("}")
    out += ["",
            "# To the kernel: BGP-learned routes inside the programmed ranges, nothing else (BIRD installs them as proto bird).",
            "filter %s {" % KERNEL_FILTER, "  if net.len = 0 then reject;"]
    out += _bgp_routes_in(kernel["program"])
    out += ["  reject;", "}", "",
            "# To BGP peers (calico_bgp_peer export_filter: %s): the originated routes and BGP-learned routes inside" % EXPORT_FILTER,
            "# the export ranges (a route reflector reflects them); never kernel-learned or connected routes, never a default.",
            "filter %s {" % EXPORT_FILTER, "  if net.len = 0 then reject;"]
    out += ['  if proto = "%s%d" then accept;' % (ORIGINATE_PROTOCOL, v) for v in families
            if any(n.version == v for n in cfg["originate"])]
    out += _bgp_routes_in(cfg["export"])
    out += ["  reject;", "}", "",
            "# To eBGP peers (calico_bgp_peer export_filter: %s): only what this node originates. A node is not a" % OWN_FILTER,
            "# transit AS: a route it learned from another node, sent on with itself as next hop, would draw that",
            "# node's traffic (a Local LoadBalancer IP, another node's pods) through it.",
            "filter %s {" % OWN_FILTER, "  if net.len = 0 then reject;"]
    out += ['  if proto = "%s%d" then accept;' % (ORIGINATE_PROTOCOL, v) for v in families
            if any(n.version == v for n in cfg["originate"])]
    out += ["  reject;", "}"]
    for version in families:
        out += ["",
                "protocol kernel podnet_kernel%d {" % version,
                "  ipv%d {" % version,
                "    import all;",
                "    export %s;" % (("filter %s" % KERNEL_FILTER) if any(n.version == version for n in kernel["program"]) else "none"),
                "  };"]
        if kernel["learn"]:
            out.append("  learn;")
        if kernel["persist"]:
            out.append("  persist;")
        out.append("  scan time %d;" % int(kernel["scan_time"]))
        if kernel["graceful_restart"]:
            out.append("  graceful restart;")
        out += ["  merge paths %s;" % ("on" if kernel["merge_paths"] else "off"), "}"]
    if cfg["bfd"]:
        timers = ["    interval %d ms;" % int(cfg["bfd"]["interval_ms"]), "    multiplier %d;" % int(cfg["bfd"]["multiplier"])]
        out += ["", "# BFD for the peers with bfd on: single-hop and multihop sessions (Calico's peers are multihop).",
                "protocol bfd podnet_bfd {", '  interface "*" {'] + timers + ["  };", "  multihop {"] + timers + ["  };", "}"]
    if cfg["extra"].strip():
        out += ["", "# extra"] + cfg["extra"].strip("\n").splitlines()
    out += ["", "# podnet.fabric: BGP peers, one file per owner", bird.include_line(cfg["config_dir"])]
    return "\n".join(out) + "\n"


# --- observing ------------------------------------------------------------------------------------

def parse_route_count(text):
    """``birdc show route count`` -> {table: {"routes": n, "networks": m}}."""
    return dict((table, {"routes": int(total), "networks": int(nets)})
                for _shown, total, nets, table in _COUNT_RE.findall(text or ""))


def service_state(run_host, service):
    """{"enabled": bool, "active": bool} of a systemd unit, with ``systemctl`` in the host."""
    rc, out, err = run_host(["systemctl", "is-enabled", service])
    word = (out or "").strip()
    if rc != 0 and not word:
        raise FabricError("%s: systemctl is-enabled: %s" % (service, (err or "exit status %d" % rc).strip().splitlines()[-1]))
    if word in ("not-found", "") or "No such file" in err:
        raise FabricError("%s: no such unit (install bird2, or set manage_service: false)" % service)
    active = run_host(["systemctl", "is-active", service])
    return {"enabled": word in ("enabled", "enabled-runtime", "static", "alias"), "active": active[0] == 0 and active[1].strip() == "active"}


def _systemctl(run_host, verb, service):
    rc, out, err = run_host(["systemctl", verb, service])
    if rc != 0:
        lines = (err or out).strip().splitlines()
        raise FabricError("systemctl %s %s: %s" % (verb, service, lines[-1] if lines else "exit status %d" % rc))


def bird_routes(ipr):
    """The kernel routes BIRD installed (proto bird) in the handle's namespace."""
    from ansible_collections.podnet.fabric.plugins.module_utils.netlink import route
    return [r for r in route.dump(ipr) if r["protocol"] == RTPROT_BIRD]


# --- plan -----------------------------------------------------------------------------------------

# Debian's bird2 installs /etc/bird/bird.conf from this example (ucf): an untouched copy of it is
# nobody's configuration and may be replaced without force.
PACKAGE_DEFAULT = "/usr/share/bird2/bird.conf"


def plan(daemon, owner, cfg, run_host=None, service=None, ipr=None, running=False, force=False):
    """Plan the main file, the service (when ``service`` is a unit name) and, for state absent,
    the removal of BIRD's leftover kernel routes (``ipr``: handle in the daemon's namespace).

    ``running``: BIRD answers on its socket (then a changed file is loaded with birdc configure).
    Returns (Plan, info): info has file, reconfigured (birdc configure runs), removed_routes.
    """
    path = daemon.config
    old = bird.read(path)
    holder = file_owner(old)
    foreign = old is not None and holder is None
    if holder is not None:
        owners.claim(path, holder, owner)
    result = Plan()
    info = {"file": path, "reconfigured": False, "removed_routes": []}
    if cfg["state"] == "present":
        if foreign and not force and old != bird.read(PACKAGE_DEFAULT):
            raise FabricError("%s: exists and is not podnet.fabric's (no owner mark) nor Debian's untouched example "
                              "(%s); set force: true to replace it, or point config elsewhere" % (path, PACKAGE_DEFAULT))
        new = render(cfg, owner)
        svc = service_state(run_host, service) if service else None
        if new != old:
            if not os.path.isdir(os.path.dirname(path) or "."):
                raise FabricError("%s: directory %s does not exist (is bird2 installed?)" % (path, os.path.dirname(path)))
            daemon.validate(new, daemon.read_dir())
            if not os.path.isdir(daemon.directory):
                # BIRD refuses to start on an include pattern whose directory is missing
                result.add("create %s" % daemon.directory, lambda: bird.ensure_dir(daemon.directory),
                           lambda: os.rmdir(daemon.directory))
            result.before[path], result.after[path] = old, new
            info["reconfigured"] = running
            result.add("write %s%s" % (path, ", then birdc configure" if running else ""),
                       lambda: _install(daemon, new, old), lambda: _install(daemon, old, new))
        if svc is not None:
            if not svc["enabled"]:
                result.add("enable %s" % service, lambda: _systemctl(run_host, "enable", service),
                           lambda: _systemctl(run_host, "disable", service))
            if not svc["active"]:
                result.add("start %s" % service, lambda: _systemctl(run_host, "start", service),
                           lambda: _systemctl(run_host, "stop", service))
            _service_diff(result, service, svc, {"enabled": True, "active": True})
        return result, info

    if holder != owner:
        # not ours (absent, the package's example, a user's own BIRD): its daemon and routes are
        # not ours either
        return result, info
    svc = service_state(run_host, service) if service else None
    if svc is not None:
        if svc["active"]:
            result.add("stop %s" % service, lambda: _systemctl(run_host, "stop", service),
                       lambda: _systemctl(run_host, "start", service))
        if svc["enabled"]:
            result.add("disable %s" % service, lambda: _systemctl(run_host, "disable", service),
                       lambda: _systemctl(run_host, "enable", service))
        _service_diff(result, service, svc, {"enabled": False, "active": False})
    elif running:
        raise FabricError("BIRD still runs (answers on %s): stop it first, or let the module stop %s (manage_service: true)"
                          % (daemon.socket, DEFAULT_SERVICE))
    result.before[path], result.after[path] = old, None
    result.add("remove %s" % path, lambda: bird.put(path, None), lambda: bird.write_atomic(path, old))
    # the same owner's peers (calico_bgp_peer): nothing runs them any more
    peers = os.path.join(daemon.directory, "%s.conf" % owner)
    peers_text = bird.read(peers)
    if peers_text is not None and bird.file_owner(peers_text) == owner:
        result.before[peers], result.after[peers] = bird.masked(peers_text), None
        result.add("remove %s" % peers, lambda: bird.put(peers, None), lambda: bird.write_private(peers, peers_text))
    from ansible_collections.podnet.fabric.plugins.module_utils.netlink import route
    leftovers = bird_routes(ipr) if ipr is not None else []
    if leftovers:
        result.before["kernel routes (proto bird)"] = sorted(route.describe(r) for r in leftovers)
        result.after["kernel routes (proto bird)"] = []
    for r in leftovers:
        info["removed_routes"].append(route.describe(r))
        result.add("delete route %s proto bird" % route.describe(r), lambda r=r: route.delete_quietly(ipr, r), irreversible=True)
    return result, info


def _service_diff(result, service, have, want):
    if have != want:
        result.before[service] = have
        result.after[service] = want


def _install(daemon, text, previous):
    """Put the main file in place (or remove it), then ``birdc configure`` when BIRD runs; when
    BIRD refuses, the previous file is put back before the error is raised."""
    if text is None:
        bird.put(daemon.config, None)
    else:
        bird.write_atomic(daemon.config, text, like=daemon.config)
    if not daemon.running():
        return
    try:
        daemon.configure()
    except FabricError:
        if previous is None:
            bird.put(daemon.config, None)
        else:
            bird.write_atomic(daemon.config, previous, like=daemon.config)
        raise
