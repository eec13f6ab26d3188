# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: restorer_bundle
short_description: The node restorer podnet-restore as one Python zip application (base64)
description:
  - Packs this collection's own C(plugins/module_utils) and the modules a node replays
    (netns, bridge, veth, pods, ipam, vxlan, route, nat_rule, vip_arp) into a zip application whose entry
    point is C(podnet-restore), and returns it base64-encoded for M(podnet.fabric.node_restore).
  - The zip is byte-for-byte the same for the same collection tree (fixed timestamps, sorted
    members), so installing it again changes nothing. It carries the collection version.
author:
  - podnet.fabric developers (@podnet)
options: {}
"""

EXAMPLES = r"""
- name: Install the node restorer
  podnet.fabric.node_restore:
    bundle: "{{ lookup('podnet.fabric.restorer_bundle') }}"
"""

RETURN = r"""
_raw:
  description: One element, the base64 text of the zip application.
  type: list
  elements: str
"""

import base64
import io
import os
import zipfile

from ansible.plugins.lookup import LookupBase

from ansible_collections.podnet.fabric.plugins.module_utils import restore_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "ansible_collections/podnet/fabric/"
MAIN = (
    "import sys\n"
    "from ansible_collections.podnet.fabric.plugins.module_utils import node_restore\n"
    "raise SystemExit(node_restore.main(sys.argv[1:]))\n"
)


def members(root=ROOT):
    """(name in the zip, bytes) of everything the restorer imports, sorted."""
    out = {"__main__.py": MAIN.encode()}
    # Regular packages inside the zip (zipimport and namespace packages do not mix well).
    for pkg in ("ansible_collections/", "ansible_collections/podnet/", PREFIX, PREFIX + "plugins/",
                PREFIX + "plugins/modules/"):
        out[pkg + "__init__.py"] = b""
    utils = os.path.join(root, "plugins", "module_utils")
    for here, dirs, files in os.walk(utils):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(here, name)
                out[PREFIX + os.path.relpath(path, root).replace(os.sep, "/")] = _read(path)
    for module in restore_state.LAYERS:
        out[PREFIX + "plugins/modules/%s.py" % module] = _read(os.path.join(root, "plugins", "modules", module + ".py"))
    return sorted(out.items())


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def bundle(root=ROOT):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members(root):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buf.getvalue()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [base64.b64encode(bundle()).decode("ascii")]
