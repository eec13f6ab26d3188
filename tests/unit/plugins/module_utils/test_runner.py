"""The module runner without Ansible: one result shape, honest diff, failures that say what ran."""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.plan import Plan
from ansible_collections.podnet.fabric.plugins.module_utils.runner import execute


def _build(changes, fail=False):
    def build(ctx):
        plan = Plan()
        plan.before = {"x": {"v": 1}, "y": {"v": 1}}
        plan.after = {"x": {"v": 2 if changes else 1}, "y": {"v": 1}}
        log = []
        if changes:
            plan.add("set x", lambda: log.append("set"), lambda: log.append("unset"))
        if fail:
            def boom():
                raise OSError(22, "Invalid argument")
            plan.add("break y", boom, irreversible=True)
        return plan, {"things": ["x", "y"], "owner_seen": ctx.owner, "log": log}
    return build


def test_result_shape_and_diff_only_what_changes():
    res = execute({"owner": "a"}, _build(True), diff=True)
    assert res["changed"] is True and res["actions"] == ["set x"] and res["owner"] == "a"
    assert res["log"] == ["set"] and res["things"] == ["x", "y"]
    assert res["diff"] == {"before": {"x": {"v": 1}}, "after": {"x": {"v": 2}}}
    assert set(res["timing"]) >= {"plan", "apply", "total"}


def test_no_change_no_diff():
    res = execute({"owner": "a"}, _build(False), diff=True)
    assert res["changed"] is False and res["diff"] == {"before": {}, "after": {}}


def test_check_mode_applies_nothing():
    res = execute({"owner": "a"}, _build(True), check_mode=True)
    assert res["changed"] is True and res["log"] == []


def test_failure_reports_what_ran_and_rolled_back():
    res = execute({"owner": "a"}, _build(True, fail=True))
    assert res["failed"] and res["msg"] == "break y: Invalid argument (errno 22) (rolled back: 1 action undone)"
    assert res["changed"] is False and res["rolled_back"] == ["set x"] and res["log"] == ["set", "unset"]


def test_owner_errors_before_anything():
    res = execute({"purge": True}, _build(True))
    assert res["failed"] and res["msg"].startswith("purge needs an explicit owner") and res["changed"] is False
    assert execute({}, _build(False))["owner"] == "default"
