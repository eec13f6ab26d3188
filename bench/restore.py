#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/restore: how fast a node heals itself (issue 10), on a converged podman lab.

Run after ``scripts/lab.sh up`` (``PODNET_LAB`` names the lab, default ``podnet``), as root:
``.venv/bin/python bench/restore.py [--runs 5] [--node node2]``. Not part of the test suite.

1. Reboot, ``--runs`` times: every pod of the node is polled over HTTP from one pod on each
   other node by a shell loop running *inside* those containers (``curl -m 0.3`` every 20 ms, so
   no ``podman exec`` start-up is in the figure); the clock starts when ``podman restart``
   returns (the container is up again: a machine that has booted) and stops when the last pod
   answered from every other node. Also printed: the same from the moment the restart was
   issued, and the restorer's own boot apply time (its journal line). Target <= 5 s.
2. Link flap, ``--runs`` times, inside the node: ``ip link set eth0 down; ... up``, then a
   1 ms loop until the node's pod routes (``proto pod_routing``) are all back, and until a pod of
   the same rack answers HTTP through them. Target <= 1 s (flannel re-checks every 10 s).

"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PODS = {"web-1": "node1", "web-2": "node2", "web-3": "node3", "tools-1": "node1", "tools-3": "node3"}


def container(node):
    return "%s-%s" % (os.environ.get("PODNET_LAB", "podnet"), node)


def sh_in(node, script, check=True):
    proc = subprocess.run(["podman", "exec", container(node), "sh", "-c", script], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit("%s: %s failed: %s%s" % (node, script[:80], proc.stdout, proc.stderr))
    return proc.stdout


def pod_ip(pod):
    out = json.loads(sh_in(PODS[pod], "ip -json -n pod-default-%s -4 addr show eth0" % pod))
    return out[0]["addr_info"][0]["local"]


def load():
    return "%.1f" % os.getloadavg()[0]


def reboot_once(node, targets):
    sources = {}
    for pod, where in sorted(PODS.items()):
        if where != node:
            sources.setdefault(where, pod)
    loops = []
    for where, pod in sorted(sources.items()):
        for target, ip in sorted(targets.items()):
            # wait for the node to go away first, then poll until it answers: prints ns since epoch
            script = ("while curl -s -m 0.3 -o /dev/null http://{ip}:8080/; do sleep 0.02; done; "
                      "until curl -s -m 0.3 -o /dev/null http://{ip}:8080/; do sleep 0.02; done; date +%s%N").format(ip=ip)
            loops.append(subprocess.Popen(["podman", "exec", container(where), "ip", "netns", "exec",
                                           "pod-default-%s" % pod, "sh", "-c", script],
                                          stdout=subprocess.PIPE, text=True))
    time.sleep(0.5)
    issued = time.time()
    subprocess.run(["podman", "restart", "-t", "2", container(node)], check=True, capture_output=True)
    up = time.time()
    done = []
    for proc in loops:
        out, _err = proc.communicate(timeout=120)
        done.append(int(out.strip()) / 1e9)
    last = max(done)
    journal = sh_in(node, "journalctl -b -u podnet-restore.service -o cat | grep 'boot:' | tail -1", check=False)
    match = re.search(r"in ([\d.]+) s", journal)
    return last - up, last - issued, float(match.group(1)) if match else float("nan")


def flap_once(node, same_rack_ip):
    script = ("n=$(ip route show proto pod_routing | wc -l); ip link set eth0 down; ip link set eth0 up; "
              "s=$(date +%s%N); until [ $(ip route show proto pod_routing | wc -l) -eq $n ]; do sleep 0.001; done; "
              "r=$(date +%s%N); until ip netns exec pod-default-web-2 curl -s -m 0.3 -o /dev/null http://{ip}:8080/; "
              "do sleep 0.001; done; h=$(date +%s%N); echo $(( (r - s) / 1000 )) $(( (h - s) / 1000 ))").format(ip=same_rack_ip)
    routes_us, http_us = sh_in(node, script).split()
    # the lab's underlay routes come back with its unit (DHCP's part on a Pi); systemd limits a
    # unit to 5 starts in 10 s, and a bench flaps more often than that
    sh_in(node, "systemctl reset-failed podnet-lab-net.service; systemctl restart podnet-lab-net.service")
    return int(routes_us) / 1e6, int(http_us) / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--node", default="node2")
    args = parser.parse_args(argv)
    targets = {p: pod_ip(p) for p, n in PODS.items() if n == args.node}
    print("lab %s, node %s, pods %s, load %s" % (os.environ.get("PODNET_LAB", "podnet"), args.node, targets, load()))

    reboots = []
    for i in range(args.runs):
        since_up, since_issued, apply_s = reboot_once(args.node, targets)
        reboots.append((since_up, since_issued, apply_s))
        print("reboot %d: all pods reachable %.2f s after the container was up (%.2f s after restart was issued); "
              "restorer boot apply %.2f s; load %s" % (i + 1, since_up, since_issued, apply_s, load()))
    same_rack = pod_ip("web-1")   # node1, rack A: reached over eth0 directly
    flaps = []
    for i in range(args.runs):
        routes_s, http_s = flap_once(args.node, same_rack)
        flaps.append((routes_s, http_s))
        print("link flap %d: routes back %.3f s after link up, pod traffic %.3f s; load %s" % (i + 1, routes_s, http_s, load()))

    med = statistics.median
    print("median reboot -> reachable: %.2f s since up, %.2f s since issued (target <= 5 s: %s)" % (
        med(r[0] for r in reboots), med(r[1] for r in reboots), "met" if med(r[0] for r in reboots) <= 5 else "MISSED"))
    print("median link up -> routes: %.3f s, -> traffic %.3f s (target <= 1 s: %s; flannel's check interval 10 s)" % (
        med(f[0] for f in flaps), med(f[1] for f in flaps), "met" if med(f[0] for f in flaps) <= 1 else "MISSED"))


if __name__ == "__main__":
    main()
