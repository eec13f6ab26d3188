"""canonicalise() against what iptables 1.8.9 printed back (legacy and nft print the same).

canon_corpus.json was recorded by restoring each rule into a throw-away namespace and reading it
back with iptables-save; tests/integration/test_nat_rule.py replays it against the kernel.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.canon import (
    canonical_cidr, canonicalise)
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import RuleError, render, tokenize

CORPUS = json.loads((Path(__file__).parent / "canon_corpus.json").read_text())
CERTAIN = [c for c in CORPUS if c["certain"]]
UNCERTAIN = [c for c in CORPUS if not c["certain"]]


def test_corpus_is_substantial():
    assert len(CERTAIN) >= 200 and UNCERTAIN


@pytest.mark.parametrize("case", CERTAIN, ids=[c["rule"] for c in CERTAIN])
def test_canonical_form_is_what_iptables_prints(case):
    c = canonicalise(case["rule"])
    assert c.certain, c.why
    assert list(c.rules) == [tuple(tokenize(p)) for p in case["printed"]]
    # and the rendering is byte for byte iptables-save's line
    assert [render(t) for t in c.rules] == case["printed"]


@pytest.mark.parametrize("case", UNCERTAIN, ids=[c["rule"] for c in UNCERTAIN])
def test_unmodelled_spellings_are_flagged_not_guessed(case):
    c = canonicalise(case["rule"])
    assert not c.certain and c.why


@pytest.mark.parametrize("declared, printed", [
    # the examples
    ("-p tcp --dport 80 -j ACCEPT", "-p tcp -m tcp --dport 80 -j ACCEPT"),
    ("-d 10.96.0.1 -j ACCEPT", "-d 10.96.0.1/32 -j ACCEPT"),
    ("-m statistic --mode random --probability 0.5000000000 -j X", "-m statistic --mode random --probability 0.50000000000 -j X"),
    ("-m statistic --mode random --probability 0.3333333333 -j X", "-m statistic --mode random --probability 0.33333333349 -j X"),
    # kube-proxy's own spelling of a service rule
    ('-m comment --comment "ns/svc:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-X',
     '-d 10.96.0.10/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X'),
    ("-j MARK --or-mark 0x4000", "-j MARK --set-xmark 0x4000/0x4000"),
    ("-j MARK --xor-mark 0x4000", "-j MARK --set-xmark 0x4000/0x0"),
    ("-m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j KUBE-SEP-X",
     "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X"),
    ("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
    ("--protocol tcp --dport=22 --jump ACCEPT", "-p tcp -m tcp --dport 22 -j ACCEPT"),
    ("-p tcp -j DNAT --to 10.0.0.1:80", "-p tcp -j DNAT --to-destination 10.0.0.1:80"),
])
def test_examples(declared, printed):
    c = canonicalise(declared)
    assert c.certain
    assert [render(t) for t in c.rules] == [printed]


def test_comma_lists_expand_like_iptables():
    c = canonicalise("-s 10.0.0.1,10.0.0.2 -d 10.1.0.0/16,10.2.0.0/16 -j ACCEPT")
    assert [render(t) for t in c.rules] == [
        "-s 10.0.0.1/32 -d 10.1.0.0/16 -j ACCEPT", "-s 10.0.0.1/32 -d 10.2.0.0/16 -j ACCEPT",
        "-s 10.0.0.2/32 -d 10.1.0.0/16 -j ACCEPT", "-s 10.0.0.2/32 -d 10.2.0.0/16 -j ACCEPT"]


def test_jump_target_is_reported():
    assert canonicalise("-p tcp -j KUBE-SEP-X").jump == ("j", "KUBE-SEP-X")
    assert canonicalise("--goto KUBE-SEP-X").jump == ("g", "KUBE-SEP-X")
    assert canonicalise("-m comment --comment x").jump is None


def test_abbreviation_ambiguity_with_unknown_extension_is_not_resolved_against_base_options():
    # --pol is an option of the (unmodelled) policy match, not an abbreviation of --policy
    c = canonicalise("-m policy --dir in --pol none -j ACCEPT")
    assert not c.certain
    assert c.rules == (tuple("-m policy --dir in --pol none -j ACCEPT".split()),)


@pytest.mark.parametrize("rule, message", [
    ("-A FORWARD -j ACCEPT", "-A is not allowed"),
    ("-j ACCEPT -t filter", "-t is not allowed"),
    ("-X", "-X is not allowed"),
    ("--delete-chain FOO", "-X is not allowed"),
    ("-s example.com -j ACCEPT", "host names are not allowed"),
    ("-s 010.0.0.1 -j ACCEPT", "leading zeros"),
    ("-j ACCEPT -j DROP", "more than one"),
    ("-j ACCEPT !", "at the end"),
    ('-m comment --comment "x', "unbalanced"),
])
def test_refused_input(rule, message):
    with pytest.raises(RuleError, match=message):
        canonicalise(rule)


@pytest.mark.parametrize("text, net", [
    ("10.0.0.5/24", "10.0.0.0/24"), ("10.0.0.5", "10.0.0.5/32"), ("10.0.0.0/255.255.0.0", "10.0.0.0/16"),
    ("10.0.0.0/255.0.255.0", "10.0.0.0/255.0.255.0"), ("1.2.3.4/0", None), ("0.0.0.0/0", None),
])
def test_canonical_cidr(text, net):
    assert canonical_cidr(text) == net
