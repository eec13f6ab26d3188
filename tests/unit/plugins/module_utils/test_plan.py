"""Honest plans: undo or irreversible, rollback in reverse, and a failure that says what it left."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, PlanFailed, changed_only, noop


def _plan(log, fail_at=None, irreversible=(), bad_undo=()):
    plan = Plan()
    for i in range(4):
        def do(i=i):
            if i == fail_at:
                raise OSError(17, "File exists")
            log.append("do%d" % i)

        def undo(i=i):
            if i in bad_undo:
                raise FabricError("cannot")
            log.append("undo%d" % i)
        if i in irreversible:
            plan.add("step %d" % i, do, irreversible=True)
        else:
            plan.add("step %d" % i, do, undo)
    return plan


def test_action_needs_undo_or_irreversible():
    with pytest.raises(ValueError):
        Plan().add("x", noop)
    Plan().add("x", noop, irreversible=True)


def test_rollback_in_reverse_and_nothing_changed():
    log = []
    with pytest.raises(PlanFailed) as info:
        _plan(log, fail_at=2).apply()
    assert log == ["do0", "do1", "undo1", "undo0"]
    exc = info.value
    assert str(exc) == "step 2: File exists (errno 17) (rolled back: 2 actions undone)"
    assert not exc.changed and exc.rolled_back == ["step 1", "step 0"] and exc.done == ["step 0", "step 1"]


def test_failure_first_action_says_nothing_changed():
    with pytest.raises(PlanFailed, match=r"^step 0: File exists \(errno 17\) \(nothing was changed\)$"):
        _plan([], fail_at=0).apply()


def test_irreversible_done_and_failed_undo_are_reported_as_changed():
    log = []
    with pytest.raises(PlanFailed) as info:
        _plan(log, fail_at=3, irreversible=(1,), bad_undo=(2,)).apply()
    exc = info.value
    assert exc.changed
    assert exc.not_undone == ["step 1"] and exc.undo_errors == ["undo of step 2: cannot"]
    assert "NOT fully rolled back: done and kept: step 1; undo of step 2: cannot" in str(exc)
    assert log == ["do0", "do1", "do2", "undo0"]


def test_irreversible_last():
    assert _plan([], irreversible=(3,)).irreversible_last()
    assert not _plan([], irreversible=(1,)).irreversible_last()


def test_changed_only():
    assert changed_only({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ({"b": 2, "c": None}, {"b": 3, "c": 4})
