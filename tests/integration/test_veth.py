"""veth module: pods wired to a bridge in a "node" namespace, checked with ip -json and ping."""
from __future__ import annotations

import pytest

from conftest import ip_json, sh, snapshot


def inet(ns, name):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in ip_json("addr", "show", name, netns=ns)[0]["addr_info"]
                  if not a["local"].startswith("fe80"))


def pods_tasks(node, pods, **extra):
    veths = []
    for i, pod in enumerate(pods):
        v = {"name": "vp%d%s" % (i, node[-4:]), "peer_netns": pod, "addresses": ["10.244.1.%d/24" % (i + 2)],
             "mtu": 1450, "mac": "0a:58:0a:f4:01:%02x" % (i + 2), "bridge": "cni0", "hairpin": True,
             "gateway": "10.244.1.1"}
        v.update(extra)
        veths.append(v)
    return [
        {"podnet.fabric.bridge": {"netns": node, "bridges": [{"name": "cni0", "addresses": ["10.244.1.1/24"], "mtu": 1450}]}},
        {"podnet.fabric.veth": {"netns": node, "veths": veths}},
    ]


def test_pods_on_a_bridge_four_runs_and_ping(four_runs, playbook, netns_factory):
    node, p1, p2 = netns_factory("pnt-node-"), netns_factory("pnt-pod-"), netns_factory("pnt-pod-")
    tasks = pods_tasks(node, [p1, p2])
    four_runs(tasks, lambda: snapshot(node, p1, p2))
    for i, pod in enumerate((p1, p2)):
        eth0 = ip_json("-d", "link", "show", "eth0", netns=pod)[0]
        assert eth0["mtu"] == 1450 and eth0["address"] == "0a:58:0a:f4:01:%02x" % (i + 2)
        assert eth0["ifalias"] == "podnet.fabric"
        assert inet(pod, "eth0") == ["10.244.1.%d/24" % (i + 2)]
        host = ip_json("-d", "link", "show", "vp%d%s" % (i, node[-4:]), netns=node)[0]
        assert host["master"] == "cni0" and host["mtu"] == 1450
        assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
    # real packets: pod to pod through cni0, and pod to its gateway
    sh("ping", "-c", "1", "-W", "2", "10.244.1.3", netns=p1)
    sh("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=p2)


def test_drift_is_reconciled_and_a_lost_peer_is_recreated(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    tasks = pods_tasks(node, [pod])
    assert not playbook(tasks).failed
    sh("ip", "-n", pod, "addr", "flush", "dev", "eth0")
    sh("ip", "-n", pod, "addr", "add", "10.9.9.9/24", "dev", "eth0")
    sh("ip", "-n", pod, "link", "set", "eth0", "mtu", "1300")
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    assert inet(pod, "eth0") == ["10.244.1.2/24"]
    assert ip_json("link", "show", "eth0", netns=pod)[0]["mtu"] == 1450
    # The pod's end is deleted (as when a runtime tears the sandbox down): the pair is re-created.
    sh("ip", "-n", pod, "link", "del", "eth0")
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    assert inet(pod, "eth0") == ["10.244.1.2/24"]
    sh("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=pod)


def test_absent_and_purge_remove_only_owned_veths(playbook, netns_factory):
    node, p1, p2 = netns_factory("pnt-node-"), netns_factory("pnt-pod-"), netns_factory("pnt-pod-")
    sh("ip", "-n", node, "link", "add", "uservh", "type", "veth", "peer", "name", "uservp")  # the user's own
    assert not playbook(pods_tasks(node, [p1, p2])).failed
    user_before = [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("uservh", "uservp")]
    keep = pods_tasks(node, [p1])
    keep[1]["podnet.fabric.veth"]["purge"] = True
    r = playbook(keep)
    assert not r.failed and r.changed, r
    names = [lk["ifname"] for lk in ip_json("link", netns=node)]
    assert "vp0" + node[-4:] in names and "vp1" + node[-4:] not in names
    assert not [lk for lk in ip_json("link", netns=p2) if lk["ifname"] == "eth0"], "the pod end went with the pair"
    assert [lk for lk in snapshot(node)[node]["links"] if lk["ifname"] in ("uservh", "uservp")] == user_before
    r = playbook([{"podnet.fabric.veth": {"netns": node, "veths": [{"name": "vp0" + node[-4:], "state": "absent"}]}}])
    assert not r.failed and r.changed, r
    assert not [lk for lk in ip_json("link", netns=p1) if lk["ifname"] == "eth0"]


@pytest.mark.parametrize("entry,setup,message", [
    ({"name": "veth-name-too-long", "peer_netns": "{pod}"}, None, "veth veth-name-too-long: name is 18 characters, the kernel allows at most 15"),
    ({"name": "vbad0", "peer_netns": "pnt-no-such-pod"}, None, "veth vbad0: peer netns pnt-no-such-pod does not exist"),
    ({"name": "vbad0", "peer_netns": "{pod}", "bridge": "nobr0"}, None, "veth vbad0: bridge nobr0 does not exist"),
    ({"name": "vbad0", "peer_netns": "{pod}", "addresses": ["10.244.1/24"]}, None,
     "veth vbad0: '10.244.1/24' is not a valid IP address with prefix (e.g. 10.244.1.1/24)"),
    ({"name": "cni0", "peer_netns": "{pod}"}, None, "veth cni0: the name is taken by a link of kind bridge, not veth"),
    ({"name": "vbad0", "peer_netns": "{pod}", "hairpin": True}, None, "veth vbad0: hairpin needs a bridge"),
    ({"name": "vbad0", "peer_netns": "{pod}"}, ["link", "add", "eth0", "type", "bridge"],
     "veth vbad0: peer name eth0 is taken in netns {pod} by a bridge link not owned by podnet.fabric"),
])
def test_bad_input_fails_with_one_line_and_changes_nothing(playbook, netns_factory, entry, setup, message):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    assert not playbook(pods_tasks(node, [])).failed  # cni0 exists
    if setup:
        sh("ip", "-n", pod, *setup)
    entry = dict((k, v.replace("{pod}", pod) if isinstance(v, str) else v) for k, v in entry.items())
    before = snapshot(node, pod)
    other = netns_factory("pnt-pod-")
    r = playbook([{"podnet.fabric.veth": {"netns": node, "veths": [
        {"name": "vok0", "peer_netns": other, "addresses": ["10.244.1.9/24"], "bridge": "cni0"}, entry]}}])
    assert r.failed
    assert r.last["msg"] == message.replace("{pod}", pod)
    assert snapshot(node, pod) == before
    assert not [lk for lk in ip_json("link", netns=other) if lk["ifname"] == "eth0"]


def test_gateway_is_the_pods_default_route(playbook, netns_factory):
    node, pod = netns_factory("pnt-node-"), netns_factory("pnt-pod-")
    assert not playbook(pods_tasks(node, [pod])).failed
    routes = ip_json("route", "show", "default", netns=pod)
    assert [(r["gateway"], r["dev"], r["protocol"]) for r in routes] == [("10.244.1.1", "eth0", "149")]
    # A different gateway on the same subnet replaces the route.
    tasks = pods_tasks(node, [pod], gateway="10.244.1.254")
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    assert [x["gateway"] for x in ip_json("route", "show", "default", netns=pod)] == ["10.244.1.254"]
    r = playbook(pods_tasks(node, [pod], gateway="10.9.0.1"))
    assert r.failed and r.last["msg"] == "veth vp0%s: gateway 10.9.0.1 is not in the subnet of any of the pod's addresses 10.244.1.2/24" % node[-4:]
