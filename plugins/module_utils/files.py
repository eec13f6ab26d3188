# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the collection keeps on a node, written so that a reader never sees half a file."""
from __future__ import annotations

import contextlib
import json
import os

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError


def read(path):
    """A text file's content, None when it does not exist; any other failure is one line."""
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FabricError("%s: cannot be read (%s)" % (path, exc.strerror or exc))


def write_atomic(path, data, mode=0o600):
    """Write ``data`` (bytes) to ``path`` through a temporary file and a rename; None removes it."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    tmp = path + ".podnet-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)   # O_CREAT's mode passes through the umask
    os.rename(tmp, path)


def write_json(path, doc, mode=0o600):
    """``doc`` as indented, key-sorted JSON (a re-write of the same data is byte-identical)."""
    write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), mode)
