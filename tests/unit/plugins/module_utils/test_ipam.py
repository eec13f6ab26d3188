"""host-local IPAM on a temporary directory (plain files: no root, no kernel)."""
from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / ".collections"))

from ansible_collections.podnet.fabric.plugins.module_utils import ipam  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, PlanFailed  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.runner import execute  # noqa: E402


def apply(tmp_path, allocations, subnet="10.244.1.0/24", purge=False, owner="o", **kw):
    p = ipam.plan(str(tmp_path), ipam.Range(subnet, **kw), allocations, owner=owner, purge=purge)
    p.apply()
    return p


def snapshot(path):
    return dict((n, (path / n).read_bytes()) for n in sorted(os.listdir(path)))


def test_host_local_file_format_and_last_reserved(tmp_path):
    p = apply(tmp_path, [{"id": "default/a"}, {"id": "default/b", "ifname": "net1"}])
    assert p.after == {"default/a": "10.244.1.2", "default/b": "10.244.1.3"}
    assert (tmp_path / "10.244.1.2").read_bytes() == b"podnet.fabric:o:default/a\r\neth0"
    assert (tmp_path / "10.244.1.3").read_bytes() == b"podnet.fabric:o:default/b\r\nnet1"
    assert (tmp_path / "last_reserved_ip.0").read_text() == "10.244.1.3"
    again = apply(tmp_path, [{"id": "default/b"}, {"id": "default/a"}])
    assert not again.changed and again.after == {"default/b": "10.244.1.3", "default/a": "10.244.1.2"}


def test_round_robin_after_the_last_reserved_then_wraps(tmp_path):
    apply(tmp_path, [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    p = apply(tmp_path, [{"id": "a"}, {"id": "c"}, {"id": "d", "ip": "10.244.1.50"}], purge=True)
    assert p.after == {"a": "10.244.1.2", "c": "10.244.1.4", "d": "10.244.1.50"}
    assert not (tmp_path / "10.244.1.3").exists()
    p = apply(tmp_path, [{"id": "e"}])           # after .4 (the last reserved), not the freed .3
    assert p.after["e"] == "10.244.1.5"
    small = tmp_path / "small"
    rng = dict(range_start="10.244.1.2", range_end="10.244.1.4")
    apply(small, [{"id": "x"}, {"id": "y"}], **rng)
    apply(small, [{"id": "x"}], purge=True, **rng)
    p = apply(small, [{"id": "x"}, {"id": "z"}, {"id": "w"}], **rng)
    assert p.after["z"] == "10.244.1.4" and p.after["w"] == "10.244.1.3"   # wrapped round


def test_purge_is_off_by_default_and_removes_only_the_owners(tmp_path):
    (tmp_path / "10.244.1.9").write_bytes(b"4f3c0ffee\r\neth0")            # a real host-local's
    (tmp_path / "10.244.1.8").write_bytes(b"podnet.fabric:other:x\r\neth0")
    (tmp_path / "10.244.1.7").write_bytes(b"old-pod\n")                      # release 0.1
    apply(tmp_path, [{"id": "a"}, {"id": "b"}])
    p = apply(tmp_path, [{"id": "a"}])
    assert not p.changed and p.after == {"a": "10.244.1.2", "b": "10.244.1.3"}
    p = apply(tmp_path, [{"id": "a"}], purge=True)
    assert p.after == {"a": "10.244.1.2"}
    assert sorted(n for n in os.listdir(tmp_path) if n[0].isdigit()) == [
        "10.244.1.2", "10.244.1.7", "10.244.1.8", "10.244.1.9"]


def test_addresses_held_by_others_are_never_handed_out(tmp_path):
    for n in range(2, 6):
        (tmp_path / ("10.244.1.%d" % n)).write_bytes(b"cid%d\r\neth0" % n)
    p = apply(tmp_path, [{"id": "a"}])
    assert p.after == {"a": "10.244.1.6"}
    with pytest.raises(FabricError) as err:
        apply(tmp_path, [{"id": "b", "ip": "10.244.1.3"}])
    assert str(err.value) == "ipam b: 10.244.1.3 is already allocated to container cid3 (not podnet.fabric's)"


def test_legacy_allocation_is_adopted_in_place(tmp_path):
    (tmp_path / "10.244.1.7").write_bytes(b"web\n")
    p = apply(tmp_path, [{"id": "web"}])
    assert p.after == {"web": "10.244.1.7"} and p.descriptions == ["adopt 10.244.1.7 of web (release 0.1)"]
    assert (tmp_path / "10.244.1.7").read_bytes() == b"podnet.fabric:o:web\r\neth0"
    assert not apply(tmp_path, [{"id": "web"}]).changed


def test_foreign_files_are_ignored(tmp_path):
    (tmp_path / "last_reserved_ip.1").write_text("10.244.1.9")
    (tmp_path / "10.9.9.9").write_text("someone-else\n")
    apply(tmp_path, [{"id": "a"}])
    assert (tmp_path / "last_reserved_ip.1").exists() and (tmp_path / "10.9.9.9").exists()


@pytest.mark.parametrize("allocs,kw,message", [
    ([{"id": "a", "ip": "10.244.2.5"}], {},
     "ipam a: 10.244.2.5 is outside the allocatable range 10.244.1.1-10.244.1.254 of 10.244.1.0/24 (or is the gateway)"),
    ([{"id": "a", "ip": "10.244.1.1"}], {},
     "ipam a: 10.244.1.1 is outside the allocatable range 10.244.1.1-10.244.1.254 of 10.244.1.0/24 (or is the gateway)"),
    ([{"id": "a"}, {"id": "b"}, {"id": "c"}], {"range_start": "10.244.1.2", "range_end": "10.244.1.3"},
     "ipam c: no free address left in 10.244.1.2-10.244.1.3"),
    ([{"id": "a"}, {"id": "a"}], {}, "ipam a: declared twice"),
    ([{"id": "a\r"}], {}, "ipam: allocation id 'a\\r' is empty, has a line break or surrounding blanks"),
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
    assert str(err.value) == "ipam b: 10.244.1.2 is already allocated to a of owner o"


def test_a_failure_mid_plan_leaves_the_directory_as_it_was(tmp_path):
    apply(tmp_path, [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    before = snapshot(tmp_path)
    wanted = [{"id": "a", "ip": "10.244.1.20"}, {"id": "c"}, {"id": "d"}, {"id": "e"}]
    p = ipam.plan(str(tmp_path), ipam.Range("10.244.1.0/24"), wanted, owner="o", purge=True)
    assert p.descriptions[:3] == ["allocate 10.244.1.20 to a", "allocate 10.244.1.5 to d", "allocate 10.244.1.6 to e"]
    (tmp_path / "10.244.1.6").write_bytes(b"racer\r\neth0")      # another allocator got there first
    before["10.244.1.6"] = b"racer\r\neth0"
    with pytest.raises(PlanFailed) as err:
        p.apply()
    assert str(err.value).startswith("allocate 10.244.1.6 to e: ipam 10.244.1.6: taken meanwhile by another allocator")
    assert not err.value.changed and "rolled back: 2 actions undone" in str(err.value)
    assert snapshot(tmp_path) == before


def test_releases_and_last_reserved_roll_back_too(tmp_path):
    apply(tmp_path, [{"id": "a"}, {"id": "b"}])
    before = snapshot(tmp_path)
    p = ipam.plan(str(tmp_path), ipam.Range("10.244.1.0/24"), [{"id": "c"}], owner="o", purge=True)
    assert p.descriptions == ["allocate 10.244.1.4 to c", "record 10.244.1.4 as last reserved",
                              "release 10.244.1.2 from a", "release 10.244.1.3 from b"]

    def boom():
        raise OSError(28, "No space left on device")
    p.add("one more", boom, boom)
    with pytest.raises(PlanFailed):
        p.apply()
    assert snapshot(tmp_path) == before


def test_the_module_holds_host_locals_lock_from_read_to_write(tmp_path):
    """While someone else holds <dir>/lock (host-local does for each ADD/DEL), the module waits."""
    directory = tmp_path / "net"
    directory.mkdir()
    fd = os.open(str(directory / "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    params = dict(network="net", data_dir=str(tmp_path), subnet="10.244.1.0/24", range_start=None, range_end=None,
                  gateway=None, allocations=[{"id": "a", "ifname": "eth0"}], purge=False, owner="o")
    from ansible_collections.podnet.fabric.plugins.modules import ipam as module
    out = {}
    worker = threading.Thread(target=lambda: out.update(execute(params, module.build)))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not (directory / "10.244.1.2").exists()
    (directory / "10.244.1.2").write_bytes(b"hostlocal\r\neth0")   # what host-local does under the lock
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    worker.join(30)
    assert out["addresses"] == {"a": "10.244.1.3"}, out


def test_the_module_leaves_no_directory_behind_on_bad_input(tmp_path):
    from ansible_collections.podnet.fabric.plugins.modules import ipam as module
    params = dict(network="net", data_dir=str(tmp_path), subnet="10.244.1.0/24", range_start=None, range_end=None,
                  gateway=None, allocations=[{"id": "a", "ip": "10.244.9.9", "ifname": "eth0"}], purge=False, owner="o")
    r = execute(params, module.build)
    assert r["failed"] and r["msg"].startswith("ipam a: 10.244.9.9 is outside")
    assert os.listdir(tmp_path) == []
    r = execute(dict(params, allocations=[{"id": "a", "ifname": "eth0"}]), module.build, check_mode=True)
    assert r["changed"] and r["addresses"] == {"a": "10.244.1.2"} and os.listdir(tmp_path) == []


def test_purge_without_owner_is_refused(tmp_path):
    from ansible_collections.podnet.fabric.plugins.modules import ipam as module
    params = dict(network="net", data_dir=str(tmp_path), subnet="10.244.1.0/24", range_start=None, range_end=None,
                  gateway=None, allocations=[], purge=True, owner=None)
    r = execute(params, module.build)
    assert r["failed"] and r["msg"].startswith("purge needs an explicit owner")
