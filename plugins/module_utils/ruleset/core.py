# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nat_rule module's core: parameters (plain data) + an injected runner -> Plan + result.

Observe with one ``iptables-save`` of the chosen flavour (two with auto-detection), plan, and
hand back a :class:`~..plan.Plan` holding at most one action: the iptables-restore transaction.
A run with nothing to change has no action, so iptables-restore is never started.
"""
from __future__ import annotations

import glob
import os
import time

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, PlanFailed
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import flavour as flavours
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import names
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.apply import Transaction
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import parse_save
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.planner import ChainSpec, Desired, JumpSpec, plan_ruleset

XTABLES_LIBDIRS = ("/usr/lib/*/xtables", "/usr/lib64/xtables", "/usr/lib/xtables", "/lib/*/xtables",
                   "/lib64/xtables", "/lib/xtables", "/usr/local/lib/xtables")


def desired_from_params(params):
    """Module parameters -> Desired (validated: owner, tables, chain names, positions)."""
    owner = owners.check(params.get("owner"), purge=bool(params.get("purge")))
    default_table = params.get("table") or "nat"
    state = params.get("state") or "present"
    chains = []
    for i, item in enumerate(params.get("chains") or []):
        table = item.get("table") or default_table
        _check_table(table, "chains[%d]" % i)
        name = item.get("name")
        names.check_chain_name(name, "chains[%d]: chain" % i)
        rules = item.get("rules") or []
        if isinstance(rules, str):
            raise FabricError("chains[%d] (%s): rules must be a list of rules, one string each" % (i, name))
        chains.append(ChainSpec(table, name, [str(r) for r in rules], "chains[%d] (%s %s)" % (i, table, name)))
    jumps = []
    for i, item in enumerate(params.get("jumps") or []):
        table = item.get("table") or default_table
        _check_table(table, "jumps[%d]" % i)
        position = item.get("position") or "first"
        if position not in ("first", "last"):
            raise FabricError("jumps[%d]: position must be first or last, not %r" % (i, position))
        chain = item.get("chain")
        names.check_chain_name(chain, "jumps[%d]: chain" % i)
        jumps.append(JumpSpec(table, chain, item.get("rule") or "", position,
                              "jumps[%d] (%s %s)" % (i, table, chain)))
    if params.get("ruleset"):
        more_chains, more_jumps = parse_ruleset(params["ruleset"], default_table)
        chains += more_chains
        jumps += more_jumps
    return Desired(owner, chains, jumps, state, bool(params.get("purge")))


_ONLY = "only *table, :CHAIN, -A CHAIN rule, -I CHAIN [1] rule, COMMIT, comments and blank lines belong in a ruleset"


def parse_ruleset(text, default_table="nat"):
    """iptables-restore-style text -> (chains, jumps).

    ``:CHAIN`` declares an owned chain (its ``-A`` lines follow); ``-A``/``-I`` on any other
    chain (PREROUTING, DOCKER-USER ...) is a jump of this owner, appended or inserted first.
    """
    chains = {}
    order = []
    jumps = []
    table = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        if line[0] == "-" and line[1:3] == "A " and table is not None:
            # the bulk of a generated ruleset: "-A CHAIN rule" of a declared chain
            rest = line[3:].lstrip()
            sp = rest.find(" ")
            spec = chains.get((table, rest[:sp] if sp > 0 else rest))
            if spec is not None:
                spec.rules.append(rest[sp + 1:].strip() if sp > 0 else "")
                spec.rule_where.append(number)
                continue
        where = "ruleset line %d" % number
        if line[0] == "*":
            table = line[1:].strip()
            _check_table(table, where)
            continue
        if line == "COMMIT":
            table = None
            continue
        if table is None:
            raise FabricError("%s: %r comes before any *table line" % (where, line[:60]))
        if line[0] == ":":
            parts = line[1:].split()
            name = parts[0] if parts else ""
            names.check_chain_name(name, "%s: chain" % where)
            if len(parts) > 1 and parts[1] != "-":
                raise FabricError("%s: %s: policies of built-in chains are not managed; declare only chains this "
                                  "owner owns (:%s - [0:0])" % (where, line, name))
            if (table, name) in chains:
                raise FabricError("%s: chain %s is declared twice in table %s" % (where, name, table))
            spec = ChainSpec(table, name, [], "%s (%s %s)" % (where, table, name), [])
            chains[(table, name)] = spec
            order.append(spec)
            continue
        cmd, sep, rest = line.partition(" ")
        chain, sep, rule = rest.strip().partition(" ")
        rule = rule.strip()
        if cmd in ("-A", "--append"):
            spec = chains.get((table, chain))
            if spec is not None:
                spec.rules.append(rule)
                spec.rule_where.append(number)
            else:
                jumps.append(JumpSpec(table, chain, rule, "last", "%s (jump in %s %s)" % (where, table, chain)))
        elif cmd in ("-I", "--insert"):
            first, sep, after = rule.partition(" ")
            if first.isdigit():
                if first != "1":
                    raise FabricError("%s: jumps are inserted first (-I %s 1) or appended (-A), not at position %s"
                                      % (where, chain, first))
                rule = after.strip()
            if (table, chain) in chains:
                raise FabricError("%s: use -A for the rules of %s, a chain this ruleset declares" % (where, chain))
            jumps.append(JumpSpec(table, chain, rule, "first", "%s (jump in %s %s)" % (where, table, chain)))
        else:
            raise FabricError("%s: %r: %s" % (where, line[:60], _ONLY))
    if table is not None:
        raise FabricError("ruleset: table %s has no COMMIT line" % table)
    return order, jumps


def _check_table(table, where):
    if table not in names.TABLES:
        raise FabricError("%s: table %r does not exist (iptables has %s)" % (where, table, ", ".join(names.TABLES)))


def xtables_target_lookup(libdirs=None):
    """A function telling whether an iptables target extension is installed (None: cannot tell)."""
    dirs = [os.environ["XTABLES_LIBDIR"]] if os.environ.get("XTABLES_LIBDIR") else []
    for pattern in libdirs or XTABLES_LIBDIRS:
        dirs += [d for d in glob.glob(pattern) if os.path.isdir(d)]
    if not dirs:
        return None

    def exists(name):
        return any(os.path.exists(os.path.join(d, "lib%s_%s.so" % (kind, name)))
                   for d in dirs for kind in ("xt", "ipt"))
    return exists


def build(params, run, tools, target_exists=None, warn=None, diff=True, check_mode=False, timing=None,
          netns_missing=False):
    """Observe and plan. Returns (plan, result); the plan has one action per changed table.

    ``run(argv, input_text=None)`` -> (rc, stdout, stderr) runs a program in the target netns;
    ``tools`` is a flavour.Tools; ``warn(text)`` reports a warning (AnsibleModule.warn);
    ``diff``: compute the rule-level before/after (only needed in diff mode); ``check_mode``:
    canonicalise every new rule now (a real run does it when it writes the transaction), so
    check mode reports the same input errors a real run would. ``netns_missing`` (check mode
    only): the namespace does not exist yet, so its tables are empty and everything is created.
    ``timing`` (a dict, the runner's ``ctx.timing``) gets ``read`` (iptables-save), ``plan``
    and, when applied, ``restore`` seconds.
    Raises FabricError for bad input and refused ownership.
    """
    timing = {} if timing is None else timing
    start = time.monotonic()
    desired = desired_from_params(params)
    commands = []
    warnings = _Warnings(warn)
    if netns_missing:
        def run(argv, input_text=None):  # pylint: disable=function-redefined,unused-argument
            return 0, "", ""             # a namespace not created yet has empty tables
    reading = time.monotonic()
    obs = flavours.observe(run, tools, params.get("iptables_flavour") or "auto",
                           names.registry_chain(desired.owner), commands)
    if netns_missing:
        obs.reason += " (the namespace does not exist yet: planned from empty tables)"
        commands[:] = []
    read = time.monotonic()
    timing["read"] = round(read - reading, 4)
    observed = parse_save(obs.save_text)
    rp = plan_ruleset(desired, observed, target_exists)
    if check_mode:
        rp.settle_all()
    for note in rp.notes:
        warnings.append(note)
    plan = RestorePlan()
    if diff:
        plan.before, plan.after = rp.diff_by_table()
    count = rp.count_lines() if rp.changed else 0
    result = dict(
        iptables_flavour=obs.flavour,
        iptables_flavour_reason=obs.reason,
        chains_created=rp.names("created"),
        chains_updated=rp.names("updated"),
        chains_deleted=rp.names("deleted"),
        jumps_added=rp.jumps("jumps_added"),
        jumps_removed=rp.jumps("jumps_removed"),
        restore_lines=count,
        commands=commands,
    )
    if rp.changed:
        argv = flavours.restore_argv(obs, params.get("wait"))
        tx = Transaction(run, obs, observed, rp, argv, commands, warnings, timing)
        for tp in rp.tables:
            plan.add(_describe(desired.owner, tp, obs), tx.committer(tp), tx.putter_back(tp))
        result["learned"] = tx.learned
    timing["plan"] = round(time.monotonic() - read + reading - start, 4)
    return plan, result


class RestorePlan(Plan):
    """A Plan whose failure message starts with the object iptables refused, when it is known
    (``nat_rule owner O: TABLE chain C rule 'R': iptables-restore: ...``), instead of with the
    action's description."""

    def _failed(self, action, reason, done):
        exc = Plan._failed(self, action, reason, done)
        message = str(exc)
        prefix = action.description + ": "
        if reason.startswith("nat_rule owner ") and message.startswith(prefix + reason):
            # the outcome (rolled back / not) on the first line, iptables' context lines after it
            first, _nl, rest = reason.partition("\n")
            message = first + message[len(prefix + reason):] + ("\n" + rest if rest else "")
            exc = PlanFailed(message, exc.failed, exc.done, exc.rolled_back, exc.not_undone,
                             exc.undo_errors)
        return exc


class _Warnings(list):
    """A list that also forwards each warning (to AnsibleModule.warn)."""

    def __init__(self, warn):
        super(_Warnings, self).__init__()
        self._warn = warn

    def append(self, text):
        super(_Warnings, self).append(text)
        if self._warn is not None:
            self._warn(text)


def _describe(owner, t, obs):
    bits = []
    for label, n in (("created", len(t.created)), ("updated", len(t.updated)), ("deleted", len(t.deleted)),
                     ("jumps added", len(t.jumps_added)), ("jumps removed", len(t.jumps_removed))):
        if n:
            bits.append("%d %s" % (n, label))
    return "nat_rule owner %s: iptables-%s-restore --noflush table %s (%s)" % (
        owner, obs.flavour, t.name, ", ".join(bits) or "ownership registry")
