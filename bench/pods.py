#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/pods: wire N pods on a bridge, through the collection and through the CNI plugins.

Issues 3 and 8. In one run, for each pod count (default 50 and 200), inside throw-away network
namespaces only:

* CNI side - a "node" netns holds cni0; the pods' namespaces are made as a runtime would
  (``ip netns add`` + loopback up, timed separately as "runtime netns setup"), then for each pod
  the reference plugins of Debian's containernetworking-plugins (bridge, which calls host-local,
  with the ipam route 0.0.0.0/0: the pod's default route) are exec'd once with
  CNI_COMMAND=ADD, the plugin process joined to the node netns (setns between fork and exec),
  so cni0 and the host-side veths live there, never on the host.
* collection side - one playbook (localhost, connection local, no facts) per target Python:
  ONE task, podnet.fabric.pods (owner ``bench``): the pods' namespaces, addresses from its
  host-local style IPAM (a temporary data dir), veth pairs, cni0 with the gateway
  (``manage_bridge``), hairpin, each pod's default route. The node namespace is made with
  ``ip netns add`` first, as the runtime makes it on the CNI side. With ``--three-tasks`` the
  release-0.1 way runs too: podnet.fabric.netns + .bridge + .veth (with ``gateway``). Then an
  empty playbook with the same settings (Ansible's start-up), then the same playbook again,
  which must report changed=0.

Both sides are verified with independent tools (``ip -json``, ``ping``) and the host's links
are checked while each side's objects exist. Everything is deleted in a ``finally``.

Run as root: ``.venv/bin/python bench/pods.py [--pods 50 --pods 200] [--python /usr/bin/python3 ...]``.
Not part of the test suite. Do not run it alongside the integration tests (CPU, not purge: the
bench's owner ``bench`` is its own).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
CNI_PATH = "/usr/lib/cni"
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

# Targets from issue 8 (no-op at 50 pods; the 200-pod run shows how the cost grows).
TARGET_NOOP_WALL = 1.5          # s
TARGET_COLD_OVER_CNI = 2.0      # cold playbook wall <= 2x the CNI total
TARGET_OWN_OVER_CNI = 1.0       # module's own time below the CNI total
OWNER = "bench"

COLLECTIONS_PATH = [str(REPO / ".collections")]  # --collections-path: benchmark another copy
DEFAULT_PYTHONS = ["/usr/bin/python3", str(VENV_BIN / "python")]


# --- small helpers -------------------------------------------------------------------------------

def sh(*argv, check=True, input_text=None, timeout=60):
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input_text, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d): %s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def ip_json(*args, netns=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-json"] + list(args)
    out = sh(*cmd)
    return json.loads(out) if out.strip() else []


def host_links():
    return sorted(link["ifname"] for link in ip_json("link", "show"))


def host_ruleset():
    """iptables-save of the host without comments and counters (the CNI side must not touch it)."""
    try:
        out = sh("iptables-save", check=False)
    except OSError:
        return None
    return [line.split(" [", 1)[0] if line.startswith(":") else line for line in out.splitlines() if not line.startswith("#")]


def loadavg():
    """Other work on the machine skews the figures: the report prints the 1-minute load."""
    try:
        return Path("/proc/loadavg").read_text(encoding="ascii").split()[0]
    except OSError:
        return "?"


def cpu_children():
    """CPU seconds (user + sys) of the waited-for child processes so far: less load-sensitive than wall."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pyroute2_version(python):
    code = ("import importlib.metadata as m\n"
            "try:\n print(m.version('pyroute2'))\n"
            "except Exception:\n import pyroute2; print(getattr(pyroute2, '__version__', '?'))\n")
    try:
        return sh(python, "-c", code).strip()
    except (RuntimeError, OSError) as exc:
        return "not importable (%s)" % str(exc).splitlines()[0][:60]


def setns_preexec(path):
    """preexec_fn: the child joins the netns at ``path`` before exec (as a runtime in that netns)."""
    def enter():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "setns(%s): %s" % (path, os.strerror(err)))
        finally:
            os.close(fd)
    return enter


def ping(netns, address, attempts=3):
    """One bounded ping (-c1 -W1) from ``netns``, retried at most ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c1", "-W1", address],
                              capture_output=True, text=True, timeout=10, check=False)
        if proc.returncode == 0:
            return attempt
    return 0


def check_ports(node, count):
    """cni0 in ``node`` has ``count`` ports, each in hairpin mode (``ip -d -json``)."""
    ports = ip_json("-d", "link", "show", "master", "cni0", netns=node)
    hairpin = sum(1 for p in ports if p.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin"))
    problems = []
    if len(ports) != count:
        problems.append("cni0 has %d ports, expected %d" % (len(ports), count))
    if hairpin != len(ports):
        problems.append("hairpin on %d of %d cni0 ports" % (hairpin, len(ports)))
    return problems


def default_route(netns, gateway):
    """The pod's default route via ``gateway`` on eth0 (``ip -json route``), or None."""
    return next((r for r in ip_json("route", "show", "default", netns=netns)
                 if r.get("dst") == "default" and r.get("gateway") == gateway and r.get("dev") == "eth0"), None)


def delete_netns(names):
    for name in names:
        if os.path.exists(os.path.join(NETNS_DIR, name)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# --- the CNI side --------------------------------------------------------------------------------

class CniSide(object):
    def __init__(self, run_id, pods, subnet_prefix, tmp, default_route):
        self.default_route = default_route
        self.node = "pnb%s-cni" % run_id
        self.pods = ["pnb%s-cni-p%03d" % (run_id, i) for i in range(1, pods + 1)]
        self.subnet = "%s.0/24" % subnet_prefix
        self.gateway = "%s.1" % subnet_prefix
        self.data_dir = os.path.join(tmp, "cni-ipam")
        self.created = []
        self.addresses = {}
        self.times = {}
        self.per_pod = []
        self.host_side = set()  # cni0 and the host ends of the veths, as the plugin reported them
        self.routes = 0  # pods seen with their default route

    def netconf(self):
        ipam = {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "dataDir": self.data_dir}
        if self.default_route:
            # isGateway only puts the gateway address on cni0; the pod's default route comes from
            # the IPAM result's routes (as in containerd's and kubenet's bridge configs).
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        return json.dumps({
            "cniVersion": "1.0.0", "name": "podnet-bench", "type": "bridge", "bridge": "cni0",
            "isGateway": True, "ipMasq": False, "hairpinMode": True, "ipam": ipam,
        })

    def run(self):
        # The runtime's job: the namespaces (node + pods) and the pods' loopback. One process per
        # step, as `ip` does it; timed apart from the plugins.
        t0, c0 = time.monotonic(), cpu_children()
        for name in [self.node] + self.pods:
            sh("ip", "netns", "add", name)
            self.created.append(name)
        for name in self.pods:
            sh("ip", "-n", name, "link", "set", "lo", "up")
        self.times["netns"] = time.monotonic() - t0
        self.times["netns_cpu"] = cpu_children() - c0

        conf = self.netconf()
        preexec = setns_preexec(os.path.join(NETNS_DIR, self.node))
        t0, c0 = time.monotonic(), cpu_children()
        for i, pod in enumerate(self.pods, 1):
            env = {
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "%s-%03d" % (self.node, i),
                "CNI_NETNS": os.path.join(NETNS_DIR, pod), "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH,
            }
            p0 = time.monotonic()
            proc = subprocess.run([os.path.join(CNI_PATH, "bridge")], input=conf, env=env, capture_output=True,
                                  text=True, preexec_fn=preexec, timeout=30, check=False)
            self.per_pod.append(time.monotonic() - p0)
            if proc.returncode != 0:
                raise RuntimeError("CNI bridge ADD for %s failed (rc %d): %s%s" % (pod, proc.returncode, proc.stdout, proc.stderr))
            result = json.loads(proc.stdout)
            self.addresses[pod] = result["ips"][0]["address"]
            self.host_side |= {i["name"] for i in result.get("interfaces", []) if not i.get("sandbox")}
        self.times["plugins"] = time.monotonic() - t0
        self.times["plugins_cpu"] = cpu_children() - c0

    def verify(self):
        problems = []
        if not ip_json("link", "show", "cni0", netns=self.node):
            problems.append("cni0 missing in %s" % self.node)
        problems += check_ports(self.node, len(self.pods))
        for pod in self.pods:
            addrs = ["%s/%s" % (a["local"], a["prefixlen"]) for link in ip_json("addr", "show", "dev", "eth0", netns=pod)
                     for a in link.get("addr_info", []) if a.get("family") == "inet"]
            if addrs != [self.addresses[pod]]:
                problems.append("%s eth0 has %s, the plugin reported %s" % (pod, addrs, self.addresses[pod]))
            if self.default_route:
                if default_route(pod, self.gateway):
                    self.routes += 1
                else:
                    problems.append("%s has no default route via %s dev eth0" % (pod, self.gateway))
        target = self.addresses[self.pods[-1]].split("/")[0]
        attempts = ping(self.pods[0], target)
        if not attempts:
            problems.append("ping %s -> %s failed" % (self.pods[0], target))
        return problems, attempts, target

    def cleanup(self):
        delete_netns(list(reversed(self.created)))
        self.created = []


# --- the collection side -------------------------------------------------------------------------

def ansible_env(tmp):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH[0],
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"),
        ANSIBLE_REMOTE_TEMP=os.path.join(tmp, "ansible-remote"),
        PATH="%s:%s" % (VENV_BIN, env.get("PATH", "")),
    )
    return env


def _duration(d):
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    try:
        return (datetime.datetime.strptime(d["end"], fmt) - datetime.datetime.strptime(d["start"], fmt)).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def run_playbook(path, python, tmp, keep_results=False):
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % python, str(path)]
    t0, c0 = time.monotonic(), cpu_children()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(tmp), timeout=900, check=False)
    wall, cpu = time.monotonic() - t0, cpu_children() - c0
    try:
        doc = json.loads(proc.stdout)
    except ValueError as exc:
        raise RuntimeError("ansible-playbook %s printed no JSON (rc %d):\n%s\n%s" % (path, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from exc
    tasks, results = [], []
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            res = task["hosts"].get("localhost", {})
            results.append(res)
            tasks.append({"name": task["task"]["name"], "seconds": _duration(task["task"].get("duration", {})),
                          "changed": bool(res.get("changed")), "failed": bool(res.get("failed")),
                          "msg": [res.get("msg")] + ["%s: %s" % (r.get("item"), r.get("msg")) for r in res.get("results", []) if r.get("failed")][:3]})
    stats = doc.get("stats", {}).get("localhost", {})
    if proc.returncode != 0 or stats.get("failures") or stats.get("unreachable"):
        bad = [t for t in tasks if t["failed"]]
        raise RuntimeError("ansible-playbook %s failed (rc %d): %s\n%s" % (path, proc.returncode, bad or stats, proc.stderr[-2000:]))
    out = {"wall": wall, "cpu": cpu, "tasks": tasks, "changed": stats.get("changed", 0)}
    if keep_results:
        out["results"] = results
    return out


class CollectionSide(object):
    """``variant``: "pods" (one podnet.fabric.pods task, the main comparison) or "tasks" (the
    release-0.1 way: netns + bridge + veth with gateway, three tasks)."""

    def __init__(self, run_id, tag, pods, subnet_prefix, tmp, variant):
        self.tag = tag
        self.node = "pnb%s-%s" % (run_id, tag)
        self.pods = ["pnb%s-%s-p%03d" % (run_id, tag, i) for i in range(1, pods + 1)]
        self.prefix = subnet_prefix
        self.gateway = "%s.1" % subnet_prefix
        self.tmp = tmp
        self.variant = variant
        self.data_dir = os.path.join(tmp, "ipam-%s" % tag)

    def address(self, i):
        return "%s.%d/24" % (self.prefix, i + 1)  # host-local style: .1 is the gateway, pods from .2

    def veth_name(self, i):
        return "veth-p%03d" % i

    def tasks(self):
        if self.variant == "pods":
            return [{"name": "pods", "podnet.fabric.pods": {
                "owner": OWNER, "netns": self.node, "bridge": "cni0", "manage_bridge": True, "hairpin": True,
                "ipam": {"subnet": "%s.0/24" % self.prefix, "data_dir": self.data_dir, "network": "podnet-bench"},
                "pods": [{"name": pod, "veth": self.veth_name(i)} for i, pod in enumerate(self.pods, 1)]}}]
        return [
            {"name": "namespaces", "podnet.fabric.netns": {"owner": OWNER, "namespaces": self.pods}},
            {"name": "bridge", "podnet.fabric.bridge": {"owner": OWNER, "netns": self.node, "bridges": [
                {"name": "cni0", "addresses": ["%s/24" % self.gateway]}]}},
            {"name": "veths", "podnet.fabric.veth": {"owner": OWNER, "netns": self.node, "veths": [
                {"name": self.veth_name(i), "peer_netns": pod, "addresses": [self.address(i)], "bridge": "cni0",
                 "hairpin": True, "gateway": self.gateway} for i, pod in enumerate(self.pods, 1)]}},
        ]

    def write(self, name, tasks):
        path = Path(self.tmp) / name
        path.write_text(json.dumps([{"name": "bench pods", "hosts": "localhost", "connection": "local",
                                     "gather_facts": False, "tasks": tasks}], indent=1), encoding="utf-8")
        return path

    def make_node(self):
        sh("ip", "netns", "add", self.node)

    def verify(self):
        problems = []
        problems += check_ports(self.node, len(self.pods))
        gw = ["%s/%s" % (a["local"], a["prefixlen"]) for link in ip_json("addr", "show", "dev", "cni0", netns=self.node)
              for a in link.get("addr_info", []) if a.get("family") == "inet"]
        if gw != ["%s/24" % self.gateway]:
            problems.append("cni0 has %s" % gw)
        eth0 = routes = 0
        for i, pod in enumerate(self.pods, 1):
            links = ip_json("addr", "show", "dev", "eth0", netns=pod)
            addrs = ["%s/%s" % (a["local"], a["prefixlen"]) for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
            if links and "UP" in links[0].get("flags", []) and addrs == [self.address(i)]:
                eth0 += 1
            else:
                problems.append("%s eth0: %s %s, expected %s" % (pod, links[0].get("flags") if links else "missing", addrs, self.address(i)))
            route = default_route(pod, self.gateway)
            # The owner's route protocol, named in rt_protos.d: ip prints the owner.
            if route and str(route.get("protocol")) == OWNER:
                routes += 1
            else:
                problems.append("%s: no default route via %s dev eth0 proto %s (%s)" % (pod, self.gateway, OWNER, route))
        target = self.address(len(self.pods)).split("/")[0]
        attempts = ping(self.pods[0], target)
        if not attempts:
            problems.append("ping %s -> %s failed" % (self.pods[0], target))
        return problems, eth0, routes, attempts, target

    def cleanup(self):
        delete_netns(list(reversed(self.pods)) + [self.node])


def run_collection(side, python):
    empty = side.write("empty-%s.yml" % side.tag, [])
    play = side.write("pods-%s.yml" % side.tag, side.tasks())
    out = {"python": python, "pyroute2": pyroute2_version(python), "variant": side.variant}
    side.make_node()
    out["empty"] = run_playbook(empty, python, side.tmp)
    out["cold"] = run_playbook(play, python, side.tmp, keep_results=True)
    out["noop"] = run_playbook(play, python, side.tmp, keep_results=True)
    out["own"] = out["cold"]["wall"] - out["empty"]["wall"]
    out["module_timing"] = module_timing(out["noop"])
    out["module_timing_cold"] = module_timing(out["cold"])
    problems, eth0, routes, attempts, target = side.verify()
    out.update(problems=problems, eth0=eth0, routes=routes, ping_attempts=attempts, ping_target=target, host_links=host_links())
    return out


def module_timing(run):
    """The modules' own seconds (plan, apply, total: what the runner reports), summed over tasks."""
    out = {}
    for res in run.pop("results", []):
        for key, value in (res.get("timing") or {}).items():
            out[key] = out.get(key, 0.0) + value
    return out


# --- report --------------------------------------------------------------------------------------

def task_seconds(run, name):
    return next((t["seconds"] or 0.0 for t in run["tasks"] if t["name"] == name), 0.0)


def _row(label, wall, cpu=None, note=""):
    return "  %-52s %8.2f %8s   %s" % (label, wall, "%.2f" % cpu if cpu is not None else "", note)


def _ratio(label, value, target=None, ok=None):
    verdict = ("target %s   %s" % (target, "ok" if ok else "MISSED")) if target else ""
    return "    %-60s %6.2f   %s" % (label, value, verdict)


def _tasks(run):
    return ", ".join("%s %.2f" % (t["name"], t["seconds"] or 0) for t in run["tasks"])


def report(args, n, cni, cni_check, runs, host_check):
    plug, plug_cpu = cni.times["plugins"], cni.times["plugins_cpu"]
    cni_all, cni_all_cpu = plug + cni.times["netns"], plug_cpu + cni.times["netns_cpu"]
    lines = []
    add = lines.append
    add("")
    add("bench/pods: %d pods on cni0 (host-local style addresses, default route), %s, %d CPUs, load average %s before / %s after"
        % (n, args.started, os.cpu_count(), args.load_before, loadavg()))
    if args.collections_path:
        add("podnet.fabric from %s" % COLLECTIONS_PATH[0])
    add("%-54s %8s %8s" % ("", "wall s", "cpu s"))
    add("CNI reference plugins: bridge + host-local, one exec per pod, run in the node netns")
    add(_row("runtime netns setup (ip netns add x%d, lo up x%d)" % (n + 1, n), cni.times["netns"], cni.times["netns_cpu"]))
    add(_row("plugins, CNI_COMMAND=ADD x%d" % n, plug, plug_cpu,
             "%.1f ms/pod (median %.1f)" % (1000 * plug / n, 1000 * statistics.median(cni.per_pod))))
    add(_row("CNI total: plugins + netns setup", cni_all, cni_all_cpu))
    add("  pods' default route (ipam routes 0.0.0.0/0): seen in %d/%d pods" % (cni.routes, n))
    add("  verify: %s; ping pod 1 -> pod %d (%s): %s" % (
        "ok" if not cni_check[0] else "; ".join(cni_check[0][:5]), n, cni_check[2],
        "ok (attempt %d)" % cni_check[1] if cni_check[1] else "FAILED"))
    for r in runs:
        cold, empty, noop = r["cold"], r["empty"], r["noop"]
        own, own_cpu = r["own"], cold["cpu"] - empty["cpu"]
        add("")
        add("collection, target python %s (pyroute2 %s): %s" % (r["python"], r["pyroute2"], {
            "pods": "ONE task, podnet.fabric.pods", "tasks": "--three-tasks: netns + bridge + veth with gateway"}[r["variant"]]))
        add(_row("empty playbook (Ansible start-up)", empty["wall"], empty["cpu"]))
        add(_row("cold playbook", cold["wall"], cold["cpu"], "changed=%d" % cold["changed"]))
        add(_row("module's own time (cold - empty)", own, own_cpu, "%.1f ms/pod" % (1000 * own / n)))
        add("    tasks (callback, wall s): %s" % _tasks(cold))
        add(_row("no-op re-run", noop["wall"], noop["cpu"], "changed=%d" % noop["changed"]))
        add("    tasks (callback, wall s): %s" % _tasks(noop))
        for label, key in (("cold", "module_timing_cold"), ("no-op", "module_timing")):
            if r.get(key):
                add("    modules' own seconds (runner timing), %s: %s" % (label, ", ".join("%s %.3f" % kv for kv in sorted(r[key].items()))))
        add("  verify: %d/%d eth0 up with the right address; default route (proto %s) in %d/%d pods; %s; ping pod 1 -> pod %d (%s): %s" % (
            r["eth0"], n, OWNER, r["routes"], n, "ok" if not r["problems"] else "; ".join(r["problems"][:5]), n, r["ping_target"],
            "ok (attempt %d)" % r["ping_attempts"] if r["ping_attempts"] else "FAILED"))
        add("  ratios")
        add(_ratio("own / CNI total (both sides create the namespaces)", own / cni_all,
                   "< %.0f" % TARGET_OWN_OVER_CNI, own / cni_all < TARGET_OWN_OVER_CNI))
        add(_ratio("own / CNI total, in CPU seconds", own_cpu / cni_all_cpu))
        add(_ratio("cold wall / CNI total", cold["wall"] / cni_all,
                   "<= %.0f" % TARGET_COLD_OVER_CNI, cold["wall"] / cni_all <= TARGET_COLD_OVER_CNI))
        add(_ratio("no-op wall, s (changed=%d)" % noop["changed"], noop["wall"],
                   "<= %.1f s, changed=0" % TARGET_NOOP_WALL, noop["wall"] <= TARGET_NOOP_WALL and noop["changed"] == 0))
    add("")
    add("host links before/after: %s" % host_check)
    add("")
    return "\n".join(lines)


def growth(results):
    """Per-pod cost of the smallest and the largest run side by side (x1.0 = linear). The
    modules' own seconds (runner timing: plan + apply, without Ansible and imports) show the
    growth; the whole own time per pod also carries the fixed cost of a task."""
    if len(results) < 2:
        return ""
    small, large = results[0], results[-1]
    n1, n2 = small["pods"], large["pods"]
    lines = ["", "growth %d -> %d pods (ms per pod; x1.00 = linear)" % (n1, n2)]

    def row(label, a, b):
        lines.append("  %-62s %7.1f -> %7.1f  x%.2f" % (label, 1000 * a / n1, 1000 * b / n2, (b / n2) / (a / n1) if a else 0))
    row("CNI total", small["cni_total"], large["cni_total"])
    for ra, rb in zip(small["runs"], large["runs"]):
        tag = "%s, pyroute2 %s" % (ra["variant"], ra["pyroute2"])
        row("modules' own seconds, cold, %s" % tag, ra["module_timing_cold"].get("total", 0), rb["module_timing_cold"].get("total", 0))
        row("modules' own seconds, no-op, %s" % tag, ra["module_timing"].get("total", 0), rb["module_timing"].get("total", 0))
        lines.append("  %-62s %7.2f -> %7.2f s (%.1f ms per added pod)" % (
            "own time (cold - empty), %s" % tag, ra["own"], rb["own"], 1000 * (rb["own"] - ra["own"]) / (n2 - n1)))
    return "\n".join(lines) + "\n"


def bench_size(args, n, pythons, variants):
    run_id = secrets.token_hex(2)
    tmp = tempfile.mkdtemp(prefix="podnet-bench-pods-")
    third = 100 + int(run_id, 16) % 100  # 10.<third>.y.0/24: the sides never share a subnet
    cni = CniSide(run_id, n, "10.%d.200" % third, tmp, default_route=True)
    sides = []
    for python in pythons:
        for variant in variants:
            k = len(sides)
            sides.append((CollectionSide(run_id, "c%d" % k, n, "10.%d.%d" % (third, k + 1), tmp, variant), python))
    links_before = host_links()
    rules_before = host_ruleset()
    runs = []
    try:
        # Warm-up (not counted): the controller's imports and the page cache.
        run_playbook(sides[0][0].write("warmup.yml", []), pythons[0], tmp)
        cni.run()
        cni_check = cni.verify()
        links_mid = host_links()
        cni.cleanup()
        for side, python in sides:
            try:
                runs.append(run_collection(side, python))
            finally:
                side.cleanup()
    finally:
        cni.cleanup()
        for side, _python in sides:
            side.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    links_after = host_links()
    rules_after = host_ruleset()
    # Only our own names count: other work on the machine (podman, tests) may add host links.
    ours = cni.host_side | {"cni0"} | {"veth-p%03d" % i for i in range(1, n + 1)}
    seen = set(links_mid) | set(links_after)
    for r in runs:
        seen |= set(r.pop("host_links"))
    leaked = sorted(ours & seen)
    others = sorted(seen - set(links_before) - ours)
    host_check = "%s; %d link names of ours (cni0, %d CNI veth host ends, veth-pNNN) checked: %s" % (
        "unchanged (%d links)" % len(links_before) if not others and set(links_after) == set(links_before)
        else "links of other work changed meanwhile: +%s -%s" % (others, sorted(set(links_before) - set(links_after))),
        len(ours), len(cni.host_side) - 1, "none on the host" if not leaked else "LEAKED to the host: %s" % leaked)
    if rules_before != rules_after:
        host_check += "; host iptables-save differs (check whether other work changed it)"
    print(report(args, n, cni, cni_check, runs, host_check))
    for r in runs:
        r["noop_own"] = r["noop"]["wall"] - r["empty"]["wall"]
    ok = not cni_check[0] and all(not r["problems"] and r["noop"]["changed"] == 0 for r in runs) and not leaked
    return ok, {"pods": n, "cni": {"times": cni.times, "per_pod": cni.per_pod},
                "cni_total": cni.times["plugins"] + cni.times["netns"], "runs": runs, "host": host_check}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--pods", type=int, action="append", metavar="N",
                        help="pods per contender (1..250); repeat for several sizes (default: 50 and 200)")
    parser.add_argument("--python", action="append", metavar="PATH",
                        help="target interpreter for the playbook; repeat for several (default: %s)" % " and ".join(DEFAULT_PYTHONS))
    parser.add_argument("--three-tasks", action="store_true",
                        help="also run the release-0.1 way: netns + bridge + veth (with gateway), three tasks")
    parser.add_argument("--collections-path", metavar="DIR",
                        help="where podnet.fabric resolves from (default: this checkout's .collections)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args(argv)
    sizes = args.pods or [50, 200]
    if not all(1 <= n <= 250 for n in sizes):
        parser.error("--pods must be between 1 and 250")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    for path in [os.path.join(CNI_PATH, "bridge"), os.path.join(CNI_PATH, "host-local"), str(VENV_BIN / "ansible-playbook")]:
        if not os.access(path, os.X_OK):
            parser.error("%s is missing (apt-get install containernetworking-plugins; scripts/setup.sh)" % path)
    pythons = args.python or DEFAULT_PYTHONS
    if args.collections_path:
        COLLECTIONS_PATH[0] = os.path.abspath(args.collections_path)
    source = Path(COLLECTIONS_PATH[0]) / "ansible_collections" / "podnet" / "fabric"
    if not (source / "plugins" / "modules" / "pods.py").exists():
        parser.error("no podnet.fabric with the pods module under %s (run scripts/setup.sh)" % COLLECTIONS_PATH[0])
    variants = ["pods"] + (["tasks"] if args.three_tasks else [])
    args.started = time.strftime("%Y-%m-%d %H:%M:%S")
    ok, results = True, []
    for n in sizes:
        args.load_before = loadavg()
        size_ok, figures = bench_size(args, n, pythons, variants)
        ok = ok and size_ok
        results.append(figures)
    print(growth(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
