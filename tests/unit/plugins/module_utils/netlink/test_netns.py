"""netns core without a kernel: names, ownership decisions, plan order (observe is faked)."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import netns
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError


@pytest.fixture
def host(monkeypatch):
    """A fake host: {name: owner} ('' = release 0.1, None = `ip netns add`)."""
    spaces = {}

    def observe(name, ipr=None):
        if name not in spaces:
            return {"state": "absent"}
        return {"state": "present", "owner": spaces[name], "loopback_up": True}
    monkeypatch.setattr(netns, "observe", observe)
    monkeypatch.setattr(netns, "existing", lambda: sorted(spaces))
    return spaces


def test_names_are_checked():
    assert netns.check_name("pod-a.b_1") == "pod-a.b_1"
    for bad in ("", "a/b", ".hidden", "x" * 129, None):
        with pytest.raises(FabricError, match=r"^netns .*: invalid name"):
            netns.check_name(bad)


def test_create_adopt_and_purge_only_the_owners(host):
    host.update({"mine-old": "a", "theirs": "b", "legacy": "", "user": None, "keep": "a"})
    plan = netns.plan([{"name": "new"}, {"name": "keep"}], "a", purge=True)
    assert plan.descriptions == ["create netns new", "delete netns mine-old"]
    assert plan.irreversible_last()
    assert plan.after["mine-old"] == {"state": "absent"}
    assert plan.before["keep"] == plan.after["keep"]  # nothing to do: no diff


def test_legacy_is_adopted_when_declared_and_never_purged(host):
    host.update({"legacy": "", "legacy2": ""})
    plan = netns.plan([{"name": "legacy"}], "a", purge=True)
    assert plan.descriptions == ["set netns legacy loopback alias podnet.fabric:a (adopt)"]
    assert plan.before["legacy"]["owner"] == "podnet.fabric 0.1"


def test_other_owners_and_foreign_namespaces_are_refused(host):
    host.update({"theirs": "b", "user": None})
    with pytest.raises(FabricError, match=r"^netns theirs: belongs to owner b, not to owner a; refusing to take it over$"):
        netns.plan([{"name": "theirs"}], "a")
    with pytest.raises(FabricError, match=r"^netns user: exists and is not podnet.fabric's"):
        netns.plan([{"name": "user", "state": "absent"}], "a")
    with pytest.raises(FabricError, match=r"^netns x: declared twice$"):
        netns.plan([{"name": "x"}, {"name": "x"}], "a")


def test_deletes_come_after_creations(host):
    host.update({"old": "a"})
    plan = netns.plan([{"name": "old", "state": "absent"}, {"name": "new"}], "a")
    assert plan.descriptions == ["create netns new", "delete netns old"]
    assert plan.irreversible_last()
