#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/trace: how long the trace engine takes to explain one packet at 100 / 1,000 / 5,000
Services (issue 14: <= 2 s at 1,000). Not part of the test suite; no root, no lab.

``.venv/bin/python bench/trace.py [--services 100,1000,5000] [--repeat 5]``

Per size: kube-proxy's ruleset for N ClusterIP Services with 3 endpoints each, built by the
collection's kubeproxy layer and printed as ``iptables-save`` text (what the trace module reads
from a node), then a TCP SYN from a pod to the LAST Service (the worst case: KUBE-SERVICES is
walked to its end) traced with ``trace_node``: the first trace of a fresh state (cold: the rules
of the chains it visits are prepared) and the median of ``--repeat`` traces on that state (warm).
Printed beside: the time kube-proxy's layer took to build the same ruleset (the cost a sync pays
anyway), so the ratio says what explaining one packet costs against programming the node. The
module's own reading of a live node (iptables-save, netlink) is not in these figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".collections"))

from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace import trace_node  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text  # noqa: E402

CIDR = "10.244.0.0/16"


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
            "hops": len(result.get("hops") or [])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--services", default="100,1000,5000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print("bench/trace (issue 14), %s, %d CPUs, load %.1f" % (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), os.getloadavg()[0]))
    print("%8s %9s %10s %10s %10s %12s" % ("services", "lines", "build s", "cold s", "warm s", "cold/build"))
    figures = {}
    for n in [int(x) for x in args.services.split(",")]:
        m = measure(n, args.repeat)
        figures[n] = m
        print("%8d %9d %10.3f %10.3f %10.3f %12.2f" % (n, m["lines"], m["build"], m["cold"], m["warm"], m["cold"] / m["build"]))
    if 1000 in figures:
        print("1,000 services: cold trace %.3f s; target <= 2 s: %s" % (
            figures[1000]["cold"], "met" if figures[1000]["cold"] <= 2 else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
