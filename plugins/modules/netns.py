#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: netns
short_description: Manage named network namespaces (pods), in bulk
version_added: 0.1.0
description:
  - Creates and removes named network namespaces (C(/run/netns/NAME), the ones C(ip netns)
    lists) and brings their loopback up, as a container runtime does for a pod. Namespaces are
    made in-thread (unshare + bind mount, as C(ip netns add) does, without a helper process);
    C(ip netns del) works on them.
  - A namespace created by this module carries its owner as the alias C(podnet.fabric:OWNER) on
    its loopback. I(purge) (host-wide) and I(state=absent) only ever delete the task owner's
    namespaces. A namespace made by C(ip netns add), podman or a CNI runtime, or another owner's,
    is never touched - declaring one fails, naming its owner. A namespace of podnet.fabric 0.1
    (alias C(podnet.fabric)) is adopted by the owner that declares it and is never purged.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
requirements:
  - pyroute2 >= 0.7.2 on the target (Debian package python3-pyroute2)
options:
  namespaces:
    description:
      - The namespaces to manage. Each entry is a name, or a dict with I(name) and I(state).
    type: list
    elements: raw
    required: true
  state:
    description: Default state for entries that do not say.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - Delete the namespaces of I(owner) on the host that are not listed in I(namespaces)
        (host-wide). Needs an explicit I(owner).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Two pods' namespaces
  podnet.fabric.netns:
    owner: pod_network
    namespaces: [pod-web-1, pod-web-2]

- name: Exactly these pods on the node; pod_network's other namespaces are deleted
  podnet.fabric.netns:
    owner: pod_network
    namespaces: "{{ pods | map(attribute='netns') | list }}"
    purge: true

- name: Remove one pod, keep another
  podnet.fabric.netns:
    owner: pod_network
    namespaces:
      - name: pod-web-1
        state: absent
      - pod-web-2
"""

RETURN = r"""
namespaces:
  description: Each managed namespace and its state after the run (predicted in check mode).
  returned: always
  type: dict
  sample:
    pod-web-1: {state: present, owner: pod_network, loopback_up: true}
    pod-old: {state: absent}
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create netns pod-web-1", "delete netns pod-old"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import netns
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    namespaces=dict(type="list", elements="raw", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    purge=dict(type="bool", default=False),
)


def _entries(raw, default_state):
    out = []
    for item in raw:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "state"}
            if unknown:
                raise FabricError("netns %s: unknown keys %s (name and state are allowed)" % (item.get("name"), ", ".join(sorted(unknown))))
            state = item.get("state", default_state)
            if state not in ("present", "absent"):
                raise FabricError("netns %s: state must be present or absent, not %r" % (item.get("name"), state))
            out.append({"name": item.get("name"), "state": state})
        else:
            out.append({"name": item, "state": default_state})
    return out


def build(ctx):
    plan = netns.plan(_entries(ctx.params["namespaces"], ctx.params["state"]), ctx.owner, purge=ctx.params["purge"])
    return plan, {"namespaces": plan.after}


def main():
    run_module(ARGUMENT_SPEC, build, netns=False, persist_as="netns")


if __name__ == "__main__":
    main()
