"""Unit tests run without root and without a kernel: the netlink layer gets a fake handle.

The checkout resolves as the collection podnet.fabric through .collections (scripts/setup.sh);
put that on sys.path so ``ansible_collections.podnet.fabric`` imports here as it does in Ansible.
"""
from __future__ import annotations

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
