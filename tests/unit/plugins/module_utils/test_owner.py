"""The ownership model: owner names, marks, claims, and the route protocol registry."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan


def test_missing_owner_is_default_but_cannot_purge():
    assert owners.check(None) == "default"
    with pytest.raises(FabricError, match="^purge needs an explicit owner"):
        owners.check(None, purge=True)
    assert owners.check("default", purge=True) == "default"  # named explicitly: the user's choice


@pytest.mark.parametrize("bad", ["", "Pod", "a:b", "-x", "x-", "a b", "x" * 33, "static", "bird"])
def test_bad_owner_names(bad):
    with pytest.raises(FabricError, match="^owner "):
        owners.check(bad)


def test_marks_round_trip_and_legacy():
    assert owners.mark("pod_network") == "podnet.fabric:pod_network"
    assert owners.owner_of_mark("podnet.fabric:pod_network") == "pod_network"
    assert owners.owner_of_mark("podnet.fabric") == owners.LEGACY
    for foreign in (None, "", "docker", "podnet.fabricx", "podnet.fabric:"):
        assert owners.owner_of_mark(foreign) is None


def test_claim():
    assert owners.claim("bridge cni0", "a", "a") is False
    assert owners.claim("bridge cni0", owners.LEGACY, "a") is True
    with pytest.raises(FabricError, match="^bridge cni0: belongs to owner a, not to owner b; refusing"):
        owners.claim("bridge cni0", "a", "b")
    with pytest.raises(FabricError, match="^bridge cni0: exists and is not podnet.fabric's"):
        owners.claim("bridge cni0", None, "b")


def test_registry_allocates_once_and_never_reuses(tmp_path):
    reg = owners.ProtocolRegistry(str(tmp_path / "rt_protos.d"))
    plan = Plan()
    assert reg.plan_register(plan, "pod_routing") == 150
    assert reg.read() == {}  # planning writes nothing (check mode)
    plan.apply()
    assert reg.read() == {"pod_routing": 150}
    assert reg.lookup("pod_routing") == (150, True)
    plan = Plan()
    assert reg.plan_register(plan, "services") == 151
    assert reg.plan_register(Plan(), "pod_routing") == 150
    plan.apply()
    text = (tmp_path / "rt_protos.d" / "podnet-fabric.conf").read_text()
    assert "150\tpod_routing\n151\tservices\n" in text
    # The undo of a registration removes exactly that line.
    plan = Plan()
    reg.plan_register(plan, "vips")
    plan.apply()
    plan.actions[0].undo()
    assert reg.read() == {"pod_routing": 150, "services": 151}


def test_registry_pinned_numbers(tmp_path):
    reg = owners.ProtocolRegistry(str(tmp_path))
    reg.register("a", 150)
    with pytest.raises(FabricError, match="^owner a: route protocol 160 was asked for, but .* registers it as 150"):
        reg.lookup("a", pinned=160)
    with pytest.raises(FabricError, match="^owner b: route protocol 150 is registered for owner a"):
        reg.lookup("b", pinned=150)
    assert reg.lookup("b", pinned=170) == (170, False)


def test_registry_full(tmp_path):
    reg = owners.ProtocolRegistry(str(tmp_path))
    for i, number in enumerate(owners.ROUTE_PROTO_RANGE):
        reg.register("o%d" % i, number)
    with pytest.raises(FabricError, match="^owner late: no free route protocol number left in 150..179"):
        reg.lookup("late")
