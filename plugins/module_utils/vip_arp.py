# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layer-2 VIPs (MetalLB's layer-2 mode): the kernel answers ARP for a /32 the owner adds.

A VIP is an IPv4 /32 address on the interface that faces the segment. The kernel then answers
ARP requests for it with that interface's MAC by itself, for as long as the address is there, so
nothing has to run on the node between two Ansible runs (proxy ARP would answer for a whole
routed prefix, on every interface with proxy_arp on, and needs a route per VIP besides).

Ownership: the address's label (IFA_LABEL, at most 15 characters) is ``<ifname>:v<tag>``, where
``<tag>`` is 4 base32 characters of sha256 of the owner's mark (:func:`owner_tag`). The kernel
keeps the part from the colon when the interface is renamed; the interface name before it is
shortened when both do not fit (``wlx001122334455`` -> ``wlx0011223:vabcd``). Only addresses
whose label ends in the owner's tag are the owner's; purge removes nothing else.

Around the address:
- ``net.ipv4.conf.<if>.arp_ignore=1`` and ``arp_announce=2`` (the kernel uses the maximum of
  ``all`` and the interface), so the node answers only for addresses on the asking interface and
  never announces a VIP as the source of its own ARP requests;
- on a wireless interface (``/sys/class/net/<if>/wireless`` or ``phy80211`` in the namespace's
  own sysfs), promiscuous mode: Wi-Fi drivers drop ARP for an address the NIC does not know
  (metallb #284, raspberrypi/linux#2677);
- both also on the ``interfaces`` named without a VIP (prepared for VIPs another program, such
  as keepalived's VRRP, adds and removes on failover);
- before taking a VIP it does not hold yet, an RFC 5227 ARP probe (sender 0.0.0.0): any answer
  from another MAC is an error and nothing changes;
- after adding, gratuitous ARP like MetalLB (request and reply, sender = target = VIP) at once,
  then ``count - 1`` more bursts ``interval`` seconds apart from a detached child process, which
  stops announcing a VIP as soon as it is no longer an address of the namespace.

Everything that touches the kernel goes through :class:`Kernel` (netlink handle of the task's
namespace, /proc/sys and AF_PACKET sockets opened inside that namespace); the planner only talks
to it, so the unit tests hand it a fake.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, describe_error, noop

ETH_P_ARP = 0x0806
ARPOP_REQUEST, ARPOP_REPLY = 1, 2
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

IFF_UP, IFF_LOOPBACK, IFF_NOARP = 0x1, 0x8, 0x80
IFLA_LABEL_MAX = 15

# The sysctls that keep a node from answering for a VIP it does not hold, and their values.
SYSCTLS = (("arp_ignore", 1), ("arp_announce", 2))

TAG_PREFIX = "v"
TAG_LEN = 4
_B32 = "abcdefghijklmnopqrstuvwxyz234567"

# MetalLB: gratuitous ARP at once and every 1.1 s for 5 s (5 bursts).
DEFAULT_GARP_COUNT = 5
DEFAULT_GARP_INTERVAL = 1.1
DEFAULT_PROBE_TIMEOUT = 0.3


# --- ownership -------------------------------------------------------------------------------------

def owner_tag(owner):
    """'v' + 4 base32 characters of sha256('podnet.fabric:<owner>'): the owner's label suffix."""
    digest = hashlib.sha256(owners.mark(owner).encode("utf-8")).digest()
    return TAG_PREFIX + base64.b32encode(digest).decode("ascii").lower()[:TAG_LEN]


def label_for(ifname, owner):
    """The IFA_LABEL for the owner's VIP on ``ifname`` (fits the kernel's 15 characters)."""
    suffix = ":" + owner_tag(owner)
    return ifname[:IFLA_LABEL_MAX - len(suffix)] + suffix


def tag_of_label(label):
    """The owner tag an address label carries, or None when it is not a podnet.fabric VIP label."""
    if not label or ":" not in label:
        return None
    tag = label.rsplit(":", 1)[1]
    if len(tag) == 1 + TAG_LEN and tag.startswith(TAG_PREFIX) and all(c in _B32 for c in tag[1:]):
        return tag
    return None


# --- input -----------------------------------------------------------------------------------------

def parse_vip(value):
    """'10.0.0.5' or '10.0.0.5/32' -> '10.0.0.5'; anything else is a FabricError naming it."""
    text = str(value).strip()
    addr = text[:-3] if text.endswith("/32") else text
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise FabricError("vip %s: not an IPv4 address (a.b.c.d or a.b.c.d/32)" % text)
    if ip.version != 4:
        raise FabricError("vip %s: IPv6 addresses are announced with NDP, not ARP; vip_arp handles IPv4 only" % text)
    if ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip == ipaddress.ip_address("255.255.255.255"):
        raise FabricError("vip %s: a multicast, loopback, broadcast or unspecified address cannot be a VIP" % text)
    if "/" in addr:
        raise FabricError("vip %s: a VIP is a single address (/32)" % text)
    return str(ip)


def parse_pool(text):
    """A MetalLB IPAddressPool entry: a CIDR or 'first-last' -> (first int, last int)."""
    raw = str(text).strip()
    try:
        if "-" in raw:
            first, last = [ipaddress.ip_address(p.strip()) for p in raw.split("-", 1)]
            if first.version != last.version or int(first) > int(last):
                raise ValueError("the range runs backwards or mixes IPv4 and IPv6")
        else:
            net = ipaddress.ip_network(raw, strict=False)
            first, last = net.network_address, net.broadcast_address
    except ValueError as exc:
        raise FabricError("pool %s: not a CIDR or an a.b.c.d-a.b.c.e range (%s)" % (raw, exc))
    return (first.version, int(first), int(last), raw)


def parse_pools(pools):
    return None if pools is None else [parse_pool(p) for p in pools]


def in_pools(vip, pools):
    """Is ``vip`` in one of the parsed ``pools`` (None: no pools declared, every VIP is)?"""
    if pools is None:
        return True
    value = int(ipaddress.ip_address(vip))
    return any(pool[0] == 4 and pool[1] <= value <= pool[2] for pool in pools)


def normalize(vips, pools=None, state="present"):
    """User entries -> [{'address', 'interface'}], validated; the first bad one is the error."""
    parsed = parse_pools(pools)
    out, seen = [], {}
    for entry in vips or []:
        address = parse_vip(entry.get("address"))
        ifname = entry.get("interface")
        if ifname is None:
            raise FabricError("vip %s: needs an interface" % address)
        try:
            core.check_ifname(ifname)
        except FabricError as exc:
            raise FabricError("vip %s: %s" % (address, exc))
        if address in seen:
            if seen[address] == ifname:
                raise FabricError("vip %s on %s: declared twice" % (address, ifname))
            raise FabricError("vip %s: declared on two interfaces (%s and %s); a VIP is announced on one" % (address, seen[address], ifname))
        if state == "present" and not in_pools(address, parsed):
            raise FabricError("vip %s: outside every declared pool (%s)" % (address, ", ".join(p[3] for p in parsed) or "none"))
        seen[address] = ifname
        out.append({"address": address, "interface": ifname})
    return out


def normalize_interfaces(interfaces):
    """The ``interfaces`` to prepare without a VIP -> [names], validated (one line naming the first bad one)."""
    out = []
    for ifname in interfaces or []:
        core.check_ifname(ifname)
        if ifname in out:
            raise FabricError("interface %s: listed twice in interfaces" % ifname)
        out.append(ifname)
    return out


# --- packets ---------------------------------------------------------------------------------------

def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_text(raw):
    return ":".join("%02x" % b for b in bytearray(raw))


def arp_frame(op, src_mac, sender_ip, target_mac, target_ip, dst_mac=BROADCAST):
    """An Ethernet II frame holding one IPv4-over-Ethernet ARP packet (42 bytes; the kernel pads)."""
    header = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
    body += src_mac + socket.inet_aton(sender_ip) + target_mac + socket.inet_aton(target_ip)
    return header + body


def garp_frames(mac, vip):
    """MetalLB's pair, both Ethernet broadcast with sender IP = target IP = VIP, sender MAC = ours:

    - the request with target MAC 00:00:00:00:00:00 (RFC 5227 ARP announcement; the kernel's own
      arp_notify sends it so; MetalLB puts ff:ff:ff:ff:ff:ff, arping -U too);
    - the reply with target MAC = sender MAC (RFC 5944, arping -A). Linux accepts an unsolicited
      reply as gratuitous only when target MAC equals sender MAC (arp_process), so MetalLB's
      broadcast target MAC in the reply creates no entry on a Linux peer with arp_accept=1.
    """
    own = mac_bytes(mac)
    return [arp_frame(ARPOP_REQUEST, own, vip, ZERO_MAC, vip),
            arp_frame(ARPOP_REPLY, own, vip, own, vip)]


def probe_frame(mac, vip):
    """RFC 5227 ARP probe: who has VIP, tell 0.0.0.0 (the prober claims nothing yet)."""
    return arp_frame(ARPOP_REQUEST, mac_bytes(mac), "0.0.0.0", ZERO_MAC, vip)


def parse_arp(frame):
    """An Ethernet frame -> {'op', 'sha', 'spa', 'tha', 'tpa'} for IPv4 ARP, else None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return {"op": op, "sha": mac_text(frame[22:28]), "spa": socket.inet_ntoa(frame[28:32]),
            "tha": mac_text(frame[32:38]), "tpa": socket.inet_ntoa(frame[38:42])}


def conflicts(frames, probes):
    """From received frames, the VIPs another MAC speaks for: {vip: that MAC}.

    ``probes``: {vip: our MAC}. An ARP packet (reply, or a request/announcement) whose sender IP
    is the VIP and whose sender MAC is not ours means someone else holds it (RFC 5227 2.1.1).
    """
    found = {}
    for frame in frames:
        pkt = parse_arp(frame)
        if pkt is None or pkt["spa"] not in probes:
            continue
        if pkt["sha"] != probes[pkt["spa"]] and pkt["spa"] not in found:
            found[pkt["spa"]] = pkt["sha"]
    return found


# --- the background repeats ------------------------------------------------------------------------

# Run by a detached python (new session, no stdin/stdout/stderr): joins the task's namespace
# through the inherited fd, then sends the remaining bursts. Before each burst it checks that the
# VIP is still a local address of the namespace (bind fails otherwise) and skips it when not.
REPEATER = r"""
import ctypes, os, socket, sys, time
nsfd, count, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
jobs = [job.split(",") for job in sys.argv[4:]]
if nsfd >= 0 and ctypes.CDLL(None, use_errno=True).setns(nsfd, 0x40000000) != 0:
    sys.exit(1)
for _ in range(count):
    time.sleep(interval)
    for fd, vip, frames in jobs:
        check = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            check.bind((vip, 0))
        except OSError:
            continue
        finally:
            check.close()
        for frame in frames.split("+"):
            try:
                os.write(int(fd), bytes.fromhex(frame))
            except OSError:
                pass
"""


# Run in the task's namespace (netns_exec.run): a private mount namespace with that namespace's
# own sysfs (what `ip netns exec` does), then which interfaces exist and are wireless.
SYSFS_VIEW = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x00020000) != 0 or libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
    sys.exit("unshare/mount: %s" % os.strerror(ctypes.get_errno()))
if libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) != 0:
    sys.exit("mount sysfs: %s" % os.strerror(ctypes.get_errno()))
out = {}
for name in sys.argv[1:]:
    base = os.path.join("/sys/class/net", name)
    out[name] = {"exists": os.path.exists(base),
                 "wireless": os.path.exists(base + "/wireless") or os.path.exists(base + "/phy80211")}
print(json.dumps(out))
"""


# --- the kernel, as the planner sees it -------------------------------------------------------------

class Kernel(object):
    """The task's namespace: ``ipr`` an IPRoute opened in it (None: a namespace that does not
    exist yet, check mode), ``netns`` its name (None: the module's own namespace). Every method
    acts in that namespace."""

    def __init__(self, ipr, netns=None, sys_root="/sys", proc_root="/proc"):
        self.ipr = ipr
        self.netns = netns
        self.sys_root = sys_root
        self.proc_root = proc_root

    def _inside(self):
        if self.netns:
            return netns_exec.joined(netns_exec.netns_path(self.netns))
        return contextlib.nullcontext()

    # observe
    def links(self):
        """{name: {'index', 'mac', 'flags', 'master', 'kind'}} of the namespace."""
        out = {}
        if self.ipr is None:
            return out
        for msg in self.ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            out[msg.get_attr("IFLA_IFNAME")] = {
                "index": msg["index"], "mac": msg.get_attr("IFLA_ADDRESS"), "flags": msg["flags"],
                "master": msg.get_attr("IFLA_MASTER"),
                "kind": (info.get_attr("IFLA_INFO_KIND") if info else None) or "device"}
        return out

    def addresses(self):
        """IPv4 addresses: [{'address', 'prefixlen', 'index', 'label'}]."""
        if self.ipr is None:
            return []
        out = []
        for msg in self.ipr.get_addr(family=socket.AF_INET):
            out.append({"address": msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"),
                        "prefixlen": msg["prefixlen"], "index": msg["index"], "label": msg.get_attr("IFA_LABEL")})
        return out

    def sysctl_path(self, ifname, key):
        return os.path.join(self.proc_root, "sys/net/ipv4/conf", ifname, key)

    def read_sysctl(self, ifname, key):
        """The interface's value (int), None when the interface has no such entry."""
        if self.ipr is None:
            return None
        with self._inside():
            try:
                with open(self.sysctl_path(ifname, key)) as handle:
                    return int(handle.read().strip())
            except (IOError, OSError, ValueError):
                return None

    def write_sysctl(self, ifname, key, value):
        with self._inside():
            with open(self.sysctl_path(ifname, key), "w") as handle:
                handle.write("%d\n" % value)

    def wireless(self, ifnames):
        """The subset of ``ifnames`` the kernel calls wireless, from the namespace's own sysfs."""
        names = sorted(set(ifnames))
        if not names or self.ipr is None:
            return set()
        if not self.netns:
            return set(n for n in names if os.path.exists(os.path.join(self.sys_root, "class/net", n, "wireless"))
                       or os.path.exists(os.path.join(self.sys_root, "class/net", n, "phy80211")))
        rc, out, err = netns_exec.run([sys.executable, "-c", SYSFS_VIEW] + names, netns=self.netns, timeout=30)
        if rc != 0:
            raise FabricError("netns %s: cannot read its sysfs to tell wireless interfaces: %s" % (self.netns, (err or out).strip()))
        view = json.loads(out)
        return set(n for n in names if view.get(n, {}).get("wireless"))

    # act
    def set_promisc(self, ifname, on):
        index = self.ipr.link_lookup(ifname=ifname)[0]
        self.ipr.link("set", index=index, flags=0x100 if on else 0, change=0x100)

    def add_address(self, ifname, vip, label):
        index = self._index(ifname)
        try:
            self.ipr.addr("add", index=index, address=vip, prefixlen=32, label=label, family=socket.AF_INET)
        except core.NetlinkError as exc:
            if exc.code != core.EEXIST:
                raise

    def del_address(self, ifname, vip, label):
        """Delete exactly the owner's address (label included); gone is success."""
        idx = self.ipr.link_lookup(ifname=ifname)
        if not idx:
            return
        try:
            self.ipr.addr("del", index=idx[0], address=vip, prefixlen=32, label=label, family=socket.AF_INET)
        except core.NetlinkError as exc:
            if exc.code not in (core.EADDRNOTAVAIL, core.ENODEV, core.ENOENT):
                raise

    def _index(self, ifname):
        idx = self.ipr.link_lookup(ifname=ifname)
        if not idx:
            raise FabricError("interface %s: does not exist" % ifname)
        return idx[0]

    def packet_socket(self, ifname):
        """An AF_PACKET raw socket for ARP bound to ``ifname``, created inside the namespace."""
        with self._inside():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        try:
            sock.bind((ifname, ETH_P_ARP))
        except OSError:
            sock.close()
            raise
        return sock

    def probe(self, targets, timeout):
        """ARP-probe ``targets`` [(vip, ifname, our mac)] at once; wait up to ``timeout`` seconds
        (a second probe at half time). Returns {vip: the other MAC} for VIPs someone answered."""
        if not targets or timeout <= 0:
            return {}
        socks = {}
        try:
            for _vip, ifname, _mac in targets:
                if ifname not in socks:
                    socks[ifname] = self.packet_socket(ifname)
            mine = dict((vip, mac.lower()) for vip, _ifname, mac in targets)
            frames = []
            deadline = time.monotonic() + timeout
            resend = time.monotonic() + timeout / 2.0
            sent = 0
            while True:
                now = time.monotonic()
                if sent == 0 or (sent == 1 and now >= resend):
                    for vip, ifname, mac in targets:
                        socks[ifname].send(probe_frame(mac, vip))
                    sent += 1
                if now >= deadline or len(conflicts(frames, mine)) == len(mine):
                    break
                wait = min(deadline, resend) - now if sent == 1 else deadline - now
                ready = select.select(list(socks.values()), [], [], max(0.0, wait))[0]
                for sock in ready:
                    data, addr = sock.recvfrom(2048)
                    if addr[2] != PACKET_OUTGOING:
                        frames.append(data)
            return conflicts(frames, mine)
        finally:
            for sock in socks.values():
                sock.close()

    def announce(self, jobs, count, interval):
        """Gratuitous ARP for ``jobs`` [(vip, ifname, mac)]: the first burst now, ``count - 1``
        more from a detached child. Returns {'frames_sent', 'background_pid'}."""
        socks, sent = {}, 0
        try:
            for vip, ifname, mac in jobs:
                if ifname not in socks:
                    socks[ifname] = self.packet_socket(ifname)
                for frame in garp_frames(mac, vip):
                    socks[ifname].send(frame)
                    sent += 1
            pid = None
            if count > 1 and jobs:
                pid = self._spawn_repeater(socks, jobs, count - 1, interval)
            return {"frames_sent": sent, "background_pid": pid}
        finally:
            for sock in socks.values():
                sock.close()

    def _spawn_repeater(self, socks, jobs, repeats, interval):
        nsfd = -1
        if self.netns:
            nsfd = os.open(netns_exec.netns_path(self.netns), os.O_RDONLY)
        try:
            args = ["%d,%s,%s" % (socks[ifname].fileno(), vip, "+".join(f.hex() for f in garp_frames(mac, vip)))
                    for vip, ifname, mac in jobs]
            fds = [s.fileno() for s in socks.values()] + ([nsfd] if nsfd >= 0 else [])
            # Detached for any caller, Ansible's module process and the node's long-running
            # restorer (node_restore) alike: its own session, /dev/null for stdin/stdout/stderr and
            # no other inherited descriptor, so it holds neither Ansible's pipes nor the
            # restorer's journal stream; it ends by itself (at most 60 bursts 60 s apart). The
            # restorer's subprocess module reaps it at its next Popen, init once the caller exited.
            child = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [sys.executable, "-c", REPEATER, str(nsfd), str(repeats), repr(float(interval))] + args,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=fds, start_new_session=True, close_fds=True)
            return child.pid
        finally:
            if nsfd >= 0:
                os.close(nsfd)


# --- plan ------------------------------------------------------------------------------------------

def check_interface(vip, ifname, lnk):
    """Can the kernel answer ARP for ``vip`` (None: an interface prepared without a VIP) on this
    link? One line naming both when not."""
    what = "vip %s on %s" % (vip, ifname) if vip is not None else "interface %s" % ifname
    if lnk is None:
        raise FabricError("%s: interface %s does not exist" % (what, ifname) if vip is not None else "%s: does not exist" % what)
    if lnk["flags"] & IFF_LOOPBACK:
        raise FabricError("%s: a loopback interface answers no ARP; name the interface facing the segment" % what)
    if lnk["flags"] & IFF_NOARP or not lnk.get("mac") or lnk["mac"] == "00:00:00:00:00:00":
        raise FabricError("%s: the interface does not do ARP (NOARP or no MAC address)" % what)
    if lnk.get("master"):
        raise FabricError("%s: the interface is a port of another device (index %d); put the VIP on that device" % (what, lnk["master"]))
    if not lnk["flags"] & IFF_UP:
        raise FabricError("%s: the interface is down" % what)


def public(vip, ifname, label, state):
    return {"address": vip, "interface": ifname, "label": label, "state": state}


def plan(kern, vips, owner, state="present", purge=False, garp=True, garp_count=DEFAULT_GARP_COUNT,
         garp_interval=DEFAULT_GARP_INTERVAL, force_garp=False, probe=True, probe_timeout=DEFAULT_PROBE_TIMEOUT,
         check_mode=False, timing=None, interfaces=()):
    """The vip_arp plan for ``vips`` (normalized) of ``owner`` in ``kern``'s namespace.

    ``interfaces`` (normalized, ignored with state absent): interfaces to prepare like those that
    carry VIPs (sysctls, promisc on Wi-Fi, the same checks) without a VIP of this run on them.

    Returns (plan, report): ``report`` has per VIP and per interface what is (would be) done; the
    'garp' entry is filled in when the announcement runs. Validation and the ARP probe run here,
    before anything changes. Actions: sysctls, promisc, address adds, removals (all with undo),
    then the gratuitous ARP (irreversible: a packet sent cannot be taken back).
    """
    timing = timing if timing is not None else {}
    tag = owner_tag(owner)
    links = kern.links()
    names = dict((v["index"], n) for n, v in links.items())
    addrs = kern.addresses()
    by_ip = {}
    for a in addrs:
        by_ip.setdefault(a["address"], []).append(dict(a, interface=names.get(a["index"])))

    result = Plan()
    report = {"vips": [], "interfaces": {}, "garp": {}}
    to_add, to_remove, kept = [], [], []
    declared = set()
    for spec in vips:
        vip, ifname = spec["address"], spec["interface"]
        declared.add(vip)
        existing = by_ip.get(vip, [])
        foreign = [a for a in existing if tag_of_label(a["label"]) != tag]
        mine = [a for a in existing if tag_of_label(a["label"]) == tag]
        if foreign:
            f = foreign[0]
            whose = "another owner's VIP" if tag_of_label(f["label"]) else "not owner %s's" % owner
            raise FabricError("vip %s on %s: already an address of this namespace (%s/%d on %s, label %s), %s; refusing to %s it"
                              % (vip, ifname, vip, f["prefixlen"], f["interface"], f["label"], whose,
                                 "take over" if state == "present" else "remove"))
        if state == "absent":
            for a in mine:
                to_remove.append((vip, a["interface"], a["label"]))
            if not mine:
                report["vips"].append(dict(public(vip, ifname, None, "absent"), action="none"))
            continue
        lnk = links.get(ifname)
        if lnk is None and check_mode:
            # check mode: an earlier task would create the interface (or the namespace)
            lnk = {"index": None, "mac": None, "flags": IFF_UP, "master": None, "assumed": True}
        else:
            check_interface(vip, ifname, lnk)
        on_if = [a for a in mine if a["interface"] == ifname]
        for a in mine:
            if a["interface"] != ifname:
                to_remove.append((vip, a["interface"], a["label"]))  # moved to another interface
        if on_if:
            kept.append((vip, ifname, on_if[0]["label"], lnk))
        else:
            to_add.append((vip, ifname, label_for(ifname, owner), lnk))
    prepared = []
    if state == "present":
        for ifname in interfaces:
            lnk = links.get(ifname)
            if lnk is None and check_mode:
                prepared.append(ifname)     # check mode: an earlier task would create it
                continue
            check_interface(None, ifname, lnk)
            prepared.append(ifname)
    if purge:
        for a in addrs:
            if tag_of_label(a["label"]) == tag and a["address"] not in declared:
                to_remove.append((a["address"], names.get(a["index"]), a["label"]))

    # The ARP probe: before anything changes, for the VIPs the owner does not hold yet.
    probe = probe and probe_timeout > 0
    probes = [(vip, ifname, lnk["mac"]) for vip, ifname, _label, lnk in to_add if probe and not lnk.get("assumed")]
    start = time.monotonic()
    answered = kern.probe(probes, probe_timeout) if probes else {}
    if probes:
        timing["probe"] = round(time.monotonic() - start, 4)
    for vip, ifname, _mac in probes:
        if vip in answered:
            raise FabricError("vip %s on %s: already answered on the segment by %s (ARP probe); not taking it (nothing was changed)"
                              % (vip, ifname, answered[vip]))

    # Interfaces that carry the owner's VIPs after this run, and those prepared without one:
    # sysctls, and promisc on Wi-Fi.
    present_ifs = sorted(set(i for _v, i, _l, _k in to_add + kept) | set(prepared))
    wireless = kern.wireless([i for i in present_ifs if not links.get(i, {}).get("assumed") and i in links])
    for ifname in present_ifs:
        lnk = links.get(ifname)
        info = {"wireless": ifname in wireless, "sysctls_set": [], "promisc_set": False}
        before, after = {}, {}
        for key, want in SYSCTLS:
            have = kern.read_sysctl(ifname, key) if lnk is not None else None
            before[key], after[key] = have, want
            info[key] = want
            if have != want:
                info["sysctls_set"].append(key)
                result.add("set net.ipv4.conf.%s.%s = %d (was %s)" % (ifname, key, want, "unset" if have is None else have),
                           lambda i=ifname, k=key, v=want: kern.write_sysctl(i, k, v),
                           (lambda i=ifname, k=key, v=have: kern.write_sysctl(i, k, v)) if have is not None else noop)
        promisc = bool(lnk and lnk["flags"] & 0x100)
        info["promisc"] = promisc
        if ifname in wireless:
            before["promisc"], after["promisc"] = promisc, True
            info["promisc"] = True
            if not promisc:
                info["promisc_set"] = True
                result.add("set %s promisc on (wireless: ARP for a VIP goes unanswered otherwise)" % ifname,
                           lambda i=ifname: kern.set_promisc(i, True),
                           lambda i=ifname: kern.set_promisc(i, False))
        result.before["interface %s" % ifname] = before
        result.after["interface %s" % ifname] = after
        report["interfaces"][ifname] = info

    for vip, ifname, label, lnk in to_add:
        key = "vip %s" % vip
        result.before.setdefault(key, None)
        result.after[key] = public(vip, ifname, label, "present")
        result.add("add vip %s/32 on %s (label %s)" % (vip, ifname, label),
                   lambda v=vip, i=ifname, lb=label: kern.add_address(i, v, lb),
                   lambda v=vip, i=ifname, lb=label: kern.del_address(i, v, lb))
        report["vips"].append(dict(public(vip, ifname, label, "present"), action="added", probed=bool(probe and not lnk.get("assumed"))))
    for vip, ifname, label in to_remove:
        key = "vip %s" % vip
        result.before[key] = public(vip, ifname, label, "present")
        result.after.setdefault(key, None)
        result.add("remove vip %s/32 from %s (label %s)" % (vip, ifname, label),
                   lambda v=vip, i=ifname, lb=label: kern.del_address(i, v, lb),
                   lambda v=vip, i=ifname, lb=label: kern.add_address(i, v, lb))
        report["vips"].append(dict(public(vip, ifname, label, "absent"), action="removed"))
    for vip, ifname, label, _lnk in kept:
        key = "vip %s" % vip
        result.before[key] = result.after[key] = public(vip, ifname, label, "present")
        report["vips"].append(dict(public(vip, ifname, label, "present"), action="kept"))

    announce = [(vip, ifname, lnk) for vip, ifname, _l, lnk in to_add] if garp else []
    if force_garp:
        announce += [(vip, ifname, lnk) for vip, ifname, _l, lnk in kept]
    if announce:
        plan_garp(result, kern, announce, report, garp_count, garp_interval, timing)
    for entry in report["vips"]:
        entry["garp"] = any(entry["address"] == vip for vip, _i, _l in announce)
    report["vips"].sort(key=lambda e: ipaddress.ip_address(e["address"]))
    return result, report


def plan_garp(result, kern, announce, report, count, interval, timing):
    """One irreversible action: the first burst now, the rest from a detached child."""
    vips = ", ".join("%s on %s" % (vip, ifname) for vip, ifname, _l in announce)
    report["garp"] = {"vips": [vip for vip, _i, _l in announce], "bursts": count, "interval": interval,
                      "frames_sent": 0, "background_pid": None}

    def send():
        start = time.monotonic()
        # links created in this plan (check-mode assumptions) have their MAC only now
        links = kern.links()
        jobs = []
        for vip, ifname, lnk in announce:
            mac = lnk.get("mac") or (links.get(ifname) or {}).get("mac")
            if not mac:
                raise FabricError("vip %s on %s: no MAC address to announce" % (vip, ifname))
            jobs.append((vip, ifname, mac))
        try:
            report["garp"].update(kern.announce(jobs, count, interval))
        except OSError as exc:
            raise FabricError("gratuitous ARP: %s" % describe_error(exc))
        timing["garp"] = round(time.monotonic() - start, 4)

    repeat = " now and %d more time%s every %ss in the background" % (count - 1, "" if count == 2 else "s", interval) if count > 1 else " once"
    result.add("send gratuitous ARP (request and reply) for %s%s" % (vips, repeat), send, irreversible=True)
