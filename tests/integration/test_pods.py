"""pods module: all of a node's pods in one task, checked with ip -json, the IPAM files and ping.

The node (bridge, host ends) is a throw-away namespace; the pods' namespaces are made by the
module and removed at teardown. Owners are the fixed itest-a / itest-b (the pods' default route
registers a route protocol per owner); the pods' purge acts on the owner's veths of the test's
own node namespace, so parallel tests never purge each other's pods.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ip_json, sh, snapshot, unique

A, B = "itest-a", "itest-b"


@pytest.fixture
def pod_names():
    """Unique pod namespace names; deleted at teardown, pass or fail."""
    made = []

    def make(count, prefix="pnt-pd-"):
        names = [unique(prefix) for _i in range(count)]
        made.extend(names)
        return names
    yield make
    for name in made:
        if os.path.exists(os.path.join("/run/netns", name)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def pods_task(node, pods, data_dir, owner=A, network="pnt", subnet="10.244.1.0/24", **extra):
    args = {"netns": node, "owner": owner, "bridge": "cni0", "manage_bridge": owner == A, "mtu": 1450, "hairpin": True,
            "bridge_mac": "0a:58:0a:f4:01:01" if owner == A else None,
            "ipam": {"subnet": subnet, "data_dir": str(data_dir), "network": network},
            "pods": [p if isinstance(p, dict) else {"name": p} for p in pods]}
    if owner != A:
        args["gateway"] = "10.244.1.1"
        args["ipam"]["range_start"] = "10.244.1.100"
    args.update(extra)
    return {"podnet.fabric.pods": args}


def eth0(pod):
    links = ip_json("-d", "addr", "show", "eth0", netns=pod)
    return links[0] if links else None


def inet(link):
    return ["%s/%s" % (a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]


def ipam_files(data_dir, network="pnt"):
    path = os.path.join(str(data_dir), network)
    return sorted(n for n in os.listdir(path) if n[0].isdigit()) if os.path.isdir(path) else []


def netns_list():
    return set(line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip())


def test_pods_four_runs_from_a_fresh_node_and_ping(four_runs, playbook, netns_factory, pod_names, tmp_path):
    node = netns_factory("pnt-node-")
    p1, p2, p3 = pod_names(3)
    tasks = [pods_task(node, [p1, p2, {"name": p3, "addresses": ["10.244.1.50/24"]}], tmp_path)]
    # Check mode on a node where none of the pods' namespaces exists yet.
    check, real, _c2, _r2 = four_runs(tasks, lambda: dict(snapshot(node, p1, p2, p3), files=ipam_files(tmp_path)))
    assert [p["ip"] for p in check.last["pods"]] == ["10.244.1.2", "10.244.1.3", "10.244.1.50"]
    result = dict((p["name"], p) for p in real.last["pods"])
    # The fixed address is reserved in IPAM too (host-local's requested IP), so no pod gets it.
    assert ipam_files(tmp_path) == ["10.244.1.2", "10.244.1.3", "10.244.1.50"]
    # host-local's format: container id (the owner's mark + the pod) CRLF ifname.
    assert (tmp_path / "pnt" / result[p1]["ip"]).read_bytes() == ("podnet.fabric:itest-a:%s\r\neth0" % p1).encode()
    for pod in (p1, p2, p3):
        got = result[pod]
        link = eth0(pod)
        assert link["ifalias"] == "podnet.fabric:itest-a" and link["mtu"] == 1450
        assert inet(link) == [got["ip"] + "/24"]
        assert link["address"] == got["mac"] == "0a:58:" + ":".join("%02x" % int(x) for x in got["ip"].split("."))
        assert "UP" in link["flags"]
        lo = ip_json("-d", "link", "show", "lo", netns=pod)[0]
        assert lo["ifalias"] == "podnet.fabric:itest-a" and "UP" in lo["flags"]
        host = ip_json("-d", "link", "show", got["veth"], netns=node)[0]
        assert host["master"] == "cni0" and host["ifalias"] == "podnet.fabric:itest-a"
        assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
        routes = ip_json("route", "show", "default", netns=pod)
        assert [(r["gateway"], r["dev"], r["protocol"]) for r in routes] == [("10.244.1.1", "eth0", A)]
        assert pod in netns_list()
    br = ip_json("-d", "link", "show", "cni0", netns=node)[0]
    assert br["address"] == "0a:58:0a:f4:01:01" and br["mtu"] == 1450 and br["ifalias"] == "podnet.fabric:itest-a"
    sh("ping", "-c", "1", "-W", "2", "10.244.1.50", netns=p1)
    sh("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=p2)
    # Converged: no change and no diff, in check mode and for real (the honest diff).
    for check in (True, False):
        r = playbook(tasks, check=check, diff=True)
        assert not r.failed and not r.changed and r.last["diff"] == {"before": {}, "after": {}}, r


def fixed(node, pods, owner, first, **extra):
    """A pods task with fixed addresses (no IPAM): .first, .first+1, ..."""
    entries = [{"name": p, "addresses": ["10.244.1.%d/24" % (first + i)]} for i, p in enumerate(pods)]
    return {"podnet.fabric.pods": dict({"netns": node, "owner": owner, "bridge": "cni0", "manage_bridge": owner == A,
                                        "gateway": "10.244.1.1", "hairpin": True, "pods": entries}, **extra)}


def test_two_owners_purge_in_turn_foreign_objects_survive(playbook, netns_factory, pod_names):
    node = netns_factory("pnt-node-")
    foreign_ns = netns_factory("pnt-usr-")  # `ip netns add`: not ours
    sh("ip", "-n", node, "link", "add", "docker0", "type", "bridge")
    sh("ip", "-n", node, "link", "add", "vethd0", "type", "veth", "peer", "name", "eth0", "netns", foreign_ns)
    sh("ip", "-n", node, "link", "set", "vethd0", "master", "docker0")
    a1, a2, b1, b2 = pod_names(4)
    first = playbook([fixed(node, [a1, a2], A, 2), fixed(node, [b1, b2], B, 100)])
    assert not first.failed, first
    a2_veth = [p["veth"] for p in first[0]["pods"] if p["name"] == a2][0]
    foreign = snapshot(foreign_ns)
    docker = [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("docker0", "vethd0")]
    for _round in range(2):
        r = playbook([fixed(node, [a1], A, 2, purge=True)])
        assert not r.failed, r
        kept_b = snapshot(b1, b2)
        r = playbook([fixed(node, [b1, b2], B, 100, purge=True)])
        assert not r.failed and not r.changed, r
        assert snapshot(b1, b2) == kept_b
    names = netns_list()
    assert a1 in names and a2 not in names and {b1, b2} <= names
    assert a2_veth not in [lk["ifname"] for lk in ip_json("link", netns=node)]
    assert snapshot(foreign_ns) == foreign
    assert [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("docker0", "vethd0")] == docker
    sh("ping", "-c", "1", "-W", "2", "10.244.1.101", netns=a1)


def test_a_fixed_address_is_never_handed_to_another_pod(playbook, netns_factory, pod_names, tmp_path):
    node = netns_factory("pnt-node-")
    p1, p2 = pod_names(2)
    r = playbook([pods_task(node, [{"name": p1, "addresses": ["10.244.1.2/24"]}], tmp_path)])
    assert not r.failed, r
    r = playbook([pods_task(node, [{"name": p1, "addresses": ["10.244.1.2/24"]}, p2], tmp_path)])
    assert not r.failed, r
    assert [p["ip"] for p in r.last["pods"]] == ["10.244.1.2", "10.244.1.3"]
    assert inet(eth0(p2)) == ["10.244.1.3/24"]
    assert (tmp_path / "pnt" / "10.244.1.2").read_bytes() == ("podnet.fabric:itest-a:%s\r\neth0" % p1).encode()


def test_purge_releases_the_removed_pods_ipam_allocation(playbook, netns_factory, pod_names, tmp_path):
    node = netns_factory("pnt-node-")
    p1, p2 = pod_names(2)
    assert not playbook([pods_task(node, [p1, p2], tmp_path)]).failed
    assert ipam_files(tmp_path) == ["10.244.1.2", "10.244.1.3"]
    r = playbook([pods_task(node, [p1], tmp_path, purge=True)], diff=True)
    assert not r.failed and r.changed, r
    assert p2 not in netns_list() and p1 in netns_list()
    assert ipam_files(tmp_path) == ["10.244.1.2"]
    r = playbook([pods_task(node, [p1], tmp_path, purge=True)])
    assert not r.failed and not r.changed, r


def test_kernel_refusal_on_the_nth_pod_rolls_back_everything(playbook, netns_factory, pod_names, tmp_path):
    node = netns_factory("pnt-node-")
    p1, p2, p3 = pod_names(3)
    assert not playbook([pods_task(node, [p1], tmp_path)]).failed
    before = snapshot(node, p1, p2, p3)
    files = ipam_files(tmp_path)
    # The kernel refuses an all-zero MAC: the third pod fails after the second was wired.
    r = playbook([pods_task(node, [p1, p2, {"name": p3, "mac": "00:00:00:00:00:00"}], tmp_path, mtu=1400)])
    assert r.failed, r
    msg = r.last["msg"]
    assert "\n" not in msg and msg.startswith("create veth "), msg
    assert "netns %s" % p3 in msg and "rolled back" in msg and r.last["changed"] is False, r
    assert snapshot(node, p1, p2, p3) == before
    names = netns_list()  # only ours: other work on the machine makes namespaces too
    assert p1 in names and p2 not in names and p3 not in names
    assert ipam_files(tmp_path) == files


def test_another_owners_pod_namespace_is_refused_naming_both(playbook, netns_factory, pod_names, tmp_path):
    node = netns_factory("pnt-node-")
    (p1,) = pod_names(1)
    assert not playbook([pods_task(node, [p1], tmp_path)]).failed
    before = snapshot(node, p1)
    r = playbook([pods_task(node, [{"name": p1, "veth": "vethother0"}], tmp_path, owner=B, network="pnt-b")])
    assert r.failed and r.last["msg"] == "netns %s: belongs to owner itest-a, not to owner itest-b; refusing to take it over" % p1, r
    assert snapshot(node, p1) == before


def test_bad_input_fails_with_one_line_and_changes_nothing(playbook, netns_factory, pod_names, tmp_path):
    # each case on a node, pods and an IPAM directory of its own; all in one playbook, every task
    # on its own (ignore_errors)
    cases = []
    for i, case in enumerate((
        lambda p1, p2: ([p1, p1], {}, "pod %s: declared twice" % p1),
        lambda p1, p2: ([p1, {"name": p2, "veth": "veth-name-too-long"}], {},
                        "pod %s veth veth-name-too-long: name is 18 characters, the kernel allows at most 15" % p2),
        lambda p1, p2: ([p1, {"name": p2, "addresses": ["10.9.0.2/24"]}], {}, "pod %s: veth " % p2),
        lambda p1, p2: ([p1], {"manage_bridge": False, "bridge": "nobr0"}, "pods: bridge nobr0 does not exist"),
    )):
        node, (p1, p2), data_dir = netns_factory("pnt-node-"), pod_names(2), tmp_path / ("case%d" % i)
        cases.append((node, p1, data_dir, snapshot(node)) + case(p1, p2))
    r = playbook([dict(pods_task(node, pods, data_dir, **extra), ignore_errors=True)
                  for node, _p1, data_dir, _before, pods, extra, _message in cases])
    assert len(r.results) == len(cases), r
    for (node, p1, data_dir, before, _pods, _extra, message), result in zip(cases, r.results):
        assert result.get("failed") and "\n" not in result["msg"] and result["msg"].startswith(message), result
        assert snapshot(node) == before
        assert p1 not in netns_list() and ipam_files(data_dir) == []
