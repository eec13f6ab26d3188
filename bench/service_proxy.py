#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/service_proxy: 1,000 Services x 3 endpoints through the service_proxy role, next to a raw
iptables-restore of the same ruleset (issue 11; not part of the test suite).

    .venv/bin/python bench/service_proxy.py                  # generation at 100/1,000/5,000, then the lab
    .venv/bin/python bench/service_proxy.py --skip-lab       # generation only (no lab, no root needed)
    .venv/bin/python bench/service_proxy.py --objects lookup # only the manifests-lookup way of passing them

In one run:

1. **Generation** (pure, in this process): the lab's own manifests plus N selectorless ClusterIP
   Services (``bench<k>/svc-<i>``, port http 80 -> 8080; clusterIPs allocated by the role's own
   allocator) and, per Service, one declared EndpointSlice with 3 ready endpoints, one per node,
   inside that node's pod CIDR (``nodeName`` set), for N = 100, 1,000, 5,000. Timed: what the
   role's set_fact runs, ``service_proxy.node_proxy`` (the ``podnet.fabric.service_proxy_node``
   filter: parse + allocate + EndpointSlices + kube-proxy's ruleset + portmap + the ruleset text)
   for node1, cold (no node has reported any service yet: everything allocated) and steady (the
   reports of the previous run read back: what every later run computes), the steady run split
   into parse / service model / build_ruleset / text; and the YAML parse of the same manifests
   with the loader the ``podnet.fabric.manifests`` lookup uses (and libyaml's, for reference).
   Best of ``--gen-repeat``. Target: linear in the services (cost per service at 5,000 within
   1.25x of the cost per service at 1,000).
2. **Through the role**, on a lab of its own (``PODNET_LAB=benchsp``: ``scripts/lab.sh up`` brings
   up the 6 containers and converges site.yml; ``scripts/lab.sh down`` in a ``finally``; no other
   lab is touched). A playbook of one play on node1 applying only ``podnet.fabric.service_proxy``
   with ``service_proxy_objects`` = the lab's ``cluster_objects`` + the N generated objects,
   endpoints in the pod CIDRs the nodes reported. The objects go in two ways (``--objects``):
   ``lookup`` - a manifests directory of their own read with the ``podnet.fabric.manifests``
   lookup, the way the inventory reads its manifests -, and ``vars`` - one JSON file of extra vars
   (``-e @file``). Per way: **cold** (the N services new), **no-op** (the same again: every task
   changed=false, and nat_rule's ``commands`` without iptables-restore), **one endpoint changed**
   (one EndpointSlice's last address moved: one KUBE-SEP out, one in, its KUBE-SVC rewritten);
   between the two ways the N services are removed again (timed, shown). Times: the wall time of
   ``ansible-playbook`` minus an empty playbook's (Ansible's start-up: inventory, vars, the
   collection; median of 3 measured in the same run), the role's *task time* (sum of the
   durations of its tasks from the ``ansible.posix.json`` callback), per task, and nat_rule's own
   ``timing`` (read = iptables-save, plan, restore = iptables-restore, apply, total).
3. **Raw**: the same ruleset text the role gave nat_rule (``node_proxy`` recomputed here from the
   same objects and the reports read from the nodes; checked: the same KUBE-*/CNI-* rules as the
   role left on node1) fed to ``iptables-<flavour>-restore -w 5 --noflush`` inside node1's
   container, in a fresh network namespace each time (``ip netns add``), timed inside the
   container; median of 3, in the same run.

Targets (issue 11): cold <= 1.5x raw (Ansible's start-up subtracted: the cold playbook minus the
empty one, over the raw restore; nat_rule's task alone and its own total are shown beside it);
no-op and one change each <= 2 s of the role's task time; generation linear in the services. A
missed target is printed as MISSED with its figure. The machine is shared (2 CPUs): the load
average is printed before and after each part.

Run as root (podman). Takes about 5 minutes with the lab up; another lab on the same CPUs
changes every figure.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / ".collections"))
# pylint: disable=wrong-import-position
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils import service_proxy as _sp  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset  # noqa: E402
from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests as _manifests  # noqa: E402

LAB = "benchsp"
INVENTORY = "inventories/lab"
NODES = ("node1", "node2", "node3")
ME = "node1"
# the lab's inventory wires service_proxy_cluster_cidr = cluster_cidr; the rest are the role's defaults
SETTINGS = {"cluster_cidr": "10.244.0.0/16"}
DEFAULT_CIDRS = {"node1": "10.244.0.0/24", "node2": "10.244.1.0/24", "node3": "10.244.2.0/24"}
POD_FACT, SERVICE_FACT = "podnet_fabric", "podnet_fabric_services"
FACTS_DIR = "/etc/ansible/facts.d"

TARGET_COLD_RATIO = 1.5
TARGET_TASK_S = 2.0
TARGET_LINEAR = 1.25


def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "?"


def log(msg):
    print("[bench/service_proxy %s, load %s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), loadavg(), msg),
          file=sys.stderr, flush=True)


def verdict(ok):
    return "met" if ok else "MISSED"


# --- the objects ---------------------------------------------------------------------------------

def lab_objects():
    """The lab's own manifests, as the manifests lookup reads them."""
    out = []
    for path in sorted(glob.glob(str(REPO / INVENTORY / "manifests" / "*.yaml"))):
        with open(path, encoding="utf-8") as handle:
            out.extend(_cluster.flatten(list(yaml.safe_load_all(handle))))
    return out


def _host(cidr, i):
    """Pod address number ``i % 250 + 3`` in a node's /24 (.2 and below and .253+ left free)."""
    first = cidr.split("/")[0].rsplit(".", 1)[0]
    return "%s.%d" % (first, i % 250 + 3)


def generated(count, endpoints, cidrs, moved=None):
    """``count`` selectorless ClusterIP Services, each with one declared EndpointSlice of
    ``endpoints`` ready endpoints spread over the nodes (endpoint e on node e % 3, an address in
    that node's pod CIDR). ``moved``: index of the service whose last endpoint moves to .254."""
    out = []
    for i in range(count):
        ns, name = "bench%d" % (i % 50), "svc-%05d" % i
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                    "spec": {"type": "ClusterIP",
                             "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
        eps = []
        for e in range(endpoints):
            node = NODES[e % len(NODES)]
            ip = _host(cidrs[node], i + e // len(NODES) * 7)
            if moved == i and e == endpoints - 1:
                ip = "%s.254" % cidrs[node].split("/")[0].rsplit(".", 1)[0]
            eps.append({"addresses": [ip], "conditions": {"ready": True}, "nodeName": node})
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "%s-b%04x" % (name, i % 65536), "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                    "endpoints": eps})
    return out


def manifest_text(objects):
    """The objects as one ``kind: List`` document, block YAML as ``kubectl get -o yaml`` prints it."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump({"apiVersion": "v1", "kind": "List", "items": objects}, Dumper=dumper,
                     default_flow_style=False, sort_keys=False)


# --- 1. generation -------------------------------------------------------------------------------

def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def steady_split(objects, reports, settings):
    """node_proxy's steps timed apart (the same calls, in the same order)."""
    t = {}
    t["parse"], cluster = timed(_cluster.parse_objects, objects, list(NODES))
    node = cluster.node(ME)
    t["model"], model = timed(_cluster.service_model, cluster, settings["service_cidr"], settings["node_port_range"],
                              reports)
    t["build"], ruleset = timed(build_ruleset, model["services"], model["endpoint_slices"], _sp.node_view(node, settings))

    def text():
        chains = ruleset.nat_rule_params()["chains"]
        return _sp.ruleset_text(chains, ruleset.jumps)
    t["text"] = timed(text)[0]
    return t


def cached_read(text, count):
    """What the roles' filters pay for the manifest once its parse is cached (plugin_utils/manifests:
    a new process, so the directory cache, not the in-process one): best of 3."""
    with tempfile.TemporaryDirectory(prefix="podnet-bench-sp-cache-") as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(text, encoding="utf-8")
        old = os.environ.get("PODNET_FABRIC_MANIFEST_CACHE")
        os.environ["PODNET_FABRIC_MANIFEST_CACHE"] = str(Path(tmp) / "cache")
        try:
            _manifests.load(str(path))               # parsed once, written to the cache
            best = None
            for _round in range(3):
                _manifests.MEMO.clear()
                t, objs = timed(_manifests.load, str(path))
                assert len(objs) == count
                best = t if best is None else min(best, t)
        finally:
            if old is None:
                os.environ.pop("PODNET_FABRIC_MANIFEST_CACHE")
            else:
                os.environ["PODNET_FABRIC_MANIFEST_CACHE"] = old
            _manifests.MEMO.clear()
    return best


def generation(sizes, endpoints, repeat, base):
    settings = _sp.settings_with_defaults(SETTINGS)
    rows = []
    for n in sizes:
        log("generation: %d services x %d endpoints" % (n, endpoints))
        gen = generated(n, endpoints, DEFAULT_CIDRS)
        objects = base + gen
        text = manifest_text(gen)
        t_yaml, docs = timed(lambda: list(yaml.safe_load_all(text)))        # the lookup's loader
        assert len(_cluster.flatten(docs)) == len(gen)
        t_cyaml = timed(lambda: list(yaml.load_all(text, Loader=yaml.CSafeLoader)))[0] \
            if hasattr(yaml, "CSafeLoader") else None
        t_cached = cached_read(text, len(gen))
        cold, steady, plan = [], [], None
        for _round in range(repeat):
            reports = dict((h, {"podCIDR": c}) for h, c in DEFAULT_CIDRS.items())
            t, plan = timed(_sp.node_proxy, objects, ME, list(NODES), reports, SETTINGS)
            cold.append(t)
            for h in NODES:
                reports[h] = dict(reports[h], **plan["report"])
            t, again = timed(_sp.node_proxy, objects, ME, list(NODES), reports, SETTINGS)
            steady.append(t)
            assert again["ruleset"] == plan["ruleset"], "the steady plan differs from the cold one"
        split = steady_split(objects, reports, settings)
        nogc = []
        for _round in range(repeat):
            gc.collect()
            gc.disable()
            try:
                nogc.append(timed(_sp.node_proxy, objects, ME, list(NODES), reports, SETTINGS)[0])
            finally:
                gc.enable()
        rows.append({"n": n, "cold": min(cold), "steady": min(steady), "steady_med": statistics.median(steady),
                     "nogc": min(nogc),
                     "split": split, "yaml": t_yaml, "cyaml": t_cyaml, "cached": t_cached, "manifest_bytes": len(text),
                     "counts": plan["counts"], "lines": plan["ruleset"].count("\n"), "bytes": len(plan["ruleset"])})
    return rows


def report_generation(rows, endpoints, repeat, load_before):
    add = print
    add("")
    add("1. generation (pure, in-process, %s; best of %d; load %s before / %s after)"
        % (sys.executable, repeat, load_before, loadavg()))
    add("   the lab's manifests + N selectorless ClusterIP Services, each with one EndpointSlice of %d ready endpoints"
        % endpoints)
    add("   %6s %7s %7s %7s %7s | %7s %8s %7s %8s %7s | %6s %6s %6s %6s | %7s %7s %7s %7s"
        % ("N", "chains", "rules", "lines", "text MB", "cold s", "steady s", "us/svc", "no GC s", "us/svc", "parse",
           "model", "build", "text", "YAML s", "us/svc", "libyaml", "cached"))
    for r in rows:
        s = r["split"]
        add("   %6d %7d %7d %7d %7.2f | %7.3f %8.3f %7.0f %8.3f %7.0f | %6.3f %6.3f %6.3f %6.3f | %7.3f %7.0f %7s %7.3f"
            % (r["n"], r["counts"]["chains"], r["counts"]["rules"], r["lines"], r["bytes"] / 1e6, r["cold"],
               r["steady"], r["steady"] / r["n"] * 1e6, r["nogc"], r["nogc"] / r["n"] * 1e6,
               s["parse"], s["model"], s["build"], s["text"], r["yaml"], r["yaml"] / r["n"] * 1e6,
               "%.3f" % r["cyaml"] if r["cyaml"] is not None else "-", r["cached"]))
    add("   cold: no service reported yet (all allocated); steady: the reports read back (every later run); no GC:")
    add("   the steady run with Python's cyclic garbage collector off (what the growing heap costs);")
    add("   parse/model/build/text: the steady run's steps (cluster.parse_objects, service_model, build_ruleset,")
    add("   ruleset_text); YAML: yaml.safe_load_all of the N objects' manifest (pure Python: what the manifests")
    add("   lookup ran before), libyaml: CSafeLoader (what plugin_utils/manifests parses a new file with), cached:")
    add("   the same file again from its content-keyed cache. kube-proxy drops per-endpoint comments above 1,000")
    add("   endpoints, so N = 100 writes its comments and the larger sizes do not.")
    by_n = dict((r["n"], r) for r in rows)
    if 1000 in by_n and 5000 in by_n:
        per = dict((n, by_n[n]["steady"] / n) for n in (1000, 5000))
        ratio = per[5000] / per[1000]
        others = tuple((by_n[5000][k] / 5000) / (by_n[1000][k] / 1000) for k in ("nogc", "cold", "yaml"))
        add("   linear: cost per service at 5,000 / at 1,000 = %.2f (steady; <= %.2f: %s); no GC %.2f; cold %.2f;"
            " YAML %.2f" % ((ratio, TARGET_LINEAR, verdict(ratio <= TARGET_LINEAR)) + others))
    if len(rows) >= 2:
        xs, ys = [r["n"] for r in rows], [r["steady"] for r in rows]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        add("   least squares over the sizes: steady = %.3f s + %.0f us x N" % (my - slope * mx, slope * 1e6))
    return by_n


# --- 2. the lab ----------------------------------------------------------------------------------

def ansible_env(json_callback=True):
    env = dict(os.environ)
    env["PODNET_LAB"] = LAB
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    if json_callback:
        env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return env


def container(host):
    return "%s-%s" % (LAB, host)


def on(host, *cmd, stdin=None, check=True, timeout=300):
    argv = ["podman", "exec"] + (["-i"] if stdin is not None else []) + [container(host)] + list(cmd)
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d): %s%s" % (" ".join(argv[:4]), proc.returncode, proc.stdout[-2000:],
                                                        proc.stderr[-2000:]))
    return proc.stdout


def lab_containers():
    out = subprocess.run(["podman", "ps", "--all", "--format", "{{.Names}}", "--filter", "label=podnet.lab=%s" % LAB],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def lab_script(logdir, sub, timeout=1800):
    log("scripts/lab.sh %s (PODNET_LAB=%s)" % (sub, LAB))
    start = time.monotonic()
    proc = subprocess.run(["bash", "scripts/lab.sh", sub], cwd=REPO, env=ansible_env(json_callback=False),
                          capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.monotonic() - start
    (logdir / ("lab-%s.log" % sub)).write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError("scripts/lab.sh %s failed (rc %d, log %s):\n%s" % (
            sub, proc.returncode, logdir / ("lab-%s.log" % sub), "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])))
    log("scripts/lab.sh %s: %.1f s" % (sub, wall))
    return wall


def _seconds(duration):
    def parse(text):
        return datetime.datetime.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
    return (parse(duration["end"]) - parse(duration["start"])).total_seconds()


def playbook(logdir, tag, path, *extra):
    """Run a playbook on the bench lab with the json callback: wall seconds, the tasks (name,
    seconds, node1's result), the load at the start."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", INVENTORY, str(path)] + list(extra)
    load = loadavg()
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=1200, check=False)
    wall = time.monotonic() - start
    (logdir / ("%s.json" % tag)).write_text(proc.stdout, encoding="utf-8")
    (logdir / ("%s.err" % tag)).write_text(proc.stderr, encoding="utf-8")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError("%s: ansible-playbook printed no JSON (rc %d): %s" % (tag, proc.returncode, proc.stderr[-3000:]))
    tasks = []
    for play in doc["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(ME, {})
            tasks.append({"name": task["task"]["name"], "seconds": _seconds(task["task"]["duration"]),
                          "result": result})
            if result.get("failed") or result.get("unreachable"):
                raise RuntimeError("%s: task %r failed: %s" % (tag, task["task"]["name"], result.get("msg")))
    if proc.returncode != 0:
        raise RuntimeError("%s: ansible-playbook rc %d: %s" % (tag, proc.returncode, proc.stderr[-3000:]))
    changed = [t["name"] for t in tasks if t["result"].get("changed")]
    log("%s: %.2f s wall, %d tasks, changed: %s" % (tag, wall, len(tasks), changed))
    return {"wall": wall, "tasks": tasks, "load": load}


NAT_TASK = "The ruleset of kube-proxy and the hostPorts"     # the role's nat_rule task
READ_TASK = "Read th"                                         # its two report reads (own, delegated)


def nat_rule_result(run):
    found = [t for t in run["tasks"] if NAT_TASK in t["name"]]
    if len(found) != 1:
        raise RuntimeError("expected one nat_rule task, found %d" % len(found))
    return found[0]


def read_fact(host, name):
    out = on(host, "sh", "-c", "cat %s/%s.fact 2>/dev/null || true" % (FACTS_DIR, name))
    return json.loads(out) if out.strip() else {}


def node_reports():
    """What the role reads: each node's two local facts, merged (as podnet.fabric.node_reports)."""
    reports = {}
    for host in NODES:
        report = {}
        for name in (POD_FACT, SERVICE_FACT):
            fact = read_fact(host, name)
            if isinstance(fact, dict):
                report.update(fact)
        if report:
            reports[host] = report
    return reports


RAW = r"""
import json, os, resource, secrets, subprocess, sys, time
binary, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = []
for _ in range(rounds):
    ns = "pnbsp-%s" % secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with open(path) as f:
            p = subprocess.run(["ip", "netns", "exec", ns, binary, "-w", "5", "--noflush"], stdin=f,
                               capture_output=True, text=True)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            sys.exit("restore failed: " + p.stderr)
        save = subprocess.run(["ip", "netns", "exec", ns, binary.replace("-restore", "-save")], capture_output=True,
                              text=True, check=True).stdout
        rules = sum(1 for l in save.splitlines() if l.startswith(("-A KUBE-", "-A CNI-")))
        out.append({"wall": wall, "cpu": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, "rules": rules})
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
print(json.dumps(out))
"""


def restore_form(text):
    """The role's ruleset as iptables-restore takes it: nat_rule's ``ruleset`` declares each chain
    just before its rules (nat_rule orders the transaction itself), iptables-restore wants a chain
    declared before any rule jumps to it, so per table the ``:CHAIN`` lines go first (as kube-proxy
    writes them), then the rules and jumps in their order. The same lines, nothing else."""
    out, decl, rules = [], [], []
    for line in text.splitlines():
        if line.startswith("*"):
            out.append(line)
            decl, rules = [], []
        elif line == "COMMIT":
            out.extend(decl + rules + [line])
        elif line.startswith(":"):
            decl.append(line)
        else:
            rules.append(line)
    return "\n".join(out) + "\n"


def raw_restore(text, flavour, rounds):
    """The same ruleset text through iptables-restore --noflush in fresh netns inside node1, timed there."""
    path = "/tmp/podnet-bench-sp-ruleset.txt"
    on(ME, "sh", "-c", "cat > %s" % path, stdin=restore_form(text))
    on(ME, "sh", "-c", "cat > /tmp/podnet-bench-sp-raw.py", stdin=RAW)
    try:
        out = on(ME, "python3", "/tmp/podnet-bench-sp-raw.py", "iptables-%s-restore" % flavour, path, str(rounds))
    finally:
        on(ME, "rm", "-f", path, "/tmp/podnet-bench-sp-raw.py", check=False)
    return json.loads(out)


def node_rule_count(flavour):
    save = on(ME, "iptables-%s-save" % flavour)
    return sum(1 for line in save.splitlines() if line.startswith(("-A KUBE-", "-A CNI-")))


PLAY = """- hosts: %s
  gather_facts: false
  vars:
    %s
  roles:
    - podnet.fabric.service_proxy
"""
# How the N objects reach the role (the lab's own objects always come from its manifests):
WAYS = {
    # as the inventory passes them now: paths, read by the role's filter as plain data (cached)
    "manifests": 'service_proxy_manifests: "{{ cluster_manifests + [bench_manifests] }}"',
    # through a variable: the manifests lookup's result ...
    "lookup": 'service_proxy_objects: "{{ query(\'podnet.fabric.manifests\', bench_manifests) }}"',
    # ... or extra vars from a JSON file
    "vars": 'service_proxy_objects: "{{ bench_objects }}"',
}


def write_inputs(work, way, tag, objects):
    """(playbook path, extra args) that apply the role with the lab's objects + ``objects``."""
    if way in ("lookup", "manifests"):
        mdir = work / ("manifests-%s" % tag)
        mdir.mkdir(exist_ok=True)
        (mdir / "bench.yaml").write_text(manifest_text(objects), encoding="utf-8")
        return work / ("play-%s.yml" % way), ["-e", "bench_manifests=%s" % mdir]
    path = work / ("objects-%s.json" % tag)
    path.write_text(json.dumps({"bench_objects": objects}), encoding="utf-8")
    return work / "play-vars.yml", ["-e", "@%s" % path]


def role_run(logdir, work, way, tag, objects):
    path, extra = write_inputs(work, way, tag, objects)
    return playbook(logdir, "%s-%s" % (way, tag), path, *extra)


def check_noop(run):
    changed = [t["name"] for t in run["tasks"] if t["result"].get("changed")]
    nat = nat_rule_result(run)["result"]
    restored = [c for c in nat.get("commands", []) if "restore" in os.path.basename(str(c).split()[0])]
    ok = not changed and not restored
    return ok, "changed tasks: %s; nat_rule ran: %s" % (", ".join(changed) or "none", ", ".join(
        os.path.basename(str(c).split()[0]) for c in nat.get("commands", [])) or "nothing")


def lab_part(args, logdir, base):
    out = {"ways": {}}
    work = logdir / "work"
    work.mkdir()
    for way, line in WAYS.items():
        (work / ("play-%s.yml" % way)).write_text(PLAY % (args.play_hosts, line), encoding="utf-8")
    (work / "empty.yml").write_text("- {hosts: %s, gather_facts: false, tasks: []}\n" % args.play_hosts,
                                    encoding="utf-8")

    out["up"] = lab_script(logdir, "up")
    reports = node_reports()
    cidrs = dict((h, (reports.get(h) or {}).get("podCIDR") or DEFAULT_CIDRS[h]) for h in NODES)
    out["cidrs"] = cidrs
    log("pod CIDRs reported: %s" % cidrs)
    objects = generated(args.services, args.endpoints, cidrs)
    moved = generated(args.services, args.endpoints, cidrs, moved=args.services // 2)
    out["empty"] = [playbook(logdir, "empty-%d" % i, work / "empty.yml")["wall"] for i in range(3)]

    for way in args.objects:
        runs = {}
        if out["ways"]:
            runs["remove"] = role_run(logdir, work, way, "remove", [])
        runs["cold"] = role_run(logdir, work, way, "cold", objects)
        if way == "vars":
            # what loading the objects as extra vars costs by itself (in the wall time, not in any task)
            runs["empty_with_vars"] = playbook(logdir, "empty-vars", work / "empty.yml", "-e",
                                               "@%s" % (work / "objects-cold.json"))["wall"]
        cold_nat = nat_rule_result(runs["cold"])["result"]
        if not cold_nat.get("changed"):
            raise RuntimeError("%s cold: nat_rule reported no change" % way)
        flavour = cold_nat["iptables_flavour"]
        runs["noop"] = role_run(logdir, work, way, "noop", objects)
        runs["noop_ok"] = check_noop(runs["noop"])
        if "plan" not in out:
            # the ruleset nat_rule was given, recomputed from the same objects and the nodes' reports
            t, plan = timed(_sp.node_proxy, base + objects, ME, list(NODES), node_reports(), SETTINGS)
            out["plan"], out["plan_seconds"], out["flavour"] = plan, t, flavour
            out["node_rules"] = node_rule_count(flavour)
        runs["one"] = role_run(logdir, work, way, "one", moved)
        out["ways"][way] = runs

    log("raw iptables-%s-restore --noflush in fresh netns inside %s" % (out["flavour"], container(ME)))
    out["raw"] = raw_restore(out["plan"]["ruleset"], out["flavour"], args.raw_rounds)
    return out


def task_time(run):
    return sum(t["seconds"] for t in run["tasks"])


def short(name):
    return name.split(" : ", 1)[-1][:58]


def report_lab(args, lab, load_before):
    add = print
    empty = statistics.median(lab["empty"])
    raw = statistics.median(r["wall"] for r in lab["raw"])
    raw_cpu = min(r["cpu"] for r in lab["raw"])
    plan = lab["plan"]
    add("")
    add("2./3. through the role on lab '%s' (node1 over SSH; lab up %.0f s; load %s before / %s after)"
        % (LAB, lab["up"], load_before, loadavg()))
    counts = plan["counts"]
    cidrs = ", ".join("%s %s" % kv for kv in sorted(lab["cidrs"].items()))
    add("   %d services x %d endpoints + the lab's own objects: %d services, %d chains, %d rules, %d ruleset lines"
        " (%.2f MB); pod CIDRs %s" % (args.services, args.endpoints, counts["services"], counts["chains"], counts["rules"],
                                      plan["ruleset"].count("\n"), len(plan["ruleset"]) / 1e6, cidrs))
    rules_ok = all(r["rules"] == lab["node_rules"] for r in lab["raw"])
    add("   raw iptables-%s-restore -w 5 --noflush of that text, fresh netns inside %s: %s s wall (median of %d),"
        " %.3f s cpu; KUBE-/CNI- rules after it: %s, on node1 after the role: %d (%s)"
        % (lab["flavour"], container(ME), "/".join("%.3f" % r["wall"] for r in lab["raw"]), len(lab["raw"]), raw_cpu,
           "/".join(str(r["rules"]) for r in lab["raw"]), lab["node_rules"], "same" if rules_ok else "DIFFERENT"))
    add("   empty playbook on node1 (Ansible's start-up, subtracted): %s s, median %.3f s"
        % ("/".join("%.2f" % w for w in lab["empty"]), empty))
    for way, runs in lab["ways"].items():
        add("")
        passed_by = {"manifests": "paths (service_proxy_manifests: the lab's manifests + a dir of their own)",
                     "lookup": "a variable (service_proxy_objects) from the podnet.fabric.manifests lookup",
                     "vars": "a variable (service_proxy_objects) from extra vars in one JSON file (-e @file)"}[way]
        add("   objects passed by %s:" % passed_by)
        add("   %-22s %8s %9s %9s %9s | %7s %7s %7s %7s %7s | %s"
            % ("step", "wall s", "- empty", "task s", "nat task", "read", "plan", "restore", "apply", "total",
               "nat_rule"))
        for key, label in (("remove", "remove the N services"), ("cold", "cold"), ("noop", "no-op"),
                           ("one", "one endpoint changed")):
            run = runs.get(key)
            if not run:
                continue
            nat = nat_rule_result(run)
            tm = nat["result"].get("timing", {})
            r = nat["result"]
            note = "load %s; changed=%s, %d created / %d updated / %d deleted chains, %d restore lines" % (
                run["load"].split()[0], r.get("changed"), len(r.get("chains_created", [])), len(r.get("chains_updated", [])),
                len(r.get("chains_deleted", [])), r.get("restore_lines", 0))
            add("   %-22s %8.2f %9.2f %9.2f %9.2f | %7.3f %7.3f %7.3f %7.3f %7.3f | %s"
                % (label, run["wall"], run["wall"] - empty, task_time(run), nat["seconds"], tm.get("read", 0),
                   tm.get("plan", 0), tm.get("restore", 0), tm.get("apply", 0), tm.get("total", 0), note))
        add("   per task (s), cold / no-op / one changed:")
        names = [t["name"] for t in runs["cold"]["tasks"]]
        for i, name in enumerate(names):
            cells = []
            for key in ("cold", "noop", "one"):
                tasks = runs[key]["tasks"]
                cell = tasks[i] if i < len(tasks) and tasks[i]["name"] == name else None
                if cell is None:
                    cells.append("-")
                else:
                    cells.append("%.2f%s" % (cell["seconds"], "" if not cell["result"].get("skipped") else " (skip)"))
            add("     %-60s %s" % (short(name), " / ".join(cells)))
        if "empty_with_vars" in runs:
            with_vars = runs["empty_with_vars"]
            add("   the empty playbook with the same -e @file: %.2f s (%.2f s more than without: loading the objects"
                " as extra vars, part of each run's wall time, in no task)" % (with_vars, with_vars - empty))
        ok, why = runs["noop_ok"]
        add("   no-op check: %s (%s)" % ("ok" if ok else "FAILED", why))
        cold = runs["cold"]
        cold_net = cold["wall"] - empty
        nat_cold = nat_rule_result(cold)
        add("   targets:")
        add("     cold, playbook - empty = %.2f s / raw %.3f s = %.2fx (<= %.1fx: %s)"
            % (cold_net, raw, cold_net / raw, TARGET_COLD_RATIO, verdict(cold_net / raw <= TARGET_COLD_RATIO)))
        add("       beside it: nat_rule task %.2f s = %.2fx raw; nat_rule's own total %.3f s = %.2fx (restore alone %.3f s"
            " = %.2fx)" % (nat_cold["seconds"], nat_cold["seconds"] / raw, nat_cold["result"]["timing"]["total"],
                           nat_cold["result"]["timing"]["total"] / raw, nat_cold["result"]["timing"].get("restore", 0),
                           nat_cold["result"]["timing"].get("restore", 0) / raw))
        for key, label in (("noop", "no-op"), ("one", "one endpoint changed")):
            tt = task_time(runs[key])
            reads = sum(t["seconds"] for t in runs[key]["tasks"] if READ_TASK in t["name"])
            add("     %s: role task time %.2f s (<= %.0f s: %s); playbook - empty %.2f s; without the report reads"
                " (%.2f s; in site.yml podnet.fabric.pod_network has read them): %.2f s (%s)"
                % (label, tt, TARGET_TASK_S, verdict(tt <= TARGET_TASK_S), runs[key]["wall"] - empty, reads,
                   tt - reads, verdict(tt - reads <= TARGET_TASK_S)))
    add("   (controller-side recomputation of the plan for the raw step, the same function in this process: %.2f s)"
        % lab["plan_seconds"])


# --- main ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--services", type=int, default=1000, help="services through the role (default 1000)")
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[100, 1000, 5000],
                    help="service counts for the generation part")
    ap.add_argument("--gen-repeat", type=int, default=3, help="rounds per size in the generation part (best shown)")
    ap.add_argument("--raw-rounds", type=int, default=3)
    ap.add_argument("--objects", type=lambda v: v.split(","), default=["manifests", "lookup"],
                    help="how the role gets the objects: manifests, lookup, vars, comma-separated")
    ap.add_argument("--play-hosts", default=ME,
                    help="the play's hosts (default node1: the other nodes' reports are read by delegation;"
                         " 'nodes': all three at once)")
    ap.add_argument("--skip-lab", action="store_true", help="the generation part only")
    ap.add_argument("--skip-generation", action="store_true")
    ap.add_argument("--keep", action="store_true", help="leave the lab up (PODNET_LAB=%s scripts/lab.sh down)" % LAB)
    args = ap.parse_args(argv)
    for way in args.objects:
        if way not in WAYS:
            ap.error("--objects: %s" % ", ".join(WAYS))
    if not args.skip_lab and os.geteuid() != 0:
        sys.exit("bench/service_proxy: the lab part needs root (podman); --skip-lab runs the generation only")
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print("bench/service_proxy (issue 11), %s, %d CPUs, load average %s" % (started, os.cpu_count(), loadavg()))
    base = lab_objects()
    gen_rows = None
    if not args.skip_generation:
        load = loadavg()
        gen_rows = generation(args.sizes, args.endpoints, args.gen_repeat, base)
        report_generation(gen_rows, args.endpoints, args.gen_repeat, load)
        sys.stdout.flush()
    if args.skip_lab:
        return 0
    logdir = Path(tempfile.mkdtemp(prefix="podnet-bench-sp-"))
    log("logs in %s" % logdir)
    lab, failure = None, None
    load = loadavg()
    try:
        if lab_containers():
            log("a '%s' lab is left over: removing it first" % LAB)
            lab_script(logdir, "down")
        lab = lab_part(args, logdir, base)
    except (RuntimeError, subprocess.TimeoutExpired, KeyboardInterrupt, AssertionError, ValueError) as exc:
        failure = exc
    finally:
        if args.keep:
            log("--keep: the lab stays up (PODNET_LAB=%s bash scripts/lab.sh down removes it)" % LAB)
        else:
            try:
                lab_script(logdir, "down")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log("lab down FAILED: %s" % exc)
            left = lab_containers()
            if left:
                log("containers of lab '%s' still present: %s" % (LAB, " ".join(left)))
    if lab:
        report_lab(args, lab, load)
    if failure:
        print("\nFAILED: %s (logs in %s)" % (failure, logdir), file=sys.stderr)
        return 1
    bad = [way for way, runs in lab["ways"].items() if not runs["noop_ok"][0]]
    if bad:
        print("\nno-op check failed: %s" % ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
