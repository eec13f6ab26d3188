# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one shape every podnet.fabric module follows: observe -> plan -> apply.

A core computes a :class:`Plan` from the desired state and what it observed. The plan is a list
of named actions, each with an optional undo. Modules report ``plan.changed`` and the plan's
before/after in check mode; outside check mode :meth:`Plan.apply` runs the actions in order and,
when one fails, undoes the ones already done in reverse order, so a failed run leaves the host as
it found it wherever the kernel allows.
"""
from __future__ import annotations


class FabricError(Exception):
    """A user-facing error: one line that names the object and the reason."""


class Action(object):
    __slots__ = ("description", "do", "undo")

    def __init__(self, description, do, undo=None):
        self.description = description
        self.do = do
        self.undo = undo

    def __repr__(self):
        return "Action(%r)" % self.description


class Plan(object):
    def __init__(self):
        self.actions = []
        self.before = {}
        self.after = {}

    def add(self, description, do, undo=None):
        self.actions.append(Action(description, do, undo))

    def extend(self, other):
        self.actions.extend(other.actions)

    @property
    def changed(self):
        return bool(self.actions)

    @property
    def descriptions(self):
        return [a.description for a in self.actions]

    def apply(self):
        done = []
        for action in self.actions:
            try:
                action.do()
            except FabricError as exc:
                self._rollback(done)
                raise FabricError("%s: %s" % (action.description, exc))
            except Exception as exc:  # kernel errors: NetlinkError, OSError ...
                self._rollback(done)
                raise FabricError("%s: %s" % (action.description, describe_error(exc)))
            done.append(action)

    @staticmethod
    def _rollback(done):
        for action in reversed(done):
            if action.undo is None:
                continue
            try:
                action.undo()
            except Exception:  # best effort: the original error is what the user needs
                pass


def describe_error(exc):
    """A short text for kernel/library errors (NetlinkError carries errno in .code)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        import os
        return "%s (errno %d)" % (os.strerror(code), code)
    return str(exc) or exc.__class__.__name__


def finish(module, plan, **result):
    """Apply ``plan`` unless in check mode and exit the module with changed/diff/result."""
    if plan.changed and not module.check_mode:
        try:
            plan.apply()
        except FabricError as exc:
            module.fail_json(msg=str(exc), changed=False, actions=plan.descriptions, **result)
    result["changed"] = plan.changed
    result["actions"] = plan.descriptions
    if module._diff:
        result["diff"] = {"before": plan.before, "after": plan.after}
    module.exit_json(**result)
