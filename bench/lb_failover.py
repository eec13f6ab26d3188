#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/lb_failover: how long a LoadBalancer VIP is out when its node dies (issue 13), on a
converged podman lab, from the client host on rack A. Not part of the test suite.

Run after ``scripts/lab.sh up`` (``PODNET_LAB`` names the lab, default ``podnet``), as root:
``.venv/bin/python bench/lb_failover.py [--runs 5] [--service web-lb]``.

1. First converge: a new Service of type LoadBalancer, ``default/bench-lb`` (extra objects: no
   selector, one declared EndpointSlice with web-3's address on node3, so no endpoint ever sits
   on the node that is cut off below and every failed request is the VIP's outage, not a dead
   endpoint), applied by a play of podnet.fabric.service_proxy + podnet.fabric.load_balancer on
   the nodes while the client probes its VIP (the next free address of the pool, computed
   beforehand with the collection's own model); printed: the playbook's wall time and the time
   from its start until the VIP first answered.
2. Failover, ``--runs`` times: a probe *inside* the client container (so no ``podman exec``
   start-up is in the figure) sends an HTTP GET to VIP:80 every 50 ms, each on a new connection
   with a 0.2 s timeout, and logs the time and the outcome; the node holding the VIP is cut off
   (``ip link set eth0 down`` inside it: a dead link, not a clean stop); the probe runs on for
   5 s; then the link comes back (and the lab's underlay unit), and the next run cuts the node
   that holds the VIP then (the VIP stays where it moved: nopreempt). Printed per run: the
   longest time between two answered requests, the failed requests, the new holder. Target
   <= 1 s (MetalLB's memberlist ~10 s).
3. The Service is removed again (same play; timed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = os.environ.get("PODNET_LAB", "podnet")
RACK_A = ("node1", "node2")
REPORT = "/etc/ansible/facts.d/podnet_fabric_services.fact"

PROBE = r"""
import socket, sys, time
ip, seconds, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
out = open(path, "w")
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    ok = False
    try:
        s = socket.create_connection((ip, 80), timeout=0.2)
        s.settimeout(0.2)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        ok = s.recv(64).startswith(b"HTTP/")
        s.close()
    except OSError:
        pass
    out.write("%.4f %d\n" % (t, ok))
    out.flush()
    time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))
"""


def container(host):
    return "%s-%s" % (LAB, host)


def on(host, script, check=True, timeout=120):
    proc = subprocess.run(["podman", "exec", container(host), "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit("%s: %s failed: %s%s" % (host, script[:100], proc.stdout, proc.stderr))
    return proc.stdout


def load():
    return "%.1f" % os.getloadavg()[0]


def lb_ip(name):
    return json.loads(on("node1", "cat %s" % REPORT))["services"]["default/" + name]["loadBalancerIP"]


def holder(ip):
    for node in RACK_A:
        if (" %s/" % ip) in on(node, "ip -4 -o addr show dev eth0"):
            return node
    return None


def start_probe(ip, seconds):
    on("client", "cat > /tmp/podnet-bench-probe.py <<'EOF'\n%s\nEOF" % PROBE)
    return subprocess.Popen(["podman", "exec", container("client"), "python3", "/tmp/podnet-bench-probe.py", ip,
                             str(seconds), "/tmp/podnet-bench-probe.log"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def probe_samples():
    """[(monotonic time, answered)]: CLOCK_MONOTONIC is the same in the containers as here."""
    out = on("client", "cat /tmp/podnet-bench-probe.log 2>/dev/null || true")
    return [(float(t), ok == "1") for t, ok in (line.split() for line in out.splitlines() if line.strip())]


def probe_result(proc):
    proc.wait(timeout=120)
    return probe_samples()


def longest_gap(samples, after=None):
    """The longest time between two answered requests (from ``after`` on, seconds), and the count
    of failed requests."""
    good = [t for t, ok in samples if ok]
    failed = sum(1 for t, ok in samples if not ok and (after is None or t >= after))
    gaps = [(b - a, a) for a, b in zip(good, good[1:]) if after is None or b >= after]
    return (max(gaps)[0] if gaps else float("inf")), failed


def failover_run(ip):
    owner = holder(ip)
    if owner is None:
        raise SystemExit("nobody holds %s" % ip)
    proc = start_probe(ip, 7.0)
    time.sleep(1.5)
    on(owner, "ip link set eth0 down")
    time.sleep(0.2)
    samples = probe_result(proc)
    on(owner, "ip link set eth0 up; systemctl reset-failed podnet-lab-net.service; "
              "systemctl restart podnet-lab-net.service")
    gap, failed = longest_gap(samples)
    time.sleep(2)
    return {"owner": owner, "new": holder(ip), "gap": gap, "failed": failed, "samples": len(samples)}


def converge(extra, tag, logdir):
    play = logdir / "play.yml"
    play.write_text("- hosts: nodes\n  gather_facts: false\n  roles:\n    - podnet.fabric.service_proxy\n"
                    "    - podnet.fabric.load_balancer\n", encoding="utf-8")
    vars_file = logdir / ("%s.json" % tag)
    vars_file.write_text(json.dumps({"cluster_extra_objects": extra}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PODNET_LAB=LAB)
    start = time.monotonic()
    proc = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", str(play), "-e",
                           "@%s" % vars_file], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    (logdir / ("%s.log" % tag)).write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        raise SystemExit("%s: ansible-playbook failed (log %s)" % (tag, logdir))
    return time.monotonic() - start


def next_vip(extra):
    """The address the model gives the new LoadBalancer Service now (the collection's own
    allocator, from the lab's manifests and the nodes' reports)."""
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.podnet.fabric.plugins.module_utils import cluster  # pylint: disable=import-outside-toplevel
    from ansible_collections.podnet.fabric.plugins.plugin_utils import manifests  # pylint: disable=import-outside-toplevel
    objects = manifests.load([str(REPO / "inventories/lab/manifests")]) + extra
    reports = dict((n, json.loads(on(n, "cat %s" % REPORT))) for n in ("node1", "node2", "node3"))
    model = cluster.cluster_services(objects, ["node1", "node2", "node3"], reports=reports)
    return model["report"]["services"]["default/bench-lb"]["loadBalancerIP"]


def new_objects(web3):
    """default/bench-lb: a LoadBalancer without selector and its EndpointSlice (web-3 on node3)."""
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench-lb", "namespace": "default"},
             "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "bench-lb-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "bench-lb"}},
             "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
             "endpoints": [{"addresses": [web3], "conditions": {"ready": True}, "nodeName": "node3"}]}]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    print("bench/lb_failover (issue 13), lab %s, %s, %d CPUs, load %s" % (
        LAB, time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), load()))
    logdir = Path(tempfile.mkdtemp(prefix="podnet-bench-lb-"))
    web3 = json.loads(on("node3", "cat /etc/ansible/facts.d/podnet_fabric.fact"))["podIPs"]["default/web-3"]
    extra = new_objects(web3)
    vip = next_vip(extra)
    print("1. first converge of a new LoadBalancer Service default/bench-lb (VIP %s, endpoint web-3 %s on node3;"
          " logs %s)" % (vip, web3, logdir))
    proc = start_probe(vip, 300.0)
    time.sleep(1)
    probe_start = time.monotonic()
    try:
        wall = converge(extra, "add", logdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(ok for _t, ok in probe_samples()):
            time.sleep(0.2)
    finally:
        on("client", "pkill -f podnet-bench-probe.py || true", check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    first = next((t for t, ok in probe_samples() if ok), None)
    print("   playbook (service_proxy + load_balancer on the 3 nodes): %.1f s wall; the VIP answered %s after the"
          " playbook started; held by %s" % (wall, "%.1f s" % (first - probe_start) if first else "never",
                                             holder(vip)))
    try:
        print("2. failover of %s, %d runs; probe every 50 ms from the client, 0.2 s timeout" % (vip, args.runs))
        runs = []
        for i in range(args.runs):
            run = failover_run(vip)
            runs.append(run)
            print("   run %d: %s cut off -> %s holds it; longest gap %.3f s, %d failed requests of %d (load %s)" % (
                i + 1, run["owner"], run["new"], run["gap"], run["failed"], run["samples"], load()))
        worst = max(r["gap"] for r in runs)
        print("   longest gap over %d runs: %.3f s (median %.3f s); target <= 1 s: %s" % (
            len(runs), worst, statistics.median(r["gap"] for r in runs), "met" if worst <= 1.0 else "MISSED"))
    finally:
        removed = converge([], "remove", logdir)
        print("3. removing it again: %.1f s; VIP held by: %s" % (removed, holder(vip) or "nobody"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
