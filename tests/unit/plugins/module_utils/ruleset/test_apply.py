"""Explaining iptables-restore failures (kube-proxy style) and computing rollbacks."""
from __future__ import annotations

from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.apply import context, explain, rollback_lines
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import parse_save
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.planner import Line, RulesetPlan, TablePlan
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import registry_chain

LINES = [Line("*nat", "nat"), Line(":A - [0:0]", "nat", "A", "chains[0] (nat A)")] + [
    Line("-A A -j RETURN%d" % i, "nat", "A", "chains[0] (nat A), rule %d" % (i + 1)) for i in range(8)] + [
    Line("COMMIT", "nat", where="COMMIT of table nat")]


def test_context_marks_the_line_with_three_lines_around():
    text = context(LINES, 6)
    rows = text.splitlines()
    assert len(rows) == 7
    assert rows[3].startswith(">>") and rows[3].endswith("-A A -j RETURN3")
    assert all(r.startswith("  ") for r in rows[:3] + rows[4:])


def test_explain_quotes_iptables_and_names_the_task_item():
    stderr = ("iptables-restore v1.8.9 (legacy): unknown option \"--bogus\"\nError occurred at line: 5\n"
              "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n")
    text = explain(stderr, LINES, 2)
    assert text.startswith('iptables-restore failed (exit 2): iptables-restore v1.8.9 (legacy): unknown option "--bogus"')
    assert "at line 5 (chains[0] (nat A), rule 3)" in text
    assert ">>     5: -A A -j RETURN2" in text
    assert "Try `" not in text


def test_explain_nft_kernel_refusal():
    stderr = "iptables-nft-restore v1.8.9 (nf_tables): \nline 3: RULE_APPEND failed (Invalid argument): rule in chain A\n"
    assert ">>     3: -A A -j RETURN0" in explain(stderr, LINES)


def test_explain_without_line_number():
    assert explain("something odd", LINES) == "iptables-restore failed: something odd"


def test_rollback_puts_back_owned_chains_and_jumps_in_place():
    reg = registry_chain("o")
    before = parse_save("""*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:%(reg)s - [0:0]
-A PREROUTING -j FOREIGN1
-A PREROUTING -m comment --comment "podnet.fabric:o" -j A
-A PREROUTING -j FOREIGN2
-A A -j RETURN
-A %(reg)s -m comment --comment "podnet.fabric:o A=AAAAAAAA"
COMMIT
""" % {"reg": reg})
    now = parse_save("""*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:%(reg)s - [0:0]
-A PREROUTING -m comment --comment "podnet.fabric:o" -j B
-A PREROUTING -j FOREIGN1
-A PREROUTING -j FOREIGN2
-A A -j DROP
-A %(reg)s -m comment --comment "podnet.fabric:o A=BBBBBBBB B=CCCCCCCC"
COMMIT
""" % {"reg": reg})
    rp = RulesetPlan("o")
    tp = TablePlan("nat")
    tp.created, tp.updated = ["B"], ["A"]
    tp.jumps_added = [("PREROUTING", "-j B")]
    tp.jumps_removed = [("PREROUTING", "-j A")]
    rp.tables.append(tp)
    lines = rollback_lines(rp, before, now)
    assert lines == [
        "*nat", ":A - [0:0]", ":B - [0:0]", ":%s - [0:0]" % reg,
        "-A A -j RETURN", '-A %s -m comment --comment "podnet.fabric:o A=AAAAAAAA"' % reg,
        '-D PREROUTING -m comment --comment "podnet.fabric:o" -j B',
        '-I PREROUTING 2 -m comment --comment "podnet.fabric:o" -j A',
        "-X B", "COMMIT"]
    assert rollback_lines(rp, before, before) == []
