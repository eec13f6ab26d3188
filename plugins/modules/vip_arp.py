#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vip_arp
short_description: Make a node answer ARP for layer-2 VIPs (MetalLB's layer-2 mode)
version_added: 0.2.0
description:
  - Makes the node answer ARP for each VIP on the interface named for it, announces it at once
    with gratuitous ARP, and withdraws it with I(state=absent) - the way MetalLB's layer-2 mode
    announces LoadBalancer IPs, for networks whose router only speaks ARP.
  - B(How the node answers.) Each VIP becomes an IPv4 C(/32) address on its interface, so the
    kernel itself answers ARP requests for it with that interface's MAC for as long as the
    address is there; nothing has to keep running on the node. Proxy ARP was not chosen - it
    answers for whole routed prefixes on every interface where it is on, needs a route per VIP
    besides, and a node with the VIP as a local address is what the services layer (DNAT to the
    pods) expects anyway.
  - B(Ownership.) The address label (C(ip addr) prints it as the address's label) is
    C(<interface>:v<tag>), where C(<tag>) is 4 base32 characters of sha256 of
    C(podnet.fabric:OWNER). The kernel keeps the part from the colon when the interface is
    renamed; a long interface name is shortened before the colon so the label fits the kernel's
    15 characters (C(wlx001122334455) gives C(wlx001122:vXXXX)). Only addresses with the owner's
    tag are the owner's - I(purge) and I(state=absent) never remove the user's own addresses,
    addresses of DHCP or another program, or another owner's VIPs. A VIP that is already an
    address of the namespace without the owner's tag is an error, not taken over.
  - B(Sysctls.) On every interface that carries a VIP it sets C(net.ipv4.conf.<if>.arp_ignore=1)
    (answer only for addresses on the interface the request came in on) and C(arp_announce=2)
    (never use a VIP as the source of the node's own ARP requests), written through C(/proc/sys)
    inside the task's namespace and only when different; the kernel uses the larger of the
    interface's and C(all)'s value.
  - B(Interfaces without a VIP.) The interfaces of I(interfaces) get the same sysctls, promiscuous
    mode on Wi-Fi and checks as those that carry VIPs, without a VIP of this task on them - for
    VIPs another program adds and removes itself, such as keepalived (VRRP) on failover, so that
    a candidate node never answers for a VIP it does not hold. I(vips) may then be empty.
  - B(Wi-Fi.) On a wireless interface (the kernel says which - C(/sys/class/net/<if>/wireless)
    or C(phy80211) exists, read from the namespace's own sysfs) it turns promiscuous mode on,
    because Wi-Fi drivers drop ARP requests for an address the NIC was not told about (the
    Raspberry Pi case, metallb #284, raspberrypi/linux#2677). Other interfaces are left alone.
  - B(Probe.) Before taking a VIP it does not hold yet it sends an RFC 5227 ARP probe for it on
    the interface (who has VIP, tell 0.0.0.0) and waits I(probe_timeout) seconds; an ARP packet
    from another MAC with the VIP as sender fails the task naming the VIP and that MAC, and
    nothing is changed. VIPs the owner already holds are not probed.
  - B(Gratuitous ARP.) After adding VIPs it sends MetalLB's pair of frames per VIP, Ethernet
    broadcast with sender IP = target IP = VIP and sender MAC = the interface's - an ARP request
    with target MAC 00:00:00:00:00:00 (RFC 5227 announcement, what the kernel's own arp_notify
    sends) and an ARP reply with target MAC = sender MAC (RFC 5944, what C(arping -A) sends;
    Linux accepts an unsolicited reply only in that form). MetalLB and C(arping -U) put
    ff:ff:ff:ff:ff:ff as the target MAC. The first burst is sent before the task returns; the
    other I(garp_count) - 1 bursts, I(garp_interval) seconds apart, come from a detached
    background process, which skips a VIP as soon as it is no longer an address of the namespace.
    A run that adds nothing sends nothing unless I(force_garp).
  - Input is checked before anything changes - a malformed VIP, a VIP outside every pool of
    I(pools), an interface (of a VIP or of I(interfaces)) that does not exist, is down, has no ARP or is a bridge port, a VIP
    answered by another MAC; the task fails with one line naming the VIP and the reason.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
requirements:
  - pyroute2 >= 0.7.2 on the target (Debian package python3-pyroute2)
  - root on the target (netlink changes, AF_PACKET sockets, C(/proc/sys))
notes:
  - In check mode nothing is sent except the ARP probe (a question, which changes no host), no
    gratuitous ARP, no address, sysctl or flag is written. An interface that does not exist yet
    in check mode (an earlier task would create it) is assumed to be there and is not probed; so is
    one of I(interfaces).
  - Promiscuous mode and the sysctls stay when VIPs are removed; the interface may carry other
    VIPs, and the sysctls are what a node without the VIP should have.
  - With I(persist=true) the node's restorer (M(podnet.fabric.node_restore)) replays the task at
    boot and when an interface of it comes back up - it adds the VIPs again, sets the sysctls and
    promiscuous mode and sends the gratuitous ARP, but never probes. The VIPs are the ones the
    last converge gave this node (and probed); an answer at boot is typically a stale cache, and
    a failed probe would leave the node without them until the next converge. The record keeps
    I(probe) as the task declared it. A VIP moved to another node while this one was down comes
    back here at boot until a converge withdraws it (I(state=absent) or I(purge), persisted).
  - IPv4 only; IPv6 VIPs need NDP, not ARP.
options:
  vips:
    description:
      - The VIPs to manage, many per task. Each is announced on one interface.
      - May be empty (the default) - then only I(interfaces) are prepared, and with I(purge) every
        VIP of the owner is withdrawn.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: The VIP, an IPv4 address (C(192.0.2.10) or C(192.0.2.10/32)).
        type: str
        required: true
      interface:
        description:
          - The interface facing the segment the VIP is announced on, for example C(eth0) or
            C(wlan0) (not a bridge port, not a loopback, not a NOARP device).
          - With I(state=absent) the owner's VIP of that address is removed from whichever
            interface it is on.
        type: str
        required: true
  interfaces:
    description:
      - Interfaces to prepare without a VIP of this task on them - C(arp_ignore=1),
        C(arp_announce=2) and promiscuous mode on Wi-Fi, exactly as for an interface that carries
        a VIP, with the same checks (it exists, is up, does ARP, is not a bridge port).
      - For VIPs another program adds and removes, for example keepalived (VRRP) on failover - the
        candidate nodes' interfaces are prepared so that a node never answers for a VIP it does not
        hold.
      - Ignored with I(state=absent) (the sysctls and promiscuous mode stay, see the notes).
    type: list
    elements: str
    default: []
  state:
    description:
      - C(present) makes every VIP of I(vips) an address of its interface, announced, and prepares
        I(interfaces); C(absent) withdraws the VIPs (the owner's only).
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - Also withdraw the owner's VIPs that I(vips) does not list, on every interface of the
        namespace. Needs an explicit I(owner).
    type: bool
    default: false
  pools:
    description:
      - MetalLB IPAddressPool addresses - CIDRs (C(192.0.2.0/28)) or ranges
        (C(192.0.2.10-192.0.2.20)). With I(state=present) a VIP outside every pool is an error.
      - Omit to allow any address.
    type: list
    elements: str
  garp:
    description: Send gratuitous ARP for the VIPs this run adds.
    type: bool
    default: true
  garp_count:
    description:
      - How many bursts (request and reply per VIP) to send in all, the first one at once
        (MetalLB - at once and every 1.1 s for 5 s, so 5). 1 to 60.
    type: int
    default: 5
  garp_interval:
    description: Seconds between two bursts, 0.05 to 60.
    type: float
    default: 1.1
  force_garp:
    description:
      - Announce every declared VIP of I(state=present) even when nothing else changes (for
        example after another node held it). The task then reports C(changed).
    type: bool
    default: false
  probe:
    description: ARP-probe a VIP before taking it (see above).
    type: bool
    default: true
  probe_timeout:
    description: How long to wait for an answer to the probes, in seconds (0 to 5, 0 probes nothing; all VIPs are probed at once).
    type: float
    default: 0.3
"""

EXAMPLES = r"""
- name: Announce two LoadBalancer IPs from MetalLB's pool on the LAN interface
  podnet.fabric.vip_arp:
    owner: loadbalancer
    pools: [192.168.1.240/28, 192.168.1.250-192.168.1.254]
    vips:
      - address: 192.168.1.241
        interface: eth0
      - address: 192.168.1.242
        interface: eth0
    purge: true   # VIPs this owner announced before and no longer lists are withdrawn

- name: A Raspberry Pi on Wi-Fi (promiscuous mode is turned on for wlan0)
  podnet.fabric.vip_arp:
    owner: loadbalancer
    vips:
      - address: 192.168.1.243
        interface: wlan0

- name: Announce again after a failover, although the node already holds the VIP
  podnet.fabric.vip_arp:
    owner: loadbalancer
    vips:
      - address: 192.168.1.241
        interface: eth0
    force_garp: true

- name: Prepare the VRRP candidates' interface for keepalived, which moves the VIP itself
  podnet.fabric.vip_arp:
    owner: keepalived
    interfaces: [eth0]
    persist: true   # the node's restorer sets the sysctls again at boot

- name: Withdraw a VIP
  podnet.fabric.vip_arp:
    owner: loadbalancer
    state: absent
    vips:
      - address: 192.168.1.242
        interface: eth0
"""

RETURN = r"""
vips:
  description:
    - Per VIP what was (would be, in check mode) done - C(action) is C(added), C(kept),
      C(removed) or C(none); C(garp) whether it is announced; C(probed) whether it was probed.
  returned: always
  type: list
  elements: dict
  sample:
    - address: 192.168.1.241
      interface: eth0
      label: "eth0:vto6f"
      state: present
      action: added
      probed: true
      garp: true
interfaces:
  description:
    - Per interface that carries VIPs or is one of I(interfaces) - C(wireless), C(promisc) (after the run),
      C(promisc_set) (turned on by this run), C(arp_ignore), C(arp_announce) and
      C(sysctls_set) (the sysctls this run writes).
  returned: always
  type: dict
  sample:
    eth0:
      wireless: false
      promisc: false
      promisc_set: false
      arp_ignore: 1
      arp_announce: 2
      sysctls_set: [arp_ignore, arp_announce]
garp:
  description:
    - The announcement - C(vips), C(bursts), C(interval), C(frames_sent) (before the task
      returned) and C(background_pid) (the detached process sending the other bursts). Empty
      when nothing is announced.
  returned: always
  type: dict
  sample:
    vips: [192.168.1.241]
    bursts: 5
    interval: 1.1
    frames_sent: 2
    background_pid: 4242
owner_tag:
  description: The owner's tag, the part of the address label after the colon.
  returned: always
  type: str
  sample: vto6f
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["set net.ipv4.conf.eth0.arp_ignore = 1 (was 0)", "add vip 192.168.1.241/32 on eth0 (label eth0:vto6f)"]
timing:
  description: Seconds spent - C(plan), C(probe), C(apply), C(garp) (the first burst), C(total).
  returned: always
  type: dict
"""

from ansible_collections.podnet.fabric.plugins.module_utils import vip_arp
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    vips=dict(type="list", elements="dict", default=[], options=dict(
        address=dict(type="str", required=True),
        interface=dict(type="str", required=True),
    )),
    interfaces=dict(type="list", elements="str", default=[]),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    purge=dict(type="bool", default=False),
    pools=dict(type="list", elements="str"),
    garp=dict(type="bool", default=True),
    garp_count=dict(type="int", default=vip_arp.DEFAULT_GARP_COUNT),
    garp_interval=dict(type="float", default=vip_arp.DEFAULT_GARP_INTERVAL),
    force_garp=dict(type="bool", default=False),
    probe=dict(type="bool", default=True),
    probe_timeout=dict(type="float", default=vip_arp.DEFAULT_PROBE_TIMEOUT),
)


def check_ranges(params):
    if not 1 <= params["garp_count"] <= 60:
        raise FabricError("garp_count %d: must be 1 to 60" % params["garp_count"])
    if not 0.05 <= params["garp_interval"] <= 60:
        raise FabricError("garp_interval %s: must be 0.05 to 60 seconds" % params["garp_interval"])
    if not 0 <= params["probe_timeout"] <= 5:
        raise FabricError("probe_timeout %s: must be 0 to 5 seconds" % params["probe_timeout"])


def build(ctx):
    params = ctx.params
    check_ranges(params)
    wanted = vip_arp.normalize(params["vips"], params["pools"], params["state"])
    prepare = vip_arp.normalize_interfaces(params["interfaces"]) if params["state"] == "present" else []
    kern = vip_arp.Kernel(ctx.netlink(), ctx.netns)
    plan, report = vip_arp.plan(kern, wanted, ctx.owner, state=params["state"], purge=params["purge"],
                                garp=params["garp"], garp_count=params["garp_count"],
                                garp_interval=params["garp_interval"], force_garp=params["force_garp"],
                                probe=params["probe"], probe_timeout=params["probe_timeout"],
                                check_mode=ctx.check_mode, timing=ctx.timing, interfaces=prepare)
    report["owner_tag"] = vip_arp.owner_tag(ctx.owner)
    return plan, report


def replay_params(params):
    """The parameters the node's restorer (node_restore.apply) runs a record with: as recorded,
    but without the ARP probe.

    The restorer puts back what the last converge gave this node, and that converge probed the
    VIPs. Replays only add VIPs the kernel lost (a reboot, a deleted address); an answer then is
    typically stale - a switch's or access point's ARP cache or proxy, a peer still repeating the
    VIP's last gratuitous ARP - and a failed probe would leave the node without its VIPs until the
    controller runs again (the restorer retries, but a probe that keeps seeing an answer keeps
    failing). The price: had the controller moved a VIP to another node while this one was down,
    this node takes it back at boot until a converge withdraws it here - Ansible stays the
    arbiter, as for every restored module. The record keeps ``probe`` as declared (the converge's
    --diff and idempotence stay exact); only the replay skips it. Everything else - the VIPs, the
    sysctls, promisc, the gratuitous ARP and its detached repeater (which holds none of the
    restorer's descriptors) - is replayed as recorded.
    """
    return dict(params, probe=False)


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="vip_arp")


if __name__ == "__main__":
    main()
