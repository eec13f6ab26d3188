"""podnet.fabric.nat_rule on real iptables (legacy and nft), always inside throw-away namespaces.

Every check of kernel state goes through ``iptables-save`` / ``iptables-legacy-save`` run in the
namespace (never through the module), and packets are sent only between namespaces the test
created. Nothing here touches the host's own tables.
"""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, netns_pool, run_cases, run_independent_tasks, sh, unique

# nat_rule runs with pyroute2=False (iptables-restore and /proc/sys through netns_exec's setns, no
# netlink socket): one target interpreter, the nodes' own, is enough.
pytestmark = pytest.mark.single_target

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.canon import canonicalise  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import tokenize  # noqa: E402

CORPUS = json.loads((REPO / "tests/unit/plugins/module_utils/ruleset/canon_corpus.json").read_text())
FLAVOURS = ["nft", "legacy"]


# --- helpers ----------------------------------------------------------------------------------

def save(ns, flavour="nft"):
    """iptables-save of the namespace, without the timestamp comment lines."""
    out = sh("iptables-%s-save" % flavour, netns=ns)
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))


def restore(ns, text, flavour="nft"):
    sh("iptables-%s-restore" % flavour, "--noflush", netns=ns, input=text)


def chain_rules(ns, table, chain, flavour="nft"):
    out = sh("iptables-%s-save" % flavour, "-t", table, netns=ns)
    return [line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("-A %s " % chain)]


def without_owned(dump, owned, owner):
    """The dump with this owner's chains, registry and jumps taken out: what is not ours."""
    keep = []
    for line in dump.splitlines():
        if line.startswith(":") and (line[1:].split()[0] in owned or line.startswith(":PODNET-OWN-")):
            continue
        if line.startswith("-A ") and (line.split()[1] in owned or line.split()[1].startswith("PODNET-OWN-")):
            continue
        if '--comment "podnet.fabric:%s"' % owner in line:
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def nat_task(ns, flavour, **args):
    args = dict(args, netns=ns, iptables_flavour=flavour)
    return {"name": "nat_rule", "podnet.fabric.nat_rule": args}


SERVICE_CHAINS = [
    {"name": "KUBE-MARK-MASQ", "rules": ["-j MARK --or-mark 0x4000"]},
    {"name": "KUBE-POSTROUTING", "rules": [
        "-m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-j MARK --xor-mark 0x4000",
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully']},
    {"name": "KUBE-SERVICES", "rules": [
        # kube-proxy's own spelling: -m before -p, no /32
        '-m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-WEB']},
    {"name": "KUBE-SVC-WEB", "rules": [
        "-m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-A", "-j KUBE-SEP-B"]},
    {"name": "KUBE-SEP-A", "rules": ["-s 10.244.1.5 -j KUBE-MARK-MASQ", "-p tcp -j DNAT --to-destination 10.244.1.5:8080"]},
    {"name": "KUBE-SEP-B", "rules": ["-s 10.244.2.7 -j KUBE-MARK-MASQ", "-p tcp -j DNAT --to-destination 10.244.2.7:8080"]},
]
SERVICE_JUMPS = [
    {"chain": "PREROUTING", "rule": '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'},
    {"chain": "OUTPUT", "rule": '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'},
    {"chain": "POSTROUTING", "rule": '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'},
]
SERVICE_NAMES = {c["name"] for c in SERVICE_CHAINS}

# Someone else's rules, created by hand before the module runs: Docker-style chains and the
# user's own rules in built-in chains, in both tables.
FOREIGN = """*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:DOCKER-USER - [0:0]
:MY-RULES - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "my ssh" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -j MY-RULES
-A DOCKER-USER -j RETURN
-A MY-RULES -s 192.0.2.0/24 -j DROP
COMMIT
"""


@pytest.fixture
def restore_log(tmp_path):
    """A PATH dir whose iptables-*-restore log every call and run the real one."""
    bindir = tmp_path / "wrapbin"
    bindir.mkdir()
    log = tmp_path / "restore.log"
    for flavour in FLAVOURS:
        wrapper = bindir / ("iptables-%s-restore" % flavour)
        wrapper.write_text("#!/bin/sh\necho \"$0 $*\" >> %s\nexec /usr/sbin/iptables-%s-restore \"$@\"\n" % (log, flavour))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": "%s:/usr/sbin:/usr/bin:/sbin:/bin" % bindir}

    class RestoreLog(object):
        environment = env

        @staticmethod
        def calls():
            return log.read_text().splitlines() if log.exists() else []
    return RestoreLog


# --- the four runs, both flavours ----------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_four_runs_check_apply_idempotent(playbook, netns, flavour, restore_log):
    restore(netns, FOREIGN, flavour)
    before = save(netns, flavour)
    task = nat_task(netns, flavour, owner="services", chains=SERVICE_CHAINS, jumps=SERVICE_JUMPS)
    task["environment"] = restore_log.environment

    r1 = playbook([task], check=True, diff=True)
    assert not r1.failed, r1
    assert r1[0]["changed"] and r1[0]["iptables_flavour"] == flavour
    assert save(netns, flavour) == before, "check mode changed the tables"
    assert restore_log.calls() == []
    # rule-level diff in iptables-save spelling
    after = r1[0]["diff"]["after"]["nat"]
    assert set(r1[0]["timing"]) >= {"read", "plan"}
    assert "-A KUBE-SVC-WEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A" in after
    assert ('-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" '
            "-m tcp --dport 80 -j KUBE-SVC-WEB") in after

    r2 = playbook([task], diff=True)
    assert not r2.failed, r2
    assert r2[0]["changed"] and sorted(r2[0]["chains_created"]) == sorted("nat/" + n for n in SERVICE_NAMES)
    assert len(r2[0]["jumps_added"]) == 3
    assert len(restore_log.calls()) == 1
    assert set(r2[0]["timing"]) >= {"read", "plan", "restore"}
    assert chain_rules(netns, "nat", "KUBE-SVC-WEB", flavour) == [
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A", "-j KUBE-SEP-B"]
    assert chain_rules(netns, "nat", "KUBE-MARK-MASQ", flavour) == ["-j MARK --set-xmark 0x4000/0x4000"]
    assert chain_rules(netns, "nat", "PREROUTING", flavour)[0] == (
        '-m comment --comment "podnet.fabric:services" -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES")
    assert without_owned(save(netns, flavour), SERVICE_NAMES, "services") == before

    r3 = playbook([task], check=True)
    assert not r3.failed and not r3[0]["changed"], r3
    r4 = playbook([task], diff=True)
    assert not r4.failed and not r4[0]["changed"], r4
    assert r4[0]["diff"] == {"before": {}, "after": {}}
    assert r4[0]["restore_lines"] == 0 and not any("restore" in c for c in r4[0]["commands"])
    assert len(restore_log.calls()) == 1, "a no-op run called iptables-restore: %s" % restore_log.calls()


def test_an_external_flush_is_repaired(playbook, netns):
    """`iptables -t nat -F` empties our chains and the ownership registry: the next run takes back
    the (now empty) declared chains and rebuilds everything exactly."""
    task = nat_task(netns, "nft", owner="services", chains=SERVICE_CHAINS, jumps=SERVICE_JUMPS)
    assert not playbook([task]).failed
    want = save(netns)
    sh("iptables-nft", "-t", "nat", "-F", netns=netns)
    r = playbook([task])
    assert not r.failed and r[0]["changed"], r
    assert any("had been flushed" in w for w in r[0].get("warnings", [])), r
    assert save(netns) == want
    assert not playbook([task])[0]["changed"]


def test_the_other_flavour_is_left_alone(playbook, netns):
    restore(netns, FOREIGN, "legacy")
    legacy = save(netns, "legacy")
    r = playbook([nat_task(netns, "nft", owner="o", chains=[{"name": "PODNET-X", "rules": ["-j RETURN"]}])])
    assert not r.failed, r
    assert chain_rules(netns, "nat", "PODNET-X", "nft") == ["-j RETURN"]
    assert save(netns, "legacy") == legacy


# --- auto detection ------------------------------------------------------------------------

def test_auto_flavour_follows_the_host(playbook, netns_factory):
    legacy_ns, empty_ns = netns_factory(), netns_factory()
    restore(legacy_ns, FOREIGN, "legacy")
    chains = [{"name": "PODNET-X", "rules": ["-j RETURN"]}]
    r = playbook([nat_task(legacy_ns, "auto", owner="o", chains=chains),
                  nat_task(empty_ns, "auto", owner="o", chains=chains)])
    assert not r.failed, r
    assert r[0]["iptables_flavour"] == "legacy" and "more rules" in r[0]["iptables_flavour_reason"]
    assert chain_rules(legacy_ns, "nat", "PODNET-X", "legacy") == ["-j RETURN"]
    assert r[1]["iptables_flavour"] == "nft"
    # a kubelet hint in the nft mangle table wins, as in kube-proxy's iptables-wrapper
    restore(legacy_ns, "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n", "nft")
    r = playbook([nat_task(legacy_ns, "auto", owner="hinted", chains=chains[:0] + [{"name": "PODNET-Y", "rules": []}])])
    assert r[0]["iptables_flavour"] == "nft" and "KUBE-IPTABLES-HINT" in r[0]["iptables_flavour_reason"]


# --- ownership: foreign chains survive byte for byte --------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_foreign_rules_survive_every_run_and_purge(playbook, netns, flavour):
    restore(netns, FOREIGN, flavour)
    foreign = save(netns, flavour)
    full = nat_task(netns, flavour, owner="services", purge=True, chains=SERVICE_CHAINS, jumps=SERVICE_JUMPS + [
        {"table": "filter", "chain": "FORWARD", "rule": "-j PODNET-FWD", "position": "last"},
        {"table": "filter", "chain": "DOCKER-USER", "rule": "-s 10.244.0.0/16 -j PODNET-FWD"}],
    )
    full["podnet.fabric.nat_rule"]["chains"] = SERVICE_CHAINS + [
        {"table": "filter", "name": "PODNET-FWD", "rules": ["-s 10.244.0.0/16 -j ACCEPT"]}]
    owned = SERVICE_NAMES | {"PODNET-FWD"}
    r = playbook([full])
    assert not r.failed, r
    assert without_owned(save(netns, flavour), owned, "services") == foreign
    # another owner next to it
    r = playbook([nat_task(netns, flavour, owner="egress", chains=[{"name": "PODNET-EGRESS", "rules": [
        "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE"]}],
        jumps=[{"chain": "POSTROUTING", "rule": "-j PODNET-EGRESS"}])])
    assert not r.failed, r
    egress_dump = save(netns, flavour)

    # purge down to one service endpoint: only owned chains/jumps go
    smaller = json.loads(json.dumps(full))
    args = smaller["podnet.fabric.nat_rule"]
    args["chains"] = [c for c in args["chains"] if c["name"] not in ("KUBE-SEP-B", "PODNET-FWD")]
    for c in args["chains"]:
        if c["name"] == "KUBE-SVC-WEB":
            c["rules"] = ["-j KUBE-SEP-A"]
    args["jumps"] = SERVICE_JUMPS
    r = playbook([smaller])
    assert not r.failed, r
    assert sorted(r[0]["chains_deleted"]) == ["filter/PODNET-FWD", "nat/KUBE-SEP-B"]
    assert len(r[0]["jumps_removed"]) == 2 and r[0]["chains_updated"] == ["nat/KUBE-SVC-WEB"]
    now = save(netns, flavour)
    assert ":KUBE-SEP-B" not in now and ":PODNET-FWD" not in now
    assert without_owned(now, owned, "services") == without_owned(egress_dump, owned, "services")

    # everything of "services" goes; egress and the foreign rules stay exactly as they were
    r = playbook([nat_task(netns, flavour, owner="services", state="absent")])
    assert not r.failed and r[0]["changed"], r
    assert without_owned(save(netns, flavour), set(), "services") == without_owned(egress_dump, owned, "services")
    r = playbook([nat_task(netns, flavour, owner="egress", state="absent")])
    assert save(netns, flavour) == foreign
    r = playbook([nat_task(netns, flavour, owner="egress", state="absent")])
    assert not r[0]["changed"]


# --- canonical comparison, proven against what the kernel prints ----------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_canonical_forms_match_the_kernel(netns, flavour):
    """Replay the unit tests' corpus: every rule the normaliser is sure about prints as predicted."""
    tables = set()
    refused = []
    certain = [(i, case) for i, case in enumerate(CORPUS) if case["certain"]]
    for i, case in certain:
        text = "*%s\n:TGT - [0:0]\n:P%d - [0:0]\n-A P%d %s\nCOMMIT\n" % (case["table"], i, i, case["rule"])
        proc = subprocess.run(["ip", "netns", "exec", netns, "iptables-%s-restore" % flavour, "--noflush"],
                              input=text, capture_output=True, text=True, check=False)
        if proc.returncode:
            refused.append(case["rule"])   # e.g. -j TRACE outside the raw table with legacy iptables
        tables.add(case["table"])
    assert len(refused) <= 3, refused
    printed = {}
    for table in tables:
        for line in sh("iptables-%s-save" % flavour, "-t", table, netns=netns).splitlines():
            if line.startswith("-A P"):
                chain, sep, rule = line[3:].partition(" ")
                printed.setdefault(int(chain[1:]), []).append(tuple(tokenize(rule)))
    for i, case in certain:
        if case["rule"] not in refused:
            assert list(canonicalise(case["rule"]).rules) == printed[i], case["rule"]


SPELLINGS = [
    "-p tcp --dport 80 -j ACCEPT",
    "-d 10.96.0.1 -p tcp -m tcp --dport 443 -j ACCEPT",
    "--source 10.0.0.5/24 --protocol udp --destination-port 53 --jump ACCEPT",
    "-m statistic --mode random --probability 0.3333333333 -j RETURN",
    "-m statistic --probability 0.25 --mode random -j RETURN",
    "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-m addrtype --dst-type LOCAL --src-type LOCAL -j RETURN",
    "-m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j RETURN",
    "-p tcp -m multiport --dports http,https -j ACCEPT",
    "-m mark --mark 16384 -j RETURN",
    "-j REJECT",
    "-p icmp --icmp-type echo-request -j ACCEPT",
    "-m comment --comment 'quoted' -j RETURN",
    "-m limit --limit 60/min -j RETURN",
    # not modelled by the normaliser: learned from the kernel after the first apply
    "-m tos --tos 0x10 -j RETURN",
    "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name spell -j RETURN",
]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_other_spellings_do_not_cause_endless_changes(playbook, netns, flavour):
    task = nat_task(netns, flavour, owner="spell", table="filter", chains=[{"name": "PODNET-SPELL", "rules": SPELLINGS}])
    r1 = playbook([task])
    assert not r1.failed and r1[0]["changed"], r1
    assert sorted(r1[0]["learned"]) == ["filter/PODNET-SPELL"]
    assert any("--tos 0x10/0xff" in w for w in r1[0].get("warnings", [])), r1
    r2 = playbook([task])
    assert not r2.failed and not r2[0]["changed"], r2
    # and a real change is still seen
    changed = json.loads(json.dumps(task))
    changed["podnet.fabric.nat_rule"]["chains"][0]["rules"][-3] = "-j REJECT --reject-with tcp-reset -p tcp"
    r3 = playbook([changed])
    assert not r3.failed and r3[0]["chains_updated"] == ["filter/PODNET-SPELL"], r3


# --- atomicity --------------------------------------------------------------------------------

REJECTED = [  # (flavour, bad rule, what the message says of it)
    (flavour, bad_rule, message) for flavour in FLAVOURS for bad_rule, message in [
        ("-p tcp -m tcp --dport 80 --bogus -j ACCEPT", 'unknown option "--bogus"'),            # parser
        ("-p tcp -j DNAT --to-destination 10.0.0.1:80", None),                                 # kernel: DNAT in filter
    ]]


def rejected_rule_task(ns, flavour, bad_rule):
    """nat changes (committed first: nat comes before filter in the transaction) + a bad filter rule."""
    chains = json.loads(json.dumps(SERVICE_CHAINS))
    chains[5]["rules"] = ["-s 10.244.2.8 -j KUBE-MARK-MASQ", "-p tcp -j DNAT --to-destination 10.244.2.8:8080"]
    chains.append({"name": "KUBE-SEP-C", "rules": ["-p tcp -j DNAT --to-destination 10.244.3.1:8080"]})
    chains.append({"table": "filter", "name": "PODNET-FW", "rules": ["-s 10.244.0.0/16 -j ACCEPT", bad_rule, "-j RETURN"]})
    jumps = SERVICE_JUMPS + [{"table": "filter", "chain": "FORWARD", "rule": "-j PODNET-FW"}]
    return nat_task(ns, flavour, owner="services", purge=True, chains=chains, jumps=jumps)


def compute_batched_cases(target_python, tmp_path_factory):
    """Each REJECTED case in a namespace of its own with the foreign rules and the services
    applied (one playbook for all), then the rejected call once per case, all in one playbook
    (conftest.run_cases): [(set-up result, task result, save before, save after)]."""
    tmp = tmp_path_factory.mktemp("nat-rule-rejected")
    with netns_pool() as make:
        namespaces = [make() for _case in REJECTED]
        for ns, (flavour, _bad_rule, _message) in zip(namespaces, REJECTED):
            restore(ns, FOREIGN, flavour)
        setups = run_independent_tasks(
            [nat_task(ns, flavour, owner="services", chains=SERVICE_CHAINS, jumps=SERVICE_JUMPS)
             for ns, (flavour, _bad_rule, _message) in zip(namespaces, REJECTED)], target_python, tmp / "setup.yml")
        prepared = [((ns, flavour), rejected_rule_task(ns, flavour, bad_rule))
                    for ns, (flavour, bad_rule, _message) in zip(namespaces, REJECTED)]
        runs = run_cases(prepared, lambda state: save(*state), target_python, tmp / "play.yml")
        return [(setup,) + run for setup, run in zip(setups, runs)]


@pytest.mark.xdist_group("nat-rule-rejected")
@pytest.mark.parametrize("case", range(len(REJECTED)), ids=["%s-%d" % (c[0], i % 2) for i, c in enumerate(REJECTED)])
def test_rejected_rule_leaves_every_table_as_it_was(batched_cases, case):
    flavour, bad_rule, message = REJECTED[case]
    setup, result, before, after = batched_cases[case]
    assert not setup.get("failed"), setup
    assert result.get("failed"), result
    msg = result["msg"]
    assert after == before, msg
    # the first line names the owner, table, chain and the refused rule
    assert msg.startswith("nat_rule owner services: filter chain PODNET-FW rule %r: " % bad_rule), msg
    assert result["rolled_back"] and not result["undo_errors"] and not result["changed"], result
    if message:
        assert message in msg
    # the offending rule, in context, and the task item it came from
    assert ">>" in msg and ("-A PODNET-FW %s" % bad_rule) in msg, msg
    assert "chains[7] (filter PODNET-FW), rule 2" in msg or "replaying" in msg, msg
    assert "rolled back" in msg or "Nothing was committed" in msg, msg


# --- bad input ------------------------------------------------------------------------------

def test_bad_input_is_refused_and_changes_nothing(playbook, netns):
    restore(netns, FOREIGN)
    playbook([nat_task(netns, "nft", owner="first", chains=[{"name": "PODNET-FIRST", "rules": ["-j RETURN"]}])])
    before = save(netns)
    cases = [
        ({"chains": [{"name": "KUBE-SVC-" + "X" * 20, "rules": []}]}, "29 characters, iptables allows at most 28"),
        ({"chains": [{"name": "PODNET-A", "rules": ["-j PODNET-NOWHERE"]}]},
         "jumps to PODNET-NOWHERE, which is neither a chain declared by this task"),
        ({"jumps": [{"chain": "PREROUTING", "rule": "-j PODNET-NOWHERE"}]}, "jumps to PODNET-NOWHERE"),
        ({"chains": [{"table": "natt", "name": "PODNET-A", "rules": []}]}, "natt"),
        ({"chains": [{"name": "DOCKER", "rules": ["-j RETURN"]}]},
         "chain DOCKER already exists in table nat and was not created by podnet.fabric"),
        ({"chains": [{"name": "PODNET-FIRST", "rules": []}]}, "owned by podnet.fabric owner first, not second"),
        ({"chains": [{"name": "POSTROUTING", "rules": []}]}, "built-in chain"),
        ({"chains": [{"name": "PODNET-A", "rules": ["-j RETURN -A FORWARD -j DROP"]}]}, "-A is not allowed"),
    ]
    r = playbook([dict(nat_task(netns, "nft", owner="second", **args), ignore_errors=True) for args, message in cases])
    for (args, message), result in zip(cases, r.results):
        assert result.get("failed"), (args, result)
        assert message in result["msg"], (message, result["msg"])
    assert save(netns) == before


def test_missing_netns_is_an_error(playbook):
    r = playbook([nat_task("pnt-does-not-exist", "auto", chains=[])])
    assert r.failed and "netns pnt-does-not-exist: does not exist" in r[0]["msg"]


def test_check_mode_before_the_netns_exists_predicts_everything(playbook):
    ns = unique("pnt-later-")
    task = nat_task(ns, "auto", owner="services", chains=SERVICE_CHAINS, jumps=SERVICE_JUMPS)
    r = playbook([task], check=True, diff=True)
    assert not r.failed, r
    assert r[0]["changed"] and sorted(r[0]["chains_created"]) == sorted("nat/" + n for n in SERVICE_NAMES)
    assert len(r[0]["jumps_added"]) == 3 and "does not exist yet" in r[0]["iptables_flavour_reason"]
    assert subprocess.run(["ip", "netns", "pids", ns], capture_output=True, check=False).returncode != 0


# --- packets between namespaces ---------------------------------------------------------------

SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(64)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        c.sendall(("%s %s\\n" % (c.getsockname()[0], peer[0])).encode())
        c.close()
""")

CLIENT = textwrap.dedent("""
    import json, socket, sys
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = []
    for attempt in range(count):
        try:
            c = socket.create_connection((host, port), timeout=3)
            out.append(c.makefile().readline().split())
            c.close()
        except OSError as exc:
            out.append(type(exc).__name__)
    print(json.dumps(out))
""")


@pytest.fixture
def servers():
    procs = []

    def start(ns, port):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port)],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p
    yield start
    for p in procs:
        p.kill()
        p.wait()


def connect(ns, host, port, count):
    return json.loads(sh(sys.executable, "-c", CLIENT, host, str(port), str(count), netns=ns))


def veth(ns_a, addr_a, ns_b, addr_b):
    """A veth pair between two namespaces, addresses with prefix, both ends up."""
    a, b = "va%s" % ns_b[-6:], "vb%s" % ns_a[-6:]
    sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
    sh("ip", "-n", ns_a, "addr", "add", addr_a, "dev", a)
    sh("ip", "-n", ns_b, "addr", "add", addr_b, "dev", b)
    sh("ip", "-n", ns_a, "link", "set", a, "up")
    sh("ip", "-n", ns_b, "link", "set", b, "up")
    return a, b


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dnat_probabilities_spread_connections(playbook, netns_factory, servers, flavour):
    node, backend = netns_factory(), netns_factory()
    veth(node, "10.250.0.1/24", backend, "10.250.0.11/24")
    for extra in ("10.250.0.12/24", "10.250.0.13/24"):
        sh("ip", "-n", backend, "addr", "add", extra, "dev", "vb%s" % node[-6:])
    # like a node's default route: the service VIP must be routable before OUTPUT DNAT rewrites it
    sh("ip", "-n", node, "route", "add", "10.96.0.0/12", "dev", "va%s" % backend[-6:])
    servers(backend, 8080)
    endpoints = ["10.250.0.11", "10.250.0.12", "10.250.0.13"]
    seps = ["PODNET-SEP-%d" % i for i in range(3)]
    svc_rules = ["-m statistic --mode random --probability %.10f -j %s" % (1.0 / (3 - i), seps[i]) for i in range(2)]
    svc_rules.append("-j %s" % seps[2])
    chains = [{"name": "PODNET-SERVICES", "rules": ["-d 10.96.0.10 -p tcp --dport 80 -j PODNET-SVC"]},
              {"name": "PODNET-SVC", "rules": svc_rules}]
    chains += [{"name": seps[i], "rules": ["-p tcp -j DNAT --to-destination %s:8080" % endpoints[i]]} for i in range(3)]
    r = playbook([nat_task(node, flavour, owner="lb", chains=chains,
                           jumps=[{"chain": "OUTPUT", "rule": "-j PODNET-SERVICES"}])])
    assert not r.failed, r
    answers = connect(node, "10.96.0.10", 80, 60)
    served_by = [a[0] for a in answers if isinstance(a, list)]
    assert len(served_by) == 60, answers
    # each endpoint has probability 1/3; all three get some of 60 connections (miss: ~3e-11)
    assert set(served_by) == set(endpoints), sorted(served_by)


def test_masquerade_rewrites_the_source(playbook, netns_factory, servers):
    client, router, server = netns_factory(), netns_factory(), netns_factory()
    veth(client, "10.251.1.2/24", router, "10.251.1.1/24")
    out_dev, server_dev = veth(router, "10.251.2.1/24", server, "10.251.2.2/24")
    sh("ip", "-n", client, "route", "add", "default", "via", "10.251.1.1")
    sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    servers(server, 8080)   # the server has no route back to 10.251.1.0/24
    r = playbook([nat_task(router, "nft", owner="egress",
                           chains=[{"name": "PODNET-MASQ", "rules": ["-s 10.251.1.0/24 -o %s -j MASQUERADE" % out_dev]}],
                           jumps=[{"chain": "POSTROUTING", "rule": "-j PODNET-MASQ"}])])
    assert not r.failed, r
    (answer,) = connect(client, "10.251.2.2", 8080, 1)
    assert answer == ["10.251.2.2", "10.251.2.1"], answer   # the server saw the router, not 10.251.1.2


def test_reject_answers_connection_refused(playbook, netns_factory, servers):
    client, router, server = netns_factory(), netns_factory(), netns_factory()
    veth(client, "10.252.1.2/24", router, "10.252.1.1/24")
    veth(router, "10.252.2.1/24", server, "10.252.2.2/24")
    sh("ip", "-n", client, "route", "add", "default", "via", "10.252.1.1")
    sh("ip", "-n", server, "route", "add", "default", "via", "10.252.2.1")
    sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    servers(server, 8080)
    assert connect(client, "10.252.2.2", 8080, 1) == [["10.252.2.2", "10.252.1.2"]]
    # kube-proxy's "service has no endpoints" rule: filter REJECT (default icmp-port-unreachable)
    r = playbook([nat_task(router, "nft", owner="svc", table="filter",
                           chains=[{"name": "PODNET-SERVICES", "rules": [
                               '-d 10.252.2.2 -p tcp --dport 8080 -m comment --comment "default/web:http has no endpoints" -j REJECT']}],
                           jumps=[{"chain": "FORWARD", "rule": "-m conntrack --ctstate NEW -j PODNET-SERVICES"}])])
    assert not r.failed, r
    assert connect(client, "10.252.2.2", 8080, 3) == ["ConnectionRefusedError"] * 3


# --- sysctls the rules need -------------------------------------------------------------------

def test_sysctls_set_with_the_rules_only_when_they_differ_and_rolled_back_with_them(playbook, netns):
    key = "net.ipv4.conf.all.route_localnet"

    def read():
        return sh("sysctl", "-n", key, netns=netns).strip()

    assert read() == "0"
    task = nat_task(netns, "nft", owner="hp", sysctls={key: 1},
                    chains=[{"name": "PODNET-HP",
                             "rules": ["-d 127.0.0.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.5:80"]}],
                    jumps=[{"chain": "OUTPUT", "rule": "-j PODNET-HP"}])
    r = playbook([task, dict(task, name="again")], check=True, diff=True)
    assert not r.failed and r[0]["changed"] and r[0]["sysctls_changed"] == [key], r
    assert r[0]["diff"]["after"]["sysctl %s" % key] == "1" and r[0]["diff"]["before"]["sysctl %s" % key] == "0"
    assert read() == "0", "check mode wrote the setting"
    r = playbook([task, dict(task, name="again")])
    assert not r.failed and r[0]["sysctls_changed"] == [key] and read() == "1", r
    assert r[0]["actions"][0].startswith("sysctl %s = 1 (was 0)" % key), r[0]["actions"]
    assert not r[1]["changed"] and r[1]["sysctls_changed"] == [], r[1]
    # a rule the kernel refuses after the setting: the setting is put back with the tables
    sh("sysctl", "-q", "-w", "%s=0" % key, netns=netns)
    bad = nat_task(netns, "nft", owner="hp", sysctls={key: 1},
                   chains=[{"name": "PODNET-HP", "rules": ["-p tcp -j DNAT --to-destination 10.0.0.1:80"]}])
    bad["podnet.fabric.nat_rule"]["table"] = "filter"
    r = playbook([bad])
    assert r.failed and read() == "0", r
    # a key this kernel does not have: one line naming it, nothing changed
    before = save(netns)
    r = playbook([nat_task(netns, "nft", owner="hp", sysctls={"net.ipv4.conf.nosuch0.route_localnet": 1},
                           chains=[{"name": "PODNET-HP2", "rules": []}])])
    assert r.failed and r[0]["msg"].startswith("sysctl net.ipv4.conf.nosuch0.route_localnet: not in this kernel"), r
    assert save(netns) == before and read() == "0"
