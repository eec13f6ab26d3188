"""Chain names (kube-proxy's hashes, the 28-character limit) and the ownership registry."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import names


@pytest.mark.parametrize("svc_port_name, proto, chain", [
    # test vectors from real clusters (ANCHORS.md)
    ("default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("kube-system/kube-dns:dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),   # kube-proxy lowercases
])
def test_kube_chain_name_matches_kube_proxy(svc_port_name, proto, chain):
    assert names.kube_chain_name("KUBE-SVC-", svc_port_name, proto) == chain


def test_endpoint_chain_hashes_the_endpoint_too():
    a = names.kube_chain_name("KUBE-SEP-", "default/web:http", "tcp", "10.244.1.5:8080")
    b = names.kube_chain_name("KUBE-SEP-", "default/web:http", "tcp", "10.244.1.6:8080")
    assert a.startswith("KUBE-SEP-") and len(a) == 25 and a != b


def test_chain_name_limit_is_28():
    names.check_chain_name("A" * 28)
    with pytest.raises(FabricError, match="29 characters, iptables allows at most 28"):
        names.check_chain_name("A" * 29)
    with pytest.raises(FabricError, match="may only contain"):
        names.check_chain_name("-X")
    with pytest.raises(FabricError, match="may only contain"):
        names.check_chain_name("A B")


def test_registry_round_trip_and_limits():
    entries = {"KUBE-SVC-%016d" % i: "ABCDEFGH" for i in range(4000)}
    rules = names.encode_registry("kube-services", entries)
    assert all(len(r) - len('-m comment --comment ""') <= names.COMMENT_MAX for r in rules)
    assert len(rules) < 800                       # ~6 entries per rule, not one rule per chain
    assert names.decode_registry(rules, "R") == ("kube-services", entries)


def test_a_change_rewrites_only_its_bucket():
    entries = {"KUBE-SEP-%016d" % i: "ABCDEFGH" for i in range(4000)}
    before = set(names.encode_registry("o", entries))
    # one service's endpoints change: its SVC chain's fingerprint, one SEP out, one SEP in
    entries["KUBE-SEP-%016d" % 17] = "ZZZZZZZZ"
    del entries["KUBE-SEP-%016d" % 18]
    entries["KUBE-SEP-NEW"] = "YYYYYYYY"
    after = set(names.encode_registry("o", entries))
    # each touched bucket holds ~16 entries (~3 rules); the other ~700 rules stay
    assert len(before - after) <= 12 and len(after - before) <= 12


def test_registry_refuses_foreign_rules():
    with pytest.raises(FabricError, match="did not write"):
        names.decode_registry(["-j ACCEPT"], "PODNET-OWN-X")


def test_registry_chain_name_fits():
    name = names.registry_chain("a-very-long-owner-name-" + "x" * 40)
    assert name.startswith("PODNET-OWN-") and len(name) <= 28


def test_fingerprint_sees_both_sides():
    fp = names.fingerprint(["-j A"], ["-j A"])
    assert fp == names.fingerprint(["-j A"], ["-j A"]) and len(fp) == 10
    assert fp != names.fingerprint(["-j B"], ["-j A"])
    assert fp != names.fingerprint(["-j A"], ["-j B"])
