"""The ruleset option: iptables-restore-style text instead of chains/jumps items."""
from __future__ import annotations

import re

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import core
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.flavour import Tools

from .fake_iptables import FakeIptables

TEXT = """
# services
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-A
-A KUBE-SVC-A -p tcp -j DNAT --to-destination 192.168.1.10:6443
-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -j RETURN
COMMIT
*filter
:PODNET-FWD
-A PODNET-FWD -s 10.244.0.0/16 -j ACCEPT
-A FORWARD -j PODNET-FWD
COMMIT
"""


def test_parse_ruleset():
    chains, jumps = core.parse_ruleset(TEXT)
    assert [(c.table, c.name, c.rules) for c in chains] == [
        ("nat", "KUBE-SERVICES", ["-d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-A"]),
        ("nat", "KUBE-SVC-A", ["-p tcp -j DNAT --to-destination 192.168.1.10:6443"]),
        ("filter", "PODNET-FWD", ["-s 10.244.0.0/16 -j ACCEPT"]),
    ]
    assert [(j.table, j.chain, j.position, j.rule) for j in jumps] == [
        ("nat", "PREROUTING", "first", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
        ("nat", "OUTPUT", "first", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
        ("nat", "POSTROUTING", "last", "-j RETURN"),
        ("filter", "FORWARD", "last", "-j PODNET-FWD"),
    ]
    assert chains[1].where_rule(0) == "ruleset line 7 (nat KUBE-SVC-A, rule 1)"


@pytest.mark.parametrize("text, message", [
    ("-A X -j RETURN\n", "before any *table line"),
    ("*nat\n:X - [0:0]\n", "has no COMMIT line"),
    ("*natt\nCOMMIT\n", "table 'natt' does not exist"),
    ("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", "policies of built-in chains are not managed"),
    ("*nat\n-F PREROUTING\nCOMMIT\n", "only *table, :CHAIN"),
    ("*nat\n-X DOCKER\nCOMMIT\n", "only *table, :CHAIN"),
    ("*nat\n-I PREROUTING 3 -j RETURN\nCOMMIT\n", "not at position 3"),
    ("*nat\n:X - [0:0]\n:X - [0:0]\nCOMMIT\n", "declared twice"),
    ("*nat\n:%s - [0:0]\nCOMMIT\n" % ("X" * 29), "at most 28"),
])
def test_refused_ruleset_text(text, message):
    with pytest.raises(FabricError, match=re.escape(message)):
        core.parse_ruleset(text)


def test_ruleset_text_and_items_are_the_same_thing():
    a, b = FakeIptables(), FakeIptables()
    core.build(dict(owner="o", ruleset=TEXT), a, Tools(a.which))[0].apply()
    chains, jumps = core.parse_ruleset(TEXT)
    params = dict(owner="o",
                  chains=[dict(table=c.table, name=c.name, rules=c.rules) for c in chains],
                  jumps=[dict(table=j.table, chain=j.chain, rule=j.rule, position=j.position) for j in jumps])
    core.build(params, b, Tools(b.which))[0].apply()
    assert a.save() == b.save()
    plan, result = core.build(params, a, Tools(a.which))
    assert not plan.changed


def test_a_rejected_rule_names_its_ruleset_line():
    fake = FakeIptables()
    fake.reject.add("192.168.1.10")
    with pytest.raises(FabricError, match=r"ruleset line 7 \(nat KUBE-SVC-A, rule 1\)"):
        core.build(dict(owner="o", ruleset=TEXT), fake, Tools(fake.which))[0].apply()


def test_diff_shows_rules_as_iptables_prints_them():
    fake = FakeIptables()
    plan, result = core.build(dict(owner="o", ruleset=TEXT), fake, Tools(fake.which), diff=True)
    assert plan.before == {"nat": "", "filter": ""}
    assert "-A KUBE-SVC-A -p tcp -j DNAT --to-destination 192.168.1.10:6443\n" in plan.after["nat"]
    assert ('-A PREROUTING -m comment --comment "podnet.fabric:o" -m comment --comment "kubernetes service portals" '
            "-j KUBE-SERVICES") in plan.after["nat"]
    plan.apply()
    changed = TEXT.replace("192.168.1.10:6443", "192.168.1.11:6443")
    plan, result = core.build(dict(owner="o", ruleset=changed), fake, Tools(fake.which), diff=True)
    assert plan.before == {"nat": ":KUBE-SVC-A - [0:0]\n"
                                  "-A KUBE-SVC-A -p tcp -j DNAT --to-destination 192.168.1.10:6443\n"}
    assert plan.after == {"nat": ":KUBE-SVC-A - [0:0]\n"
                                 "-A KUBE-SVC-A -p tcp -j DNAT --to-destination 192.168.1.11:6443\n"}
    assert result["chains_updated"] == ["nat/KUBE-SVC-A"]
