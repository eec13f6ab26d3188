#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/bgp: BGP on a converged podman lab (issue 12). Not part of the test suite.

Run after ``scripts/lab.sh up`` (``PODNET_LAB`` names the lab, default ``podnet``), as root:
``.venv/bin/python bench/bgp.py [--runs 3] [--no-bfd-cap 200]``.

1. Convergence: BGP is taken down on every node (``systemctl stop bird`` and BIRD's kernel routes
   flushed: a cold start), then a play of podnet.fabric.bgp on the nodes runs with
   ``bgp_wait=false``; from the moment the play returns, the lab is polled (every 50 ms, from
   inside the containers) until every BIRD session is Established, FRR on the router has every
   node Established, the router's kernel has each node's pod CIDR and each LoadBalancer /32 with
   the expected nexthops, and every node's kernel has BIRD's routes to the other nodes' blocks.
   Printed: the play's wall time and the time to full convergence after it. Target <= 5 s.
2. Withdrawal at the router when a node dies: node3's link is cut (``ip link set eth0 down``
   inside it: no TCP reset, no BGP notification); a loop on the router polls its own table every
   10 ms until node3's block is gone. ``--runs`` times with BFD (the lab's settings, 100 ms x 3),
   then once without BFD (bgp_bfd=false on the nodes, tor_router_bfd_enabled=false on the router), capped
   at ``--no-bfd-cap`` seconds (the hold time decides then). Target with BFD <= 0.5 s.
3. Throughput: iperf3 (10 s, TCP) from pod tools-1 (node1, rack A) to a server in pod web-3
   (node3, rack B) with pod_routing_mode=bgp (native routes through the router, no
   encapsulation), next to node1 -> node3 host to host, in the same run; then the lab is put back
   (pod_routing_mode as the inventory says). Target pod/node >= 0.95.
"""
from __future__ import annotations

import argparse
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
LAB = os.environ.get("PODNET_LAB", "podnet")
NODES = ("node1", "node2", "node3")
NODE_IP = {"node1": "172.31.1.11", "node2": "172.31.1.12", "node3": "172.31.2.13"}
REPORT = "/etc/ansible/facts.d/podnet_fabric_services.fact"
_STATE_RE = re.compile(r"^\S+\s+BGP\s+\S+\s+\S+\s+\S+(?: \S+)?\s+(\w+)", re.M)


def container(host):
    return "%s-%s" % (LAB, host)


def on(host, script, check=True, timeout=300):
    proc = subprocess.run(["podman", "exec", container(host), "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit("%s: %s failed: %s%s" % (host, script[:120], proc.stdout, proc.stderr))
    return proc.stdout


def load():
    return "%.1f" % os.getloadavg()[0]


def play(roles_by_group, logdir, tag, *extra):
    path = logdir / ("%s.yml" % tag)
    text = ""
    for group, roles in roles_by_group:
        text += "- hosts: %s\n  gather_facts: false\n  roles:\n%s" % (group, "".join("    - podnet.fabric.%s\n" % r for r in roles))
    path.write_text(text, encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PODNET_LAB=LAB)
    start = time.monotonic()
    proc = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", str(path)] + list(extra),
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    (logdir / ("%s.log" % tag)).write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        raise SystemExit("%s: ansible-playbook failed (log %s)" % (tag, logdir / ("%s.log" % tag)))
    return time.monotonic() - start


def pod_cidr(node):
    return json.loads(on(node, "cat /etc/ansible/facts.d/podnet_fabric.fact"))["podCIDR"]


def expected(cidrs):
    """What the router's kernel must hold once converged: {prefix: sorted nexthops}."""
    services = json.loads(on("node1", "cat %s" % REPORT))["services"]
    want = dict((cidrs[n], [NODE_IP[n]]) for n in NODES)
    want[services["default/web-bgp"]["loadBalancerIP"] + "/32"] = sorted(NODE_IP.values())
    want[services["default/web-bgp-local"]["loadBalancerIP"] + "/32"] = sorted([NODE_IP["node1"], NODE_IP["node3"]])
    return want


def converged(want, cidrs):
    for node in NODES:
        states = _STATE_RE.findall(on(node, "birdc -s /run/bird/bird.ctl show protocols 2>/dev/null || true", check=False))
        if not states or set(states) != {"Established"}:
            return False
        routes = json.loads(on(node, "ip -json route show proto bird") or "[]")
        if sorted(r["dst"] for r in routes) != sorted(c for n, c in cidrs.items() if n != node):
            return False
    routes = json.loads(on("router", "ip -json route show proto bgp") or "[]")
    have = dict((r["dst"] if "/" in r["dst"] else r["dst"] + "/32",
                 sorted(h["gateway"] for h in (r.get("nexthops") or [r]) if h.get("gateway"))) for r in routes)
    return all(have.get(prefix) == hops for prefix, hops in want.items())


def convergence(logdir):
    cidrs = dict((n, pod_cidr(n)) for n in NODES)
    want = expected(cidrs)
    for node in NODES:
        on(node, "systemctl stop bird; ip route flush proto bird")
    wall = play([("nodes", ["bgp"])], logdir, "cold", "-e", "bgp_wait=false")
    returned = time.monotonic()
    while not converged(want, cidrs):
        if time.monotonic() - returned > 120:
            raise SystemExit("not converged 120 s after the play returned")
        time.sleep(0.05)
    return wall, time.monotonic() - returned


WITHDRAW = r"""
import subprocess, sys, time
prefix = sys.argv[1]
while b"via" in subprocess.run(["ip", "route", "show", prefix], capture_output=True).stdout:
    time.sleep(0.01)
print("%.4f" % time.clock_gettime(time.CLOCK_REALTIME))
"""


def withdrawal(cap):
    """Cut node3's link; seconds until the router dropped node3's block (None: not within cap)."""
    cidr3 = pod_cidr("node3")
    on("router", "cat > /tmp/podnet-bench-withdraw.py <<'EOF'\n%s\nEOF" % WITHDRAW)
    watcher = subprocess.Popen(["podman", "exec", container("router"), "timeout", str(cap), "python3",
                                "/tmp/podnet-bench-withdraw.py", cidr3], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    try:
        cut = float(on("node3", "date +%s.%N; ip link set eth0 down").split()[0])
        out, _err = watcher.communicate(timeout=cap + 10)
        gone = float(out.strip()) if out.strip() else None
    finally:
        on("node3", "ip link set eth0 up; systemctl reset-failed podnet-lab-net.service; systemctl restart podnet-lab-net.service",
           check=False)
    deadline = time.monotonic() + 60
    while "via" not in on("router", "ip route show %s" % cidr3, check=False):
        if time.monotonic() > deadline:
            raise SystemExit("node3's block did not come back at the router")
        time.sleep(0.2)
    return None if gone is None else gone - cut


def iperf(client_cmd_prefix, server_host, server_prefix, server_ip):
    on(server_host, "%s iperf3 -s -D -1 -p 5299" % server_prefix)
    time.sleep(0.5)
    out = on("node1", "%s iperf3 -J -t 10 -p 5299 -c %s" % (client_cmd_prefix, server_ip))
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def throughput(logdir):
    play([("nodes", ["pod_routing"])], logdir, "to-bgp", "-e", "pod_routing_mode=bgp")
    try:
        web3 = json.loads(on("node3", "cat /etc/ansible/facts.d/podnet_fabric.fact"))["podIPs"]["default/web-3"]
        route = on("node1", "ip route get %s" % web3).strip()
        pods = iperf("ip netns exec pod-default-tools-1", "node3", "ip netns exec pod-default-web-3", web3)
        nodes = iperf("", "node3", "", NODE_IP["node3"])
        return route, pods, nodes
    finally:
        play([("nodes", ["pod_routing"])], logdir, "back")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-bfd-cap", type=float, default=200.0)
    args = ap.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="podnet-bench-bgp-"))
    print("bench/bgp (issue 12), lab %s, %s, %d CPUs, load %s; logs %s" % (
        LAB, time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), load(), logdir))

    wall, after = convergence(logdir)
    print("1. cold start: play (bgp role, 3 nodes, bgp_wait=false) %.1f s; full convergence %.2f s after it returned"
          " (target <= 5 s: %s; load %s)" % (wall, after, "met" if after <= 5 else "MISSED", load()))

    print("2. withdrawal at the router after node3's link is cut")
    bfd = []
    for i in range(args.runs):
        t = withdrawal(10)
        bfd.append(t if t is not None else float("inf"))
        print("   with BFD, run %d: %s (load %s)" % (i + 1, "%.3f s" % t if t is not None else "not within 10 s", load()))
    worst = max(bfd)
    print("   with BFD: worst %.3f s, median %.3f s; target <= 0.5 s: %s" % (
        worst, statistics.median(bfd), "met" if worst <= 0.5 else "MISSED"))
    play([("routers", ["tor_router"]), ("nodes", ["bgp"])], logdir, "no-bfd", "-e", "bgp_bfd=false", "-e", "tor_router_bfd_enabled=false")
    try:
        t = withdrawal(args.no_bfd_cap)
        print("   without BFD: %s (the BGP hold time decides)" % ("%.1f s" % t if t is not None else "> %.0f s" % args.no_bfd_cap))
    finally:
        play([("routers", ["tor_router"]), ("nodes", ["bgp"])], logdir, "bfd-back")

    route, pods, nodes = throughput(logdir)
    print("3. iperf3 10 s TCP, rack A -> rack B through the router (pod_routing_mode=bgp; node1: %s)" % route)
    print("   pod tools-1 -> pod web-3: %.2f Gbit/s; node1 -> node3: %.2f Gbit/s; ratio %.2f (target >= 0.95: %s; load %s)" % (
        pods, nodes, pods / nodes, "met" if pods / nodes >= 0.95 else "MISSED", load()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
