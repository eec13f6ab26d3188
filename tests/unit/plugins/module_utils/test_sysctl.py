"""The sysctl layer nat_rule uses for the settings its rules need (plugins/module_utils/sysctl.py)."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import sysctl
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan


class FakeSettings(object):
    def __init__(self, values):
        self.values = dict(values)
        self.writes = []

    def read(self, keys):
        return dict((k, self.values.get(k)) for k in keys)

    def write(self, key, value):
        self.writes.append((key, value))
        self.values[key] = value


def test_keys_map_to_proc_sys_and_values_to_what_the_kernel_prints():
    assert sysctl.proc_path("net.ipv4.conf.all.route_localnet") == "/proc/sys/net/ipv4/conf/all/route_localnet"
    assert sysctl.proc_path("net/ipv4/conf/eth0.100/route_localnet") == "/proc/sys/net/ipv4/conf/eth0.100/route_localnet"
    for bad in ("../../etc/passwd", "/etc/x", "net.ipv4 x", ""):
        with pytest.raises(FabricError, match="not a sysctl key"):
            sysctl.proc_path(bad)
    assert sysctl.normalise(True) == "1" and sysctl.normalise(1) == "1"
    assert sysctl.normalise("4096  87380\t6291456\n") == "4096\t87380\t6291456"


def test_only_what_differs_is_planned_and_undone_on_failure():
    fake = FakeSettings({"a.b": "0", "c.d": "1"})
    plan = Plan()
    assert sysctl.plan(plan, {"c.d": 1, "a.b": 1}, fake) == ["a.b"]
    assert plan.descriptions == ["sysctl a.b = 1 (was 0)"]
    assert plan.before == {"sysctl a.b": "0"} and plan.after == {"sysctl a.b": "1"}

    def boom():
        raise OSError(5, "io")

    plan.add("boom", boom, irreversible=True)
    with pytest.raises(FabricError, match="rolled back"):
        plan.apply()
    assert fake.writes == [("a.b", "1"), ("a.b", "0")] and fake.values["a.b"] == "0"
    assert sysctl.plan(Plan(), {}, fake) == [] and sysctl.plan(Plan(), {"c.d": "1"}, fake) == []


def test_a_missing_key_fails_a_real_run_and_is_predicted_in_check_mode():
    fake = FakeSettings({})
    with pytest.raises(FabricError, match="^sysctl x.y: not in this kernel"):
        sysctl.plan(Plan(), {"x.y": 1}, fake)
    plan = Plan()
    assert sysctl.plan(plan, {"x.y": 1}, fake, check_mode=True) == ["x.y"]
    assert plan.descriptions == ["sysctl x.y = 1 (was unset)"]
    assert sysctl.plan(Plan(), {"x.y": 1}, None, check_mode=True, missing=True) == ["x.y"]
