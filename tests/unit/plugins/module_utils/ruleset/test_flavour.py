"""Choosing legacy or nft like kube-proxy's iptables-wrapper (plus: stay where our chains are)."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import flavour

EMPTY = ""
HINT = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
CANARY = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"
RULES = "*filter\n:INPUT ACCEPT [0:0]\n" + "".join("-A INPUT -s 10.0.0.%d/32 -j ACCEPT\n" % i for i in range(5)) + "COMMIT\n"
OURS = "*nat\n:PODNET-OWN-ABC - [0:0]\nCOMMIT\n"


@pytest.mark.parametrize("nft, legacy, want, why", [
    (EMPTY, EMPTY, "nft", "by default"),
    (HINT, EMPTY, "nft", "KUBE-IPTABLES-HINT"),
    (EMPTY, HINT, "legacy", "legacy tables"),
    (EMPTY, CANARY, "legacy", "legacy tables"),
    (HINT, HINT, "nft", "nft tables"),              # the wrapper checks nft first
    (EMPTY, RULES, "legacy", "more rules (5)"),
    (RULES, RULES, "nft", "by default"),            # a tie goes to nft
    (RULES, OURS, "legacy", "podnet.fabric chains already live in the legacy tables"),
    (OURS, RULES, "nft", "podnet.fabric chains already live in the nft tables"),
    (HINT, OURS, "nft", "KUBE-IPTABLES-HINT"),      # kubelet's choice wins over ours
])
def test_decide(nft, legacy, want, why):
    got, reason = flavour.decide({"nft": nft, "legacy": legacy})
    assert got == want and why in reason


def test_this_owners_chains_win_over_other_owners():
    got, reason = flavour.decide({"nft": "\n:PODNET-OWN-OTHER - [0:0]\n", "legacy": "\n:PODNET-OWN-MINE - [0:0]\n"},
                                 owner_registry="PODNET-OWN-MINE")
    assert got == "legacy" and "this owner's chains" in reason


class Runner(object):
    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = []

    def __call__(self, argv, input_text=None):
        self.calls.append(argv)
        return self.outputs[argv[0]]


def tools(names):
    return flavour.Tools(lambda n: "/usr/sbin/" + n if n in names else None)


ALL = {"iptables-nft-save", "iptables-nft-restore", "iptables-legacy-save", "iptables-legacy-restore"}


def test_observe_auto_reuses_the_chosen_dump():
    run = Runner({"/usr/sbin/iptables-nft-save": (0, EMPTY, ""), "/usr/sbin/iptables-legacy-save": (0, RULES, "")})
    obs = flavour.observe(run, tools(ALL))
    assert obs.flavour == "legacy" and obs.save_text == RULES
    assert obs.restore_cmd == "/usr/sbin/iptables-legacy-restore"
    assert len(run.calls) == 2
    assert flavour.restore_argv(obs) == ["/usr/sbin/iptables-legacy-restore", "-w", "5", "--noflush"]


def test_observe_requested_flavour_runs_one_save():
    run = Runner({"/usr/sbin/iptables-nft-save": (0, RULES, "")})
    obs = flavour.observe(run, tools(ALL), "nft")
    assert obs.flavour == "nft" and len(run.calls) == 1


def test_observe_requested_but_missing():
    with pytest.raises(FabricError, match="iptables-legacy-save/-restore are not installed"):
        flavour.observe(Runner({}), tools({"iptables-nft-save", "iptables-nft-restore"}), "legacy")


def test_observe_generic_binaries_ask_for_the_version():
    run = Runner({"/usr/sbin/iptables-save": (0, "iptables-save v1.8.7 (nf_tables)\n", "")})
    calls = []

    def runner(argv, input_text=None):
        calls.append(argv)
        return (0, "iptables-save v1.8.7 (nf_tables)\n", "") if "--version" in argv else (0, RULES, "")
    obs = flavour.observe(runner, tools({"iptables-save", "iptables-restore"}))
    assert obs.flavour == "nft" and obs.save_text == RULES
    del run


def test_old_iptables_gets_no_wait_option():
    obs = flavour.Observation("legacy", "", "", "/sbin/iptables-save", "/sbin/iptables-restore", version=(1, 4, 21))
    assert flavour.restore_argv(obs) == ["/sbin/iptables-restore", "--noflush"]
