# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes manifests read on the controller, for the manifests lookup and the roles' filters.

The roles take the cluster as manifest paths (``<role>_manifests``) besides inline objects
(``<role>_objects``): objects read here reach the cluster model as plain Python, while objects
passed as an Ansible variable go through ansible-core's lazy templating value by value, which
costs about a second per pass for 2,000 objects (bench/service_proxy.py).

Every file's parsed documents are cached, keyed by the SHA-256 of its bytes (plus this format and
PyYAML's version), in this process and in a directory (``$XDG_CACHE_HOME/podnet-fabric/manifests``,
default ``~/.cache/...``; ``PODNET_FABRIC_MANIFEST_CACHE`` = another directory, or ``off``). A file
read again costs a hash and a ``marshal`` load instead of a YAML parse; files whose documents
marshal cannot hold (a timestamp) are parsed every time.
"""
from __future__ import annotations

import hashlib
import marshal
import os
import tempfile

import yaml

from ansible_collections.podnet.fabric.plugins.module_utils.cluster import flatten

# Bump when what a file's bytes turn into changes (loader, flatten): old entries are then unused.
CACHE_FORMAT = b"podnet.fabric manifests 1\0" + yaml.__version__.encode() + b"\0"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Entries kept in the directory (the oldest go first): one per manifest file content seen.
CACHE_ENTRIES = 256
# This process's own copy: one worker templating the objects twice parses nothing the second time.
MEMO = {}


class ManifestError(Exception):
    """A path that is not there, or a file that is not YAML: one line naming the file."""


def files(path):
    """The manifest files of a path: the file itself, or a directory's *.yaml / *.yml by name."""
    path = str(path)
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path))
                if f.endswith((".yaml", ".yml")) and not f.startswith(".")]
    if os.path.isfile(path):
        return [path]
    raise ManifestError("%s: no such file or directory" % path)


def cache_dir():
    """The directory of the parsed-manifest cache, or None when it is off."""
    setting = os.environ.get("PODNET_FABRIC_MANIFEST_CACHE")
    if setting == "off":
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "podnet-fabric", "manifests")


def cache_read(directory, key):
    try:
        with open(os.path.join(directory, key), "rb") as handle:
            return marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None


def cache_write(directory, key, docs):
    try:
        data = marshal.dumps(docs)
    except ValueError:  # e.g. a timestamp: parsed every time instead
        return
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, os.path.join(directory, key))
        prune(directory)
    except OSError:  # a cache that cannot be written only costs time
        pass


def prune(directory, keep=None):
    """Drop the oldest entries beyond ``keep`` (default CACHE_ENTRIES)."""
    keep = CACHE_ENTRIES if keep is None else keep
    entries = [e for e in os.scandir(directory) if not e.name.startswith(".")]
    if len(entries) <= keep:
        return
    entries.sort(key=lambda e: e.stat().st_mtime)
    for entry in entries[:len(entries) - keep]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def documents(path):
    """The YAML documents of one file, as PyYAML's safe loader gives them (a fresh copy: callers
    may change what they get)."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        raise ManifestError("%s: %s" % (path, exc.strerror or exc))
    key = hashlib.sha256(CACHE_FORMAT + content).hexdigest()
    data = MEMO.get(key)
    if data is None:
        directory = cache_dir()
        docs = cache_read(directory, key) if directory else None
        if docs is None:
            try:
                docs = list(yaml.load_all(content, Loader=LOADER))  # nosec B506: a safe loader
            except yaml.YAMLError as exc:
                raise ManifestError("%s: %s" % (path, " ".join(str(exc).split())))
            if directory:
                cache_write(directory, key, docs)
        try:
            data = MEMO[key] = marshal.dumps(docs)
        except ValueError:
            return docs
    return marshal.loads(data)


def load(paths):
    """Every object of the given files and directories, in order (``kind: List`` unpacked, empty
    documents dropped)."""
    if isinstance(paths, (str, bytes)):
        paths = [paths]
    objects = []
    for path in paths or []:
        for name in files(path):
            objects.extend(flatten(documents(name)))
    return objects


def objects(inline=None, manifests=None):
    """A role's cluster: the objects of its manifest paths, then its inline objects."""
    return load(manifests) + list(inline or [])
