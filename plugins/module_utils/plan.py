# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one shape every podnet.fabric module follows: observe -> plan -> apply.

A core computes a :class:`Plan` from the desired state and what it observed: a list of named
actions. Every action either has an undo or is marked ``irreversible`` (deleting a link, writing
an iptables transaction whose old text is gone); planners put irreversible actions after the
reversible ones wherever the kernel allows (see :meth:`Plan.irreversible_last`).

:meth:`Plan.apply` runs the actions in order. When one fails it undoes the reversible ones
already done, in reverse order, and raises :class:`PlanFailed`, which says what failed, what was
rolled back, what could not be (irreversible actions already done, undos that failed) and so
whether the host changed. The module reports exactly that; nothing is swallowed.
"""
from __future__ import annotations

import os


class FabricError(Exception):
    """A user-facing error: one line that names the object and the reason."""


class Action(object):
    __slots__ = ("description", "do", "undo", "irreversible")

    def __init__(self, description, do, undo=None, irreversible=False):
        if undo is None and not irreversible:
            raise ValueError("action %r: needs an undo or irreversible=True" % description)
        self.description = description
        self.do = do
        self.undo = undo
        self.irreversible = bool(irreversible)

    def __repr__(self):
        return "Action(%r%s)" % (self.description, ", irreversible" if self.irreversible else "")


class PlanFailed(FabricError):
    """Raised by :meth:`Plan.apply`: ``str()`` is the one-line message, the rest is for results."""

    def __init__(self, message, failed, done, rolled_back, not_undone, undo_errors):
        FabricError.__init__(self, message)
        self.failed = failed              # description of the failing action
        self.done = done                  # descriptions of the actions that had run before it
        self.rolled_back = rolled_back    # ... of those undone again
        self.not_undone = not_undone      # ... of irreversible ones that stay done
        self.undo_errors = undo_errors    # ["<undo of action>: <error>"]

    @property
    def changed(self):
        """The host is not as it was: something irreversible ran, or an undo failed."""
        return bool(self.not_undone or self.undo_errors)

    def result(self):
        return {"failed_action": self.failed, "done": self.done, "rolled_back": self.rolled_back,
                "not_undone": self.not_undone, "undo_errors": self.undo_errors}


def noop():
    """Placeholder ``do`` for an action that only a check-mode prediction contains."""


class Plan(object):
    def __init__(self):
        self.actions = []
        self.before = {}
        self.after = {}

    def add(self, description, do, undo=None, irreversible=False):
        self.actions.append(Action(description, do, undo, irreversible))

    def extend(self, other):
        self.actions.extend(other.actions)

    @property
    def changed(self):
        return bool(self.actions)

    @property
    def descriptions(self):
        return [a.description for a in self.actions]

    def irreversible_last(self):
        """True when no reversible action follows an irreversible one (tests assert it)."""
        seen = False
        for action in self.actions:
            if action.irreversible:
                seen = True
            elif seen:
                return False
        return True

    def apply(self):
        done = []
        for action in self.actions:
            try:
                action.do()
            except Exception as exc:  # FabricError, NetlinkError, OSError ...
                reason = str(exc) if isinstance(exc, FabricError) else describe_error(exc)
                raise self._failed(action, reason, done)
            done.append(action)

    def _failed(self, action, reason, done):
        rolled_back, not_undone, undo_errors = [], [], []
        for prior in reversed(done):
            if prior.undo is None:
                not_undone.append(prior.description)
                continue
            try:
                prior.undo()
                rolled_back.append(prior.description)
            except Exception as exc:
                undo_errors.append("undo of %s: %s" % (prior.description, describe_error(exc)))
        message = "%s: %s" % (action.description, reason)
        if not done:
            message += " (nothing was changed)"
        elif not (not_undone or undo_errors):
            message += " (rolled back: %d action%s undone)" % (len(rolled_back), "" if len(rolled_back) == 1 else "s")
        else:
            message += " (NOT fully rolled back: %s)" % "; ".join(
                ["done and kept: %s" % d for d in not_undone] + undo_errors)
        return PlanFailed(message, action.description, [a.description for a in done],
                          rolled_back, not_undone, undo_errors)


def describe_error(exc):
    """A short text for kernel/library errors (NetlinkError carries errno in .code)."""
    if isinstance(exc, FabricError):
        return str(exc)
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, OSError):
        code = exc.errno
    if isinstance(code, int) and code > 0:
        return "%s (errno %d)" % (os.strerror(code), code)
    return str(exc) or exc.__class__.__name__


def changed_only(before, after):
    """The before/after pair restricted to the objects that differ (the honest diff)."""
    keys = sorted(set(before) | set(after), key=str)
    b, a = {}, {}
    for key in keys:
        if before.get(key) != after.get(key):
            b[key] = before.get(key)
            a[key] = after.get(key)
    return b, a
