#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/lab: converge times of the whole podman lab, and pod<->pod throughput next to node<->node.

Issue 4. In one run, on a lab of its own (``PODNET_LAB=bench``: containers ``bench-node1`` ...,
segments ``bench-rack-a`` ...; other labs are never touched):

1. ``lab/up.yml`` (image, segments, containers; timed apart), then ``playbooks/site.yml`` on the
   fresh lab (cold converge), then again (no-op converge: the recap must say changed=0 for every
   host; the tasks that did report a change are listed otherwise).
2. iperf3, TCP, one stream, always client on node1 -> server on node2/node3, ``-t 5 -O 1``
   (the first second, slow start, is omitted), the server a one-off (``-s -1``) started with
   ``systemd-run`` inside the server's container (and pod netns), stopped in a ``finally``.
   In the lab's default mode crosssubnet, round-robin ``--runs`` times:

   * node1 -> node2 node IPs (rack A, one segment): baseline A;
   * pod tools-1 (node1) -> pod web-2 (node2): direct route, i.e. host-gw;
   * node1 -> node3 node IPs (rack B, through the router): baseline B;
   * pod tools-1 (node1) -> pod web-3 (node3): VXLAN through the router (crosssubnet's tunnel leg).

   Then ``site.yml -e pod_routing_mode=vxlan`` (timed; followed by a no-op converge in that mode,
   also must be changed=0) and, round-robin again, baseline A and tools-1 -> web-2 through VXLAN,
   so host-gw and vxlan are measured on the same two hosts, each next to its own baseline.
   Before each series the route node1 uses for the server address is checked (``ip route get``):
   a figure is never printed under the wrong mode.
3. The lab is removed in a ``finally`` (``lab/down.yml``, ``PODNET_LAB=bench``).

Ratios are medians of pods over medians of the matching node<->node baseline. Targets (issue 4):
no-op converge <= 60 s, host-gw >= 0.95x, vxlan >= 0.8x of node<->node (the crosssubnet VXLAN
leg is held to the vxlan target). All packets stay on the lab's internal segments. The machine
is shared (2 CPUs, other jobs): the load average is printed at every step, and the throughput
of veth/bridge/VXLAN in containers is CPU-bound, so figures move with the load.

Issue 9 (the lab over SSH): targets no-op converge <= 15 s and cold <= 45 s on the 3-node lab
(after the image exists), and how converge grows with the lab: ``--nodes 3,6,12`` brings up a lab
of each size in turn (lab/inventory.py: node4... alternate racks A and B, one web pod each),
converges it cold and again (no-op), prints the times per node and removes it; no throughput
runs then. The cost per node should stay flat (Ansible's forks, nothing of our own).

Run as root: ``.venv/bin/python bench/lab.py [--runs 5] [--seconds 5] [--keep]`` or
``.venv/bin/python bench/lab.py --nodes 3,6,12``. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
INVENTORY = "inventories/lab"
LAB = "bench"
NODES = ("node1", "node2", "node3")
IPERF_PORT = 5201
IPERF_UNIT = "podnet-bench-iperf3"
VXLAN_DEV = "flannel.1"          # pod_routing_vxlan_name's default

# Targets from issue 4, no-op and cold tightened by issue 9 (the lab over SSH).
TARGET_NOOP_S = 15.0
TARGET_COLD_S = 45.0
TARGET_HOSTGW = 0.95
TARGET_VXLAN = 0.80


# --- helpers -------------------------------------------------------------------------------------

def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "?"


def log(msg):
    print("[bench/lab %s, load %s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), loadavg(), msg),
          file=sys.stderr, flush=True)


def ansible_env():
    env = dict(os.environ)
    env["PODNET_LAB"] = LAB                         # every playbook acts on this lab only
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    # Time per task (summary after the recap only: the run's output keeps its usual shape).
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    env["PROFILE_TASKS_SUMMARY_ONLY"] = "true"
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "100"
    return env


RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
TASK_TIME = re.compile(r"^(.*?) -+ (\d+\.\d+)s$")


def parse_run(text):
    """(recap {host: {ok, changed, unreachable, failed}}, [(task, host)] that reported a change,
    [(task, seconds)] slowest first, from profile_tasks)."""
    recap, changed, times, task, in_recap = {}, [], [], None, False
    for line in text.splitlines():
        if line.startswith("TASKS RECAP"):
            in_recap = "tasks"
            continue
        if in_recap == "tasks":
            m = TASK_TIME.match(line.strip())
            if m:
                times.append((m.group(1), float(m.group(2))))
            continue
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            m = RECAP.match(line.strip())
            if m:
                recap[m.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:])))
            continue
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        m = re.match(r"^changed: \[([^\]]+)\]", line)
        if m and (task, m.group(1)) not in changed:
            changed.append((task, m.group(1)))
    return recap, changed, times


def playbook(logdir, tag, path, *extra, timeout=3600, inventory=None):
    """Run one playbook on the bench lab; returns a dict with wall seconds, recap and changed tasks.
    ``inventory``: a variant of inventories/lab (lab/inventory.py) instead of the lab itself."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory or INVENTORY), path] + list(extra)
    if inventory:
        argv += ["-e", "lab_state_dir=%s" % (REPO / ".cache" / "lab" / LAB)]
    log("%s: %s" % (tag, " ".join(argv[1:])))
    load = loadavg()
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    (logdir / ("%s.log" % tag)).write_text(out, encoding="utf-8")
    recap, changed, times = parse_run(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d, log %s):\n%s" % (tag, proc.returncode, logdir / ("%s.log" % tag),
                                                               "\n".join(out.splitlines()[-40:])))
    log("%s: %.1f s, changed=%d" % (tag, wall, sum(h["changed"] for h in recap.values())))
    return {"wall": wall, "recap": recap, "changed_tasks": changed, "load": load, "task_times": times,
            "changed": sum(h["changed"] for h in recap.values())}


def container(host):
    return "%s-%s" % (LAB, host)


def on(host, *cmd, netns=None, check=True, timeout=120):
    """Run a command in a lab container (in one of its network namespaces when ``netns`` is set)."""
    argv = ["podman", "exec", container(host)] + (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d): %s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def lab_containers():
    out = subprocess.run(["podman", "ps", "--all", "--format", "{{.Names}}", "--filter", "label=podnet.lab=%s" % LAB],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def floor(logdir, tasks=10, execs=10):
    """What a remote task costs at least here: one ``podman exec`` round trip, Ansible's start-up
    (an empty play on the nodes) and ``tasks`` x ansible.builtin.ping on the nodes (one module
    transfer + run per task and host, like every module task of site.yml)."""
    rtt = []
    for _attempt in range(execs):
        start = time.monotonic()
        on("node1", "true")
        rtt.append(time.monotonic() - start)
    empty, pings = logdir / "floor-empty.yml", logdir / "floor-ping.yml"
    empty.write_text("- {hosts: nodes, gather_facts: false, tasks: []}\n", encoding="utf-8")
    pings.write_text("- hosts: nodes\n  gather_facts: false\n  tasks:\n"
                     + "".join("    - {name: ping %d, ansible.builtin.ping: {}}\n" % i for i in range(tasks)),
                     encoding="utf-8")
    e = playbook(logdir, "floor-empty", str(empty))
    p = playbook(logdir, "floor-ping", str(pings))
    return {"exec": statistics.median(rtt), "empty": e["wall"], "pings": p["wall"], "tasks": tasks,
            "per_task": (p["wall"] - e["wall"]) / tasks, "load": e["load"]}


# --- the endpoints -------------------------------------------------------------------------------

class Endpoint:
    """A host's own netns (a node IP) or a pod's netns on a node."""

    def __init__(self, host, pod=None):
        self.host, self.pod = host, pod
        self.netns = "pod-default-%s" % pod if pod else None
        dev = "eth0"
        addrs = json.loads(on(host, "ip", "-j", "addr", "show", "dev", dev, netns=self.netns))
        self.ip = next(a["local"] for link in addrs for a in link["addr_info"] if a["family"] == "inet")
        self.mtu = addrs[0]["mtu"]

    def __str__(self):
        return "%s/%s" % (self.host, self.pod) if self.pod else self.host


def route_on_node(node, dest):
    """How ``node`` (its own netns, i.e. after the pod's bridge) forwards to ``dest``."""
    r = json.loads(on(node, "ip", "-j", "route", "get", dest))[0]
    mtu = json.loads(on(node, "ip", "-j", "link", "show", "dev", r["dev"]))[0]["mtu"]
    return {"dev": r["dev"], "gateway": r.get("gateway"), "mtu": mtu}


def describe(route):
    return "%s%s mtu %d" % (route["dev"], " via %s" % route["gateway"] if route["gateway"] else "", route["mtu"])


def iperf(client, server, seconds):
    """One TCP test client -> server; Mbit/s received, retransmits, sender/receiver CPU %."""
    ns = ["ip", "netns", "exec", server.netns] if server.netns else []
    on(server.host, "systemctl", "reset-failed", IPERF_UNIT, check=False)
    on(server.host, "systemd-run", "--quiet", "--collect", "--unit", IPERF_UNIT, *ns,
       "iperf3", "-s", "-1", "-B", server.ip, "-p", str(IPERF_PORT))
    try:
        for _attempt in range(50):
            if on(server.host, "ss", "-Hltn", "sport = :%d" % IPERF_PORT, netns=server.netns).strip():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("iperf3 server on %s did not listen" % server)
        out = on(client.host, "iperf3", "-c", server.ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-O", "1",
                 "-J", netns=client.netns, check=False, timeout=seconds + 60)
        res = json.loads(out)
        if "error" in res:
            raise RuntimeError("iperf3 %s -> %s: %s" % (client, server, res["error"]))
        end = res["end"]
        cpu = end.get("cpu_utilization_percent", {})
        return {"mbps": end["sum_received"]["bits_per_second"] / 1e6,
                "retr": end["sum_sent"].get("retransmits"),
                "cpu_snd": cpu.get("host_total"), "cpu_rcv": cpu.get("remote_total"),
                "load": loadavg()}
    finally:
        on(server.host, "systemctl", "stop", IPERF_UNIT, check=False)


def series(pairs, runs, seconds):
    """Round-robin: run 1 of every pair, then run 2 of every pair... (load drifts hit all alike)."""
    results = {p["key"]: [] for p in pairs}
    for i in range(runs):
        for p in pairs:
            r = iperf(p["client"], p["server"], seconds)
            results[p["key"]].append(r)
            log("run %d/%d %-34s %8.0f Mbit/s  retr %s" % (i + 1, runs, p["label"], r["mbps"], r["retr"]))
    return results


def check_route(node, dest, want_dev, want_gw=None):
    route = route_on_node(node, dest)
    if route["dev"] != want_dev or (want_gw and route["gateway"] != want_gw):
        raise RuntimeError("%s routes %s through %s, expected %s%s: the measurement would not be the mode it "
                           "claims" % (node, dest, describe(route), want_dev, " via %s" % want_gw if want_gw else ""))
    return route


# --- the report ----------------------------------------------------------------------------------

def verdict(ok):
    return "met" if ok else "MISSED"


def report(args, conv, rows, load_before):
    add = print
    add("")
    add("bench/lab (issue 4): podman lab '%s', %s, %d CPUs, load average %s before / %s after"
        % (LAB, args.started, os.cpu_count(), load_before, loadavg()))
    add("")
    add("converge (playbooks/site.yml on node1..3; wall time of ansible-playbook)")
    for key, label in (("up", "lab up: lab/up.yml (segments, 6 containers)"),
                       ("cold", "cold converge (crosssubnet, fresh lab)"),
                       ("noop", "no-op converge (crosssubnet)"),
                       ("to_vxlan", "mode switch: -e pod_routing_mode=vxlan"),
                       ("noop_vxlan", "no-op converge (vxlan)")):
        if key not in conv:
            continue
        c = conv[key]
        extra = ""
        if key.startswith("noop"):
            extra = "changed=0: %s" % ("yes" if c["changed"] == 0 else "NO")
            if key == "noop":
                extra += "; <= %.0f s: %s" % (TARGET_NOOP_S, verdict(c["wall"] <= TARGET_NOOP_S))
        if key == "cold":
            extra = "<= %.0f s: %s" % (TARGET_COLD_S, verdict(c["wall"] <= TARGET_COLD_S))
        add("  %-46s %7.1f s  changed=%-3d load %-5s %s" % (label, c["wall"], c["changed"], c["load"].split()[0], extra))
        if key.startswith("noop") and c["changed_tasks"]:
            for task, host in c["changed_tasks"]:
                add("      changed on a no-op run: %s: %s" % (host, task))
        if key == "noop" and c["task_times"]:
            add("      slowest tasks: %s" % "; ".join(
                "%s %.1f s" % (t.split(" : ", 1)[-1].split(" (")[0], sec) for t, sec in c["task_times"][:5]))
            remote = [sec for t, sec in c["task_times"] if sec >= 1.0]
            tasks_s = sum(sec for _task, sec in c["task_times"])
            add("      %d of %d tasks took >= 1 s (together %.1f s); all tasks %.1f s; before the first task %.1f s"
                % (len(remote), len(c["task_times"]), sum(remote), tasks_s, c["wall"] - tasks_s))
    if "floor" in conv:
        f = conv["floor"]
        add("  floor, same lab: podman exec round trip %.2f s (median of 10); empty play on the nodes %.1f s;"
            % (f["exec"], f["empty"]))
        add("    %d x ansible.builtin.ping on the nodes (SSH) %.1f s -> %.1f s per remote module task (3 hosts in parallel)"
            % (f["tasks"], f["pings"], f["per_task"]))
    if not rows:
        return
    add("")
    add("throughput: iperf3 TCP, 1 stream, -t %d -O 1, client on node1 -> server; median of %d runs"
        % (args.seconds, args.runs))
    add("  endpoints (eth0): %s" % getattr(args, "endpoints", "?"))
    header = ("path", "node1's route to the server", "Mbit/s", 6 * args.runs, "runs", "ratio", "paired (range)", "target")
    add("  %-44s %-32s %7s  %-*s %6s  %-17s %s" % header)
    for row in rows:
        runs = "/".join("%.0f" % r["mbps"] for r in row["runs"])
        ratio = target = paired = ""
        if row.get("base"):
            ratio = "%.2f" % row["ratio"]
            paired = "%.2f (%.2f-%.2f)" % (statistics.median(row["paired"]), min(row["paired"]), max(row["paired"]))
            target = "%s >= %.2fx of %s: %s" % (row["mode"], row["target"], row["base"], verdict(row["ratio"] >= row["target"]))
        add("  %-44s %-32s %7.0f  %-*s %6s  %-17s %s" % (row["label"], row["route"], row["median"], 6 * args.runs, runs,
                                                         ratio, paired, target))
    add("  ratio: median of the pod runs / median of the baseline runs (the target is judged on it); paired: the")
    add("  median of run i pod / run i baseline, the two measured back to back, with its range: the spread is load noise")
    add("  (retransmits per run: %s)" % "; ".join(
        "%s %s" % (row["short"], "/".join(str(r["retr"]) for r in row["runs"])) for row in rows))
    add("  (sender/receiver CPU %% per run: %s)" % "; ".join(
        "%s %s" % (row["short"], "/".join("%.0f:%.0f" % (r["cpu_snd"] or 0, r["cpu_rcv"] or 0) for r in row["runs"]))
        for row in rows))


def rows_for(results, pairs):
    rows = []
    for p in pairs:
        runs = results[p["key"]]
        row = {"label": p["label"], "short": p["key"], "route": p["route"], "runs": runs,
               "median": statistics.median(r["mbps"] for r in runs)}
        if p.get("base"):
            base = statistics.median(r["mbps"] for r in results[p["base"]])
            row.update(base=p["base_label"], mode=p["mode"], target=p["target"], ratio=row["median"] / base,
                       paired=[r["mbps"] / b["mbps"] for r, b in zip(runs, results[p["base"]])])
        rows.append(row)
    return rows


# --- converge vs lab size (issue 9) -------------------------------------------------------------

def scaling(args, logdir):
    """For each node count: a lab of that size, lab up, cold converge, no-op converge, lab down."""
    sys.path.insert(0, str(REPO / "lab"))
    # lab/inventory.py
    import inventory as labinventory  # pylint: disable=import-outside-toplevel

    out = []
    for n in args.nodes:
        inv = labinventory.scaled(n).write(logdir / ("inventory-%d" % n))
        row = {"nodes": n}
        try:
            row["up"] = playbook(logdir, "up-%d" % n, "lab/up.yml", inventory=inv)
            row["cold"] = playbook(logdir, "cold-%d" % n, "playbooks/site.yml", inventory=inv)
            row["noop"] = playbook(logdir, "noop-%d" % n, "playbooks/site.yml", inventory=inv)
        finally:
            playbook(logdir, "down-%d" % n, "lab/down.yml", inventory=inv)
        out.append(row)
    return out


def report_scaling(args, rows, load_before):
    add = print
    add("")
    add("bench/lab --nodes (issue 9): podman lab '%s' over SSH, %s, %d CPUs, forks 10, load %s before / %s after"
        % (LAB, args.started, os.cpu_count(), load_before, loadavg()))
    add("  %5s  %9s  %9s  %9s  %10s  %9s  %10s  %s" % ("nodes", "lab up", "cold", "cold/node", "no-op", "noop/node",
                                                       "changed=0", "targets (3 nodes: cold <= 45 s, no-op <= 15 s)"))
    for r in rows:
        n, cold, noop = r["nodes"], r["cold"], r["noop"]
        target = ""
        if n == 3:
            target = "cold %s, no-op %s" % (verdict(cold["wall"] <= TARGET_COLD_S), verdict(noop["wall"] <= TARGET_NOOP_S))
        add("  %5d  %7.1f s  %7.1f s  %7.2f s  %8.1f s  %7.2f s  %10s  %s" % (
            n, r["up"]["wall"], cold["wall"], cold["wall"] / n, noop["wall"], noop["wall"] / n,
            "yes" if noop["changed"] == 0 else "NO", target))
        for task, host in noop["changed_tasks"]:
            add("      changed on a no-op run: %s: %s" % (host, task))
        add("      load at the start: cold %s, no-op %s" % (cold["load"], noop["load"]))


# --- main ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--runs", type=int, default=5, help="iperf3 runs per path (median reported)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t")
    ap.add_argument("--keep", action="store_true", help="leave the bench lab up at the end (for debugging)")
    ap.add_argument("--nodes", type=lambda v: [int(x) for x in v.split(",")],
                    help="comma-separated node counts: converge cold and no-op on a lab of each size, no throughput")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/lab: run as root (podman)")
    args.started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load_before = loadavg()
    logdir = Path(tempfile.mkdtemp(prefix="podnet-bench-lab-"))
    log("logs in %s" % logdir)
    conv, rows = {}, []
    failure = None
    if lab_containers():
        log("a '%s' lab is left over from an earlier run: removing it first" % LAB)
        playbook(logdir, "down-leftover", "lab/down.yml")
    if args.nodes:
        try:
            sizes = scaling(args, logdir)
        except (RuntimeError, subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            print("\nFAILED: %s" % exc, file=sys.stderr)
            return 1
        report_scaling(args, sizes, load_before)
        return 0 if all(r["noop"]["changed"] == 0 for r in sizes) else 1
    try:
        conv["up"] = playbook(logdir, "up", "lab/up.yml")
        conv["cold"] = playbook(logdir, "cold", "playbooks/site.yml")
        conv["noop"] = playbook(logdir, "noop", "playbooks/site.yml")
        conv["floor"] = floor(logdir)

        n1, n2, n3 = (Endpoint(h) for h in NODES)
        tools1, web2, web3 = Endpoint("node1", "tools-1"), Endpoint("node2", "web-2"), Endpoint("node3", "web-3")
        args.endpoints = ", ".join("%s %s mtu %d" % (e, e.ip, e.mtu) for e in (n1, n2, n3, tools1, web2, web3))
        log("endpoints: %s" % args.endpoints)

        # crosssubnet: node1 -> node2 pods direct (host-gw), node1 -> node3 pods through VXLAN
        r_n2 = describe(check_route("node1", n2.ip, "eth0"))
        r_n3 = describe(check_route("node1", n3.ip, "eth0", "172.31.1.254"))
        r_hostgw = describe(check_route("node1", web2.ip, "eth0", n2.ip))
        r_xsub = describe(check_route("node1", web3.ip, VXLAN_DEV))
        pairs = [
            {"key": "nodeA", "label": "node1 -> node2 node IPs (rack A)", "client": n1, "server": n2, "route": r_n2},
            {"key": "hostgw", "label": "tools-1 -> web-2 pods, host-gw (crosssubnet)", "client": tools1,
             "server": web2, "route": r_hostgw, "base": "nodeA", "base_label": "node1->node2",
             "mode": "host-gw", "target": TARGET_HOSTGW},
            {"key": "nodeB", "label": "node1 -> node3 node IPs (via router)", "client": n1, "server": n3, "route": r_n3},
            {"key": "xsub", "label": "tools-1 -> web-3 pods, VXLAN (crosssubnet)", "client": tools1,
             "server": web3, "route": r_xsub, "base": "nodeB", "base_label": "node1->node3",
             "mode": "vxlan", "target": TARGET_VXLAN},
        ]
        log("throughput, crosssubnet mode")
        res = series(pairs, args.runs, args.seconds)
        rows += rows_for(res, pairs)

        # vxlan between the same two hosts as host-gw
        conv["to_vxlan"] = playbook(logdir, "to-vxlan", "playbooks/site.yml", "-e", "pod_routing_mode=vxlan")
        conv["noop_vxlan"] = playbook(logdir, "noop-vxlan", "playbooks/site.yml", "-e", "pod_routing_mode=vxlan")
        r_vx = describe(check_route("node1", web2.ip, VXLAN_DEV))
        pairs = [
            {"key": "nodeA2", "label": "node1 -> node2 node IPs (rack A, again)", "client": n1, "server": n2,
             "route": describe(check_route("node1", n2.ip, "eth0"))},
            {"key": "vxlan", "label": "tools-1 -> web-2 pods, VXLAN (vxlan mode)", "client": tools1,
             "server": web2, "route": r_vx, "base": "nodeA2", "base_label": "node1->node2 again",
             "mode": "vxlan", "target": TARGET_VXLAN},
        ]
        log("throughput, vxlan mode")
        res = series(pairs, args.runs, args.seconds)
        rows += rows_for(res, pairs)
    except (RuntimeError, subprocess.TimeoutExpired, KeyboardInterrupt, json.JSONDecodeError) as exc:
        failure = exc
    finally:
        if args.keep:
            log("--keep: the lab stays up (PODNET_LAB=%s scripts/lab.sh down removes it)" % LAB)
        else:
            try:
                conv_down = playbook(logdir, "down", "lab/down.yml")
                log("lab down: %.1f s" % conv_down["wall"])
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log("lab down FAILED: %s" % exc)
            left = lab_containers()
            if left:
                log("containers of lab '%s' still present: %s" % (LAB, " ".join(left)))
    report(args, conv, rows, load_before)
    if failure:
        print("\nFAILED: %s" % failure, file=sys.stderr)
        return 1
    bad = [k for k in ("noop", "noop_vxlan") if k in conv and conv[k]["changed"]]
    if bad:
        print("\nnot idempotent: %s" % ", ".join(bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
