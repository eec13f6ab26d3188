"""Benchmark podnet.fabric.nat_rule on a kube-proxy-shaped ruleset (not part of the test suite).

    .venv/bin/python bench/nat_rule.py [--services 1000] [--endpoints 3] [--builtin-rules 100]

In one run, each inside a throw-away network namespace (the host's tables are never touched):

  1. nat_rule, cold: 1,000 services x 3 endpoints (~15,000 restore lines: KUBE-SERVICES,
     per-service KUBE-SVC-*, per-endpoint KUBE-SEP-*, statistic probabilities, the 0x4000
     masquerade mark, KUBE-POSTROUTING), written the way kube-proxy writes rules;
  2. nat_rule again, unchanged (must be changed=false without running iptables-restore);
  3. nat_rule with one service's endpoints changed (one SEP out, one in, the SVC rewritten);
  4. a raw ``iptables-restore --noflush`` of the same ruleset text (no Ansible);
  5. 100 DNAT rules through ansible.builtin.iptables (one module run per rule), cold and again.

The targets are taken on the module's own time, which it reports in its result
(``timing``: read = iptables-save, plan, restore = iptables-restore, total), side by side
with the raw restore of the same text in the same run.

An Ansible step's time is its playbook's wall time minus an empty playbook's wall time measured
in the same run (Ansible's start-up is not the module's cost).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name  # noqa: E402

TARGET_PYTHON = "/usr/bin/python3"   # what a Debian/Raspberry Pi node runs modules with


# --- the ruleset ------------------------------------------------------------------------------

def kube_ruleset(services, endpoints, moved=None):
    """(chains, jumps) for nat_rule, rules spelled as kube-proxy writes them.

    ``moved``: index of a service whose last endpoint is replaced by a new one.
    """
    cluster_cidr = "10.244.0.0/16"
    chains = [
        {"name": "KUBE-MARK-MASQ", "rules": ["-j MARK --or-mark 0x4000"]},
        {"name": "KUBE-POSTROUTING", "rules": [
            "-m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-j MARK --xor-mark 0x4000",
            '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully']},
        {"name": "KUBE-NODEPORTS", "rules": []},
    ]
    services_rules = []
    for i in range(services):
        name = "ns%d/svc%d:http" % (i % 50, i)
        vip = "10.96.%d.%d" % (i // 250, i % 250 + 1)
        svc = kube_chain_name("KUBE-SVC-", name, "tcp")
        services_rules.append('-m comment --comment "%s cluster IP" -m tcp -p tcp -d %s --dport 80 -j %s' % (name, vip, svc))
        svc_rules = ['-m comment --comment "%s cluster IP" -m tcp -p tcp -d %s --dport 80 ! -s %s -j KUBE-MARK-MASQ'
                     % (name, vip, cluster_cidr)]
        seps = []
        for e in range(endpoints):
            host = 10 if (moved == i and e == endpoints - 1) else e
            ip = "10.%d.%d.%d" % (244 + host, i // 250, i % 250 + 1)
            ep = "%s:8080" % ip
            sep = kube_chain_name("KUBE-SEP-", name, "tcp", ep)
            if e < endpoints - 1:
                svc_rules.append('-m comment --comment "%s -> %s" -m statistic --mode random --probability %0.10f -j %s'
                                 % (name, ep, 1.0 / (endpoints - e), sep))
            else:
                svc_rules.append('-m comment --comment "%s -> %s" -j %s' % (name, ep, sep))
            seps.append({"name": sep, "rules": [
                '-m comment --comment "%s" -s %s -j KUBE-MARK-MASQ' % (name, ip),
                '-m comment --comment "%s" -m tcp -p tcp -j DNAT --to-destination %s' % (name, ep)]})
        chains.append({"name": svc, "rules": svc_rules})
        chains += seps
    services_rules.append('-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
                          'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    chains.insert(3, {"name": "KUBE-SERVICES", "rules": services_rules})
    jumps = [
        {"chain": "PREROUTING", "rule": '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'},
        {"chain": "OUTPUT", "rule": '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'},
        {"chain": "POSTROUTING", "rule": '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'},
    ]
    return chains, jumps


def restore_text(chains, jumps):
    """The same ruleset as one iptables-restore input (what kube-proxy would feed it)."""
    lines = ["*nat"] + [":%s - [0:0]" % c["name"] for c in chains]
    for c in chains:
        lines += ["-A %s %s" % (c["name"], r) for r in c["rules"]]
    lines += ["-A %s %s" % (j["chain"], j["rule"]) for j in jumps]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# --- running things ---------------------------------------------------------------------------

class Netns(object):
    def __init__(self):
        self.names = []

    def make(self):
        name = "pnb-%s" % secrets.token_hex(3)
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        self.names.append(name)
        return name

    def cleanup(self):
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def ansible_env():
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", PATH="%s:%s" % (VENV_BIN, env.get("PATH", "")))
    return env


def _children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Clock(object):
    """Wall and CPU seconds (user + sys of finished child processes) of a block."""

    def __enter__(self):
        self.cpu0 = _children_cpu()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = _children_cpu() - self.cpu0


CPU = {}   # label -> [cpu seconds]


def playbook(workdir, tasks, label, netns=None):
    """Run a one-play playbook; returns (wall seconds, list of task results)."""
    path = Path(workdir) / ("%s.json" % label)
    path.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % TARGET_PYTHON, str(path)]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    with Clock() as clock:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), check=False)
    wall = clock.wall
    CPU.setdefault(label, []).append(clock.cpu)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit("%s: ansible-playbook printed no JSON (rc=%d)\n%s" % (label, proc.returncode, proc.stderr[-3000:]))
    results = [t["hosts"]["localhost"] for p in doc["plays"] for t in p["tasks"]]
    for r in results:
        if r.get("failed"):
            raise SystemExit("%s failed: %s" % (label, r.get("msg")))
    return wall, results


def empty_playbook(workdir, netns=None, runs=3, label="empty"):
    return statistics.median(playbook(workdir, [], label, netns)[0] for run in range(runs))


def nat_rule_task(ns, chains, jumps, form="text"):
    """The task; ``form`` "text" passes the ruleset as one string, "list" as chains/jumps items."""
    args = {"netns": ns, "owner": "kube-services", "purge": True}
    if form == "text":
        args["ruleset"] = restore_text(chains, jumps)
    else:
        args.update(chains=chains, jumps=jumps)
    return {"podnet.fabric.nat_rule": args}


def builtin_tasks(count):
    rules = [{"d": "10.97.%d.%d" % (i // 250, i % 250 + 1), "to": "10.245.%d.%d:8080" % (i // 250, i % 250 + 1)}
             for i in range(count)]
    return [{"ansible.builtin.iptables": {
        "table": "nat", "chain": "OUTPUT", "protocol": "tcp", "destination": "{{ item.d }}",
        "destination_port": "80", "jump": "DNAT", "to_destination": "{{ item.to }}"},
        "loop": rules}]


def timed_restore(ns, text, binary="iptables-restore"):
    with Clock() as clock:
        proc = subprocess.run(["ip", "netns", "exec", ns, binary, "-w", "5", "--noflush"], input=text, text=True,
                              capture_output=True, check=False)
    wall = clock.wall
    CPU.setdefault("raw", []).append(clock.cpu)
    if proc.returncode:
        raise SystemExit("raw restore failed: %s" % proc.stderr)
    return wall


def module_direct(ns, chains, jumps, label="module"):
    """The module alone: its Python file run with the args, no Ansible (seconds, result)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": nat_rule_task(ns, chains, jumps)["podnet.fabric.nat_rule"]}, f)
        f.flush()
        env = dict(os.environ, PYTHONPATH="%s:%s" % (REPO / ".collections", _ansible_lib()))
        with Clock() as clock:
            proc = subprocess.run([TARGET_PYTHON, str(REPO / "plugins/modules/nat_rule.py"), f.name],
                                  capture_output=True, text=True, env=env, check=False)
        wall = clock.wall
        CPU.setdefault(label, []).append(clock.cpu)
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    return wall, result


def _ansible_lib():
    import ansible
    return str(Path(ansible.__file__).parent.parent)


def best(values):
    if len(values) == 1:
        return "%.3f" % values[0]
    return "%.3f (%.3f-%.3f)" % (statistics.median(values), min(values), max(values))


# --- main -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--builtin-rules", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of steps 1-4 (median and range are shown)")
    ap.add_argument("--form", choices=["text", "list"], default="text",
                    help="pass the ruleset as one string (ruleset:) or as chains/jumps list items")
    ap.add_argument("--skip-builtin", action="store_true", help="skip step 5 (about 80 s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")

    chains, jumps = kube_ruleset(args.services, args.endpoints)
    text = restore_text(chains, jumps)
    n_lines = text.count("\n")
    n_rules = sum(len(c["rules"]) for c in chains) + len(jumps)
    moved = kube_ruleset(args.services, args.endpoints, moved=args.services // 2)
    print("ruleset: %d services x %d endpoints: %d chains, %d rules, %d restore lines; passed as %s"
          % (args.services, args.endpoints, len(chains), n_rules, n_lines,
             "one ruleset string" if args.form == "text" else "chains/jumps list items"))
    print("load average before: %s" % open("/proc/loadavg").read().split()[:3])

    ns = Netns()
    t = {k: [] for k in ("base", "cold", "noop", "one", "raw", "mcold", "mnoop", "mone")}
    own = {k: [] for k in ("cold", "noop", "one")}      # the module's own timing split (its result)
    notes = {}
    try:
        with tempfile.TemporaryDirectory(prefix="podnet-bench-") as work:
            def step(tasks, label):
                """An Ansible step, paired with an empty playbook run just before it."""
                base = playbook(work, [], "empty")[0]
                t["base"].append(base)
                wall, results = playbook(work, tasks, label)
                return wall - base, results

            for round_ in range(args.repeat):
                a = ns.make()
                wall, (r,) = step([nat_rule_task(a, chains, jumps, args.form)], "cold")
                assert r["changed"] and r["restore_lines"] >= n_lines, r
                t["cold"].append(wall)
                own["cold"].append(r["timing"])
                flavour = r["iptables_flavour"]
                notes["cold"] = "%d chains created, %d restore lines" % (len(r["chains_created"]), r["restore_lines"])
                wall, (r,) = step([nat_rule_task(a, chains, jumps, args.form)], "noop")
                assert not r["changed"] and not any("restore" in c for c in r["commands"]), r
                t["noop"].append(wall)
                own["noop"].append(r["timing"])
                notes["noop"] = "changed=%s, ran: %s" % (r["changed"], ", ".join(os.path.basename(c) for c in r["commands"]))
                wall, (r,) = step([nat_rule_task(a, moved[0], moved[1], args.form)], "one")
                assert r["changed"], r
                t["one"].append(wall)
                own["one"].append(r["timing"])
                notes["one"] = "%d created, %d updated, %d deleted; %d restore lines" % (
                    len(r["chains_created"]), len(r["chains_updated"]), len(r["chains_deleted"]), r["restore_lines"])
                # back to the original ruleset for the next round's no-op / change
                b = ns.make()
                t["raw"].append(timed_restore(b, text, "iptables-%s-restore" % flavour))
                # the module alone, without Ansible
                m = ns.make()
                t["mcold"].append(module_direct(m, chains, jumps, "mcold")[0])
                wall, r = module_direct(m, chains, jumps, "mnoop")
                assert not r["changed"], r
                t["mnoop"].append(wall)
                t["mone"].append(module_direct(m, moved[0], moved[1], "mone")[0])
                for name in (a, b, m):
                    subprocess.run(["ip", "netns", "del", name], check=False)
                    ns.names.remove(name)

            builtin = builtin_again = None
            if not args.skip_builtin:
                c = ns.make()
                base_ns = empty_playbook(work, netns=c, runs=1, label="empty-ns")
                wall, results = playbook(work, builtin_tasks(args.builtin_rules), "builtin", netns=c)
                builtin = wall - base_ns
                base_ns = empty_playbook(work, netns=c, runs=1, label="empty-ns")
                wall, (r,) = playbook(work, builtin_tasks(args.builtin_rules), "builtin-again", netns=c)
                builtin_again = wall - base_ns
                assert not r["changed"], r
    finally:
        ns.cleanup()

    cold, noop, one, raw = (statistics.median(t[k]) for k in ("cold", "noop", "one", "raw"))
    print("load average after: %s" % open("/proc/loadavg").read().split()[:3])
    print()
    print("empty playbook (subtracted from each Ansible step): %s s" % best(t["base"]))
    base_cpu = statistics.median(CPU["empty"])
    print()
    print("%-40s %-24s %-9s %s" % ("step", "wall s: median (range)", "cpu s", "notes"))
    rows = [
        ("1. nat_rule cold (%s)" % flavour, t["cold"], "cold", notes["cold"]),
        ("2. nat_rule again, unchanged", t["noop"], "noop", notes["noop"]),
        ("3. nat_rule, one service changed", t["one"], "one", notes["one"]),
        ("4. raw iptables-%s-restore" % flavour, t["raw"], "raw", "the same %d lines, no Ansible" % n_lines),
        ("   module alone, cold", t["mcold"], "mcold", "its Python file run directly (no Ansible)"),
        ("   module alone, unchanged", t["mnoop"], "mnoop", ""),
        ("   module alone, one service changed", t["mone"], "mone", ""),
    ]
    for label, values, key, note in rows:
        cpu = min(CPU[key]) - (base_cpu if key in ("cold", "noop", "one") else 0)
        print("%-40s %-24s %-9.3f %s" % (label, best(values), cpu, note))
    if builtin is not None:
        label = "5. ansible.builtin.iptables x%d" % args.builtin_rules
        base_ns_cpu = statistics.median(CPU["empty-ns"])
        print("%-40s %-24s %-9.3f %s" % (label, "%.3f" % builtin, CPU["builtin"][0] - base_ns_cpu, "one module run per rule"))
        print("%-40s %-24s %-9.3f %s" % (label + " again", "%.3f" % builtin_again,
                                         CPU["builtin-again"][0] - base_ns_cpu, "changed=False"))
    print("(Ansible steps: minus an empty playbook run just before each, wall %.3f s and cpu %.3f s (medians);"
          " cpu = user + sys of all child processes, the lowest of the rounds)" % (statistics.median(t["base"]), base_cpu))
    print()
    print("the module's own time, from its result's timing (read = iptables-save, plan, restore = iptables-restore,"
          " total = read + plan + apply; medians):")
    for key, label in (("cold", "1. cold"), ("noop", "2. unchanged"), ("one", "3. one service changed")):
        split = dict((k, statistics.median(x.get(k, 0.0) for x in own[key])) for k in ("read", "plan", "restore", "apply", "total"))
        print("   %-28s read %.3f  plan %.3f  restore %.3f  apply %.3f  total %.3f" % (
            label, split["read"], split["plan"], split["restore"], split["apply"], split["total"]))
    own_cold = statistics.median(x["total"] for x in own["cold"])
    own_one = statistics.median(x["total"] for x in own["one"])
    raw_cpu = min(CPU["raw"])
    print()
    print("%-52s %10s %10s" % ("target", "measured", "wanted"))
    print("%-52s %10.2f %10s" % ("cold: module's own total / raw restore (wall)", own_cold / raw, "<= 1.3"))
    print("%-52s %10.2f %10s" % ("cold: module alone / raw restore (cpu)", min(CPU["mcold"]) / raw_cpu, ""))
    print("%-52s %10.3f %10s" % ("one changed service: module's own seconds", own_one, "<= 0.3"))
    print("%-52s %10.2f %10s" % ("cold through Ansible / raw restore (wall)", cold / raw, ""))
    print("%-52s %10.3f %10s" % ("no-op seconds (changed=false, no iptables-restore)", noop, "<= 1"))
    print("%-52s %10.3f %10s" % ("one changed service seconds", one, "<= 0.3"))
    if builtin is not None:
        per_nat = cold / n_rules
        per_builtin = builtin / args.builtin_rules
        print("%-52s %10.0f %10s" % ("per rule: ansible.builtin.iptables / nat_rule, cold", per_builtin / per_nat, ">= 1000"))
        print("%-52s %10.0f %10s" % ("per rule: the same, unchanged runs",
                                     (builtin_again / args.builtin_rules) / (noop / n_rules), ""))
        print("(per rule: nat_rule cold %.1f us; ansible.builtin.iptables %.0f ms cold, %.0f ms again)"
              % (per_nat * 1e6, per_builtin * 1e3, builtin_again / args.builtin_rules * 1e3))


if __name__ == "__main__":
    main()
