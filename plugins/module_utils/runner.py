# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The glue every podnet.fabric module shares: a module file is its documentation, its argument
spec and a ``build`` function; this runner does the rest the same way for all of them.

    def build(ctx):                      # ctx: Context (plain data + helpers, no AnsibleModule)
        with ctx.netlink() as ipr:       # the task's namespace; None in check mode if missing
            plan = bridge.plan(ipr, ..., owner=ctx.owner)
        return plan, {"bridges": [...]}  # the module's own result keys

    def main():
        run_module(ARGUMENT_SPEC, build)

Every module's result has the same shape: ``changed``, ``actions`` (what was or would be done,
in order), ``owner``, ``timing`` (seconds: ``plan`` = observe + plan, ``apply``, plus any split a
core adds to ``ctx.timing``), the module's own keys, and with ``--diff`` a diff holding exactly
the objects whose before and after differ (so it is empty exactly when nothing changes).

A failed run fails with one line naming the object and the reason. When some actions had run,
the result says which (``done``), which were undone (``rolled_back``), which stay done
(``not_undone``: irreversible ones) and which undos failed (``undo_errors``); ``changed`` is true
exactly when the host is not as it was.
"""
from __future__ import annotations

import contextlib
import time

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils import restore_state
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, PlanFailed, changed_only

# Options the runner adds to every module that asks for them (documented by the doc fragments
# podnet.fabric.attributes.OWNER and .NETNS).
OWNER_OPTION = dict(type="str")
NETNS_OPTION = dict(type="str")
# ... and .PERSIST, for the modules a node restores by itself (run_module(persist_as=NAME)).
PERSIST_OPTION = dict(type="bool", default=False)


class Context(object):
    """What a module's ``build`` gets: its parameters, the mode, the owner, and ways into the
    task's namespace. Plain data, so cores stay testable without Ansible."""

    def __init__(self, params, check_mode=False, diff=False, warn=None, owner=None):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.owner = owner
        self.netns = params.get("netns")
        self.timing = {}
        self.warnings = []
        self._warn = warn
        self.stack = contextlib.ExitStack()

    def warn(self, text):
        if self._warn:
            self._warn(text)
        else:
            self.warnings.append(text)

    def netlink(self, netns=None, missing_ok=None):
        """An IPRoute handle in ``netns`` (default: the task's). In check mode a namespace that
        does not exist yet (an earlier task would create it) yields None: observers treat it as
        empty. Closed when the module finishes."""
        from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
        name = self.netns if netns is None else netns
        if missing_ok is None:
            missing_ok = self.check_mode
        return self.stack.enter_context(core.open_netns(name or None, missing_ok=missing_ok))

    def netns_missing(self, netns=None):
        name = self.netns if netns is None else netns
        return bool(name) and not netns_exec.exists(name)

    def run(self, argv, input_text=None, netns=None):
        """Run a program in ``netns`` (default: the task's); (rc, stdout, stderr)."""
        name = self.netns if netns is None else netns
        try:
            return netns_exec.run(argv, netns=name or None, input_text=input_text)
        except netns_exec.NetnsNotFound:
            raise FabricError("netns %s: does not exist" % name)


def module_spec(argument_spec, netns=True, owner=True, persist=False):
    spec = dict(argument_spec)
    if persist:
        spec.setdefault("persist", dict(PERSIST_OPTION))
    if owner:
        spec.setdefault("owner", dict(OWNER_OPTION))
    if netns:
        spec.setdefault("netns", dict(NETNS_OPTION))
    return spec


def run_module(argument_spec, build, netns=True, owner=True, pyroute2=True, summarise=None, persist_as=None,
               **module_kwargs):
    """Build an AnsibleModule from ``argument_spec`` (+ owner/netns/persist), then plan, apply,
    exit. ``persist_as``: the name under which the node's restorer replays this module."""
    from ansible.module_utils.basic import AnsibleModule
    module = AnsibleModule(argument_spec=module_spec(argument_spec, netns, owner, persist=bool(persist_as)),
                           supports_check_mode=True, **module_kwargs)
    if pyroute2:
        from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
        core.require_pyroute2(module)
    result = execute(module.params, build, check_mode=module.check_mode, diff=module._diff,
                     warn=module.warn, with_owner=owner, persist_as=persist_as)
    if summarise is not None:
        result["invocation"] = {"module_args": summarise(module.params)}
    finish(module, result)


def finish(module, result, report=None):
    """Exit the module with the runner's ``result``. ``report(module, result)``, called after a
    plan that did not fail (a daemon's sessions, waited for), adds to the result and returns an
    error message or None."""
    if report is not None and not result.get("failed"):
        try:
            error = report(module, result)
        except FabricError as exc:
            error = str(exc)
        if error:
            result.update(failed=True, msg=error)
    if result.get("failed"):
        msg = result.pop("msg")
        result.pop("failed")
        module.fail_json(msg=msg, **result)
    module.exit_json(**result)


def execute(params, build, check_mode=False, diff=False, warn=None, with_owner=True, persist_as=None):
    """The runner without Ansible (unit tests and the node's own restore use it): returns the
    module result as a dict, with ``failed``/``msg`` on failure. With ``persist_as`` the plan
    ends by recording (``params["persist"]``) or forgetting the module's restore state."""
    start = time.monotonic()
    plan = None
    ctx = Context(params, check_mode=check_mode, diff=diff, warn=warn)
    result = {}
    try:
        with ctx.stack:
            if with_owner:
                ctx.owner = owners.check(params.get("owner"), purge=bool(params.get("purge")))
            plan, result = build(ctx)
            result = dict(result or {})
            if persist_as:
                restore_state.plan_record(plan, ctx.owner, persist_as, params, params.get("persist"))
            planned = time.monotonic()
            ctx.timing.setdefault("plan", round(planned - start, 4))
            if plan.changed and not check_mode:
                plan.apply()
            ctx.timing["apply"] = round(time.monotonic() - planned, 4)
    except PlanFailed as exc:
        out = dict(result, failed=True, msg=str(exc), changed=exc.changed, actions=plan.descriptions)
        out.update(exc.result())
        return _common(out, ctx, start)
    except FabricError as exc:
        return _common({"failed": True, "msg": str(exc), "changed": False,
                        "actions": plan.descriptions if plan is not None else []}, ctx, start)
    result["changed"] = plan.changed
    result["actions"] = plan.descriptions
    if diff:
        before, after = changed_only(plan.before, plan.after)
        if plan.changed and before == after:
            # A planner that changes something its before/after does not show: say what it does.
            after = {"actions": plan.descriptions}
        result["diff"] = {"before": before, "after": after}
    return _common(result, ctx, start)


def _common(result, ctx, start):
    if ctx.owner is not None:
        result["owner"] = ctx.owner
    ctx.timing["total"] = round(time.monotonic() - start, 4)
    result["timing"] = ctx.timing
    if ctx.warnings:
        result["warnings"] = ctx.warnings
    return result
