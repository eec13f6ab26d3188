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
    lists) with pyroute2, and brings their loopback up, as a container runtime does for a pod.
  - A namespace created by this module is marked by the alias C(podnet.fabric) on its loopback.
    I(purge) and I(state=absent) only ever delete namespaces with that mark; a namespace made by
    C(ip netns add), podman or a CNI runtime is left alone (declaring one as present only makes
    sure its loopback is up).
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
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
      - Delete namespaces created by podnet.fabric that are not listed in I(namespaces).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Two pods' namespaces
  podnet.fabric.netns:
    namespaces: [pod-web-1, pod-web-2]

- name: Exactly these pods on the node; other podnet.fabric namespaces are deleted
  podnet.fabric.netns:
    namespaces: "{{ pods | map(attribute='netns') | list }}"
    purge: true

- name: Remove one pod, keep another
  podnet.fabric.netns:
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
    pod-web-1: {state: present, owned: true, loopback_up: true}
    pod-old: {state: absent}
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create netns pod-web-1", "delete netns pod-old"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, netns
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, finish


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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            namespaces=dict(type="list", elements="raw", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            purge=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    core.require_pyroute2(module)
    try:
        plan = netns.plan(_entries(module.params["namespaces"], module.params["state"]), purge=module.params["purge"])
        finish(module, plan, namespaces=plan.after)
    except FabricError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
