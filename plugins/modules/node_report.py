#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: node_report
short_description: Read a node's reports (its JSON local facts) and write one of them, in one light task
version_added: "0.2.0"
description:
  - A node reports what it applied (its pod CIDR and pod IPs, the service addresses it gave out)
    the way a kubelet reports to the API server - as Ansible local facts,
    O(path)/C(NAME.fact) holding one JSON object. Later runs read the reports of every node
    (delegated for nodes outside the play, so C(--limit) keeps every address where it is).
  - Returns every JSON C(*.fact) file of O(path) as the fact C(podnet_fabric_reports)
    (C({NAME - object})), the same data C(ansible.builtin.setup) gives as C(ansible_local) for
    such files, at a fraction of its cost (this module ships no fact collectors). Executable and
    INI facts are left to C(setup).
  - With O(name) and O(content) it first writes that report atomically (0644, O(path) created
    0755 when missing), only when it differs, and returns the reports as they are then, so later
    roles of the same run read the new one.
  - A report file that is not a JSON object fails the task with one line naming it, when it is
    O(name) or listed in O(required); others that are not JSON are skipped.
author:
  - podnet.fabric developers (@podnet)
options:
  path:
    description: The local facts directory.
    type: path
    default: /etc/ansible/facts.d
  name:
    description: The report to write, C(NAME) of O(path)/C(NAME.fact).
    type: str
  content:
    description: The report to write (with O(name)), a JSON object.
    type: dict
  required:
    description: Reports that must be readable JSON objects when their file exists.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - podnet.fabric.attributes
notes:
  - The reports are plain data; names must be file names without C(/) and without the C(.fact) suffix.
  - In check mode the report is not written and the returned reports are the ones on disk.
"""

EXAMPLES = r"""
- name: Read this node's reports
  podnet.fabric.node_report:
  when: podnet_fabric_reports is not defined

- name: Write this node's service report and read the reports again
  podnet.fabric.node_report:
    name: podnet_fabric_services
    content: "{{ plan.report }}"
"""

RETURN = r"""
ansible_facts:
  description: C(podnet_fabric_reports), every JSON object report of O(path) by name.
  returned: always
  type: dict
  sample: {podnet_fabric_reports: {podnet_fabric: {podCIDR: 10.244.0.0/24, podIPs: {}}}}
written:
  description: The report file written (or in check mode to be written), when one was.
  returned: when changed
  type: str
  sample: /etc/ansible/facts.d/podnet_fabric_services.fact
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule


def read_reports(path, required):
    """{name: object} of the JSON object *.fact files of ``path`` (not executables)."""
    out = {}
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return out
    for entry in names:
        if not entry.endswith(".fact"):
            continue
        file_path = os.path.join(path, entry)
        name = entry[:-len(".fact")]
        if not os.path.isfile(file_path) or os.access(file_path, os.X_OK):
            continue
        try:
            with open(file_path, encoding="utf-8") as handle:
                doc = json.load(handle)
        except (OSError, ValueError) as exc:
            if name in required:
                raise ValueError("report %s: not readable JSON (%s)" % (file_path, exc))
            continue
        if isinstance(doc, dict):
            out[name] = doc
        elif name in required:
            raise ValueError("report %s: not a JSON object" % file_path)
    return out


def render(content):
    return json.dumps(content, indent=4, sort_keys=True) + "\n"


def write(path, name, text):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755)
    target = os.path.join(path, name + ".fact")
    tmp = target + ".podnet-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, target)
    return target


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", default="/etc/ansible/facts.d"), name=dict(type="str"),
                           content=dict(type="dict"), required=dict(type="list", elements="str", default=[])),
        required_together=[("name", "content")],
        supports_check_mode=True,
    )
    path, name, content = module.params["path"], module.params["name"], module.params["content"]
    required = set(module.params["required"]) | ({name} if name else set())
    if name and ("/" in name or name in (".", "..") or name.endswith(".fact")):
        module.fail_json(msg="report %r: not a report name (a file name without / and without .fact)" % name)
    try:
        reports = read_reports(path, required)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False)
    if name is not None:
        old = reports.get(name)
        if old != content:
            target = os.path.join(path, name + ".fact")
            result.update(changed=True, written=target)
            if module._diff:
                result["diff"] = {"before": render(old) if old is not None else "", "after": render(content),
                                  "before_header": target, "after_header": target}
            if not module.check_mode:
                try:
                    write(path, name, render(content))
                except OSError as exc:
                    module.fail_json(msg="report %s: %s" % (target, exc.strerror or exc))
                reports[name] = json.loads(render(content))
    result["ansible_facts"] = {"podnet_fabric_reports": reports}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
