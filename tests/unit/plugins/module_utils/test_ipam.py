"""host-local style IPAM on a temporary directory (plain files: no root, no kernel)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / ".collections"))

from ansible_collections.podnet.fabric.plugins.module_utils import ipam  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError  # noqa: E402


def apply(tmp_path, allocations, subnet="10.244.1.0/24", purge=True, **kw):
    p = ipam.plan(str(tmp_path), ipam.Range(subnet, **kw), allocations, purge=purge)
    p.apply()
    return p


def test_allocates_in_order_skipping_gateway_and_is_stable(tmp_path):
    p = apply(tmp_path, [{"id": "default/a"}, {"id": "default/b"}])
    assert p.after == {"default/a": "10.244.1.2", "default/b": "10.244.1.3"}
    assert (tmp_path / "10.244.1.2").read_text() == "default/a\n"
    again = apply(tmp_path, [{"id": "default/b"}, {"id": "default/a"}])
    assert not again.changed and again.after == {"default/b": "10.244.1.3", "default/a": "10.244.1.2"}


def test_release_then_reuse_and_fixed_ip(tmp_path):
    apply(tmp_path, [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    p = apply(tmp_path, [{"id": "a"}, {"id": "c"}, {"id": "d", "ip": "10.244.1.50"}])
    assert p.after == {"a": "10.244.1.2", "c": "10.244.1.4", "d": "10.244.1.50"}
    assert not (tmp_path / "10.244.1.3").exists()
    p = apply(tmp_path, [{"id": "a"}, {"id": "c"}, {"id": "d", "ip": "10.244.1.50"}, {"id": "e"}])
    assert p.after["e"] == "10.244.1.3"


def test_foreign_files_are_ignored(tmp_path):
    (tmp_path / "last_reserved_ip.0").write_text("10.244.1.9")
    (tmp_path / "10.9.9.9").write_text("someone-else\n")
    apply(tmp_path, [{"id": "a"}])
    assert (tmp_path / "last_reserved_ip.0").exists() and (tmp_path / "10.9.9.9").exists()


@pytest.mark.parametrize("allocs,kw,message", [
    ([{"id": "a", "ip": "10.244.2.5"}], {},
     "ipam a: 10.244.2.5 is outside the allocatable range 10.244.1.1-10.244.1.254 of 10.244.1.0/24 (or is the gateway)"),
    ([{"id": "a", "ip": "10.244.1.1"}], {},
     "ipam a: 10.244.1.1 is outside the allocatable range 10.244.1.1-10.244.1.254 of 10.244.1.0/24 (or is the gateway)"),
    ([{"id": "a"}, {"id": "b"}, {"id": "c"}], {"range_start": "10.244.1.2", "range_end": "10.244.1.3"},
     "ipam c: no free address left in 10.244.1.2-10.244.1.3"),
    ([{"id": "a"}, {"id": "a"}], {}, "ipam a: declared twice"),
])
def test_bad_input(tmp_path, allocs, kw, message):
    with pytest.raises(FabricError) as err:
        apply(tmp_path, allocs, **kw)
    assert str(err.value) == message
    assert os.listdir(tmp_path) == []


def test_fixed_ip_taken_by_another(tmp_path):
    apply(tmp_path, [{"id": "a"}])
    with pytest.raises(FabricError) as err:
        apply(tmp_path, [{"id": "a"}, {"id": "b", "ip": "10.244.1.2"}])
    assert str(err.value) == "ipam b: 10.244.1.2 is already allocated to a"
