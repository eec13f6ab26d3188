"""veth module: pods wired to a bridge in a "node" namespace, checked with ip -json and ping.

The pods' default route registers a route protocol for its owner, so the owners here are the
fixed itest-a / itest-b (see conftest): purge acts only in the test's own node namespace.
"""
from __future__ import annotations

import pytest

from conftest import ip_json, netns_pool, run_cases, run_independent_tasks, sh, snapshot

A, B = "itest-a", "itest-b"


def inet(ns, name):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in ip_json("addr", "show", name, netns=ns)[0]["addr_info"]
                  if not a["local"].startswith("fe80"))


def veths(node, pods, base=2, prefix="vp", **extra):
    out = []
    for i, pod in enumerate(pods):
        v = {"name": "%s%d%s" % (prefix, i, node[-4:]), "peer_netns": pod, "addresses": ["10.244.1.%d/24" % (i + base)],
             "mtu": 1450, "mac": "0a:58:0a:f4:01:%02x" % (i + base), "bridge": "cni0", "hairpin": True,
             "gateway": "10.244.1.1"}
        v.update(extra)
        out.append(v)
    return out


def bridge_task(node):
    return {"podnet.fabric.bridge": {"netns": node, "owner": A, "bridges": [{"name": "cni0", "addresses": ["10.244.1.1/24"], "mtu": 1450}]}}


def veth_task(node, entries, owner=A, **extra):
    return {"podnet.fabric.veth": dict({"netns": node, "owner": owner, "veths": entries}, **extra)}


def pods_tasks(node, pods, **extra):
    return [bridge_task(node), veth_task(node, veths(node, pods, **extra))]


def test_pods_on_a_bridge_four_runs_and_ping(four_runs, playbook, netns_factory):
    node, p1, p2 = netns_factory("pnt-node-"), netns_factory("pnt-pod-"), netns_factory("pnt-pod-")
    tasks = pods_tasks(node, [p1, p2])
    four_runs(tasks, lambda: snapshot(node, p1, p2))
    for i, pod in enumerate((p1, p2)):
        eth0 = ip_json("-d", "link", "show", "eth0", netns=pod)[0]
        assert eth0["mtu"] == 1450 and eth0["address"] == "0a:58:0a:f4:01:%02x" % (i + 2)
        assert eth0["ifalias"] == "podnet.fabric:itest-a"
        assert inet(pod, "eth0") == ["10.244.1.%d/24" % (i + 2)]
        host = ip_json("-d", "link", "show", "vp%d%s" % (i, node[-4:]), netns=node)[0]
        assert host["master"] == "cni0" and host["mtu"] == 1450 and host["ifalias"] == "podnet.fabric:itest-a"
        assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
        # ip names the peer's namespace by its netnsid: the pair really spans the two.
        assert "link_netnsid" in host
    # real packets: pod to pod through cni0, and pod to its gateway
    sh("ping", "-c", "1", "-W", "2", "10.244.1.3", netns=p1)
    sh("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=p2)


def test_converged_gateway_has_no_diff(playbook, netns_factory):
    """The issue's independent finding: changed=false came with a diff gateway None -> X."""
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    tasks = pods_tasks(node, [pod])
    assert not playbook(tasks).failed
    for check in (True, False):
        r = playbook(tasks, check=check, diff=True)
        assert not r.failed and not r.changed, r
        assert r.last["diff"] == {"before": {}, "after": {}}, r.last["diff"]
    # A changed gateway is a change, and the diff shows exactly that.
    r = playbook(pods_tasks(node, [pod], gateway="10.244.1.254"), diff=True)
    assert not r.failed and r.changed, r
    name = "vp0" + node[-4:]
    assert r.last["diff"]["before"][name]["gateway"] == "10.244.1.1"
    assert r.last["diff"]["after"][name]["gateway"] == "10.244.1.254"


def test_gateway_is_the_pods_default_route_with_the_owners_protocol(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    assert not playbook(pods_tasks(node, [pod])).failed
    routes = ip_json("route", "show", "default", netns=pod)
    # rt_protos.d names the owner's number: ip prints the owner.
    assert [(r["gateway"], r["dev"], r["protocol"]) for r in routes] == [("10.244.1.1", "eth0", A)]
    r = playbook(pods_tasks(node, [pod], gateway="10.244.1.254"))
    assert not r.failed and r.changed, r
    assert [x["gateway"] for x in ip_json("route", "show", "default", netns=pod)] == ["10.244.1.254"]
    r = playbook(pods_tasks(node, [pod], gateway="10.9.0.1"))
    assert r.failed and r.last["msg"] == "veth vp0%s: gateway 10.9.0.1 is not in the subnet of any of the pod's addresses 10.244.1.2/24" % node[-4:]


def test_drift_is_reconciled_and_a_lost_peer_is_recreated(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    tasks = pods_tasks(node, [pod])
    assert not playbook(tasks).failed
    sh("ip", "-n", pod, "addr", "flush", "dev", "eth0")
    sh("ip", "-n", pod, "addr", "add", "10.244.1.99/24", "dev", "eth0")
    sh("ip", "-n", pod, "link", "set", "eth0", "mtu", "1300")
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    assert inet(pod, "eth0") == ["10.244.1.2/24"]
    assert ip_json("link", "show", "eth0", netns=pod)[0]["mtu"] == 1450
    assert [x["gateway"] for x in ip_json("route", "show", "default", netns=pod)] == ["10.244.1.1"]
    # The pod's end is moved away (as when a runtime tears the sandbox down): the host end is
    # no longer paired with anything in the pod, and the pair is re-created.
    other = netns_factory("pnt-pod-")
    sh("ip", "-n", pod, "link", "set", "eth0", "netns", other)
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    assert "delete veth vp0%s" % node[-4:] in r.last["actions"], r
    assert inet(pod, "eth0") == ["10.244.1.2/24"]
    sh("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=pod)


def test_two_owners_purge_in_turn_and_foreign_links_survive(playbook, netns_factory):
    node, p1, p2, p3, p4 = (netns_factory(p) for p in ("pnt-node-", "pnt-pod-", "pnt-pod-", "pnt-pod-", "pnt-pod-"))
    # Docker-like: its own bridge with a veth, and the user's own pair.
    sh("ip", "-n", node, "link", "add", "docker0", "type", "bridge")
    sh("ip", "-n", node, "link", "add", "vethd0", "type", "veth", "peer", "name", "vethd1")
    sh("ip", "-n", node, "link", "set", "vethd0", "master", "docker0")
    sh("ip", "-n", node, "link", "add", "uservh", "type", "veth", "peer", "name", "uservp")
    mine = veths(node, [p1, p2], prefix="va")
    theirs = veths(node, [p3, p4], base=10, prefix="vb")
    assert not playbook([bridge_task(node), veth_task(node, mine), veth_task(node, theirs, owner=B)]).failed
    foreign = [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("docker0", "vethd0", "vethd1", "uservh", "uservp")]
    for _round in range(2):
        r = playbook([veth_task(node, mine[:1], purge=True)])
        assert not r.failed, r
        kept_b = snapshot(node, p3, p4)
        r = playbook([veth_task(node, theirs, owner=B, purge=True)])
        assert not r.failed and not r.changed, r
        assert snapshot(node, p3, p4) == kept_b
    names = [lk["ifname"] for lk in ip_json("link", netns=node)]
    assert "va0" + node[-4:] in names and "va1" + node[-4:] not in names
    assert not [lk for lk in ip_json("link", netns=p2) if lk["ifname"] == "eth0"], "the pod end went with the pair"
    assert [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("docker0", "vethd0", "vethd1", "uservh", "uservp")] == foreign
    r = playbook([veth_task(node, [{"name": "va0" + node[-4:], "state": "absent"}])])
    assert not r.failed and r.changed, r
    assert not [lk for lk in ip_json("link", netns=p1) if lk["ifname"] == "eth0"]


def test_another_owners_veth_is_refused_naming_both(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    assert not playbook(pods_tasks(node, [pod])).failed
    before = snapshot(node, pod)
    r = playbook([veth_task(node, veths(node, [pod]), owner=B)])
    assert r.failed and r.last["msg"] == "veth vp0%s: belongs to owner itest-a, not to owner itest-b; refusing to take it over" % node[-4:], r
    assert snapshot(node, pod) == before


def test_release_0_1_pair_is_adopted_in_place(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    assert not playbook([bridge_task(node)]).failed
    name = "vold" + node[-4:]
    sh("ip", "-n", node, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", pod)
    sh("ip", "-n", node, "link", "set", name, "alias", "podnet.fabric")
    sh("ip", "-n", pod, "link", "set", "eth0", "alias", "podnet.fabric")
    index = ip_json("link", "show", name, netns=node)[0]["ifindex"]
    r = playbook([veth_task(node, [{"name": name, "peer_netns": pod, "addresses": ["10.244.1.7/24"], "bridge": "cni0"}])])
    assert not r.failed and r.changed, r
    host = ip_json("-d", "link", "show", name, netns=node)[0]
    assert host["ifindex"] == index and host["ifalias"] == "podnet.fabric:itest-a", "adopting recreated the pair"
    assert ip_json("-d", "link", "show", "eth0", netns=pod)[0]["ifalias"] == "podnet.fabric:itest-a"


def test_kernel_refusal_on_the_nth_veth_rolls_back_everything(playbook, netns_factory):
    node, p1, p2, p3 = (netns_factory(p) for p in ("pnt-node-", "pnt-pod-", "pnt-pod-", "pnt-pod-"))
    assert not playbook(pods_tasks(node, [p1])).failed
    before = snapshot(node, p1, p2, p3)
    entries = veths(node, [p1, p2, p3])
    entries[0]["mtu"] = 1400                    # a change on an existing pair, to be undone
    entries[2]["mac"] = "00:00:00:00:00:00"     # the kernel refuses an all-zero MAC on the third
    r = playbook([veth_task(node, entries)])
    assert r.failed, r
    msg = r.last["msg"]
    third = "vp2" + node[-4:]
    assert "\n" not in msg and msg.startswith("create veth %s with " % third), msg
    assert "rolled back" in msg and r.last["changed"] is False, r
    assert snapshot(node, p1, p2, p3) == before


BAD = [
    ({"name": "veth-name-too-long", "peer_netns": "{pod}"}, None, "veth veth-name-too-long: name is 18 characters, the kernel allows at most 15"),
    ({"name": "vbad0", "peer_netns": "pnt-no-such-pod"}, None, "veth vbad0: peer netns pnt-no-such-pod does not exist"),
    ({"name": "vbad0", "peer_netns": "{pod}", "bridge": "nobr0"}, None, "veth vbad0: bridge nobr0 does not exist"),
    ({"name": "vbad0", "peer_netns": "{pod}", "addresses": ["10.244.1/24"]}, None,
     "veth vbad0: '10.244.1/24' is not a valid IP address with prefix (e.g. 10.244.1.1/24)"),
    ({"name": "cni0", "peer_netns": "{pod}"}, None, "veth cni0: the name is taken by a link of kind bridge, not veth"),
    ({"name": "vbad0", "peer_netns": "{pod}", "hairpin": True}, None, "veth vbad0: hairpin needs a bridge"),
    ({"name": "vbad0", "peer_netns": "{pod}"}, ["link", "add", "eth0", "type", "bridge"],
     "veth vbad0: peer name eth0 is taken in netns {pod} by a bridge link not owned by podnet.fabric"),
]


def compute_batched_cases(target_python, tmp_path_factory):
    """Each BAD case with a node, a pod and another pod of its own, the module called once per
    case, all the calls in one playbook (conftest.run_cases), after one playbook that gave every
    node its cni0: [(task result, snapshot before, after, the other pod's links, pod)]."""
    tmp = tmp_path_factory.mktemp("veth-bad-input")
    with netns_pool() as make:
        nodes = [make("pnt-node-") for _case in BAD]
        ready = run_independent_tasks([bridge_task(node) for node in nodes], target_python, tmp / "bridges.yml")
        assert not [r for r in ready if r.get("failed")], ready  # cni0 exists
        prepared, others = [], []
        for node, (entry, setup, _message) in zip(nodes, BAD):
            pod, other = make("pnt-pod-"), make("pnt-pod-")
            if setup:
                sh("ip", "-n", pod, *setup)
            entry = dict((k, v.replace("{pod}", pod) if isinstance(v, str) else v) for k, v in entry.items())
            others.append(other)
            prepared.append(((node, pod), veth_task(node, [
                {"name": "vok0", "peer_netns": other, "addresses": ["10.244.1.9/24"], "bridge": "cni0"}, entry])))
        runs = run_cases(prepared, lambda state: snapshot(*state), target_python, tmp / "play.yml")
        return [(res, before, after, ip_json("link", netns=other), state[1])
                for (res, before, after), other, (state, _task) in zip(runs, others, prepared)]


@pytest.mark.xdist_group("veth-bad-input")
@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_fails_with_one_line_and_changes_nothing(batched_cases, case):
    result, before, after, other_links, pod = batched_cases[case]
    assert result.get("failed"), result
    assert result["msg"] == BAD[case][2].replace("{pod}", pod)
    assert after == before
    assert not [lk for lk in other_links if lk["ifname"] == "eth0"]
