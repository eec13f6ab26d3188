"""Restore state: what persist records, what the restorer accepts, the order it replays in, and
the bundle the node role ships (pure file logic; the kernel side is tests/integration/test_restore.py)."""
from __future__ import annotations

import base64
import json
import re
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from ansible_collections.podnet.fabric.plugins.lookup.restorer_bundle import bundle, members
from ansible_collections.podnet.fabric.plugins.module_utils import node_restore, restore_state
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan
from ansible_collections.podnet.fabric.plugins.module_utils.restorer_install import decode
from ansible_collections.podnet.fabric.plugins.module_utils.runner import execute
from ansible_collections.podnet.fabric.plugins.module_utils.version import COLLECTION_VERSION

REPO = Path(__file__).resolve().parents[4]


def test_the_stamped_version_is_galaxy_yml_s():
    assert re.search(r"^version: (\S+)$", (REPO / "galaxy.yml").read_text(), re.M).group(1) == COLLECTION_VERSION


def _build(log):
    def build(ctx):
        plan = Plan()
        plan.add("do it", lambda: log.append("did"), lambda: log.append("undid"))
        return plan, {}
    return build


def _record(tmp_path, owner, module, params, persist=True, check_mode=False, diff=False):
    params = dict(params, owner=owner, persist=persist)
    return execute(params, _build([]), check_mode=check_mode, diff=diff, persist_as=module)


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(restore_state.DIR_ENV, str(tmp_path / "restore"))
    return tmp_path / "restore"


def test_persist_records_the_parameters_without_persist_itself_and_check_mode_writes_nothing(tmp_path, state_dir):
    res = _record(tmp_path, "own", "route", {"routes": [{"dest": "10.0.0.0/8"}]}, check_mode=True, diff=True)
    assert res["actions"][-1].startswith("record route for restore at boot and link up (owner own, ")
    assert res["diff"]["after"]["restore state own/route"] == {
        "version": COLLECTION_VERSION, "params": {"owner": "own", "routes": [{"dest": "10.0.0.0/8"}]}}
    assert not state_dir.exists()
    res = _record(tmp_path, "own", "route", {"routes": [{"dest": "10.0.0.0/8"}]})
    doc = json.loads((state_dir / "own.json").read_text())
    assert doc == {"format": 1, "owner": "own", "modules": {"route": {
        "version": COLLECTION_VERSION, "params": {"owner": "own", "routes": [{"dest": "10.0.0.0/8"}]}}}}
    assert (state_dir / "own.json").stat().st_mode & 0o777 == 0o600 and state_dir.stat().st_mode & 0o777 == 0o700
    # the same again records nothing
    assert _record(tmp_path, "own", "route", {"routes": [{"dest": "10.0.0.0/8"}]})["actions"] == ["do it"]


def test_owners_and_modules_are_kept_apart_and_persist_false_forgets_only_its_own(tmp_path, state_dir):
    _record(tmp_path, "a", "route", {"routes": []})
    _record(tmp_path, "a", "nat_rule", {"chains": []})
    _record(tmp_path, "b", "route", {"routes": [{"dest": "10.1.0.0/16"}]})
    res = _record(tmp_path, "a", "route", {"routes": []}, persist=False)
    assert res["actions"][-1].startswith("forget the restore state of route (owner a, ")
    assert sorted(json.loads((state_dir / "a.json").read_text())["modules"]) == ["nat_rule"]
    assert sorted(json.loads((state_dir / "b.json").read_text())["modules"]) == ["route"]
    _record(tmp_path, "a", "nat_rule", {"chains": []}, persist=False)
    assert not (state_dir / "a.json").exists()
    # nothing recorded, persist false: no file, no action
    assert _record(tmp_path, "c", "route", {}, persist=False)["actions"] == ["do it"]


def test_a_failed_plan_records_nothing(tmp_path, state_dir):
    def build(ctx):
        plan = Plan()

        def boom():
            raise OSError(17, "File exists")
        plan.add("break", boom, irreversible=True)
        return plan, {}
    res = execute({"owner": "a", "persist": True}, build, persist_as="route")
    assert res["failed"] and not state_dir.joinpath("a.json").exists()


def test_entries_come_layer_by_layer_whatever_the_owner(tmp_path, state_dir):
    _record(tmp_path, "zeta", "pods", {"bridge": "cni0"})
    _record(tmp_path, "alpha", "nat_rule", {})
    _record(tmp_path, "alpha", "route", {"routes": [{"dest": "10.2.0.0/16", "gateway": "192.0.2.1"}]})
    _record(tmp_path, "zeta", "vxlan", {"vxlans": [{"name": "flannel.1", "dev": "eth0"}]})
    _record(tmp_path, "alpha", "vip_arp", {"netns": "n1", "vips": [{"address": "192.0.2.10", "interface": "eth1"}],
                                           "interfaces": ["wlan0"], "state": "present"})
    docs = restore_state.load_all()
    assert [(m, o) for m, o, _p in restore_state.entries(docs)] == [
        ("pods", "zeta"), ("vxlan", "zeta"), ("route", "alpha"), ("nat_rule", "alpha"), ("vip_arp", "alpha")]
    assert node_restore.dependencies(docs) == {None: {"cni0", "flannel.1", "eth0", node_restore.ANY_LINK},
                                               "n1": {"eth1", "wlan0"}}


def test_layers_end_with_the_vips_after_the_rules():
    assert restore_state.LAYERS == ("netns", "bridge", "veth", "pods", "ipam", "vxlan", "route", "nat_rule", "vip_arp")


def test_the_restorer_replays_vip_arp_without_the_probe_and_the_others_as_recorded(tmp_path, state_dir, monkeypatch):
    vip = {"vips": [{"address": "192.0.2.10", "interface": "eth0"}], "interfaces": [], "probe": True, "state": "present"}
    _record(tmp_path, "lb", "vip_arp", vip)
    _record(tmp_path, "lb", "route", {"routes": [], "probe": True})
    seen = []

    def execute_(params, build, check_mode=False):
        seen.append((build.__module__.rsplit(".", 1)[1], params))
        return {"changed": False, "actions": [], "timing": {"total": 0.0}}
    monkeypatch.setattr(node_restore.runner, "execute", execute_)
    assert node_restore.apply(restore_state.load_all(), quiet=True) == ([], [])
    assert [(m, p["probe"]) for m, p in seen] == [("route", True), ("vip_arp", False)]
    # the record itself keeps what the task declared
    assert restore_state.load_all()[0]["modules"]["vip_arp"]["params"]["probe"] is True


@pytest.mark.parametrize("damage,reason", [
    (lambda d: d["modules"]["route"].update(version="0.0.9"), "route was recorded by podnet.fabric 0.0.9, this restorer is"),
    (lambda d: d.update(format=2), "state format 2 is unknown"),
    (lambda d: d["modules"].update(bird={"version": COLLECTION_VERSION, "params": {}}), "module bird is not one this restorer replays"),
    (lambda d: d["modules"]["route"].pop("params"), "entry route has no parameters"),
])
def test_a_state_the_restorer_cannot_use_is_refused_in_one_line(tmp_path, state_dir, damage, reason):
    _record(tmp_path, "a", "route", {"routes": []})
    path = state_dir / "a.json"
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    docs, refused = node_restore.load()
    assert docs is None and reason in refused and str(path) in refused and refused.endswith("nothing restored")
    assert "\n" not in refused


def test_an_unusable_file_is_replaced_by_the_next_converge(tmp_path, state_dir):
    state_dir.mkdir(mode=0o700)
    (state_dir / "a.json").write_text("{not json")
    with pytest.raises(restore_state.StateError, match="not valid JSON"):
        restore_state.load_all()
    _record(tmp_path, "a", "route", {"routes": []})
    assert sorted(restore_state.load_all()[0]["modules"]) == ["route"]


def test_the_bundle_is_deterministic_and_carries_the_modules_it_replays():
    first, second = bundle(), bundle()
    assert first == second
    names = [n for n, _d in members()]
    for module in restore_state.LAYERS:
        assert "ansible_collections/podnet/fabric/plugins/modules/%s.py" % module in names
    assert "ansible_collections/podnet/fabric/plugins/module_utils/node_restore.py" in names
    with zipfile.ZipFile(BytesIO(first)) as archive:
        assert archive.read("__main__.py").decode().strip().endswith("raise SystemExit(node_restore.main(sys.argv[1:]))")
    data, version = decode(base64.b64encode(first).decode())
    assert data == first and version == COLLECTION_VERSION


def test_a_bundle_that_is_not_one_is_refused():
    with pytest.raises(FabricError, match="^bundle: not a podnet-restore zip application"):
        decode(base64.b64encode(b"hello").decode())
