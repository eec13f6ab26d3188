#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/trace: how long the trace takes to explain one packet at 100 / 1,000 / 5,000 Services
(issue 14: <= 2 s at 1,000), the engine alone and the module on a live namespace. Not part of the
test suite; no lab.

``.venv/bin/python bench/trace.py [--services 100,1000,5000] [--repeat 5] [--no-live] [--profile 1000]``

Per size: kube-proxy's ruleset for N ClusterIP Services with 3 endpoints each, built by the
collection's kubeproxy layer and printed as ``iptables-save`` text (what the trace module reads
from a node), then a TCP SYN from a pod to the LAST Service (the worst case: KUBE-SERVICES is
walked to its end) traced with ``trace_node``: the first trace of a fresh state (cold: the rules
of the chains it visits are prepared) and the median of ``--repeat`` traces on that state (warm).
Printed beside: the time kube-proxy's layer took to build the same ruleset (the cost a sync pays
anyway), so the ratio says what explaining one packet costs against programming the node.

Live (root only; skipped with a note otherwise, or with ``--no-live``), per size in the same run: a
throw-away namespace ``pnbench-<hex>`` (node) with a bridge ``cni0`` 10.244.0.1/16, a veth to a
second one ``pnbench-<hex>-pod`` (the pod: ``eth0`` 10.244.0.5/16, default via .1), an uplink
``eth0`` 172.31.0.2/24 (a veth whose peer stays in the namespace) with the node's default route via
172.31.0.1 (lab addresses, inside the namespace only) and ip_forward on; the same ruleset text
loaded with ``iptables-nft-restore`` inside it. Timed there, median of ``--repeat``: (a)
``live.read_state`` alone, in this process (iptables-save + netlink + sysctl + the recent lists),
(b) the module through Ansible, ``ansible localhost -m podnet.fabric.trace -a 'netns=...
src=10.244.0.5 dst=<last ClusterIP> dport=80 iif=cni0 endpoint=last'`` (wall, and the module's own
``timing.total``), (c) the same ad-hoc call of ``ansible.builtin.ping`` (Ansible's fixed cost of
one task), (d) the module's file run by the target Python with the same arguments, no Ansible
(interpreter, imports, work). Both namespaces are removed in a ``finally``. ``--profile N``:
cProfile of the module's ``build`` (read + trace) at N services, in this process, top functions by
own and cumulative time.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".collections"))

from nat_rule import REPO, TARGET_PYTHON, VENV_BIN, Clock, ansible_env  # noqa: E402  (bench/, beside this file)

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace import trace_node  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace import live  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec  # noqa: E402

CIDR = "10.244.0.0/16"
POD_IP = "10.244.0.5"
TARGET = 2.0   # seconds at 1,000 services (issue 14)


def objects(n):
    services, slices = [], []
    for i in range(n):
        name = "s%d" % i
        ip = "10.96.%d.%d" % (i // 250, i % 250 + 1)
        services.append({"metadata": {"namespace": "ns", "name": name},
                         "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}})
        slices.append({"metadata": {"namespace": "ns", "name": name + "-1", "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
                       "endpoints": [{"addresses": ["10.244.%d.%d" % (j, i % 250 + 1)], "nodeName": "n"} for j in range(3)]})
    return services, slices, ip


def measure(n, repeat):
    services, slices, last_ip = objects(n)
    start = time.perf_counter()
    ruleset = build_ruleset(services, slices, {"name": "n", "cluster_cidr": CIDR})
    build = time.perf_counter() - start
    text = save_text(ruleset)
    state = {"name": "n", "iptables": text,
             "routes": [{"dst": CIDR, "dev": "cni0"}, {"dst": "default", "dev": "eth0"}],
             "addresses": {"cni0": ["10.244.0.1/16"], "eth0": ["192.0.2.1/24"]}}
    packet = {"src": "10.244.0.5", "dst": last_ip, "dport": 80, "iif": "cni0"}
    start = time.perf_counter()
    result = trace_node(dict(state), packet, endpoint="last")
    cold = time.perf_counter() - start
    if not str(result["packet"]["dst"]).startswith("10.244."):
        raise SystemExit("%d services: the trace did not reach an endpoint: %s" % (n, result.get("reason")))
    warm = []
    for _round in range(repeat):
        start = time.perf_counter()
        trace_node(dict(state), packet, endpoint="last")
        warm.append(time.perf_counter() - start)
    return {"lines": text.count("\n"), "build": build, "cold": cold, "warm": statistics.median(warm),
            "hops": len(result.get("hops") or []), "text": text, "last_ip": last_ip}


# --- live: the module on a throw-away namespace ---------------------------------------------------

def ip(*argv):
    proc = subprocess.run(["ip"] + list(argv), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit("ip %s: %s" % (" ".join(argv), proc.stderr.strip()))


class Lab(object):
    """A node namespace with a pod behind a bridge and a default route, lab addresses only."""

    def __init__(self):
        self.node = "pnbench-%s" % secrets.token_hex(3)
        self.pod = self.node + "-pod"
        self.made = []

    def __enter__(self):
        try:
            self._make()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _make(self):
        for name in (self.node, self.pod):
            ip("netns", "add", name)
            self.made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        n, p = self.node, self.pod
        ip("-n", n, "link", "add", "cni0", "type", "bridge")
        ip("-n", n, "addr", "add", "10.244.0.1/16", "dev", "cni0")
        ip("-n", n, "link", "set", "cni0", "up")
        ip("-n", n, "link", "add", "vethpod", "type", "veth", "peer", "name", "eth0", "netns", p)
        ip("-n", n, "link", "set", "vethpod", "master", "cni0", "up")
        ip("-n", p, "addr", "add", POD_IP + "/16", "dev", "eth0")
        ip("-n", p, "link", "set", "eth0", "up")
        ip("-n", p, "route", "add", "default", "via", "10.244.0.1", "dev", "eth0")
        ip("-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")   # no dummy module here
        ip("-n", n, "link", "set", "uplink", "up")
        ip("-n", n, "addr", "add", "172.31.0.2/24", "dev", "eth0")
        ip("-n", n, "link", "set", "eth0", "up")
        ip("-n", n, "route", "add", "default", "via", "172.31.0.1", "dev", "eth0")
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], n)

    def __exit__(self, *exc):
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def run(argv, netns, input_text=None):
    rc, out, err = netns_exec.run(argv, netns=netns, input_text=input_text)
    if rc:
        raise SystemExit("%s in %s: rc=%d %s" % (" ".join(argv), netns, rc, err.strip()))
    return out


def which(name):
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def adhoc(module, args=""):
    """One ad-hoc ``ansible localhost -m module`` call: (wall seconds, the host's result)."""
    env = ansible_env()
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % TARGET_PYTHON, "-m", module]
    if args:
        cmd += ["-a", args]
    with Clock() as clock:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    try:
        doc = json.loads(proc.stdout)
        result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise SystemExit("%s: no result (rc=%d)\n%s%s" % (module, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    if result.get("failed") or result.get("unreachable"):
        raise SystemExit("%s failed: %s" % (module, result.get("msg")))
    return clock.wall, result


def direct(netns, last_ip):
    """The module's file run by the target Python with its arguments, no Ansible: wall seconds."""
    import ansible
    args = dict(kv.split("=", 1) for kv in trace_args(netns, last_ip).split())
    args["dport"] = int(args["dport"])
    env = dict(os.environ, PYTHONPATH="%s:%s" % (REPO / ".collections", Path(ansible.__file__).parent.parent))
    with Clock() as clock:
        proc = subprocess.run([TARGET_PYTHON, str(REPO / "plugins/modules/trace.py"), json.dumps({"ANSIBLE_MODULE_ARGS": args})],
                              capture_output=True, text=True, env=env, check=False)
    if json.loads(proc.stdout or "{}").get("verdict") != "forwarded":
        raise SystemExit("direct module run: %s %s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    return clock.wall


def trace_args(netns, last_ip):
    return "netns=%s src=%s dst=%s dport=80 iif=cni0 endpoint=last" % (netns, POD_IP, last_ip)


def measure_live(m, repeat, profile=False):
    """read_state, the module through Ansible and ansible.builtin.ping on a namespace holding ``m``'s ruleset."""
    with Lab() as lab:
        start = time.perf_counter()
        run(["iptables-nft-restore", "-w", "5"], lab.node, m["text"])
        restore = time.perf_counter() - start
        reads, walls, owns, pings, directs = [], [], [], [], []
        for _round in range(repeat):
            start = time.perf_counter()
            state, flavour = live.read_state(lab.node, lab.node, lambda argv: netns_exec.run(argv, netns=lab.node),
                                             which)
            reads.append(time.perf_counter() - start)
            wall, result = adhoc("podnet.fabric.trace", trace_args(lab.node, m["last_ip"]))
            if result.get("verdict") != "forwarded" or "10.244.2." not in " ".join(result.get("text") or []):
                raise SystemExit("live trace did not reach the last endpoint: %s %s" % (result.get("verdict"), result.get("reason")))
            walls.append(wall)
            owns.append(result["timing"]["total"])
            pings.append(adhoc("ansible.builtin.ping")[0])
            directs.append(direct(lab.node, m["last_ip"]))
        if len(state["iptables"]) < len(m["text"]) // 2:
            raise SystemExit("iptables-save inside %s returned too little" % lab.node)
        out = {"restore": restore, "read": statistics.median(reads), "wall": statistics.median(walls),
               "own": statistics.median(owns), "direct": statistics.median(directs), "ping": statistics.median(pings),
               "flavour": flavour,
               "verdict": result["verdict"], "hops": len(result["hops"])}
        if profile:
            out["profile"] = profile_build(lab.node, m["last_ip"])
    return out


def profile_build(netns, last_ip):
    """cProfile of the trace module's ``build`` (read_state + trace_path + text) in this process."""
    from ansible_collections.podnet.fabric.plugins.module_utils.runner import Context
    from ansible_collections.podnet.fabric.plugins.modules import trace as module
    params = dict((k, v.get("default")) for k, v in module.ARGUMENT_SPEC.items())
    params.update(netns=netns, src=POD_IP, dst=last_ip, dport=80, iif="cni0", endpoint="last", peers={})
    ctx = Context(params)
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    module.build(ctx)
    prof.disable()
    wall = time.perf_counter() - start
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    return "build(): %.3f s under cProfile\n%s" % (wall, buf.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--services", default="100,1000,5000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-live", action="store_true", help="the engine alone (no root needed)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile the module's build at N services")
    args = ap.parse_args(argv)
    live_on = not args.no_live and os.geteuid() == 0
    print("bench/trace (issue 14), %s, %d CPUs, load %s" % (
        time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
    if not live_on and not args.no_live:
        print("live figures skipped: they need root (network namespaces); run as root (sudo) for them")
    head = "%8s %7s %7s %7s %7s" % ("services", "lines", "build", "cold", "warm")
    if live_on:
        head += " | %7s %7s %7s %7s %7s %7s %7s %7s" % ("restore", "read", "own", "direct", "ansible", "ping", "a-ping", "/2s")
    print("seconds; engine: build, cold and warm trace; live: iptables-nft-restore, read_state, the module's own"
          " timing.total, its file run without Ansible (wall), ad-hoc trace wall, ad-hoc ping wall, their difference, trace wall / 2 s")
    print(head)
    figures = {}
    for n in [int(x) for x in args.services.split(",")]:
        m = measure(n, args.repeat)
        row = "%8d %7d %7.3f %7.3f %7.3f" % (n, m["lines"], m["build"], m["cold"], m["warm"])
        if live_on:
            m["live"] = lv = measure_live(m, args.repeat, profile=(n == args.profile))
            row += " | %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f %7.2f" % (
                lv["restore"], lv["read"], lv["own"], lv["direct"], lv["wall"], lv["ping"], lv["wall"] - lv["ping"], lv["wall"] / TARGET)
        figures[n] = m
        print(row, flush=True)
    for n, m in figures.items():
        if "live" in m:
            print("%d services: module %s (%s), %d hops" % (n, m["live"]["verdict"], m["live"]["flavour"], m["live"]["hops"]))
    if 1000 in figures:
        m = figures[1000]
        print("1,000 services: engine cold trace %.3f s; target <= 2 s: %s" % (m["cold"], "met" if m["cold"] <= TARGET else "MISSED"))
        if "live" in m:
            print("1,000 services through the module: %.3f s wall (%.3f s the module's own); target <= 2 s: %s" % (
                m["live"]["wall"], m["live"]["own"], "met" if m["live"]["wall"] <= TARGET else "MISSED"))
    print("load after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    for m in figures.values():
        if "profile" in m.get("live", {}):
            print()
            print(m["live"]["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
