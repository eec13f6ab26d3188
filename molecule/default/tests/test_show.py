"""playbooks/show.yml on the converged lab (read-only): one run for the whole module, then each
node's view is checked with the nodes' own tools - `ip -json` in the node and in every pod
namespace, `iptables-save -t nat`, `birdc show protocols` - and the picture must be rendered.

The lab's routing (crosssubnet): node1 <-> node2 direct (host-gw) on rack A, to and from node3
through VXLAN; BIRD's learned routes (proto bird, metric 32) beneath them.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from labcheck import ip_json
from test_bgp import bird_sessions

REPO = Path(__file__).resolve().parents[3]
NODES = ("node1", "node2", "node3")
RACK = {"node1": "a", "node2": "a", "node3": "b"}


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """(the node_view results by node, the picture's path, the playbook's output)."""
    out = tmp_path_factory.mktemp("show")
    picture = out / "network.svg"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               PATH="%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    proc = subprocess.run(["ansible-playbook", "-i", str(REPO / "inventories" / "lab"), str(REPO / "playbooks" / "show.yml"),
                           "-e", "show_graph_file=%s" % picture], capture_output=True, text=True, env=env, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    tasks = dict((t["task"]["name"], t["hosts"]) for play in doc["plays"] for t in play["tasks"])
    results = tasks["What the collection built on the node"]
    assert not any(r.get("changed") for r in results.values())
    return results, picture, tasks


def view_of(shown, node):
    return shown[0][node]["view"]


def test_the_text_is_printed_once_for_every_node(shown):
    printed = next(iter(shown[2]["Every node, as the seeds draw it"].values()))["msg"]
    for node in NODES:
        assert "\n".join(shown[0][node]["text"]) in printed


def test_pods_veths_and_addresses_as_ip_json_sees_them(shown, host, node):
    h = host(node)
    view = view_of(shown, node)
    # one command for all pods: per namespace its name, `ip -json link` and `ip -json -4 addr` of eth0
    out = h.check_output("for n in $(ls /run/netns | grep '^pod-' | sort); do echo $n; "
                         "ip -n $n -json link show eth0; ip -n $n -json -4 addr show eth0; done").splitlines()
    kernel = dict((out[i], (json.loads(out[i + 1])[0], json.loads(out[i + 2])[0])) for i in range(0, len(out), 3))
    assert [p["netns"] for p in view["pods"]] == sorted(kernel) and kernel
    links = dict((lk["ifindex"], lk) for lk in ip_json(h, "link", "show"))
    for pod in view["pods"]:
        eth0, addr = kernel[pod["netns"]]
        veth = links[eth0["link_index"]]
        info = addr["addr_info"][0]
        assert (pod["address"], pod["veth"], pod["bridge"]) == (
            "%s/%d" % (info["local"], info["prefixlen"]), veth["ifname"], veth.get("master")), pod
    (cni0,) = ip_json(h, "-4", "addr", "show", "cni0")
    assert view["bridges"][0]["name"] == "cni0"
    assert view["bridges"][0]["addresses"] == ["%s/%d" % (a["local"], a["prefixlen"]) for a in cni0["addr_info"]]


def test_routes_and_how_they_are_reached(shown, host, lab, node):
    h = host(node)
    view = view_of(shown, node)
    cluster = ipaddress.ip_network(lab.var(node, "cluster_cidr"))
    kernel = sorted((r["dst"], r.get("dev"), r.get("gateway"), r.get("metric", 0), r.get("protocol"))
                    for r in ip_json(h, "route", "show", "table", "main")
                    if r["dst"] != "default" and ipaddress.ip_network(r["dst"]).subnet_of(cluster))
    # protocol names as iproute2 prints them (the collection's own protocols are named in rt_protos.d)
    mine = sorted((r["dest"], r["dev"], r["gateway"], r["metric"]) for r in view["routes"])
    assert mine == [k[:4] for k in kernel]
    assert sorted(r["dest"] for r in view["bgp"]["routes"]) == sorted(k[0] for k in kernel if k[4] == "bird")
    node_ip = dict((n, view_of(shown, n)["uplink"]["address"].split("/")[0]) for n in NODES)
    cidr = dict((n, next(r["dest"] for r in view_of(shown, n)["routes"] if r["kind"] == "local")) for n in NODES)
    active = dict((r["dest"], r) for r in view["routes"] if r["active"])
    for other in NODES:
        if other == node:
            assert active[cidr[other]]["dev"] == "cni0"
            continue
        r = active[cidr[other]]
        if RACK[other] == RACK[node]:
            assert (r["kind"], r["gateway"], r["dev"]) == ("direct", node_ip[other], "eth0"), r
        else:
            assert (r["kind"], r["dev"], r["vxlan"]["remote"]) == ("vxlan", "flannel.1", node_ip[other]), r
        assert [b["kind"] for b in view["routes"] if b["dest"] == cidr[other] and b["protocol"] == "bird"] in ([], ["bgp"])
    fdb = dict((e["mac"], e["dst"]) for e in json.loads(h.check_output("bridge -json fdb show dev flannel.1"))
               if e.get("dst"))
    assert view["fdb"]["flannel.1"] == fdb


def test_services_and_endpoints_as_iptables_save_has_them(shown, host, node):
    view = view_of(shown, node)
    text = host(node).check_output("iptables-save -t nat")
    dnat = dict(re.findall(r"^-A (KUBE-SEP-\S+) .*--to-destination (\S+)", text, re.M))
    kernel = {}
    for line in re.findall(r"^-A KUBE-SERVICES .*cluster IP\".*$", text, re.M):
        chain = re.search(r"-j (\S+)", line).group(1)
        seps = re.findall(r"^-A %s (.*)-j (KUBE-SEP-\S+)$" % chain, text, re.M)
        endpoints = [dnat[sep] for rest, sep in seps if "--rcheck" not in rest]
        kernel[re.search(r'--comment "(\S+) cluster IP"', line).group(1)] = (
            re.search(r"-d (\S+)/32", line).group(1), int(re.search(r"--dport (\d+)", line).group(1)), chain, endpoints)
    mine = dict((s["name"], (s["cluster_ip"], s["port"], s["chain"], [e["address"] for e in s["endpoints"]]))
                for s in view["services"] if s["chain"])
    assert mine == kernel and kernel


def test_bgp_sessions_as_birdc_shows_them(shown, host, node):
    sessions = dict((s["name"], s["state"]) for s in view_of(shown, node)["bgp"]["sessions"])
    assert sessions == bird_sessions(host, node)
    assert set(sessions.values()) == {"Established"}


def test_vip_owner_is_the_node_holding_it(shown, host):
    held = {}
    for node in NODES:
        for link in ip_json(host(node), "-4", "addr", "show", "eth0"):
            held.update((a["local"], (node, a.get("label"))) for a in link["addr_info"] if a["prefixlen"] == 32)
    shown_vips = dict((v["address"], (v["owner"], v["label"])) for n in NODES for v in view_of(shown, n)["vips"])
    assert shown_vips == held and held


def test_the_picture_is_rendered(shown):
    picture = shown[1]
    dot = picture.with_suffix(".dot").read_text(encoding="utf-8")
    assert dot.startswith('digraph "podnet"') and dot.count("subgraph") == len(NODES)
    assert 'label="VXLAN VNI 1"' in dot and 'label="host-gw"' in dot and "BGP Established" in dot
    svg = picture.read_text(encoding="utf-8")
    assert "<svg" in svg and all(n in svg for n in NODES)
