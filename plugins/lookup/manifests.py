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
  - "Parsed with libyaml when PyYAML has it (YAML 1.1 safe loading either way). Every file's objects
    are kept in a cache on the controller, keyed by the SHA-256 of the file's bytes, so a file read
    again (every task that templates the objects reads them) costs a hash and a C(marshal) load
    instead of a YAML parse; files whose objects C(marshal) cannot hold (e.g. timestamps) are
    parsed each time. The cache is C($XDG_CACHE_HOME/podnet-fabric/manifests) (default
    C(~/.cache/...)), set C(PODNET_FABRIC_MANIFEST_CACHE) to another directory, or to C(off)."
  - "For many objects, pass the paths to the roles (C(<role>_manifests)) rather than this lookup's
    result (C(<role>_objects)): ansible-core templates a variable value by value, about a second
    per pass for 2,000 objects, while the roles read paths with the same parser as plain data."
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

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        try:
            return manifests.load(terms)
        except manifests.ManifestError as exc:
            raise AnsibleLookupError("podnet.fabric.manifests: %s" % exc)
