#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: ipam
short_description: Allocate pod addresses host-local style, stable across runs
version_added: 0.1.0
description:
  - Hands out addresses from a node's pod CIDR the way the CNI C(host-local) IPAM plugin does -
    one file per allocated address under I(data_dir)/I(network), named after the address,
    holding the owner's id, created exclusively.
  - An id keeps its address across runs; a fixed I(ip) is honoured (and moved, when it changes);
    ids no longer listed are released when I(purge) is true. Only files named like addresses
    inside I(subnet) are read or removed.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
options:
  network:
    description: Name of the network; the directory under I(data_dir) that holds its allocations.
    type: str
    required: true
  data_dir:
    description: Where allocations live (CNI host-local's default).
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
        description: The owner's id.
        type: str
        required: true
      ip:
        description: A fixed address for this owner.
        type: str
  purge:
    description: Release addresses of ids that are not listed.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Addresses for the pods of this node
  podnet.fabric.ipam:
    network: podnet
    subnet: 10.244.1.0/24
    allocations:
      - id: default/web-1
      - id: default/db-1
        ip: 10.244.1.10
  register: pod_ips

- name: Use them
  ansible.builtin.debug:
    msg: "web-1 has {{ pod_ips.addresses['default/web-1'] }}"
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils import ipam
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, finish


def main():
    module = AnsibleModule(
        argument_spec=dict(
            network=dict(type="str", required=True),
            data_dir=dict(type="path", default="/var/lib/cni/networks"),
            subnet=dict(type="str", required=True),
            range_start=dict(type="str"),
            range_end=dict(type="str"),
            gateway=dict(type="str"),
            allocations=dict(type="list", elements="dict", required=True, options=dict(
                id=dict(type="str", required=True),
                ip=dict(type="str"),
            )),
            purge=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        if "/" in p["network"] or p["network"] in ("", ".", ".."):
            raise FabricError("ipam network %r: invalid name" % p["network"])
        rng = ipam.Range(p["subnet"], p["range_start"], p["range_end"], p["gateway"], what="ipam network %s" % p["network"])
        plan = ipam.plan(os.path.join(p["data_dir"], p["network"]), rng, p["allocations"], purge=p["purge"])
        finish(module, plan, addresses=plan.after, prefixlen=rng.subnet.prefixlen, gateway=str(rng.gateway))
    except FabricError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
