#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: bridge
short_description: Manage Linux bridges (cni0 style) and their ports
version_added: 0.1.0
description:
  - Creates, reconciles and removes Linux bridge devices over netlink (pyroute2), the way the CNI
    C(bridge) plugin sets up C(cni0) as the pods' gateway.
  - Reconciles every property it manages on each run, not only existence - addresses (exactly the
    declared list), MTU, MAC, STP, promiscuous mode, ports and hairpin mode on those ports.
  - Bridges it creates carry the link alias C(podnet.fabric:OWNER); I(purge) only removes the
    task owner's bridges. A link of the same name that is not podnet.fabric's, another owner's,
    or of another kind, is an error and is left alone.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
requirements:
  - pyroute2 >= 0.7.2 on the target (Debian package python3-pyroute2)
options:
  bridges:
    description: The bridges to manage, one entry per bridge.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Bridge name (at most 15 characters).
        type: str
        required: true
      state:
        description: Whether the bridge should exist.
        type: str
        choices: [present, absent]
        default: present
      addresses:
        description:
          - Addresses with prefix length (for example the pods' gateway C(10.244.1.1/24)).
          - When given, the bridge ends up with exactly these addresses (IPv6 link-local ones
            the kernel adds are left alone). Omit to leave addresses unmanaged.
        type: list
        elements: str
      mtu:
        description: MTU of the bridge.
        type: int
      mac:
        description:
          - MAC address of the bridge. Setting one keeps it stable while ports come and go
            (otherwise the kernel takes the lowest port MAC and pods' ARP entries go stale).
        type: str
      stp:
        description: Spanning tree on or off. Omit to leave it as it is (off when created).
        type: bool
      promisc:
        description: Promiscuous mode of the bridge device (CNI C(promiscMode)).
        type: bool
      ports:
        description:
          - Existing links to enslave to this bridge (for example an uplink). Pods' veths are
            attached by M(podnet.fabric.veth) with its I(bridge) option.
          - A port that does not exist is an error.
        type: list
        elements: str
        default: []
      hairpin:
        description:
          - Hairpin mode on the ports listed in I(ports) (a frame may leave by the port it came
            in on). Omit to leave it as it is.
        type: bool
  purge:
    description:
      - Delete the bridges of I(owner) in the namespace that are not listed in I(bridges).
        Other owners' bridges and bridges not created by this collection are never touched.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The pods' gateway bridge on a node
  podnet.fabric.bridge:
    owner: pod_network
    bridges:
      - name: cni0
        addresses: [10.244.1.1/24]
        mtu: 1500
        mac: "0a:58:0a:f4:01:01"

- name: A bridge inside a lab namespace, with an uplink port in hairpin mode
  podnet.fabric.bridge:
    owner: lab
    netns: node1
    bridges:
      - name: br-lab
        ports: [eth1]
        hairpin: true
        stp: false

- name: Remove every bridge of the owner pod_network on this host except cni0
  podnet.fabric.bridge:
    owner: pod_network
    bridges:
      - name: cni0
    purge: true
"""

RETURN = r"""
bridges:
  description: The bridges as they are after the run (as they would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - name: cni0
      state: present
      mtu: 1500
      mac: "0a:58:0a:f4:01:01"
      stp: false
      promisc: false
      addresses: [10.244.1.1/24]
      ports: [veth1a2b3c]
      hairpin_ports: [veth1a2b3c]
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create bridge cni0", "set bridge cni0 alias podnet.fabric, mtu 1500", "add address 10.244.1.1/24 to bridge cni0"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import bridge
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    bridges=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        addresses=dict(type="list", elements="str"),
        mtu=dict(type="int"),
        mac=dict(type="str"),
        stp=dict(type="bool"),
        promisc=dict(type="bool"),
        ports=dict(type="list", elements="str", default=[]),
        hairpin=dict(type="bool"),
    )),
    purge=dict(type="bool", default=False),
)


def build(ctx):
    wanted = [bridge.normalize(b) for b in ctx.params["bridges"]]
    plan = bridge.plan(ctx.netlink(), wanted, ctx.owner, purge=ctx.params["purge"], missing_ok=ctx.check_mode)
    return plan, {"bridges": [plan.after[n] for n in sorted(plan.after)]}


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="bridge")


if __name__ == "__main__":
    main()
