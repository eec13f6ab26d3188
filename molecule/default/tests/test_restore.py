"""Nodes that heal themselves: after `podman restart` (a reboot) or a link flap, with no Ansible
run afterwards, podnet-restore.service puts back what the last converge recorded.

Runs after test_pod_network.py (file order), on the lab converged as the inventory says, and
leaves it so. Checked with real HTTP between pods and with `ip -json`, `bridge -json` and
`iptables-save`, never with the code under test.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from labcheck import ip_json
from test_pod_network import LAB_STATE, PODS, converge, http, labinventory, netns, pod_ip

REPO = Path(__file__).resolve().parents[3]
NODE = "node2"
VOLATILE = {"ifindex", "link_index", "link_netnsid", "stats", "stats64", "operstate", "qdisc", "linkinfo_timers",
            "carrier_changes", "carrier_up_count", "carrier_down_count", "valid_life_time", "preferred_life_time",
            "used", "updated", "tentative", "dadfailed", "pref"}
CARRIER_FLAGS = {"NO-CARRIER", "LOWER_UP", "M-DOWN", "DORMANT", "linkdown"}


def _clean(obj):
    if isinstance(obj, dict):
        out = {k: _clean(v) for k, v in obj.items() if k not in VOLATILE and not k.endswith("_timer")}
        if "flags" in out:
            out["flags"] = [f for f in out["flags"] if f not in CARRIER_FLAGS]
        if "addr_info" in out:    # IPv6 link-local addresses come and go with DAD
            out["addr_info"] = [a for a in out["addr_info"] if not (a.get("family") == "inet6" and a.get("scope") == "link")]
        return out
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _json(h, cmd):
    out = h.check_output(cmd)
    return json.loads(out) if out.strip() else []


def node_state(h):
    """The node's network as the kernel has it, without what differs between two boots by nature
    (indexes, counters, timers, carrier, dynamic ARP/FDB entries, IPv6 link-local)."""
    namespaces = sorted(n for n in h.check_output("ls /run/netns 2>/dev/null || true").split() if n.startswith("pod-"))
    state = {"netns": namespaces}
    for ns in [None] + namespaces:
        pre = "ip -n %s -json" % ns if ns else "ip -json"
        state[ns or "host"] = _clean({
            "links": _json(h, pre + " -d link show"),
            "addrs": _json(h, pre + " addr show"),
            "routes": [r for r in _json(h, pre + " route show table all")
                       if not r.get("dst", "").startswith(("fe80:", "ff00:"))],
            "neigh": _json(h, pre + " neigh show nud permanent"),
        })
    # links by name, not by index: a pod re-created by a converge gets a later index than the
    # VTEP, the restorer makes pods before VTEPs at boot; the order is not what it restores
    for view in [state["host"]] + [state[n] for n in namespaces]:
        view["links"].sort(key=lambda link: link.get("ifname", ""))
        view["addrs"].sort(key=lambda link: link.get("ifname", ""))
    # LoadBalancer VIPs (keepalived's, label <if>:lb) are not the restorer's: they move to another
    # node while this one reboots, by design (failover, no flap back)
    host = state["host"]
    vips = set()
    for link in host["addrs"]:
        keep = []
        for a in link.get("addr_info", []):
            if str(a.get("label", "")).endswith(":lb"):
                vips.add(a.get("local"))
            else:
                keep.append(a)
        link["addr_info"] = keep
    host["routes"] = [r for r in host["routes"] if not (r.get("table") == "local" and r.get("dst") in vips)]
    # BIRD's routes (proto bird) are not the restorer's either: BIRD starts at boot by itself and
    # learns them again from its peers (checked apart, bird_back)
    host["routes"] = [r for r in host["routes"] if r.get("protocol") != "bird"]
    state["fdb"] = sorted((e for e in _json(h, "bridge -json fdb show") if e.get("state") == "permanent"),
                          key=lambda e: (e.get("ifname", ""), e.get("mac", ""), str(e.get("dst", ""))))
    # counters differ by nature; everything else (chains, rules, order) must be the same, except
    # the order of nat_rule's registry rules (PODNET-OWN-*): a converge that changed an owner's
    # chains (the service proxy's, after an endpoint change) deletes and appends registry rules,
    # a restore writes them at once; the registry is a set
    lines = [re.sub(r" \[\d+:\d+\]$", "", line) for line in h.check_output("iptables-save").splitlines()
             if not line.startswith("#")]
    state["iptables"], registry = [], []
    for line in lines:
        if line.startswith("-A PODNET-OWN-"):
            registry.append(line)
            continue
        if line == "COMMIT":
            state["iptables"].extend(sorted(registry))
            registry = []
        state["iptables"].append(line)
    return state


def differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), "%s/%s" % (path, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, "%s[%d]" % (path, i))]
    return [] if a == b else ["%s: %r != %r" % (path, a, b)]


def node_pods(node):
    return sorted(p for p, n in PODS.items() if n == node)


def reachable_from_elsewhere(host, node, targets, timeout):
    """Seconds until every pod of ``node`` (``targets``: pod -> IP) answers HTTP from a pod on
    each other node."""
    others = [p for p, n in sorted(PODS.items()) if n != node]
    sources = {PODS[p]: p for p in others}.values()       # one pod per other node
    start = time.monotonic()
    pending = {(s, t) for s in sources for t in targets}
    while pending and time.monotonic() - start < timeout:
        for source, target in sorted(pending):
            out = host(PODS[source]).run("ip netns exec %s curl -s -m 1 http://%s:8080/" % (netns(source), targets[target]))
            if out.rc == 0 and "pod=default/%s" % target in out.stdout:
                pending.discard((source, target))
        if pending:
            time.sleep(0.1)
    assert not pending, "still unreachable after %.0f s: %s" % (timeout, sorted(pending))
    return time.monotonic() - start


def restart(lab, node):
    subprocess.run(["podman", "restart", "-t", "2", lab.container(node)], check=True, capture_output=True)


def wait_for_systemd(h):
    h.check_output("for i in $(seq 200); do s=$(systemctl is-system-running); "
                   "[ \"$s\" = running ] || [ \"$s\" = degraded ] && exit 0; sleep 0.1; done; exit 1")


def test_every_node_runs_the_restorer_of_this_collection_and_records_its_state(host, lab):
    version = re.search(r"^version: (\S+)", (REPO / "galaxy.yml").read_text(), re.M).group(1)
    for name in lab.hosts("nodes"):
        h = host(name)
        assert h.run("systemctl is-active podnet-restore.service").stdout.strip() == "active", name
        assert h.run("systemctl is-enabled podnet-restore.service").stdout.strip() == "enabled", name
        assert h.check_output("/usr/bin/python3 /usr/local/lib/podnet-fabric/podnet-restore.pyz version") == version
        listing = h.check_output("stat -c '%a %U %n' /var/lib/podnet-fabric/restore /var/lib/podnet-fabric/restore/*.json")
        assert listing.splitlines() == ["700 root /var/lib/podnet-fabric/restore"] + [
            "600 root /var/lib/podnet-fabric/restore/%s.json" % o
            for o in ("egress", "load_balancer", "pod_network", "pod_routing", "service_proxy")], listing
        doc = json.loads(h.check_output("cat /var/lib/podnet-fabric/restore/pod_routing.json"))
        assert sorted(doc["modules"]) == ["route", "vxlan"] and doc["modules"]["route"]["version"] == version


def test_a_reboot_restores_the_node_without_ansible(host, lab, record_property):
    h = host(NODE)
    before = node_state(h)
    assert before["netns"] == sorted(netns(p) for p in node_pods(NODE))
    targets = {p: pod_ip(host, p) for p in node_pods(NODE)}
    restart(lab, NODE)
    seconds = reachable_from_elsewhere(host, NODE, targets, timeout=30)
    record_property("seconds_to_reachable_after_restart", round(seconds, 2))
    print("node2 pods reachable %.2f s after podman restart returned" % seconds)
    wait_for_systemd(h)
    diffs = differences(node_state(h), before)
    assert not diffs, "\n".join(diffs[:40])
    status = h.check_output("systemctl show -p StatusText --value podnet-restore.service")
    match = re.match(r"boot: (\d+) entries, (\d+) restored, 0 failed in [\d.]+ s$", status)
    assert match and int(match.group(1)) >= 4 and match.group(1) == match.group(2), status
    journal = h.check_output("journalctl -b -u podnet-restore.service -o cat")
    assert "pod_network/pods: restored," in journal and "pod_routing/route: restored," in journal, journal
    # the workloads started after their pods were back, not by retrying
    assert h.run("systemctl show -p NRestarts --value podnet-pods.service").stdout.strip() == "0"
    # BIRD (enabled unit) came back by itself: its sessions Established, its routes learned again
    start = time.monotonic()
    while time.monotonic() - start < 30 and not bird_back(h):
        time.sleep(0.5)
    assert bird_back(h), h.check_output("birdc -s /run/bird/bird.ctl show protocols || true")
    LAB_STATE["restored"] = True


def bird_back(h):
    states = re.findall(r"^\S+\s+BGP\s+.*\s(\w+)\s*$", h.run("birdc -s /run/bird/bird.ctl show protocols").stdout, re.M)
    return bool(states) and set(states) == {"Established"} and len(ip_json(h, "route", "show", "proto", "bird")) == 2


def test_a_converge_right_after_a_self_restore_finds_nothing_to_do(host, lab):
    assert LAB_STATE.get("restored"), "runs after the reboot test"
    rc, changed, out = converge()
    assert rc == 0, out
    assert changed and all(v == 0 for v in changed.values()), changed


def _pod_routes(h):
    return sorted(r["dst"] for r in ip_json(h, "route", "show", "proto", "pod_routing"))


def test_a_link_flap_brings_the_routes_and_the_traffic_back(host, lab, record_property):
    h = host(NODE)
    routes = _pod_routes(h)
    assert len(routes) == 2, routes
    # down and up in one command: nothing of ours runs in between
    took = h.check_output(
        "ip link set eth0 down; ip -json route show proto pod_routing dev eth0 > /tmp/while-down.json; "
        "ip link set eth0 up; start=$(date +%s%N); for i in $(seq 500); do "
        "[ $(ip route show proto pod_routing | wc -l) -eq 2 ] && echo $(( ($(date +%s%N) - start) / 1000000 )) && exit 0; "
        "sleep 0.01; done; exit 1")
    assert h.check_output("cat /tmp/while-down.json").strip() in ("", "[]"), "the kernel kept routes through a down link"
    record_property("ms_to_routes_after_link_up", int(took))
    print("routes back %s ms after link up" % took)
    assert _pod_routes(h) == routes
    journal = h.check_output("journalctl -b -u podnet-restore.service -o cat")
    assert "link eth0 up" in journal, journal
    # same rack: straight over eth0
    assert http(host, "web-2", pod_ip(host, "web-1"))["pod"] == "default/web-1"
    # the other rack needs the underlay's own route back too (the lab's DHCP stand-in)
    h.check_output("systemctl restart podnet-lab-net.service")
    assert http(host, "web-2", pod_ip(host, "web-3"))["pod"] == "default/web-3"
    assert http(host, "tools-3", pod_ip(host, "web-2"))["pod"] == "default/web-2"


@pytest.fixture(scope="module")
def without_web2(tmp_path_factory):
    variant = labinventory.Variant()
    variant.drop_pod("web-2")
    return variant.write(tmp_path_factory.mktemp("lab-no-web2") / "inventory")


def test_a_pod_removed_by_a_converge_does_not_come_back_at_the_next_reboot(host, lab, without_web2):
    rc, _changed, out = converge(inventory=without_web2)
    assert rc == 0, out
    h = host(NODE)
    assert h.run("test -e /run/netns/%s" % netns("web-2")).rc != 0
    try:
        restart(lab, NODE)
        wait_for_systemd(h)
        h.check_output("for i in $(seq 100); do systemctl is-active --quiet podnet-restore.service && exit 0; sleep 0.1; done; exit 1")
        assert h.run("test -e /run/netns/%s" % netns("web-2")).rc != 0, "a removed pod came back"
        assert "default-web-2" not in h.check_output("ip -json link show")
    finally:
        rc, _changed, out = converge()
        assert rc == 0, out
    assert http(host, "web-1", pod_ip(host, "web-2"))["pod"] == "default/web-2"
