# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state a node restores by itself: what the last converge declared, owner by owner.

A module run with ``persist: true`` records its validated parameters here, as the last action
of its plan (so check mode and ``--diff`` show it like any other change, and a failed run records
nothing). The node's restorer (:mod:`.node_restore`) replays them at boot and when a link comes
back up, through the same ``build`` functions the modules run. Ansible stays the only source of
truth: a converge replaces an owner's record, a pod it no longer declares is gone from it, and
``persist: false`` forgets the module's record.

One root-only JSON file per owner (``/var/lib/podnet-fabric/restore/<owner>.json``, 0600 in a
0700 directory)::

    {"format": 1, "owner": "pod_network",
     "modules": {"pods": {"version": "0.1.0", "params": {...}}}}

``version`` is the collection version that recorded the entry; the restorer replays only
entries of its own version (parameters of another version may mean something else).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os

from ansible_collections.podnet.fabric.plugins.module_utils import files
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.version import COLLECTION_VERSION

FORMAT = 1
DEFAULT_DIR = "/var/lib/podnet-fabric/restore"
# Tests point modules and the restorer elsewhere with this variable.
DIR_ENV = "PODNET_FABRIC_RESTORE_DIR"
# The order a node restores in: links before what runs over them, rules, then the VIPs that
# announce the node on its segment (once what answers behind them is back).
LAYERS = ("netns", "bridge", "veth", "pods", "ipam", "vxlan", "route", "nat_rule", "vip_arp")


class StateError(FabricError):
    """A state file the restorer must not act on (unreadable, unknown format or version)."""


def directory():
    return os.environ.get(DIR_ENV) or DEFAULT_DIR


def path_of(owner, base=None):
    return os.path.join(base or directory(), "%s.json" % owner)


def recordable(params):
    """The parameters as they are stored (JSON types; ``persist`` itself is not replayed)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k != "persist"}, sort_keys=True))


@contextlib.contextmanager
def _locked(base):
    os.makedirs(base, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(base, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read(path):
    """The document at ``path``; None when there is none; StateError when it cannot be used."""
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise StateError("%s: cannot read it: %s" % (path, os.strerror(exc.errno or 0) or exc))
    except ValueError as exc:
        raise StateError("%s: not valid JSON (%s)" % (path, exc))
    if not isinstance(doc, dict) or not isinstance(doc.get("modules"), dict):
        raise StateError("%s: not a podnet.fabric restore state (no 'modules' map)" % path)
    if doc.get("format") != FORMAT:
        raise StateError("%s: state format %r is unknown to podnet.fabric %s (it knows format %d)"
                         % (path, doc.get("format"), COLLECTION_VERSION, FORMAT))
    return doc


def _write(path, owner, module, entry):
    """Set (or with entry None, remove) one module's entry in the owner's file, under the lock."""
    base = os.path.dirname(path)
    with _locked(base):
        try:
            doc = read(path)
        except StateError:
            doc = None          # an unusable file is replaced by what this converge declares
        doc = doc or {"format": FORMAT, "owner": owner, "modules": {}}
        if entry is None:
            doc["modules"].pop(module, None)
        else:
            doc["modules"][module] = entry
        if not doc["modules"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        files.write_json(path, doc)


def plan_record(plan, owner, module, params, persist, base=None):
    """Add to ``plan`` the recording of this run's parameters (``persist``) or the forgetting of
    the module's earlier record (not ``persist``); nothing when the record is already so."""
    path = path_of(owner, base)
    try:
        doc = read(path) or {}
    except StateError:
        doc = {}
    old = (doc.get("modules") or {}).get(module)
    new = {"version": COLLECTION_VERSION, "params": recordable(params)} if persist else None
    if old == new:
        return
    key = "restore state %s/%s" % (owner, module)
    plan.before[key] = old
    plan.after[key] = new
    if new is None:
        text = "forget the restore state of %s (owner %s, %s)" % (module, owner, path)
    else:
        text = "record %s for restore at boot and link up (owner %s, %s)" % (module, owner, path)
    plan.add(text, lambda: _write(path, owner, module, new), lambda: _write(path, owner, module, old))


def load_all(base=None):
    """Every owner's document, sorted by owner; StateError for the first one that cannot be used."""
    base = base or directory()
    try:
        names = sorted(n for n in os.listdir(base) if n.endswith(".json"))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise StateError("%s: cannot list it: %s" % (base, os.strerror(exc.errno or 0)))
    docs = []
    for name in names:
        path = os.path.join(base, name)
        doc = read(path)
        if doc is None:
            continue
        for module, entry in sorted(doc["modules"].items()):
            if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
                raise StateError("%s: entry %s has no parameters" % (path, module))
            if entry.get("version") != COLLECTION_VERSION:
                raise StateError("%s: %s was recorded by podnet.fabric %s, this restorer is %s"
                                 % (path, module, entry.get("version"), COLLECTION_VERSION))
            if module not in LAYERS:
                raise StateError("%s: module %s is not one this restorer replays" % (path, module))
        docs.append(dict(doc, path=path, owner=str(doc.get("owner") or name[:-5])))
    return docs


def entries(docs):
    """(module, owner, params) in restore order: layer by layer, owners sorted within a layer."""
    out = []
    for layer in LAYERS:
        for doc in docs:
            entry = doc["modules"].get(layer)
            if entry is not None:
                out.append((layer, doc["owner"], entry["params"]))
    return out
