#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: pods
short_description: Wire all of a node's pods in one task (namespaces, veths, IPAM, bridge ports, routes)
version_added: 0.2.0
description:
  - Does for every pod what a container runtime's CNI ADD with the C(bridge) and C(host-local)
    plugins does, in one module invocation for the whole node - the pod's network namespace
    (loopback up), an address from IPAM unless the pod has fixed ones, a veth pair with the
    peer inside the pod as I(ifname) (C(eth0)), MTU and MAC, the host end on I(bridge) with
    hairpin mode, and the pod's default route via I(gateway).
  - Built on the same cores as M(podnet.fabric.netns), M(podnet.fabric.veth),
    M(podnet.fabric.bridge), M(podnet.fabric.route) and M(podnet.fabric.ipam); the objects carry
    the same owner marks - the namespace's loopback alias and both veth ends' alias
    C(podnet.fabric:OWNER), the owner's route protocol on the default route, the owner in the
    IPAM allocation.
  - Every property is reconciled on each run; a pod whose pair was lost is re-wired. Check mode
    works on a fresh node (namespaces that do not exist yet). A failure undoes what the run did,
    in reverse order, and names the pod and the object.
  - With I(purge), the owner's pods of this node that are not declared are removed - the owner's
    veths on the host side, the owner's namespace at their other end, and the owner's IPAM
    allocations of the network. Other owners' pods, namespaces made by C(ip netns add), and
    foreign links are never touched.
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
  - I(netns) is the namespace the bridge and the host ends live in (the node's own by default);
    the pods' namespaces are host-wide names in C(/run/netns).
options:
  pods:
    description: The node's pods, one entry each.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The pod's network namespace (C(/run/netns/NAME)); created when missing.
        type: str
        required: true
      veth:
        description:
          - Name of the host end of the pod's veth pair. Default C(veth) + 8 hex digits of the
            sha256 of I(name), stable across runs.
        type: str
      ifname:
        description: Name of the pod's end, inside the pod.
        type: str
        default: eth0
      addresses:
        description:
          - Fixed addresses with prefix length for the pod. Omit to allocate one from I(ipam).
        type: list
        elements: str
      mtu:
        description: MTU of both ends (default I(mtu)).
        type: int
      mac:
        description:
          - MAC address of the pod's end. Default C(0a:58) followed by the pod's IPv4 address,
            as the CNI bridge plugin derives it (stable, locally administered).
        type: str
      hairpin:
        description: Hairpin mode on the host end's bridge port (default I(hairpin)).
        type: bool
  bridge:
    description: The bridge the host ends are attached to (for example C(cni0)).
    type: str
    required: true
  manage_bridge:
    description:
      - Create and reconcile the bridge too, with I(gateway) as its address and I(mtu), owned
        by I(owner) (what the CNI bridge plugin does with C(isGateway)). When false the bridge
        must exist (see M(podnet.fabric.bridge)).
    type: bool
    default: false
  bridge_mac:
    description:
      - With I(manage_bridge), the bridge's MAC address, kept stable while ports come and go
        (see M(podnet.fabric.bridge)). Omit to leave it to the kernel.
    type: str
  gateway:
    description:
      - The pods' default route - C(default via GATEWAY dev IFNAME) in each pod. Default the
        I(ipam) range's gateway (the subnet's first address). Without I(ipam) and without this,
        no default route is managed.
    type: str
  mtu:
    description: Default MTU of the pods' veths.
    type: int
  hairpin:
    description: Default hairpin mode of the pods' bridge ports (CNI C(hairpinMode)).
    type: bool
    default: false
  ipam:
    description:
      - Where addresses of pods without I(addresses) come from, host-local style - one file per
        address in C(DATA_DIR/NETWORK), shared with M(podnet.fabric.ipam) and CNI host-local.
    type: dict
    suboptions:
      subnet:
        description: The node's pod subnet, for example C(10.244.1.0/24).
        type: str
        required: true
      range_start:
        description: First allocatable address (default the subnet's second address).
        type: str
      range_end:
        description: Last allocatable address (default the subnet's last host address).
        type: str
      network:
        description: Network name (the data directory's sub-directory). Default I(bridge).
        type: str
      data_dir:
        description: IPAM data directory.
        type: str
        default: /var/lib/cni/networks
  purge:
    description:
      - Remove the owner's pods of this node that are not listed in I(pods) (their veths, the
        owner's namespaces at the other end, their IPAM allocations). Needs an explicit I(owner).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The node's pods, addresses from the node's pod CIDR, on cni0
  podnet.fabric.pods:
    owner: pod_network
    bridge: cni0
    manage_bridge: true
    mtu: 1450
    hairpin: true
    ipam: {subnet: 10.244.1.0/24}
    pods:
      - name: pod-default-web-1
      - name: pod-default-web-2
      - name: pod-kube-system-dns
        addresses: [10.244.1.10/24]
    purge: true
"""

RETURN = r"""
pods:
  description: Each declared pod as it is after the run (as it would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - name: pod-default-web-1
      netns: pod-default-web-1
      veth: veth3f1c9a2b
      ifname: eth0
      ip: 10.244.1.2
      addresses: [10.244.1.2/24]
      mac: "0a:58:0a:f4:01:02"
      gateway: 10.244.1.1
      state: present
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["allocate 10.244.1.2 to pod-default-web-1", "create netns pod-default-web-1",
           "create veth veth3f1c9a2b with peer eth0 in netns pod-default-web-1, mtu 1450, mac 0a:58:0a:f4:01:02, bridge cni0"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils import ipam
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import pods, veth
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    pods=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        veth=dict(type="str"),
        ifname=dict(type="str", default="eth0"),
        addresses=dict(type="list", elements="str"),
        mtu=dict(type="int"),
        mac=dict(type="str"),
        hairpin=dict(type="bool"),
    )),
    bridge=dict(type="str", required=True),
    manage_bridge=dict(type="bool", default=False),
    bridge_mac=dict(type="str"),
    gateway=dict(type="str"),
    mtu=dict(type="int"),
    hairpin=dict(type="bool", default=False),
    ipam=dict(type="dict", options=dict(
        subnet=dict(type="str", required=True),
        range_start=dict(type="str"),
        range_end=dict(type="str"),
        network=dict(type="str"),
        data_dir=dict(type="str", default="/var/lib/cni/networks"),
    )),
    purge=dict(type="bool", default=False),
)


def build(ctx):
    cfg = pods.normalize(ctx.params)
    if cfg["ipam"]:
        # host-local's lock, held from reading the allocations to writing them (as the ipam module does)
        ctx.stack.enter_context(ipam.lock(cfg["ipam"]["directory"], check_mode=ctx.check_mode))
    plan, wired = pods.plan(ctx.netlink(), cfg, ctx.owner, purge=ctx.params["purge"], check_mode=ctx.check_mode)
    ctx.stack.callback(veth.close, plan)
    return plan, {"pods": wired}


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="pods")


if __name__ == "__main__":
    main()
