# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired chains and jumps + the observed tables -> one iptables-restore --noflush text.

Plain data in, plain data out; nothing here runs a command. The shape follows kube-proxy's
sync (pkg/proxy/iptables/proxier.go): per table, ``:CHAIN - [0:0]`` for every chain that is
created or rewritten (the line flushes it), its ``-A`` rules, ``-D``/``-I`` for jumps in chains
we do not own, then ``-X`` for owned chains no longer wanted, then ``COMMIT``. Chains whose
rules did not change are not written at all (kube-proxy's partial sync).

Ownership rules enforced here (see :mod:`.names` for how ownership is recorded):

- a declared chain that exists but is not in this owner's registry is an error (Docker's,
  kube-proxy's, another owner's, the user's own);
- built-in chains and foreign chains are only ever touched through owned jumps, which are
  matched and removed by their ``podnet.fabric:<owner>`` comment and nothing else;
- purge deletes only chains in this owner's registry and jumps with this owner's comment.
"""
from __future__ import annotations

import re

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import names
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.canon import STANDARD_VERDICTS, canonicalise
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import RuleError, render, tokenize


class ChainSpec(object):
    __slots__ = ("table", "name", "rules", "where", "rule_where")

    def __init__(self, table, name, rules=(), where="", rule_where=None):
        self.table = table
        self.name = name
        self.rules = list(rules)
        self.where = where or "chain %s" % name
        self.rule_where = rule_where   # optional: where each rule came from (ruleset line numbers)

    def where_rule(self, idx):
        if self.rule_where:
            # ruleset text: line numbers
            return "ruleset line %d (%s %s, rule %d)" % (self.rule_where[idx], self.table, self.name, idx + 1)
        return "%s, rule %d" % (self.where, idx + 1)


class JumpSpec(object):
    __slots__ = ("table", "chain", "rule", "position", "where")

    def __init__(self, table, chain, rule, position="first", where=""):
        self.table = table
        self.chain = chain
        self.rule = rule
        self.position = position
        self.where = where or "jump in %s" % chain


class Desired(object):
    """What one task asks for. ``state`` present|absent; absent with no chains/jumps = everything."""

    def __init__(self, owner, chains=(), jumps=(), state="present", purge=False):
        self.owner = owner
        self.chains = list(chains)
        self.jumps = list(jumps)
        self.state = state
        self.purge = purge

    @property
    def absent_all(self):
        return self.state == "absent" and not self.chains and not self.jumps

    def tables(self):
        return set(c.table for c in self.chains) | set(j.table for j in self.jumps)


class Line(object):
    """One line of the restore text and where it came from (for error messages)."""
    __slots__ = ("text", "table", "chain", "where", "rule")

    def __init__(self, text, table, chain=None, where=None, rule=None):
        self.text = text
        self.table = table
        self.chain = chain
        self.where = where
        self.rule = rule


class TablePlan(object):
    def __init__(self, name):
        self.name = name
        self.created = []
        self.updated = []
        self.deleted = []
        self.unchanged = 0
        self.jumps_added = []        # (chain, rule text as printed)
        self.jumps_removed = []      # (chain, rule text as printed)
        self.registry_changed = False
        self.owner = None
        self.notes = []              # things the user should hear about (warnings)
        self.pre = []                # ":CHAIN" lines: created, rewritten, deleted chains
        self.bodies = []             # ChainSpec of created and rewritten chains, their -A lines follow
        self.jump_lines = []         # -D / -I / -A of owned jumps
        self.post = []               # -X lines
        self.canon = {}              # chain -> _Canonical (rewritten chains; created ones once settled)
        self.pending = {}            # created chains not canonicalised yet -> ChainSpec
        self.diff_source = None      # what _table_diff() needs (computed only when asked)
        self.verify = {}             # chain -> (declared rules, predicted lines): uncertain spellings
        self.registry = None
        self.registry_exists = False
        self.registry_entries = {}   # the registry as written by this plan (chain -> fp; None: pending)
        self.registry_old_rules = []

    def settle(self, name):
        """Canonicalise a created chain: its fingerprint, and whether iptables' spelling is certain."""
        spec = self.pending.pop(name, None)
        if spec is None:
            return
        c = self.canon[name] = _Canonical(spec)
        predicted = c.predicted()
        self.registry_entries[name] = names.fingerprint(spec.rules, predicted)
        if not c.certain:
            self.verify[name] = (list(spec.rules), predicted)

    def registry_lines(self, placeholder=False):
        """-D/-A (or :REG and -A) lines that turn the old registry into the new one."""
        entries = self.registry_entries
        if any(v is None for v in entries.values()):
            if not placeholder:
                for name in list(self.pending):
                    self.settle(name)
            entries = dict((k, v if v is not None else "?" * 10) for k, v in self.registry_entries.items())
        if not entries:
            return []
        where = "ownership registry of %s in %s" % (self.owner, self.name)
        new_rules = names.encode_registry(self.owner, entries)
        old = set(self.registry_old_rules) if self.registry_exists else set()
        new_set = set(new_rules)
        out = [Line("-D %s %s" % (self.registry, r), self.name, self.registry, where, r)
               for r in self.registry_old_rules if r not in new_set] if self.registry_exists else []
        out += [Line("-A %s %s" % (self.registry, r), self.name, self.registry, where, r)
                for r in new_rules if r not in old]
        return out

    def iter_lines(self, settle=True):
        """This table's lines of the transaction, "*table" to "COMMIT".

        With ``settle``, created chains are canonicalised on the way (their fingerprints are
        needed for the registry lines); without, the registry lines carry placeholders (counting).
        """
        yield Line("*%s" % self.name, self.name)
        yield from self.pre
        for spec in self.bodies:
            name = spec.name
            for idx, rule in enumerate(spec.rules):
                yield Line("-A %s %s" % (name, rule), self.name, name, spec.where_rule(idx), rule)
            if settle:
                self.settle(name)
        yield from self.jump_lines
        yield from self.registry_lines(placeholder=not settle)
        yield from self.post
        yield Line("COMMIT", self.name, where="COMMIT of table %s" % self.name)

    @property
    def changed(self):
        return bool(self.created or self.updated or self.deleted or self.jumps_added or self.jumps_removed
                    or self.registry_changed)


class RulesetPlan(object):
    def __init__(self, owner):
        self.owner = owner
        self.tables = []             # TablePlan with changes, in TABLE_ORDER
        self.notes = []

    @property
    def changed(self):
        return any(t.changed for t in self.tables)

    def settle_all(self):
        """Canonicalise every created chain now (check mode: surface input errors)."""
        for t in self.tables:
            for name in list(t.pending):
                t.settle(name)

    def iter_lines(self, settle=True):
        for t in self.tables:
            yield from t.iter_lines(settle)

    def restore_lines(self):
        """[Line] of the whole transaction (line i of the text is element i-1)."""
        return list(self.iter_lines(settle=True))

    def count_lines(self):
        """How many lines the transaction has, without canonicalising anything."""
        return sum(1 for line in self.iter_lines(settle=False))

    def restore_text(self):
        return "".join(line.text + "\n" for line in self.restore_lines())

    def names(self, attr):
        return ["%s/%s" % (t.name, c) for t in self.tables for c in getattr(t, attr)]

    def jumps(self, attr):
        return ["%s/%s: %s" % (t.name, chain, rule) for t in self.tables for chain, rule in getattr(t, attr)]

    def diff(self):
        """(before, after): the owned chains and jumps that change, as iptables-save text."""
        before = []
        after = []
        for t in self.tables:
            b, a = _table_diff(t) if t.diff_source else ([], [])
            if b or a:
                before += ["*%s" % t.name] + b
                after += ["*%s" % t.name] + a
        return ("\n".join(before) + "\n" if before else ""), ("\n".join(after) + "\n" if after else "")

    def diff_by_table(self):
        """({table: text}, {table: text}): :meth:`diff` keyed by table, for the runner's diff."""
        before, after = {}, {}
        for t in self.tables:
            b, a = _table_diff(t) if t.diff_source else ([], [])
            if b or a:
                before[t.name] = "".join(line + "\n" for line in b)
                after[t.name] = "".join(line + "\n" for line in a)
        return before, after


_JUMP_RE = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")


def _target_among(rule, targets):
    """The rule's jump target when it is one of ``targets`` (else None). A few targets (one
    changed service deletes one chain) are first looked for as plain substrings: most rules
    contain none of them and need no parsing."""
    if len(targets) <= 8 and not any(t in rule for t in targets):
        return None
    target = rule_target(rule)
    return target if target in targets else None


def rule_target(rule):
    """The chain/target a rule as printed by iptables-save jumps to (None without -j/-g)."""
    if '"' in rule:
        parts = rule.split('"')
        if "\\" not in rule and len(parts) & 1:
            # the fast way for the usual '-m comment --comment "..." ... -j X': search the text
            # outside the quotes (joined with NUL, so a target touching a quote is not trusted)
            m = _JUMP_RE.search("\0".join(parts[0::2]))
            if m and "\0" not in m.group(1):
                return m.group(1)
        tokens = tokenize(rule)
        for i in range(len(tokens) - 1):
            if tokens[i] in ("-j", "-g"):
                return tokens[i + 1]
        return None
    m = _JUMP_RE.search(rule)
    return m.group(1) if m else None


class _Canonical(object):
    """Declared rules of one chain, canonicalised once."""

    def __init__(self, spec):
        self.spec = spec
        self._predicted = None
        self.tokens = []             # flat list of token tuples (expanded)
        self.jumps = []              # (kind, target, rule index)
        self.certain = True
        for idx, rule in enumerate(spec.rules):
            try:
                c = canonicalise(rule)
            except RuleError as exc:
                raise FabricError("%s: %s" % (spec.where_rule(idx), exc))
            self.tokens.extend(c.rules)
            if c.jump:
                self.jumps.append((c.jump[0], c.jump[1], idx))
            if not c.certain:
                self.certain = False

    def predicted(self):
        if self._predicted is None:
            self._predicted = [render(t) for t in self.tokens]
        return self._predicted


def plan_ruleset(desired, observed, target_exists=None):
    """Plan one transaction. ``observed`` maps table name -> parse.Table (missing: empty).

    ``target_exists(name)`` says whether an iptables target extension of that name is
    installed (None: assume yes). Raises FabricError for anything the module refuses to do.
    """
    owner = desired.owner
    registry = names.registry_chain(owner)
    rp = RulesetPlan(owner)
    tables = set(desired.tables())
    if desired.purge or desired.absent_all:
        # wherever this owner holds anything
        marker = names.jump_marker_text(owner)
        for name, table in observed.items():
            if registry in table.chains or any(marker in r for c in table.chains.values() for r in c.rules):
                tables.add(name)
    for tname in names.TABLE_ORDER:
        if tname not in tables:
            continue
        tp = _plan_table(tname, desired, observed.get(tname), registry, target_exists)
        rp.notes += tp.notes
        if tp.changed:
            rp.tables.append(tp)
    return rp


def _plan_table(tname, desired, table, registry, target_exists):
    owner = desired.owner
    tp = TablePlan(tname)
    chains = table.chains if table is not None else {}
    builtins = names.BUILTIN_CHAINS[tname]
    marker = names.jump_marker_text(owner)

    # --- who owns what --------------------------------------------------------------------
    ours = {}
    if registry in chains:
        reg_owner, ours = names.decode_registry(chains[registry].rules, registry)
        if reg_owner not in (None, owner):
            raise FabricError("ownership registry %s in table %s belongs to owner %s, not %s (hash collision?)"
                              % (registry, tname, reg_owner, owner))
        tp.registry_old_rules = list(chains[registry].rules)
    claims = {}
    for cname, chain in chains.items():
        if cname != registry and names.is_registry_chain(cname):
            try:
                other, entries = names.decode_registry(chain.rules, cname)
            except FabricError:
                continue
            for n in entries:
                claims[n] = other

    specs = [c for c in desired.chains if c.table == tname]
    jspecs = [j for j in desired.jumps if j.table == tname]
    # A registry chain with no rules was flushed by someone else (the module deletes a registry
    # it empties): the record is gone, so empty chains this task declares are taken back.
    flushed = registry in chains and not chains[registry].rules
    declared = {}
    adopted = []
    for spec in specs:
        if spec.name in declared:
            raise FabricError("%s: chain %s is declared twice in table %s" % (spec.where, spec.name, tname))
        declared[spec.name] = spec
        if (flushed and desired.state == "present" and spec.name in chains and spec.name not in ours
                and not chains[spec.name].rules and spec.name not in claims and spec.name not in builtins):
            adopted.append(spec.name)
            ours[spec.name] = None
        _check_declarable(spec, tname, chains, ours, claims, builtins, owner)
    if adopted:
        tp.notes.append("table %s: the ownership registry %s had been flushed (iptables -F?); took back %d empty "
                        "declared chain(s): %s" % (tname, registry, len(adopted), ", ".join(sorted(adopted)[:10])))

    # --- chains to delete -----------------------------------------------------------------
    if desired.state == "absent":
        doomed = list(ours) if desired.absent_all else [s.name for s in specs]
        declared_present = {}
    else:
        doomed = [n for n in ours if n not in declared] if desired.purge else []
        declared_present = declared
    deleting = [n for n in doomed if n in chains]
    deleting_set = set(deleting)

    # --- declared chains: unchanged / updated / created ----------------------------------
    new_entries = dict(ours)
    for n in doomed:
        new_entries.pop(n, None)
    canon = tp.canon
    created_targets = []
    for name, spec in declared_present.items():
        current = chains.get(name)
        if current is not None and ours.get(name) == names.fingerprint(spec.rules, current.rules):
            tp.unchanged += 1
            continue
        if current is None:
            # canonicalised only when the transaction is written (not needed to decide anything)
            tp.created.append(name)
            tp.pending[name] = spec
            new_entries[name] = None
            created_targets += _quick_check(spec)
            continue
        c = canon[name] = _Canonical(spec)
        if [tuple(tokenize(r)) for r in current.rules] == c.tokens:
            tp.unchanged += 1
            # a stale fingerprint: refreshed only if this run writes to the table anyway
            new_entries[name] = names.fingerprint(spec.rules, current.rules)
            del canon[name]
            continue
        else:
            tp.updated.append(name)
        predicted = c.predicted()
        new_entries[name] = names.fingerprint(spec.rules, predicted)
        if not c.certain:
            tp.verify[name] = (list(spec.rules), predicted)

    # --- references: every jump must land on a chain or a target --------------------------
    existing = set(chains) - deleting_set
    known = set(declared_present) | existing

    def check_target(kind, target, where):
        if target in known:
            return
        if target in deleting_set:
            raise FabricError("%s jumps to %s, which this run deletes from table %s (it is no longer declared)"
                              % (where, target, tname))
        if kind == "g":
            raise FabricError("%s: -g %s: goto needs a chain, and %s is neither declared nor in table %s"
                              % (where, target, target, tname))
        if target in STANDARD_VERDICTS or (target_exists is not None and target_exists(target)) or target_exists is None:
            return
        raise FabricError("%s jumps to %s, which is neither a chain declared by this task, an existing chain of "
                          "table %s, nor an iptables target" % (where, target, tname))

    for name, c in canon.items():
        for kind, target, idx in c.jumps:
            check_target(kind, target, c.spec.where_rule(idx))
    for kind, target, (spec, idx) in created_targets:
        check_target(kind, target, spec.where_rule(idx))
    if deleting:
        for name, spec in declared_present.items():
            if name in canon or name not in chains:
                continue
            for idx, rule in enumerate(chains[name].rules):
                target = _target_among(rule, deleting_set)
                if target is not None:
                    check_target("j", target, spec.where_rule(idx))

    # --- jumps from chains we do not own ---------------------------------------------------
    owned_jumps = {}   # chain -> [(index, raw rule, tokens)]
    for cname, chain in chains.items():
        if cname in ours or cname in declared or names.is_registry_chain(cname):
            continue
        for idx, rule in enumerate(chain.rules):
            if marker in rule:
                owned_jumps.setdefault(cname, []).append((idx, rule, tuple(tokenize(rule))))
    wanted_jumps = []  # (spec, [token tuples])
    seen = set()
    for j in jspecs:
        if desired.state == "absent" and j.chain not in chains:
            continue
        _check_jump_source(j, tname, chains, ours, declared, builtins, claims, owner)
        if "podnet.fabric:" in j.rule:
            raise FabricError("%s: comments starting with podnet.fabric: are reserved for ownership markers" % j.where)
        try:
            c = canonicalise('-m comment --comment "%s" %s' % (names.owner_comment(owner), j.rule))
        except RuleError as exc:
            raise FabricError("%s: %s" % (j.where, exc))
        key = (j.chain, c.rules)
        if key in seen:
            raise FabricError("%s: the same jump is declared twice in %s" % (j.where, j.chain))
        seen.add(key)
        if desired.state == "present" and c.jump:
            check_target(c.jump[0], c.jump[1], j.where)
        wanted_jumps.append((j, c))
    remove = []        # (chain, raw)
    jump_where = {}    # (chain, text) -> the task item it comes from
    add_first = {}     # chain -> [text]
    add_last = {}
    matched = set()    # (chain, index) of observed owned jumps that stay
    if desired.state == "present":
        for j, c in wanted_jumps:
            for tokens in c.rules:
                hit = None
                for idx, raw, otoks in owned_jumps.get(j.chain, ()):
                    if (j.chain, idx) not in matched and otoks == tokens:
                        hit = idx
                        break
                if hit is not None:
                    matched.add((j.chain, hit))
                else:
                    text = render(tokens)
                    (add_first if j.position == "first" else add_last).setdefault(j.chain, []).append(text)
                    jump_where[(j.chain, text)] = j.where
        for cname, items in owned_jumps.items():
            for idx, raw, otoks in items:
                if (cname, idx) in matched:
                    continue
                duplicate = any(otoks == o for i2, r2, o in items if (cname, i2) in matched)
                if duplicate or desired.purge:
                    remove.append((cname, raw))
    else:
        wanted = set((j.chain, t) for j, c in wanted_jumps for t in c.rules)
        for cname, items in owned_jumps.items():
            for idx, raw, otoks in items:
                if desired.absent_all or (cname, otoks) in wanted:
                    remove.append((cname, raw))
    removed_targets = {}
    for cname, raw in remove:
        removed_targets.setdefault(cname, []).append(raw)

    # --- nothing that stays may still jump into a chain we delete -------------------------
    if deleting:
        rewritten = set(canon) | set(tp.created) | deleting_set
        for cname, chain in chains.items():
            if cname in rewritten or names.is_registry_chain(cname):
                continue
            gone = set(removed_targets.get(cname, ()))
            for rule in chain.rules:
                if rule in gone:
                    continue
                target = _target_among(rule, deleting_set)
                if target is not None:
                    if cname in declared_present or cname in ours:
                        raise FabricError("chain %s (owned by %s) cannot be deleted from table %s: owned chain %s still "
                                          "jumps to it (-A %s %s)" % (target, owner, tname, cname, cname, rule))
                    raise FabricError("chain %s (owned by %s) cannot be deleted from table %s: a rule podnet.fabric does "
                                      "not own still jumps to it: -A %s %s" % (target, owner, tname, cname, rule))

    tp.deleted = deleting
    for cname, raw in remove:
        tp.jumps_removed.append((cname, raw))
    for cname, texts in add_first.items():
        for text in texts:
            tp.jumps_added.append((cname, text))
    for cname, texts in add_last.items():
        for text in texts:
            tp.jumps_added.append((cname, text))

    if not tp.changed and set(new_entries) == set(ours):
        return tp
    # something is written to this table (if only the registry, because a recorded chain
    # vanished): stale fingerprints are refreshed on the way
    tp.owner = owner
    _emit(tp, tname, chains, declared_present, canon, deleting, add_first, add_last, remove,
          registry, owner, new_entries, jump_where)
    return tp


_TARGET_RE = re.compile(r'(?:^|\s)(-j|--jump|-g|--goto)(?:\s+|=)"?([^\s"]+)')
_FORBIDDEN_TOKENS = frozenset(["-" + k for k in "ACDIRLSFZNXPEtcwWh"] + [
    "--append", "--check", "--delete", "--insert", "--replace", "--list", "--list-rules", "--flush", "--zero",
    "--new-chain", "--delete-chain", "--policy", "--rename-chain", "--table", "--set-counters"])
_MAYBE_FORBIDDEN_RE = re.compile(r"(?:^|\s)(-[ACDIRLSFZNXPEtcwWh]|--(?:append|check|delete|insert|replace|list|flush|zero|"
                                 r"new|policy|rename|table|set-counters))")


def _plainly_quoted(rule):
    """True when the quotes in ``rule`` cannot hide a command token: no backslash, balanced,
    every quoted part a token of its own (blank or the end on both sides, so nothing is glued
    to it) and none of them a command (the text outside is searched by the caller)."""
    if "\\" in rule:
        return False
    parts = rule.split('"')
    last = len(parts) - 1
    if last % 2:              # an odd number of quotes
        return False
    for i in range(1, last, 2):
        before, after = parts[i - 1], parts[i + 1]
        if (before and not before[-1].isspace()) or (after and not after[0].isspace()):
            return False
        if parts[i] in _FORBIDDEN_TOKENS:
            return False
    return True


def _quick_check(spec):
    """Checks for a created chain's rules before anything is sent: [(kind, target, where)].

    The full canonicalisation follows when the transaction is written; this catches what must
    never reach iptables-restore (a second command hidden in a rule) and finds the jumps.
    """
    targets = []
    for idx, rule in enumerate(spec.rules):
        if ('"' in rule and not _plainly_quoted(rule)) or _MAYBE_FORBIDDEN_RE.search(rule):
            where = spec.where_rule(idx)
            try:
                tokens = tokenize(rule)
            except RuleError as exc:
                raise FabricError("%s: %s" % (where, exc))
            bad = _FORBIDDEN_TOKENS.intersection(tokens)
            if bad:
                raise FabricError("%s: rule %r: %s is not allowed in a rule (the module writes the -A/-I/-D/-N/-X "
                                  "commands itself)" % (where, rule, sorted(bad)[0]))
        for m in _TARGET_RE.finditer(rule):
            targets.append(("g" if m.group(1) in ("-g", "--goto") else "j", m.group(2), (spec, idx)))
    return targets


def _check_declarable(spec, tname, chains, ours, claims, builtins, owner):
    name = spec.name
    names.check_chain_name(name, "%s: chain" % spec.where)
    if name in builtins:
        raise FabricError("%s: %s is a built-in chain of table %s; hook into it with jumps instead" % (spec.where, name, tname))
    if names.is_registry_chain(name):
        raise FabricError("%s: chain names starting with %s are reserved for ownership registries"
                          % (spec.where, names.REGISTRY_PREFIX))
    if name in chains and name not in ours:
        if name in claims:
            raise FabricError("%s: chain %s in table %s is owned by podnet.fabric owner %s, not %s"
                              % (spec.where, name, tname, claims[name], owner))
        raise FabricError("%s: chain %s already exists in table %s and was not created by podnet.fabric owner %s "
                          "(Docker's, kube-proxy's or someone's own?); refusing to take it over"
                          % (spec.where, name, tname, owner))
    if name not in chains and name in claims:
        raise FabricError("%s: chain %s is recorded as owned by podnet.fabric owner %s in table %s; remove it from "
                          "that owner first" % (spec.where, name, claims[name], tname))
    for idx, rule in enumerate(spec.rules):
        if not isinstance(rule, str) or _BAD_RULE_RE.search(rule):
            _check_rule_text(rule, spec.where_rule(idx))


_BAD_RULE_RE = re.compile(r"[\n\r\0]|podnet\.fabric:|^\s*$")


def _check_rule_text(rule, where):
    if not isinstance(rule, str) or _BAD_RULE_RE.search(rule):
        if not isinstance(rule, str) or not rule.strip():
            raise FabricError("%s: a rule must be a non-empty string" % where)
        if "podnet.fabric:" in rule:
            raise FabricError("%s: comments starting with podnet.fabric: are reserved for ownership markers" % where)
        raise FabricError("%s: a rule must be a single line" % where)


def _check_jump_source(j, tname, chains, ours, declared, builtins, claims, owner):
    names.check_chain_name(j.chain, "%s: chain" % j.where)
    _check_rule_text(j.rule, j.where)
    if j.chain in builtins:
        return
    if j.chain in declared or j.chain in ours:
        raise FabricError("%s: %s is a chain this owner manages; put the rule into its rules instead" % (j.where, j.chain))
    if names.is_registry_chain(j.chain):
        raise FabricError("%s: %s is an ownership registry" % (j.where, j.chain))
    if j.chain in claims:
        raise FabricError("%s: chain %s is owned by podnet.fabric owner %s, which rewrites it as a whole; declare the "
                          "rule there, not as a jump of owner %s" % (j.where, j.chain, claims[j.chain], owner))
    if j.chain not in chains:
        raise FabricError("%s: chain %s does not exist in table %s (jumps hook into built-in chains %s or into "
                          "existing chains podnet.fabric does not own)" % (j.where, j.chain, tname, ", ".join(builtins)))


def _emit(tp, tname, chains, declared, canon, deleting, add_first, add_last, remove, registry, owner, new_entries,
          jump_where):
    """Lay out the table's part of the transaction; registry lines come last (see TablePlan)."""
    for name in tp.created + tp.updated:
        tp.pre.append(Line(":%s - [0:0]" % name, tname, name, declared[name].where))
        tp.bodies.append(declared[name])
    for name in deleting:
        tp.pre.append(Line(":%s - [0:0]" % name, tname, name, "deletion of %s %s" % (tname, name)))
    tp.registry = registry
    tp.registry_exists = registry in chains
    tp.registry_entries = new_entries
    if tp.registry_exists != bool(new_entries):
        # created (it will get rules) or emptied (flushed here, deleted at the end)
        tp.pre.append(Line(":%s - [0:0]" % registry, tname, registry, "ownership registry of %s in %s" % (owner, tname)))
    for cname, raw in remove:
        tp.jump_lines.append(Line("-D %s %s" % (cname, raw), tname, cname,
                                  "removal of an owned jump from %s %s" % (tname, cname), raw))
    for cname, texts in add_first.items():
        for text in reversed(texts):
            tp.jump_lines.append(Line("-I %s 1 %s" % (cname, text), tname, cname,
                                      jump_where.get((cname, text), "jump in %s %s" % (tname, cname)), text))
    for cname, texts in add_last.items():
        for text in texts:
            tp.jump_lines.append(Line("-A %s %s" % (cname, text), tname, cname,
                                      jump_where.get((cname, text), "jump in %s %s" % (tname, cname)), text))
    for name in deleting:
        tp.post.append(Line("-X %s" % name, tname, name, "deletion of %s %s" % (tname, name)))
    if tp.registry_exists and not new_entries:
        tp.post.append(Line("-X %s" % registry, tname, registry, "ownership registry of %s in %s" % (owner, tname)))
    tp.registry_changed = bool(tp.registry_lines(placeholder=True)) or tp.registry_exists != bool(new_entries)
    tp.diff_source = (chains, canon, list(deleting), list(remove), add_first, add_last, names.jump_marker_text(owner))


def _table_diff(tp):
    """Rule-level before/after of what this owner changes in one table, iptables-save spelling."""
    chains, canon, deleting, remove, add_first, add_last, marker = tp.diff_source
    for name in list(tp.pending):
        tp.settle(name)
    before, after = [], []
    for name in sorted(set(tp.created) | set(tp.updated) | set(deleting)):
        if name in chains:
            before.append(":%s - [0:0]" % name)
            before += ["-A %s %s" % (name, r) for r in chains[name].rules]
        if name in canon:
            after.append(":%s - [0:0]" % name)
            after += ["-A %s %s" % (name, r) for r in canon[name].predicted()]
    removed = {}
    for cname, raw in remove:
        removed.setdefault(cname, []).append(raw)
    for cname in sorted(set(removed) | set(add_first) | set(add_last)):
        old = [r for r in chains[cname].rules if marker in r] if cname in chains else []
        before += ["-A %s %s" % (cname, r) for r in old]
        keep = list(old)
        for raw in removed.get(cname, ()):
            keep.remove(raw)
        new = add_first.get(cname, []) + keep + add_last.get(cname, [])
        after += ["-A %s %s" % (cname, r) for r in new]
    return before, after
