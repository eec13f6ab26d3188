#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: node_restore
short_description: Install the node restorer that puts the declared pod network back at boot and on link up
version_added: "0.2.0"
description:
  - Installs C(podnet-restore), this collection's own code packed as one Python zip application
    (from P(podnet.fabric.restorer_bundle#lookup)), and the systemd unit C(podnet-restore.service)
    that runs it, stamped with the collection version; enables and starts it.
  - At boot the restorer replays the state that the modules run with O(podnet.fabric.pods#module:persist)
    (and the same option of netns, bridge, veth, ipam, vxlan, route, nat_rule, vip_arp) recorded in
    C(/var/lib/podnet-fabric/restore/OWNER.json), through the same module code, layer by layer
    (links, then routes, then iptables, then layer-2 VIPs), and tells systemd it is ready; units ordered
    C(After=podnet-restore.service) (the pod workloads) start after that. It then waits for
    netlink link and address events and re-applies when a link the state goes through comes back
    up or gets an address. It invents nothing; what the last converge declared is restored.
  - A state file it cannot read, of an unknown format or recorded by another collection version
    gets one line in the journal naming the file and the reason, and nothing is changed.
  - C(systemctl status podnet-restore) and C(journalctl -u podnet-restore) say what was restored
    and when. C(podnet-restore check) prints what a restore would do, changing nothing.
  - A new bundle or unit restarts the running service, so new code takes over at once.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
requirements:
  - systemd as PID 1 on the node; Python 3 with pyroute2 (Debian python3-pyroute2) at O(python).
options:
  bundle:
    description:
      - The base64 zip application, C("{{ lookup('podnet.fabric.restorer_bundle') }}").
      - Required with O(state=present).
    type: str
  state:
    description: V(absent) stops, disables and removes the restorer and its unit (the recorded state stays).
    type: str
    choices: [present, absent]
    default: present
  path:
    description: Where the zip application is installed.
    type: path
    default: /usr/local/lib/podnet-fabric/podnet-restore.pyz
  python:
    description: The Python that runs it (the one with pyroute2).
    type: path
    default: /usr/bin/python3
  unit:
    description: Name of the systemd unit.
    type: str
    default: podnet-restore.service
  unit_dir:
    description: Directory of the unit file.
    type: path
    default: /etc/systemd/system
  state_dir:
    description: The directory of the restore state the modules record (C(PODNET_FABRIC_RESTORE_DIR)).
    type: path
    default: /var/lib/podnet-fabric/restore
"""

EXAMPLES = r"""
- name: The node restores its pod network by itself
  podnet.fabric.node_restore:
    bundle: "{{ lookup('podnet.fabric.restorer_bundle') }}"

- name: A module whose result the node restores at boot
  podnet.fabric.route:
    owner: pod_routing
    persist: true
    routes:
      - dest: 10.244.2.0/24
        gateway: 192.168.1.12
"""

RETURN = r"""
version:
  description: Collection version of the installed restorer.
  returned: state is present
  type: str
  sample: 0.1.0
sha256:
  description: SHA-256 of the installed zip application.
  returned: state is present
  type: str
enabled:
  description: Whether the unit was enabled before this run.
  returned: always
  type: bool
active:
  description: Whether the unit was active before this run.
  returned: always
  type: bool
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["install podnet-restore 0.1.0 (sha256 3f1c9a2b0e11) as /usr/local/lib/podnet-fabric/podnet-restore.pyz",
           "write unit /etc/systemd/system/podnet-restore.service", "systemctl daemon-reload",
           "enable podnet-restore.service", "start podnet-restore.service"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils import restorer_install
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    bundle=dict(type="str", no_log=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    path=dict(type="path", default="/usr/local/lib/podnet-fabric/podnet-restore.pyz"),
    python=dict(type="path", default="/usr/bin/python3"),
    unit=dict(type="str", default="podnet-restore.service"),
    unit_dir=dict(type="path", default="/etc/systemd/system"),
    state_dir=dict(type="path", default="/var/lib/podnet-fabric/restore"),
)


def build(ctx):
    if ctx.params["state"] == "present" and not ctx.params.get("bundle"):
        raise FabricError("bundle: required with state=present (lookup('podnet.fabric.restorer_bundle'))")
    return restorer_install.plan(ctx, ctx.params)


def main():
    run_module(ARGUMENT_SPEC, build, netns=False, owner=False, pyroute2=False)


if __name__ == "__main__":
    main()
