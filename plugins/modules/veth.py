#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: veth
short_description: Manage veth pairs that wire pods to their node, in bulk
version_added: 0.1.0
description:
  - Creates, reconciles and removes veth pairs over netlink (pyroute2), as the CNI C(bridge) and
    C(ptp) plugins wire a pod. The host end stays in the namespace the module acts in
    (I(netns), the node's own by default); the peer end is created directly inside the pod's
    namespace (I(peer_netns)) under its final name, C(eth0) by default.
  - Reconciles every property it manages on each run - MTU (both ends), MACs, the pod's
    addresses (exactly the declared list), host-end addresses, bridge membership and hairpin mode.
    A pair whose peer is missing or misplaced is re-created.
  - Both ends carry the owner's link alias C(podnet.fabric:OWNER); I(purge) and I(state=absent)
    only remove the task owner's veths. A link of the same name that is not podnet.fabric's,
    another owner's, or of another kind, is an error naming both owners, and nothing is changed.
    A pair of podnet.fabric 0.1 (alias C(podnet.fabric)) is adopted in place when declared.
  - A pair is recognised by the kernel's own link between its ends (the peer's index in the
    namespace the host end's IFLA_LINK_NETNSID names), not by names.
  - To wire all of a node's pods (namespaces, addresses from IPAM, bridge ports, routes) in one
    task, see M(podnet.fabric.pods).
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
  veths:
    description: The pairs to manage, one entry per pair, keyed by the host end's name.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the host end (at most 15 characters), for example C(veth1a2b3c4d).
        type: str
        required: true
      state:
        description: Whether the pair should exist. Deleting the host end removes both ends.
        type: str
        choices: [present, absent]
        default: present
      peer:
        description: Name of the peer (pod) end inside I(peer_netns).
        type: str
        default: eth0
      peer_netns:
        description:
          - Namespace the peer end lives in (the pod). It must exist (see M(podnet.fabric.netns)).
          - Omit to keep both ends in the same namespace.
        type: str
      mtu:
        description: MTU of both ends.
        type: int
      mac:
        description: MAC address of the peer (pod) end.
        type: str
      host_mac:
        description: MAC address of the host end.
        type: str
      addresses:
        description:
          - Addresses with prefix length on the peer (pod) end, for example C(10.244.1.5/24).
            When given, the peer ends up with exactly these. Omit to leave them unmanaged.
        type: list
        elements: str
      host_addresses:
        description:
          - Addresses on the host end (CNI C(ptp) style, for example the gateway as a /32).
            When given, the host end ends up with exactly these.
        type: list
        elements: str
      bridge:
        description: Bridge to enslave the host end to (for example C(cni0)). It must exist.
        type: str
      hairpin:
        description:
          - Hairpin mode on the host end's bridge port, so a pod can reach itself through a
            Service (CNI C(hairpinMode)). Needs I(bridge).
        type: bool
      gateway:
        description:
          - The pod's default route - C(default via GATEWAY dev PEER) inside I(peer_netns), as
            the CNI C(bridge) plugin installs it with C(isDefaultGateway). It must lie in the
            subnet of one of I(addresses). The route carries the owner's route protocol (see
            I(owner)); the owner's other routes in the pod's table main are removed.
        type: str
  purge:
    description:
      - Delete the veths of I(owner) in the namespace (host ends) that are not listed in
        I(veths). Other veths are never touched. Needs an explicit I(owner).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Wire two pods to cni0
  podnet.fabric.veth:
    owner: pod_network
    veths:
      - name: vethweb1
        peer_netns: pod-web-1
        addresses: [10.244.1.2/24]
        mtu: 1450
        bridge: cni0
        hairpin: true
        gateway: 10.244.1.1
      - name: vethweb2
        peer_netns: pod-web-2
        addresses: [10.244.1.3/24]
        mtu: 1450
        bridge: cni0
        hairpin: true

- name: ptp style - a /32 in the pod, the gateway address on the host end
  podnet.fabric.veth:
    owner: pod_network
    veths:
      - name: vethdb1
        peer_netns: pod-db-1
        addresses: [10.244.1.10/32]
        host_addresses: [10.244.1.1/32]

- name: Exactly the pods of the inventory; pod_network's other veths on the node go away
  podnet.fabric.veth:
    owner: pod_network
    veths: "{{ pod_veths }}"
    purge: true
"""

RETURN = r"""
veths:
  description: Each pair (by host end name) as it is after the run (predicted in check mode).
  returned: always
  type: dict
  sample:
    vethweb1:
      state: present
      peer: eth0
      mtu: 1450
      mac: "0a:58:0a:f4:01:02"
      host_mac: "8e:1c:55:0b:aa:01"
      addresses: [10.244.1.2/24]
      host_addresses: []
      bridge: cni0
      hairpin: true
      gateway: 10.244.1.1
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create veth vethweb1 with peer eth0 in netns pod-web-1", "attach veth vethweb1 to bridge cni0"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import veth
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    veths=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        peer=dict(type="str", default="eth0"),
        peer_netns=dict(type="str"),
        mtu=dict(type="int"),
        mac=dict(type="str"),
        host_mac=dict(type="str"),
        addresses=dict(type="list", elements="str"),
        host_addresses=dict(type="list", elements="str"),
        bridge=dict(type="str"),
        hairpin=dict(type="bool"),
        gateway=dict(type="str"),
    )),
    purge=dict(type="bool", default=False),
)


def build(ctx):
    wanted = [veth.normalize(v) for v in ctx.params["veths"]]
    plan = veth.plan(ctx.netlink(), wanted, ctx.owner, purge=ctx.params["purge"], missing_ok=ctx.check_mode)
    ctx.stack.callback(veth.close, plan)
    return plan, {"veths": plan.after}


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="veth")


if __name__ == "__main__":
    main()
