# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: manifests
short_description: Kubernetes objects from YAML files (multi-document) or directories of them
description:
  - Reads every YAML document of the given files, or of the C(*.yaml) and C(*.yml) files of the
    given directories (sorted by name), and returns the objects as one list, in order.
  - "Documents of kind C(List) (what C(kubectl get -o yaml) prints) are unpacked; empty documents
    are skipped. The objects are not interpreted here (podnet.fabric.cluster_node does that)."
author:
  - podnet.fabric developers (@podnet)
options:
  _terms:
    description: Absolute paths of files or directories (e.g. C({{ inventory_dir }}/manifests)).
    required: true
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: The cluster's objects
  ansible.builtin.debug:
    msg: "{{ query('podnet.fabric.manifests', inventory_dir ~ '/manifests') }}"
"""

RETURN = r"""
_raw:
  description: The objects, as mappings.
  type: list
  elements: dict
"""

import os

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.podnet.fabric.plugins.module_utils.cluster import flatten


def _files(path):
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path))
                if f.endswith((".yaml", ".yml")) and not f.startswith(".")]
    if os.path.isfile(path):
        return [path]
    raise AnsibleLookupError("podnet.fabric.manifests: %s: no such file or directory" % path)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        objects = []
        for term in terms:
            for path in _files(str(term)):
                try:
                    with open(path, encoding="utf-8") as handle:
                        docs = list(yaml.safe_load_all(handle))
                except (OSError, yaml.YAMLError) as exc:
                    raise AnsibleLookupError("podnet.fabric.manifests: %s: %s" % (path, str(exc).replace("\n", " ")))
                objects.extend(flatten(docs))
        return objects
