#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vxlan
short_description: Manage VXLAN tunnel endpoints (flannel/Calico style) and their static peers
version_added: 0.1.0
description:
  - Creates, reconciles and removes VXLAN devices over netlink (pyroute2) the way flannel's
    C(vxlan) backend sets up C(flannel.1) and Calico sets up C(vxlan.calico) - a fixed VNI, UDP
    port, local underlay IP and uplink, MTU = uplink MTU minus the VXLAN overhead, address
    learning off.
  - Manages the device's static peers - for each remote node an FDB entry (remote VTEP MAC to
    remote node IP) and, when I(ip) is given, a permanent neighbour (remote tunnel IP to remote
    VTEP MAC). Routes to the remote pod subnets are M(podnet.fabric.route)'s job
    (C(via <subnet>.0 dev flannel.1 onlink)).
  - The kernel keeps no owner on a VXLAN device's FDB entries (they store no protocol), and
    Debian's pyroute2 0.7.2 cannot read or write the protocol the kernel keeps on neighbours, so
    the peers the owner adds are recorded in a root-only file the collection owns,
    C(/var/lib/podnet-fabric/OWNER/vxlan-host:DEV.json) (C(vxlan-netns-NAME:DEV.json) for a
    device in a namespace). I(purge_peers) removes only recorded entries that are still as
    recorded - a static FDB entry or permanent neighbour a user adds by hand on the same device
    survives every run. Writing the record is an action of its own, undone on failure.
  - The VNI, port, local IP, uplink and learning cannot be changed on an existing VXLAN device -
    the device is deleted and created again (the action list says so), its declared addresses and
    peers are added again, the other static FDB entries and permanent neighbours it had that the
    run keeps (a user's own) are put back, and routes through it that the kernel dropped with the
    old device are put back. The deletion cannot be undone; when a later action fails, the failure says so.
  - Reconciles every property it manages on each run - MTU, MAC, addresses, up state, peers.
    Devices it creates carry the link alias C(podnet.fabric:OWNER); I(purge) and I(state=absent)
    only remove the owner's VXLAN devices. A link of the same name that is not podnet.fabric's,
    another owner's, or of another kind, is an error and is left alone. Devices of podnet.fabric
    0.1 (alias C(podnet.fabric)) are adopted in place (same ifindex) by the owner that declares
    them and never purged; their peers are recorded from the first run on (undeclared peers such
    a device already had are left alone, since nothing records who added them).
  - Deletions come after every other action, except the deletion of a device whose VNI and port
    a declared device is created with (the kernel allows one device per VNI and port).
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
requirements:
  - pyroute2 >= 0.7.2 on the target (Debian package python3-pyroute2)
notes:
  - In check mode an uplink that does not exist yet (an earlier task would create it) is assumed
    to be there; the MTU derived from it is then not known.
options:
  vxlans:
    description: The VXLAN devices to manage, one entry per device.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Device name (at most 15 characters), for example C(flannel.1) or C(vxlan.calico).
        type: str
        required: true
      state:
        description: Whether the device should exist.
        type: str
        choices: [present, absent]
        default: present
      vni:
        description:
          - VXLAN network identifier, 1..16777215 (flannel uses 1, Calico 4096). 0 is refused - the
            kernel takes it, but many VTEPs treat it as "no VNI".
          - Required unless I(state=absent). Only one device per VNI and port in a namespace.
        type: int
      port:
        description: UDP destination port (IANA 4789; flannel uses 8472).
        type: int
        default: 4789
      local:
        description:
          - Local underlay IP, the source of the tunnel packets (the node IP). IPv6 gives an
            IPv6 underlay; then the peers' I(remote) must be IPv6 as well.
        type: str
      dev:
        description: Uplink the tunnel packets leave through (the node's main interface).
        type: str
      mtu:
        description:
          - MTU of the device. Default - the uplink's MTU minus 50 bytes (70 over IPv6), the
            uplink being I(dev), or else the link that holds I(local); left alone when neither
            is known. More than that limit is an error when I(dev) is given.
        type: int
      mac:
        description:
          - MAC address of the device (the VTEP MAC the peers put in their FDB).
          - Default - a stable locally administered MAC derived from I(name), I(vni) and
            I(local) (the machine id when there is no I(local)), so a recreated device keeps its
            MAC and the other nodes' entries stay valid.
        type: str
      learning:
        description: Learn remote MACs from incoming packets. Off for static peers, as flannel and Calico do.
        type: bool
        default: false
      addresses:
        description:
          - Addresses with prefix length on the device (flannel - the node's subnet C(.0/32)).
            When given, the device ends up with exactly these; omit to leave addresses alone.
        type: list
        elements: str
      peers:
        description: The remote VTEPs.
        type: list
        elements: dict
        default: []
        suboptions:
          mac:
            description: The remote VTEP's MAC address (FDB key, neighbour lladdr).
            type: str
            required: true
          remote:
            description: The remote node's underlay IP (FDB C(dst)).
            type: str
            required: true
          ip:
            description:
              - The remote tunnel IP (flannel - the remote subnet's C(.0)); gets a permanent
                neighbour entry to I(mac). Omit for an FDB entry only.
            type: str
      purge_peers:
        description:
          - Remove the FDB entries and permanent neighbours this owner added to the device (see
            the record above) that are not declared in I(peers) any more (a node that left the
            cluster). Entries anybody else added, learned and kernel entries are never touched.
        type: bool
        default: true
  purge:
    description:
      - Delete the VXLAN devices of I(owner) (alias C(podnet.fabric:OWNER)) in the namespace that
        are not listed in I(vxlans). Other owners' devices, podnet.fabric 0.1's and devices not
        created by this collection are never touched. Needs an explicit I(owner).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Flannel's VTEP on node 1 (subnet 10.244.1.0/24) with node 2 as a peer
  podnet.fabric.vxlan:
    owner: pod_routing
    vxlans:
      - name: flannel.1
        vni: 1
        port: 8472
        local: 192.168.1.11
        dev: eth0
        addresses: [10.244.1.0/32]
        peers:
          - mac: "0a:58:c0:a8:01:0c"   # node 2's flannel.1 MAC
            remote: 192.168.1.12      # node 2's IP
            ip: 10.244.2.0            # node 2's tunnel IP
- name: ... and the route to node 2's pods through it
  podnet.fabric.route:
    owner: pod_routing
    routes:
      - dest: 10.244.2.0/24
        gateway: 10.244.2.0
        dev: flannel.1
        onlink: true

- name: Calico-style VTEP with a fixed MAC, inside a lab namespace
  podnet.fabric.vxlan:
    owner: lab
    netns: node1
    vxlans:
      - name: vxlan.calico
        vni: 4096
        local: 10.0.0.1
        dev: eth1
        mac: "66:aa:00:00:00:01"

- name: Remove a VTEP
  podnet.fabric.vxlan:
    owner: pod_routing
    vxlans:
      - name: flannel.1
        state: absent
"""

RETURN = r"""
vxlans:
  description: The devices as they are after the run (as they would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - name: flannel.1
      state: present
      vni: 1
      port: 8472
      local: 192.168.1.11
      dev: eth0
      mtu: 1450
      mac: "0a:58:c0:a8:01:0b"
      learning: false
      addresses: [10.244.1.0/32]
      peers:
        - mac: "0a:58:c0:a8:01:0c"
          remote: 192.168.1.12
          ip: 10.244.2.0
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample:
    - create vxlan flannel.1 (vni 1, port 8472, local 192.168.1.11, dev eth0, nolearning)
    - add fdb entry 0a:58:c0:a8:01:0c dst 192.168.1.12 to vxlan flannel.1
    - record 1 fdb entries and 1 neighbours of vxlan flannel.1 in /var/lib/podnet-fabric/pod_routing/vxlan-host:flannel.1.json
"""

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import vxlan
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    vxlans=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        vni=dict(type="int"),
        port=dict(type="int", default=vxlan.DEFAULT_PORT),
        local=dict(type="str"),
        dev=dict(type="str"),
        mtu=dict(type="int"),
        mac=dict(type="str"),
        learning=dict(type="bool", default=False),
        addresses=dict(type="list", elements="str"),
        peers=dict(type="list", elements="dict", default=[], options=dict(
            mac=dict(type="str", required=True),
            remote=dict(type="str", required=True),
            ip=dict(type="str"),
        )),
        purge_peers=dict(type="bool", default=True),
    )),
    purge=dict(type="bool", default=False),
)


def build(ctx):
    wanted = [vxlan.normalize(v) for v in ctx.params["vxlans"]]
    plan = vxlan.plan(ctx.netlink(), wanted, ctx.owner, purge=ctx.params["purge"], assume_links=ctx.check_mode,
                      store=vxlan.PeerStore(ctx.owner, ctx.netns))
    return plan, {"vxlans": [plan.after[n] for n in sorted(plan.after)]}


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="vxlan")


if __name__ == "__main__":
    main()
