"""The nat_rule core end to end against an in-memory iptables: plan, apply, run again.

Covers the behaviour the issue asks for without root: one transaction, partial rewrites,
no restore on a no-op, ownership (foreign chains untouched, refused take-overs), purge,
jumps inserted once, error messages with context, and rollback of committed tables.
"""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, PlanFailed
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import core, planner
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.flavour import Tools

from .fake_iptables import FakeIptables

TARGETS = {"DNAT", "SNAT", "MASQUERADE", "MARK", "REJECT", "LOG"}

SERVICE = dict(
    owner="svc",
    chains=[
        dict(name="KUBE-MARK-MASQ", rules=["-j MARK --or-mark 0x4000"]),
        dict(name="KUBE-SERVICES", rules=['-m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
                                          '-d 10.96.0.10 --dport 80 -j KUBE-SVC-WEB']),
        dict(name="KUBE-SVC-WEB", rules=["-m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-A",
                                         "-j KUBE-SEP-B"]),
        dict(name="KUBE-SEP-A", rules=["-s 10.244.1.5 -j KUBE-MARK-MASQ", "-p tcp -j DNAT --to-destination 10.244.1.5:8080"]),
        dict(name="KUBE-SEP-B", rules=["-s 10.244.2.7 -j KUBE-MARK-MASQ", "-p tcp -j DNAT --to-destination 10.244.2.7:8080"]),
    ],
    jumps=[
        dict(chain="PREROUTING", rule='-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
        dict(chain="OUTPUT", rule='-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ],
)

FOREIGN = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
"""


def service(**changes):
    """SERVICE with some parameters replaced (a copy)."""
    params = dict(SERVICE)
    params.update(changes)
    return params


def task(fake, check=False, diff=False, **params):
    params = dict(params)
    warned = []
    plan, result = core.build(params, fake, Tools(fake.which), target_exists=lambda n: n in TARGETS, check_mode=check,
                              diff=diff, warn=warned.append)
    result["warnings"] = warned
    if plan.changed and not check:
        plan.apply()
    result["changed"] = plan.changed
    result["plan"] = plan
    return result


def restores(fake):
    return [c for c in fake.calls if c[0].endswith("-restore")]


def test_create_then_noop_without_restore():
    fake = FakeIptables(FOREIGN)
    r = task(fake, **SERVICE)
    assert r["changed"] and len(restores(fake)) == 1
    assert sorted(r["chains_created"]) == sorted("nat/" + c["name"] for c in SERVICE["chains"])
    assert fake.chain("nat", "KUBE-SVC-WEB") == [
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A", "-j KUBE-SEP-B"]
    assert fake.chain("nat", "PREROUTING")[0] == (
        '-m comment --comment "podnet.fabric:svc" -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    fake.calls = []
    again = task(fake, **SERVICE)
    assert not again["changed"] and again["restore_lines"] == 0
    assert restores(fake) == []
    assert [c[0] for c in fake.calls] == ["/usr/sbin/iptables-nft-save"]   # one dump, nothing else


def test_noop_does_not_canonicalise_anything(monkeypatch):
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    calls = []
    real = planner.canonicalise
    monkeypatch.setattr(planner, "canonicalise", lambda text: calls.append(text) or real(text))
    assert not task(fake, **SERVICE)["changed"]
    # only the two jumps are canonicalised; every chain is recognised by its fingerprint
    assert len(calls) == 2


def test_spelling_differences_are_not_changes_even_without_fingerprints():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    registry = [c for c in fake.tables["nat"] if c.startswith("PODNET-OWN-")][0]
    # forget the fingerprints (as after an upgrade): every chain takes the canonical comparison
    fake.tables["nat"][registry][1] = ['-m comment --comment "podnet.fabric:svc %s"' % " ".join(
        "%s=AAAAAAAA" % c["name"] for c in SERVICE["chains"])]
    r = task(fake, **SERVICE)
    assert not r["changed"], r["plan"].descriptions


def test_check_mode_changes_nothing():
    fake = FakeIptables(FOREIGN)
    before = fake.save()
    r = task(fake, check=True, **SERVICE)
    assert r["changed"] and fake.save() == before and restores(fake) == []


def test_only_the_changed_chain_is_rewritten():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    changed = service(chains=[dict(c) for c in SERVICE["chains"]])
    changed["chains"][4] = dict(name="KUBE-SEP-B", rules=["-s 10.244.2.8 -j KUBE-MARK-MASQ",
                                                          "-p tcp -j DNAT --to-destination 10.244.2.8:8080"])
    r = task(fake, **changed)
    assert r["chains_updated"] == ["nat/KUBE-SEP-B"] and not r["chains_created"] and not r["jumps_added"]
    text = fake.restores[-1]
    assert ":KUBE-SEP-B - [0:0]" in text and ":KUBE-SVC-WEB" not in text and "KUBE-SEP-A" not in text
    assert fake.chain("nat", "KUBE-SEP-B")[1] == "-p tcp -j DNAT --to-destination 10.244.2.8:8080"


def test_purge_removes_only_owned_chains_and_jumps():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    foreign = {t: {c: list(v[1]) for c, v in fake.tables[t].items() if c in ("DOCKER", "DOCKER-USER", "FORWARD")}
               for t in ("nat", "filter")}
    smaller = service(purge=True, jumps=SERVICE["jumps"][:1], chains=[
        SERVICE["chains"][0], SERVICE["chains"][1], dict(name="KUBE-SVC-WEB", rules=["-j KUBE-SEP-A"]), SERVICE["chains"][3]])
    r = task(fake, **smaller)
    assert r["chains_deleted"] == ["nat/KUBE-SEP-B"]
    assert r["jumps_removed"] == ['nat/OUTPUT: -m comment --comment "podnet.fabric:svc" -m comment --comment '
                                  '"kubernetes service portals" -j KUBE-SERVICES']
    assert fake.chain("nat", "KUBE-SEP-B") is None
    for t, chains in foreign.items():
        for c, rules in chains.items():
            assert fake.chain(t, c) == rules
    assert fake.chain("nat", "PREROUTING")[1:] == ["-m addrtype --dst-type LOCAL -j DOCKER"]
    assert not task(fake, **smaller)["changed"]


def test_absent_without_items_removes_everything_of_the_owner_only():
    fake = FakeIptables(FOREIGN)
    before = fake.save()
    task(fake, **SERVICE)
    task(fake, owner="other", chains=[dict(name="OTHER", rules=["-j RETURN"])])
    r = task(fake, owner="svc", state="absent")
    assert len(r["chains_deleted"]) == 5 and len(r["jumps_removed"]) == 2
    assert fake.chain("nat", "OTHER") == ["-j RETURN"]
    task(fake, owner="other", state="absent")
    assert fake.save() == before
    assert not task(fake, owner="svc", state="absent")["changed"]


def test_jumps_are_never_duplicated_and_keep_declared_order():
    fake = FakeIptables(FOREIGN)
    jumps = [dict(chain="PREROUTING", rule="-j A1"), dict(chain="PREROUTING", rule="-j A2"),
             dict(chain="PREROUTING", rule="-j A3", position="last")]
    chains = [dict(name=n, rules=[]) for n in ("A1", "A2", "A3")]
    task(fake, owner="j", chains=chains, jumps=jumps)
    pre = fake.chain("nat", "PREROUTING")
    assert [r.split()[-1] for r in pre] == ["A1", "A2", "DOCKER", "A3"]
    # someone inserted a copy of an owned jump by hand: the run removes the duplicate
    fake.tables["nat"]["PREROUTING"][1].append(pre[0])
    r = task(fake, owner="j", chains=chains, jumps=jumps)
    assert r["changed"] and len(r["jumps_removed"]) == 1
    assert [x.split()[-1] for x in fake.chain("nat", "PREROUTING")].count("A1") == 1
    assert not task(fake, owner="j", chains=chains, jumps=jumps)["changed"]


def test_drift_in_an_owned_chain_is_repaired():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    fake.tables["nat"]["KUBE-SEP-A"][1].append("-j RETURN")
    r = task(fake, **SERVICE)
    assert r["chains_updated"] == ["nat/KUBE-SEP-A"]
    assert "-j RETURN" not in fake.chain("nat", "KUBE-SEP-A")


@pytest.mark.parametrize("params, message", [
    (dict(chains=[dict(name="DOCKER", rules=[])]), "already exists in table nat and was not created by podnet.fabric"),
    (dict(chains=[dict(name="PREROUTING", rules=[])]), "built-in chain"),
    (dict(chains=[dict(name="K" * 29, rules=[])]), "29 characters, iptables allows at most 28"),
    (dict(chains=[dict(name="A", rules=["-j NOWHERE"])]), "jumps to NOWHERE, which is neither a chain declared"),
    (dict(chains=[dict(name="A", rules=["-g DNAT"])]), "goto needs a chain"),
    (dict(chains=[dict(table="natt", name="A", rules=[])]), "table 'natt' does not exist"),
    (dict(chains=[dict(name="PODNET-OWN-X", rules=[])]), "reserved"),
    (dict(chains=[dict(name="A", rules=['-m comment --comment "podnet.fabric:x" -j RETURN'])]), "reserved"),
    (dict(chains=[dict(name="A", rules=["-j RETURN\n-F DOCKER"])]), "single line"),
    (dict(chains=[dict(name="A", rules=["-F DOCKER"])]), "-F is not allowed"),
    (dict(jumps=[dict(chain="NOPE", rule="-j RETURN")]), "chain NOPE does not exist in table nat"),
    (dict(jumps=[dict(chain="PREROUTING", rule="-j NOPE")]), "jumps to NOPE"),
    (dict(chains=[dict(name="A", rules=[]), dict(name="A", rules=[])]), "declared twice"),
])
def test_refused_input_changes_nothing(params, message):
    fake = FakeIptables(FOREIGN)
    before = fake.save()
    with pytest.raises(FabricError, match=message):
        task(fake, owner="x", **params)
    assert fake.save() == before and restores(fake) == []


def test_another_owners_chain_cannot_be_declared_or_hooked():
    fake = FakeIptables(FOREIGN)
    task(fake, owner="a", chains=[dict(name="SHARED", rules=["-j RETURN"])])
    with pytest.raises(FabricError, match="owned by podnet.fabric owner a, not b"):
        task(fake, owner="b", chains=[dict(name="SHARED", rules=[])])
    with pytest.raises(FabricError, match="owned by podnet.fabric owner a"):
        task(fake, owner="b", jumps=[dict(chain="SHARED", rule="-j RETURN")])
    # but jumping *to* it is fine
    task(fake, owner="b", chains=[dict(name="MINE", rules=["-j SHARED"])])


def test_a_chain_still_used_by_someone_else_is_not_deleted():
    fake = FakeIptables(FOREIGN)
    task(fake, owner="a", chains=[dict(name="HELPER", rules=["-j RETURN"])])
    fake.tables["nat"]["DOCKER"][1].append("-j HELPER")
    with pytest.raises(FabricError, match="a rule podnet.fabric does not own still jumps to it: -A DOCKER -j HELPER"):
        task(fake, owner="a", state="absent")
    assert fake.chain("nat", "HELPER") == ["-j RETURN"]


def test_a_rejected_rule_reports_line_context_and_where_it_came_from():
    fake = FakeIptables(FOREIGN)
    fake.reject.add("10.244.2.7:8080")
    before = fake.save()
    with pytest.raises(FabricError) as err:
        task(fake, **SERVICE)
    text = str(err.value)
    assert "RULE_APPEND failed" in text
    assert ">>" in text and "-A KUBE-SEP-B -p tcp -j DNAT --to-destination 10.244.2.7:8080" in text
    assert "chains[4] (nat KUBE-SEP-B), rule 2" in text
    assert fake.save() == before


def test_a_failure_in_a_later_table_rolls_back_the_committed_one():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    before = fake.save()
    both = service(chains=SERVICE["chains"] + [
        dict(table="filter", name="PODNET-FW", rules=["-j ACCEPT", "-j LOG --log-prefix BAD"])],
        jumps=SERVICE["jumps"] + [dict(table="filter", chain="FORWARD", rule="-j PODNET-FW")])
    both["chains"][3] = dict(name="KUBE-SEP-A", rules=["-p tcp -j DNAT --to-destination 10.244.1.9:8080"])
    fake.reject.add("BAD")
    with pytest.raises(PlanFailed) as err:
        task(fake, **both)
    first = str(err.value).splitlines()[0]
    assert first.startswith("nat_rule owner svc: filter chain PODNET-FW rule '-j LOG --log-prefix BAD': "
                            "iptables-restore failed"), first
    assert first.endswith("(rolled back: 1 action undone)"), first
    assert ">>" in str(err.value)                       # the context lines follow
    assert err.value.rolled_back and not err.value.changed
    assert fake.save() == before


def test_a_put_back_that_fails_is_reported():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    both = service(chains=SERVICE["chains"] + [dict(table="filter", name="PODNET-FW", rules=["-j LOG --log-prefix BAD"])])
    both["chains"][3] = dict(name="KUBE-SEP-A", rules=["-p tcp -j DNAT --to-destination 10.244.1.9:8080"])
    fake.reject.update(["BAD", "10.244.1.5:8080"])      # the old KUBE-SEP-A rule cannot be written back
    with pytest.raises(PlanFailed) as err:
        task(fake, **both)
    assert err.value.changed and err.value.undo_errors
    assert "putting back table nat FAILED" in err.value.undo_errors[0]
    assert "NOT fully rolled back" in str(err.value).splitlines()[0]


def test_every_table_action_has_a_real_undo():
    fake = FakeIptables(FOREIGN)
    both = service(chains=SERVICE["chains"] + [dict(table="filter", name="PODNET-FW", rules=["-j ACCEPT"])])
    r = task(fake, check=True, **both)
    plan = r["plan"]
    assert [a.description.split(" table ")[1].split()[0] for a in plan.actions] == ["nat", "filter"]
    assert all(a.undo is not None and not a.irreversible for a in plan.actions)


def test_check_mode_in_a_namespace_not_created_yet_predicts_everything():
    fake = FakeIptables(FOREIGN)
    timing = {}
    plan, result = core.build(dict(SERVICE), fake, Tools(fake.which), target_exists=lambda n: n in TARGETS,
                              check_mode=True, timing=timing, netns_missing=True)
    assert fake.calls == []                             # nothing ran: there is nowhere to run it
    assert sorted(result["chains_created"]) == sorted("nat/" + c["name"] for c in SERVICE["chains"])
    assert len(result["jumps_added"]) == 2 and plan.changed
    assert "does not exist yet" in result["iptables_flavour_reason"]
    assert set(timing) >= {"read", "plan"}


def test_timing_splits_read_plan_restore():
    fake = FakeIptables(FOREIGN)
    timing = {}
    plan, result = core.build(dict(SERVICE), fake, Tools(fake.which), target_exists=lambda n: n in TARGETS,
                              timing=timing)
    plan.apply()
    assert set(timing) == {"read", "plan", "restore"}


def test_state_absent_refuses_foreign_chains():
    fake = FakeIptables(FOREIGN)
    with pytest.raises(FabricError, match="not created by podnet.fabric"):
        task(fake, owner="x", state="absent", chains=[dict(name="DOCKER")])


def test_a_rule_refused_when_the_transaction_is_written_changes_nothing():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    before = fake.save()
    bad = service(chains=SERVICE["chains"] + [
        dict(table="filter", name="PODNET-FW", rules=["-s gateway.example -j ACCEPT"])])
    bad["chains"][3] = dict(name="KUBE-SEP-A", rules=["-p tcp -j DNAT --to-destination 10.244.1.9:8080"])
    with pytest.raises(FabricError, match="host names are not allowed"):
        task(fake, check=True, **bad)       # check mode sees it too
    calls = len(restores(fake))
    with pytest.raises(FabricError, match="host names are not allowed"):
        task(fake, **bad)
    assert len(restores(fake)) == calls          # refused before iptables-restore was started
    assert fake.save() == before


def test_after_someone_flushes_the_table_the_chains_are_taken_back():
    fake = FakeIptables(FOREIGN)
    task(fake, **SERVICE)
    for chain in fake.tables["nat"].values():        # iptables -t nat -F
        chain[1] = []
    r = task(fake, **SERVICE)
    assert r["changed"] and len(r["chains_updated"]) == 5 and len(r["jumps_added"]) == 2
    assert any("had been flushed" in w for w in r["warnings"])
    assert fake.chain("nat", "KUBE-SEP-A")[1] == "-p tcp -j DNAT --to-destination 10.244.1.5:8080"
    assert not task(fake, **SERVICE)["changed"]


@pytest.mark.parametrize("rule, target", [
    ('-m comment --comment "a -j B" -j KUBE-X', "KUBE-X"),
    ('-m comment --comment "x" -s 1.2.3.4 -j KUBE-MARK-MASQ', "KUBE-MARK-MASQ"),
    ('-j "FOO"', "FOO"),
    ('-m comment --comment "c"', None),
    ('-m comment --comment "a\\"b" -g X', "X"),
    ("-p tcp -j DNAT --to-destination 1.2.3.4", "DNAT"),
])
def test_rule_target_outside_quotes(rule, target):
    assert planner.rule_target(rule) == target


@pytest.mark.parametrize("rule, hidden", [
    ('-m comment --comment "x" "-F" DOCKER', True),
    ('-m comment --comment "x" -"F" DOCKER', True),
    ('-m comment --comment "x"-F', True),
    ('-m comment --comment "a \\" -F" -j ACCEPT', False),
    ('-m comment --comment "-F is only a comment" -j ACCEPT', False),
    ('-m comment --comment "ns/svc:http cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j ACCEPT', False),
])
def test_commands_hidden_by_quotes_are_found(rule, hidden):
    fake = FakeIptables(FOREIGN)
    if hidden:
        with pytest.raises(FabricError):
            task(fake, check=True, owner="x", chains=[dict(name="PODNET-Q", rules=[rule])])
    else:
        assert task(fake, check=True, owner="x", chains=[dict(name="PODNET-Q", rules=[rule])])["changed"]
