"""The manifests reader the lookup and the roles' filters share (plugins/plugin_utils/manifests.py):
the same objects as PyYAML's safe loader, a cache keyed by content that never serves stale
objects, and errors naming the file."""
from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as m

DOC = ("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default, labels: {'1': x}}\n"
       "spec: {ports: [{port: 80, targetPort: http}], selector: {app: web}}\n---\n"
       "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Pod, metadata: {name: p1}}\n")


@pytest.fixture(name="cache")
def fixture_cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("PODNET_FABRIC_MANIFEST_CACHE", str(directory))
    m.MEMO.clear()
    yield directory
    m.MEMO.clear()


def test_same_objects_as_the_safe_loader_and_a_cache_keyed_by_content(tmp_path, cache):
    path = tmp_path / "a.yaml"
    path.write_text(DOC, encoding="utf-8")
    expected = m.flatten(list(yaml.safe_load_all(DOC)))
    first = m.load([str(path)])
    assert first == expected and len(os.listdir(cache)) == 1
    first[0]["metadata"]["name"] = "changed by a caller"      # callers get copies
    m.MEMO.clear()
    assert m.load(str(path)) == expected                        # from the directory cache
    path.write_text(DOC.replace("web", "api"), encoding="utf-8")
    assert m.load(str(path))[0]["metadata"]["name"] == "api"   # new content, new entry
    assert len(os.listdir(cache)) == 2


def test_the_cache_keeps_the_newest_entries(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(m, "CACHE_ENTRIES", 2)
    for i in range(4):
        path = tmp_path / ("f%d.yaml" % i)
        path.write_text("kind: Node\nmetadata: {name: n%d}\n" % i, encoding="utf-8")
        m.load(str(path))
        os.utime(cache / sorted(os.listdir(cache), key=lambda n: os.stat(cache / n).st_mtime)[-1], (i, i))
    assert len(os.listdir(cache)) == 2


def test_a_corrupt_cache_entry_is_parsed_again(tmp_path, cache):
    path = tmp_path / "a.yaml"
    path.write_text(DOC, encoding="utf-8")
    m.load(str(path))
    for name in os.listdir(cache):
        (cache / name).write_bytes(b"\x00garbage")
    m.MEMO.clear()
    assert m.load(str(path))[0]["kind"] == "Service"


def test_what_marshal_cannot_hold_is_parsed_each_time_and_off_means_off(tmp_path, cache, monkeypatch):
    path = tmp_path / "t.yaml"
    path.write_text("kind: Pod\nmetadata: {name: p, creationTimestamp: 2024-01-02T03:04:05Z}\n", encoding="utf-8")
    got = m.load(str(path))
    assert got[0]["metadata"]["creationTimestamp"].year == 2024 and not cache.exists()
    monkeypatch.setenv("PODNET_FABRIC_MANIFEST_CACHE", "off")
    other = tmp_path / "o.yaml"
    other.write_text(DOC, encoding="utf-8")
    assert len(m.load(str(other))) == 2 and not cache.exists()


def test_role_objects_are_the_manifests_then_the_inline_ones(tmp_path, cache):
    (tmp_path / "b.yml").write_text(DOC, encoding="utf-8")
    (tmp_path / "a.yaml").write_text("kind: Node\nmetadata: {name: n1}\n", encoding="utf-8")
    (tmp_path / ".hidden.yaml").write_text("kind: Node\nmetadata: {name: hidden}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not: [yaml", encoding="utf-8")
    got = m.objects([{"kind": "Service", "metadata": {"name": "inline"}}], [str(tmp_path)])
    assert [o["metadata"]["name"] for o in got] == ["n1", "web", "p1", "inline"]
    assert m.objects(None, None) == [] and m.objects([{"kind": "X"}]) == [{"kind": "X"}]


def test_errors_name_the_file(tmp_path, cache):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n", encoding="utf-8")
    with pytest.raises(m.ManifestError, match=r"bad\.yaml: .*") as err:
        m.load(str(bad))
    assert "\n" not in str(err.value)
    with pytest.raises(m.ManifestError, match="missing: no such file or directory"):
        m.load([str(tmp_path / "missing")])
