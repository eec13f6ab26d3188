# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the planned transaction, and make a failure leave the tables as they were.

iptables-restore commits table by table (both flavours call commit at each ``COMMIT`` line),
and the kernel applies each table atomically. So the plan has one action per table, and each
action's undo is real: :class:`Transaction` reads the tables again and writes back, for the
owned chains, owned jumps and registry of that table, exactly what iptables-save printed before.
When table 2 is rejected, the plan undoes table 1 that way; a put-back that fails is raised and
reported by the plan (``undo_errors``), never swallowed. Nothing outside what the owner owns is
touched while doing so.

Failures are explained the way kube-proxy logs them: iptables' own message, the offending line
with three lines of context, and which task item it came from. Legacy iptables names only the
``COMMIT`` line when the kernel refuses a table; then the transaction is replayed, cut short,
in a private network namespace (unshare(2) in a child process, gone when it exits) to find
the first rule the kernel refuses.
"""
from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import time

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import names
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import parse_save

CLONE_NEWNET = 0x40000000
CONTEXT = 3
_LINE_RES = (re.compile(r"Error occurred at line: (\d+)"), re.compile(r"\bline (\d+): "),
             re.compile(r"\bline (\d+) failed"))


class Transaction(object):
    """Applies one RulesetPlan, one table per plan action (iptables commits table by table).

    ``committer(tp)`` is the action that writes table ``tp``; ``putter_back(tp)`` its undo: it
    reads the tables again and restores, for the owned chains, owned jumps and registry of that
    table, exactly the text iptables-save printed before the run (so the undo is real, and a
    failed put-back raises, which the plan reports). ``run(argv, input_text=None)`` runs in the
    target netns; ``timing['restore']`` accumulates the seconds spent in iptables-restore.
    """

    def __init__(self, run, obs, observed, rp, restore_argv, commands, warnings, timing=None):
        self.run = run
        self.obs = obs
        self.observed = observed
        self.rp = rp
        self.restore_argv = restore_argv
        self.commands = commands
        self.warnings = warnings
        self.timing = {} if timing is None else timing
        self.learned = []
        self._lines = {}

    def committer(self, tp):
        return lambda: self.commit(tp)

    def putter_back(self, tp):
        return lambda: self.put_back(tp)

    def _restore(self, text, note=""):
        start = time.monotonic()
        rc, out, err = self.run(self.restore_argv, input_text=text)
        self.timing["restore"] = round(self.timing.get("restore", 0.0) + time.monotonic() - start, 4)
        self.commands.append(" ".join(self.restore_argv) + note)
        return rc, out, err

    def commit(self, tp):
        # created chains are canonicalised here, for every table before the first one is written
        # (their fingerprints go into the registry lines): a rule refused at this point stops the
        # run before iptables-restore starts
        self.rp.settle_all()
        lines = list(tp.iter_lines(settle=True))
        text = "".join(line.text + "\n" for line in lines)
        rc, out, err = self._restore(text)
        if rc == 0:
            if tp.verify:
                self._verify_spellings(tp)
            return
        stderr = err or out
        located = self._locate(stderr, lines)
        if located and located[0] is not None:
            index = located[0]
        else:
            number = _line_number(stderr)
            index = number - 1 if number else None
        message = "%s: %s" % (self._name(tp, lines, index), explain(stderr, lines, rc))
        if located:
            message += "\n" + located[1]
        try:
            # iptables commits a table atomically: a refused table should be as it was; check it
            if self.put_back(tp):
                message += "\nTable %s was partly written and has been put back as it was." % tp.name
        except FabricError as exc:
            message += "\nTable %s: %s" % (tp.name, exc)
        raise FabricError(message)

    def _name(self, tp, lines, index):
        """``nat_rule owner O: TABLE chain C rule 'R'``: the object iptables refused."""
        head = "nat_rule owner %s: %s" % (self.rp.owner, tp.name)
        if isinstance(index, int) and 0 <= index < len(lines):
            line = lines[index]
            if line.chain:
                head += " chain %s" % line.chain
            if line.rule is not None:
                head += " rule %r" % line.rule
        return head

    # --- undo ---------------------------------------------------------------------------------

    def _save(self):
        rc, out, err = self.run([self.obs.save_cmd])
        self.commands.append(self.obs.save_cmd)
        if rc != 0:
            raise FabricError("%s failed: %s" % (self.obs.save_cmd, (err or out).strip()))
        return parse_save(out)

    def put_back(self, tp):
        """Restore table ``tp``'s owned objects as they were; True when something was written.
        Raises FabricError when that is not possible or not complete."""
        now = self._save()
        lines = rollback_lines(self.rp, self.observed, now, tables=[tp])
        if not lines:
            return False
        text = "".join(line + "\n" for line in lines)
        rc, out, err = self._restore(text, " (put back %s)" % tp.name)
        if rc != 0:
            raise FabricError("putting back table %s FAILED: %s\nput-back transaction:\n%s"
                              % (tp.name, (err or out).strip(), text))
        if rollback_lines(self.rp, self.observed, self._save(), tables=[tp]):
            raise FabricError("putting back table %s did not restore it completely" % tp.name)
        return True

    def _locate(self, stderr, lines):
        """Legacy iptables only names COMMIT when the kernel refuses a table: find the rule."""
        number = _line_number(stderr)
        if number is None or not 1 <= number <= len(lines) or lines[number - 1].text != "COMMIT":
            return None
        table = lines[number - 1].table
        quoted = re.findall(r"'([^']+)'", stderr)
        for name in quoted:
            for i, line in enumerate(lines):
                if line.table == table and re.search(r"\s-[jg]\s+%s(\s|$)" % re.escape(name), line.text):
                    return i, "The rule naming %s:\n%s" % (name, context(lines, i + 1))
        if self.obs.flavour != "legacy":
            return None
        try:
            index = locate_rejected_rule(self.obs.restore_cmd, self.observed.get(table), lines, table)
        except Exception as exc:  # best effort: the original error is what counts
            return None, "(could not replay the transaction to find the rule: %s)" % exc
        if index is None:
            return None
        return index, ("The kernel refuses line %d (%s), found by replaying the transaction in a private namespace:\n%s"
                       % (index + 1, lines[index].where or lines[index].table, context(lines, index + 1)))

    # --- after success: rules we could not canonicalise with certainty ------------------------

    def _verify_spellings(self, tp):
        try:
            now = self._save()
        except FabricError as exc:
            self.warnings.append("could not read the rules back to check their spelling: %s" % exc)
            return
        fix = []
        table = now.get(tp.name)
        entries = dict(tp.registry_entries)
        for chain, (declared, predicted) in sorted(tp.verify.items()):
            printed = table.chains[chain].rules if table is not None and chain in table.chains else None
            if printed is None or printed == predicted:
                continue
            for i, (want, got) in enumerate(zip(predicted, printed)):
                if want != got:
                    self.warnings.append(
                        "table %s chain %s rule %d: iptables prints it back as %r (the module expected %r); "
                        "recorded what the kernel printed, so unchanged rules will not be rewritten again"
                        % (tp.name, chain, i + 1, got, want))
                    break
            entries[chain] = names.fingerprint(declared, printed)
            self.learned.append("%s/%s" % (tp.name, chain))
        if entries != tp.registry_entries:
            registry = names.registry_chain(self.rp.owner)
            old = set(names.encode_registry(self.rp.owner, tp.registry_entries))
            new = names.encode_registry(self.rp.owner, entries)
            fix.append("*%s" % tp.name)
            fix += ["-D %s %s" % (registry, r) for r in sorted(old - set(new))]
            fix += ["-A %s %s" % (registry, r) for r in new if r not in old]
            fix.append("COMMIT")
        if fix:
            rc, out, err = self._restore("".join(line + "\n" for line in fix), " (fingerprints)")
            if rc != 0:
                self.warnings.append("could not record the kernel's spelling: %s" % (err or out).strip())


def _line_number(stderr):
    for regex in _LINE_RES:
        m = regex.search(stderr)
        if m:
            return int(m.group(1))
    return None


def context(lines, number, around=CONTEXT):
    """The transaction around line ``number`` (1-based), the line itself marked with '>>'."""
    lo = max(1, number - around)
    hi = min(len(lines), number + around)
    out = []
    for n in range(lo, hi + 1):
        out.append("%s %5d: %s" % (">>" if n == number else "  ", n, lines[n - 1].text))
    return "\n".join(out)


def explain(stderr, lines, rc=None):
    """iptables' message + the offending line in context + the task item it came from."""
    msg = [l.strip() for l in stderr.splitlines() if l.strip() and not l.startswith("Try `")]
    head = "iptables-restore failed%s: %s" % (" (exit %d)" % rc if rc is not None else "", " ".join(msg) or "no message")
    number = _line_number(stderr)
    if number is None or not 1 <= number <= len(lines):
        return head
    line = lines[number - 1]
    where = " (%s)" % line.where if line.where else ""
    return "%s\nat line %d%s:\n%s" % (head, number, where, context(lines, number))


# --- rollback -------------------------------------------------------------------------------------

def rollback_lines(rp, before, now, tables=None):
    """Restore lines that put back, in ``now``, what ``before`` had for everything ``rp`` touched
    (in ``tables``, default: all of the plan's TablePlans)."""
    out = []
    registry = names.registry_chain(rp.owner)
    marker = names.jump_marker_text(rp.owner)
    for tp in rp.tables if tables is None else tables:
        b = before.get(tp.name)
        n = now.get(tp.name)
        bchains = b.chains if b is not None else {}
        nchains = n.chains if n is not None else {}
        scope = set(tp.created) | set(tp.updated) | set(tp.deleted) | {registry}
        heads, rules, moves, drops = [], [], [], []
        for chain in sorted(scope):
            old = bchains.get(chain)
            new = nchains.get(chain)
            if old is None and new is None:
                continue
            if old is not None and new is not None and old.rules == new.rules:
                continue
            heads.append(":%s - [0:0]" % chain)
            if old is not None:
                rules += ["-A %s %s" % (chain, r) for r in old.rules]
            else:
                drops.append("-X %s" % chain)
        jump_chains = set(c for c, rule in tp.jumps_added) | set(c for c, rule in tp.jumps_removed)
        for chain in sorted(jump_chains):
            old = [(i, r) for i, r in enumerate(bchains[chain].rules) if marker in r] if chain in bchains else []
            new = [r for r in (nchains[chain].rules if chain in nchains else []) if marker in r]
            if [r for idx, r in old] == new:
                continue
            for r in new:
                moves.append("-D %s %s" % (chain, r))
            # put the old owned jumps back at their old positions (other rules did not move)
            for i, r in old:
                moves.append("-I %s %d %s" % (chain, i + 1, r))
        if heads or rules or moves or drops:
            out += ["*%s" % tp.name] + heads + rules + moves + drops + ["COMMIT"]
    return out


# --- finding the rule the kernel refused (legacy) ---------------------------------------------

_REPLAY = r"""
import subprocess, sys
restore, base, tx = sys.argv[1:4]
with open(base) as f:
    if subprocess.run([restore], stdin=f, capture_output=True).returncode:
        sys.exit(3)
with open(tx) as f:
    sys.exit(1 if subprocess.run([restore, "--noflush"], stdin=f, capture_output=True).returncode else 0)
"""


def _unshare_net():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare(CLONE_NEWNET): %s" % os.strerror(err))


def _replay(restore_cmd, base_text, tx_text, tmpdir):
    base = os.path.join(tmpdir, "base")
    tx = os.path.join(tmpdir, "tx")
    with open(base, "w") as f:
        f.write(base_text)
    with open(tx, "w") as f:
        f.write(tx_text)
    proc = subprocess.run([sys.executable, "-c", _REPLAY, restore_cmd, base, tx], preexec_fn=_unshare_net,
                          capture_output=True, timeout=120, check=False)
    if proc.returncode == 3:
        raise OSError("the table as it was cannot be replayed")
    return proc.returncode == 0


def locate_rejected_rule(restore_cmd, table, lines, tname, max_steps=20):
    """Index (0-based, into ``lines``) of the first line of table ``tname`` the kernel refuses.

    The table as it was, then this transaction's lines for the table cut after line k, are
    replayed in a fresh private network namespace; a binary search over k finds the first
    prefix that fails. Returns None when it cannot tell.
    """
    import shutil
    import tempfile
    start = next(i for i, l in enumerate(lines) if l.table == tname and l.text == "*%s" % tname)
    end = next(i for i in range(start, len(lines)) if lines[i].text == "COMMIT" and lines[i].table == tname)
    body = lines[start + 1:end]
    if table is not None:
        base = "*%s\n%s\nCOMMIT\n" % (tname, "\n".join(l for l in table.lines[1:] if l != "COMMIT"))
    else:
        base = "*%s\nCOMMIT\n" % tname
    tmpdir = tempfile.mkdtemp(prefix="podnet-nat-rule-")
    try:
        def ok(k):
            tx = "*%s\n%s\nCOMMIT\n" % (tname, "\n".join(l.text for l in body[:k]))
            return _replay(restore_cmd, base, tx, tmpdir)
        if ok(len(body)):
            return None
        lo, hi = 0, len(body)          # ok(lo) is True (nothing applied), ok(hi) is False
        steps = 0
        while hi - lo > 1 and steps < max_steps:
            mid = (lo + hi) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid
            steps += 1
        if hi - lo != 1:
            return None
        return start + 1 + hi - 1
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
