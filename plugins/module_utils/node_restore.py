# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""podnet-restore: a node puts back what the last converge declared, without the controller.

A reboot empties the kernel (namespaces, veths, bridge, VTEP, routes, iptables); a link that
goes down takes the routes through it along. The kubelet recreates pods through CNI at boot and
flannel re-checks its routes; this program is our counterpart. It replays the restore state the
modules recorded (:mod:`.restore_state`) through the modules' own ``build`` functions and the
same runner, so there is no second implementation:

- ``run`` (the systemd unit, ``Type=notify``): apply everything once, layer by layer (links
  before routes before rules), tell systemd READY (workload units are ordered after it), then
  wait for netlink link and address events and re-apply when a link the state depends on comes
  back up or gets an address; entries that failed (a gateway not reachable yet) are retried at
  the next event and every ``RETRY_SECONDS``.
- ``apply``: the same once, then exit (1 when something failed).
- ``check``: what ``apply`` would do (check mode), changing nothing.

Every line goes to stdout, hence to the journal; ``systemctl status`` shows the last summary.
A state file it cannot read, of an unknown format or of another collection version: one line
naming the file and the reason, and nothing is changed.
"""
from __future__ import annotations

import importlib
import os
import select
import socket
import sys
import time

from ansible_collections.podnet.fabric.plugins.module_utils import restore_state, runner
from ansible_collections.podnet.fabric.plugins.module_utils.version import COLLECTION_VERSION

MODULES_PACKAGE = "ansible_collections.podnet.fabric.plugins.modules."
# Events come in bursts (link up, then its addresses, then routes): wait this long for the rest.
SETTLE_SECONDS = 0.05
RETRY_SECONDS = 10.0
# How often an idle restorer reads the state again (new namespaces to watch).
REFRESH_SECONDS = 30.0
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
ANY_LINK = "*"


def log(text):
    sys.stdout.write("podnet-restore: %s\n" % text)
    sys.stdout.flush()


def notify(text):
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (absent: not under systemd)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(text.encode(), address)
    except OSError:
        pass
    finally:
        sock.close()


def _module_of(module):
    return importlib.import_module(MODULES_PACKAGE + module)


def replay_params(module, params):
    """The parameters a record is replayed with: as recorded, unless the module says otherwise
    with its own ``replay_params`` (vip_arp: no ARP probe at boot, see there)."""
    adjust = getattr(_module_of(module), "replay_params", None)
    return adjust(dict(params)) if adjust else dict(params)


def _short(actions, limit=3):
    text = "; ".join(actions[:limit])
    return text + ("; ... (%d more)" % (len(actions) - limit) if len(actions) > limit else "")


def load():
    """(docs, None) or (None, the one line saying why nothing may be restored)."""
    try:
        return restore_state.load_all(), None
    except restore_state.StateError as exc:
        return None, "%s: nothing restored" % exc


def apply(docs, netns=ANY_LINK, check_mode=False, quiet=False):
    """Replay the entries (of one namespace, or all); returns (changed, failed) entry labels."""
    changed, failed = [], []
    for module, owner, params in restore_state.entries(docs):
        if netns != ANY_LINK and (params.get("netns") or None) != netns:
            continue
        label = "%s/%s%s" % (owner, module, " in netns %s" % params["netns"] if params.get("netns") else "")
        result = runner.execute(replay_params(module, params), _module_of(module).build, check_mode=check_mode)
        seconds = result.get("timing", {}).get("total", 0)
        if result.get("failed"):
            failed.append(label)
            log("%s: FAILED: %s" % (label, result.get("msg")))
        elif result.get("changed"):
            changed.append(label)
            log("%s: %s %d action%s in %.3f s: %s" % (
                label, "would do" if check_mode else "restored,", len(result["actions"]),
                "" if len(result["actions"]) == 1 else "s", seconds, _short(result["actions"])))
        elif not quiet:
            log("%s: as declared (%.3f s)" % (label, seconds))
    return changed, failed


def dependencies(docs):
    """{netns: names of the links the state goes through} (ANY_LINK when a route names none)."""
    deps = {}
    for module, _owner, params in restore_state.entries(docs):
        names = deps.setdefault(params.get("netns") or None, set())
        if module == "pods":
            names.add(params["bridge"])
        elif module == "vxlan":
            for vtep in params.get("vxlans") or []:
                names.update(n for n in (vtep.get("name"), vtep.get("dev")) if n)
        elif module == "route":
            for route in params.get("routes") or []:
                devs = [route.get("dev")] + [hop.get("dev") for hop in route.get("nexthops") or []]
                if not any(devs) and (route.get("gateway") or route.get("nexthops")):
                    names.add(ANY_LINK)
                names.update(d for d in devs if d)
        elif module == "bridge":
            names.update(b["name"] for b in params.get("bridges") or [] if b.get("name"))
        elif module == "vip_arp":
            # an interface that comes up (Wi-Fi connecting at boot) gets its VIPs and sysctls
            names.update(v["interface"] for v in params.get("vips") or [] if v.get("interface"))
            if params.get("state", "present") == "present":
                names.update(params.get("interfaces") or [])
    return deps


class LinkWatch(object):
    """Netlink link/address events of one namespace, reduced to "a link we depend on is usable
    again": a transition to up with carrier, or an IPv4 address added to it."""

    def __init__(self, netns, stack):
        from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK
        from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
        self.netns = netns
        self.ipr = stack.enter_context(core.open_netns(netns))
        self.ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
        self.names = {}
        self.usable = {}
        with core.open_netns(netns) as dump:
            for link in dump.get_links():
                self._seen(link)

    def fileno(self):
        return self.ipr.fileno()

    def _seen(self, msg):
        name = msg.get_attr("IFLA_IFNAME")
        if name:
            self.names[msg["index"]] = name
        usable = bool(msg["flags"] & IFF_UP and msg["flags"] & IFF_LOWER_UP)
        was = self.usable.get(name)
        self.usable[name] = usable
        return name, usable and not was

    def events(self):
        """(link name, what happened) for each link that became usable, in the messages waiting
        on the socket: a transition to up with carrier, or an IPv4 address added while up."""
        hits = []
        for msg in self.ipr.get():
            event = msg.get("event")
            if event == "RTM_NEWLINK":
                name, came_up = self._seen(msg)
                if came_up:
                    hits.append((name, "link %s up" % name))
            elif event == "RTM_DELLINK":
                self.usable.pop(msg.get_attr("IFLA_IFNAME"), None)
            elif event == "RTM_NEWADDR":
                name = self.names.get(msg["index"])
                if name and self.usable.get(name):
                    hits.append((name, "address %s on %s" % (msg.get_attr("IFA_ADDRESS"), name)))
        return hits


def _wanted(hits, names):
    return [text for name, text in hits if name in names or ANY_LINK in names]


def _status(docs, changed, failed, seconds, why="boot"):
    count = len(restore_state.entries(docs))
    return "%s: %d entr%s, %d restored, %d failed in %.3f s" % (
        why, count, "y" if count == 1 else "ies", len(changed), len(failed), seconds)


def run(stop_after=None):
    """The service: apply, READY, then re-apply on link events until killed (or ``stop_after``
    seconds, for tests). The state is read again at every event (a converge may have replaced
    it since), and the watched namespaces follow it."""
    import contextlib
    started = time.monotonic()
    docs, refused = load()
    if refused:
        log(refused)
        notify("READY=1\nSTATUS=%s" % refused)
        docs, failed = [], ["(state refused)"]
    else:
        changed, failed = apply(docs)
        status = _status(docs, changed, failed, time.monotonic() - started)
        log(status)
        notify("READY=1\nSTATUS=%s" % status)
    with contextlib.ExitStack() as stack:
        watches = {}
        deadline, reasons = None, []
        retry_at = time.monotonic() + RETRY_SECONDS if failed else None
        refresh_at = time.monotonic() + REFRESH_SECONDS
        while True:
            # the host's links always; a namespace's once the state names it
            for netns in set(dependencies(docs)) | {None}:
                if netns not in watches:
                    try:
                        watches[netns] = LinkWatch(netns, stack)
                    except Exception as exc:  # a namespace that does not exist (yet)
                        log("cannot watch links in %s: %s" % (netns or "the host", exc))
            timers = [t for t in (deadline, retry_at, refresh_at) if t is not None]
            if stop_after is not None:
                timers.append(started + stop_after)
            timeout = max(0.0, min(timers) - time.monotonic())
            ready = select.select(list(watches.values()), [], [], timeout)[0]
            hits = {watch.netns: watch.events() for watch in ready}
            if any(hits.values()):
                fresh, _why_not = load()
                docs = fresh if fresh is not None else docs
                deps = dependencies(docs)
                for netns, found in hits.items():
                    matched = _wanted(found, deps.get(netns, ()))
                    if matched:
                        reasons.extend(matched)
                        deadline = deadline or time.monotonic() + SETTLE_SECONDS
            now = time.monotonic()
            if stop_after is not None and now >= started + stop_after:
                return 0
            if now >= refresh_at:
                fresh, _why_not = load()
                docs = fresh if fresh is not None else docs
                refresh_at = now + REFRESH_SECONDS
            due_retry = retry_at is not None and now >= retry_at
            if (deadline is not None and now >= deadline) or due_retry:
                why = ", ".join(reasons) if reasons else "retry of %s" % ", ".join(failed)
                deadline, reasons = None, []
                fresh, now_refused = load()
                if now_refused:
                    if now_refused != refused:     # say it once, not every retry
                        log("%s: %s" % (why, now_refused))
                    refused = now_refused
                    retry_at = time.monotonic() + RETRY_SECONDS
                    continue
                refused = None
                docs = fresh
                t0 = time.monotonic()
                changed, failed = apply(docs, quiet=True)
                status = _status(docs, changed, failed, time.monotonic() - t0, why)
                log(status)
                notify("STATUS=%s" % status)
                retry_at = time.monotonic() + RETRY_SECONDS if failed else None


USAGE = "usage: podnet-restore run|apply|check|version"


def main(argv):
    command = argv[0] if argv else "run"
    if command == "version":
        sys.stdout.write(COLLECTION_VERSION + "\n")
        return 0
    if command == "run":
        return run()
    if command in ("apply", "check"):
        docs, refused = load()
        if refused:
            log(refused)
            return 1
        changed, failed = apply(docs, check_mode=command == "check")
        log("%s: %d entries, %d %s, %d failed" % (command, len(restore_state.entries(docs)), len(changed),
                                                  "would change" if command == "check" else "restored", len(failed)))
        return 1 if failed else 0
    sys.stderr.write(USAGE + "\n")
    return 2
