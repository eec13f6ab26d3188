#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: ipam
short_description: Allocate pod addresses in a CNI host-local data directory, stable across runs
version_added: 0.1.0
description:
  - Hands out addresses from a node's pod CIDR exactly the way the CNI C(host-local) IPAM plugin
    does, in the same files, so this module and a real host-local can share one
    I(data_dir)/I(network) directory without ever handing out one address twice.
  - One file per allocated address, named after the address, created exclusively, holding
    the container id, C(CR LF), the interface name; C(last_reserved_ip.0) holds the address reserved last
    (the next allocation starts after it and wraps round); every read and write is done under
    C(flock) on the directory's C(lock) file, host-local's lock, held from reading to writing.
  - The container id this module writes is C(podnet.fabric:<owner>:<id>). Allocations with any
    other id (a real host-local's containers, other owners) are never released.
  - An id keeps its address across runs; a fixed I(ip) is honoured (and moved, when it changes);
    with O(purge), the owner's ids no longer listed are released. Allocations written by release
    0.1 (C(<id>) only) are adopted in place by the owner that lists their id, and never purged.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
options:
  network:
    description: Name of the network; the directory under I(data_dir) that holds its allocations (host-local's C(name)).
    type: str
    required: true
  data_dir:
    description: Where allocations live (host-local's C(dataDir) default).
    type: path
    default: /var/lib/cni/networks
  subnet:
    description: The node's pod CIDR, for example C(10.244.1.0/24).
    type: str
    required: true
  range_start:
    description: First allocatable address (default - the first host address).
    type: str
  range_end:
    description: Last allocatable address (default - the last host address).
    type: str
  gateway:
    description: Address never handed out (default - the first host address, the bridge's).
    type: str
  allocations:
    description: Who needs an address. C(id) is any stable string (for example C(default/web-1)).
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: The allocation's id (without line breaks).
        type: str
        required: true
      ip:
        description: A fixed address for this id.
        type: str
      ifname:
        description: Interface name written into the file, as host-local does.
        type: str
        default: eth0
  purge:
    description:
      - Release this owner's allocations whose ids are not listed. Needs an explicit O(owner).
      - Never releases other owners' allocations, a real host-local's, or release 0.1's.
    type: bool
    default: false
notes:
  - IPv4 and IPv6 ranges; one range per task (host-local range index 0).
"""

EXAMPLES = r"""
- name: Addresses for the pods of this node
  podnet.fabric.ipam:
    owner: pods
    purge: true
    network: podnet
    subnet: 10.244.1.0/24
    allocations:
      - id: default/web-1
      - id: default/db-1
        ip: 10.244.1.10
  register: pod_ips

- name: Use them
  ansible.builtin.debug:
    msg: "web-1 has {{ pod_ips.addresses['default/web-1'] }}/{{ pod_ips.prefixlen }}"
"""

RETURN = r"""
addresses:
  description: id -> address, after the run (what it would be, in check mode).
  returned: always
  type: dict
  sample: {"default/web-1": "10.244.1.2", "default/db-1": "10.244.1.10"}
prefixlen:
  description: Prefix length of I(subnet), to build C(ip/prefixlen) addresses.
  returned: always
  type: int
  sample: 24
gateway:
  description: The gateway address of the range.
  returned: always
  type: str
  sample: 10.244.1.1
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["allocate 10.244.1.2 to default/web-1"]
"""

import os

from ansible_collections.podnet.fabric.plugins.module_utils import ipam
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    network=dict(type="str", required=True),
    data_dir=dict(type="path", default="/var/lib/cni/networks"),
    subnet=dict(type="str", required=True),
    range_start=dict(type="str"),
    range_end=dict(type="str"),
    gateway=dict(type="str"),
    allocations=dict(type="list", elements="dict", required=True, options=dict(
        id=dict(type="str", required=True),
        ip=dict(type="str"),
        ifname=dict(type="str", default="eth0"),
    )),
    purge=dict(type="bool", default=False),
)


def build(ctx):
    p = ctx.params
    if "/" in p["network"] or p["network"] in ("", ".", ".."):
        raise FabricError("ipam network %r: invalid name" % p["network"])
    rng = ipam.Range(p["subnet"], p["range_start"], p["range_end"], p["gateway"], what="ipam network %s" % p["network"])
    directory = os.path.join(p["data_dir"], p["network"])
    if not os.path.isdir(directory):
        # nothing on disk yet: validate before the lock creates the directory (bad input leaves no trace)
        ipam.plan(directory, rng, p["allocations"], owner=ctx.owner, purge=p["purge"])
    # host-local's lock, held from reading the directory until the plan is applied
    ctx.stack.enter_context(ipam.lock(directory, check_mode=ctx.check_mode))
    plan = ipam.plan(directory, rng, p["allocations"], owner=ctx.owner, purge=p["purge"])
    return plan, {"addresses": plan.after, "prefixlen": rng.subnet.prefixlen, "gateway": str(rng.gateway)}


def main():
    run_module(ARGUMENT_SPEC, build, netns=False, pyroute2=False, persist_as="ipam")


if __name__ == "__main__":
    main()
