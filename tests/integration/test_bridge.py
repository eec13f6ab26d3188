"""bridge module on the real kernel, checked with `ip -json -d`."""
from __future__ import annotations

import pytest

from conftest import ip_json, netns_pool, run_cases, sh, snapshot


def link(ns, name):
    return ip_json("-d", "link", "show", name, netns=ns)[0]


def inet(ns, name):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in ip_json("addr", "show", name, netns=ns)[0]["addr_info"]
                  if not a["local"].startswith("fe80"))


def test_bridge_four_runs_reconciles_every_property(four_runs, playbook, netns):
    sh("ip", "-n", netns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    tasks = [{"podnet.fabric.bridge": {"netns": netns, "owner": "itest-a", "bridges": [{
        "name": "cni0", "addresses": ["10.244.1.1/24", "fd00:244:1::1/64"], "mtu": 1400,
        "mac": "0a:58:0a:f4:01:01", "stp": True, "promisc": True, "ports": ["up0"], "hairpin": True}]}}]
    check, real, _check2, _real2 = four_runs(tasks, lambda: snapshot(netns))
    br = link(netns, "cni0")
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["mtu"] == 1400 and br["address"] == "0a:58:0a:f4:01:01"
    assert br["ifalias"] == "podnet.fabric:itest-a"
    assert br["linkinfo"]["info_data"]["stp_state"] == 1
    assert br["promiscuity"] >= 1
    assert inet(netns, "cni0") == ["10.244.1.1/24", "fd00:244:1::1/64"]
    port = link(netns, "up0")
    assert port["master"] == "cni0" and port["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert check.last["diff"]["before"]["cni0"]["state"] == "absent"
    assert real.last["diff"]["after"]["cni0"]["addresses"] == ["10.244.1.1/24", "fd00:244:1::1/64"]

    # Drift made by hand is reconciled: MTU, an extra address, STP, hairpin, a released port.
    sh("ip", "-n", netns, "link", "set", "cni0", "mtu", "1300")
    sh("ip", "-n", netns, "addr", "add", "10.99.0.1/24", "dev", "cni0")
    sh("ip", "-n", netns, "link", "set", "cni0", "type", "bridge", "stp_state", "0")
    sh("ip", "-n", netns, "link", "set", "up0", "nomaster")
    r = playbook(tasks)
    assert not r.failed and r.changed, r
    br = link(netns, "cni0")
    assert br["mtu"] == 1400 and br["linkinfo"]["info_data"]["stp_state"] == 1
    assert inet(netns, "cni0") == ["10.244.1.1/24", "fd00:244:1::1/64"]
    port = link(netns, "up0")
    assert port["master"] == "cni0" and port["linkinfo"]["info_slave_data"]["hairpin"] is True

    # absent removes it
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "owner": "itest-a", "bridges": [{"name": "cni0", "state": "absent"}]}}])
    assert not r.failed and r.changed, r
    assert not [lk for lk in ip_json("link", netns=netns) if lk["ifname"] == "cni0"]


def _bridges(ns, owner, names, purge=True, **extra):
    return {"podnet.fabric.bridge": dict({"netns": ns, "owner": owner, "purge": purge,
                                          "bridges": [{"name": n} for n in names]}, **extra)}


def _links(ns, *names):
    return [lk for lk in snapshot(ns)[ns]["links"] if lk["ifname"] in names]


def test_purge_touches_only_the_owners_bridges(playbook, netns):
    sh("ip", "-n", netns, "link", "add", "docker0", "type", "bridge")  # someone else's
    sh("ip", "-n", netns, "addr", "add", "172.17.0.1/16", "dev", "docker0")
    sh("ip", "-n", netns, "link", "add", "vethd0", "type", "veth", "peer", "name", "vethd1")
    sh("ip", "-n", netns, "link", "set", "vethd0", "master", "docker0")
    r = playbook([_bridges(netns, "itest-a", ["cni0", "cni1"]), _bridges(netns, "itest-b", ["br-b0", "br-b1"])])
    assert not r.failed, r
    foreign = _links(netns, "docker0", "vethd0", "vethd1")
    theirs = _links(netns, "br-b0", "br-b1")
    # Each owner converges with purge in turn: neither loses anything of the other's.
    for _round in range(2):
        r = playbook([_bridges(netns, "itest-a", ["cni0"])])
        assert not r.failed and r.last["owner"] == "itest-a", r
        assert _links(netns, "br-b0", "br-b1") == theirs
        r = playbook([_bridges(netns, "itest-b", ["br-b0", "br-b1"])])
        assert not r.failed and not r.changed, r
    names = [lk["ifname"] for lk in ip_json("link", netns=netns)]
    assert "cni0" in names and "cni1" not in names
    assert _links(netns, "docker0", "vethd0", "vethd1") == foreign
    assert inet(netns, "docker0") == ["172.17.0.1/16"]


def test_another_owners_bridge_is_refused_naming_both(playbook, netns):
    r = playbook([_bridges(netns, "itest-a", ["cni0"])])
    assert not r.failed, r
    before = snapshot(netns)
    r = playbook([_bridges(netns, "itest-b", ["cni0"], purge=False)])
    assert r.failed and r.last["msg"] == "bridge cni0: belongs to owner itest-a, not to owner itest-b; refusing to take it over", r
    assert snapshot(netns) == before


def test_purge_without_owner_is_an_error(playbook, netns):
    before = snapshot(netns)
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "purge": True, "bridges": [{"name": "cni0"}]}}])
    assert r.failed and r.last["msg"].startswith("purge needs an explicit owner"), r
    assert snapshot(netns) == before
    # Without purge the default owner works, and says so.
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "bridges": [{"name": "cni0"}]}}])
    assert not r.failed and r.last["owner"] == "default", r
    assert link(netns, "cni0")["ifalias"] == "podnet.fabric:default"


def test_release_0_1_bridge_is_adopted_in_place_and_never_purged(playbook, netns):
    for name in ("oldbr0", "oldbr1"):
        sh("ip", "-n", netns, "link", "add", name, "type", "bridge")
        sh("ip", "-n", netns, "link", "set", name, "alias", "podnet.fabric")
    index = link(netns, "oldbr0")["ifindex"]
    r = playbook([_bridges(netns, "itest-a", ["oldbr0"])], diff=True)
    assert not r.failed and r.changed, r
    assert "set bridge oldbr0 alias podnet.fabric:itest-a, mtu" not in r.last["actions"]
    assert any(a.startswith("set bridge oldbr0 alias podnet.fabric:itest-a") for a in r.last["actions"]), r
    adopted = link(netns, "oldbr0")
    assert adopted["ifindex"] == index and adopted["ifalias"] == "podnet.fabric:itest-a"
    # oldbr1 is not declared: legacy objects may be anyone's, so purge leaves it.
    assert link(netns, "oldbr1")["ifalias"] == "podnet.fabric"


def test_kernel_refusal_mid_plan_rolls_back_everything(playbook, netns):
    sh("ip", "-n", netns, "link", "add", "keep0", "type", "bridge")
    sh("ip", "-n", netns, "link", "set", "keep0", "alias", "podnet.fabric:itest-a")
    before = snapshot(netns)
    # The kernel refuses an all-zero MAC: the third bridge fails after the first two were made
    # and keep0 got a new MTU; all of it must be undone.
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "owner": "itest-a", "bridges": [
        {"name": "keep0", "mtu": 1300}, {"name": "rb0", "addresses": ["10.7.0.1/24"]},
        {"name": "rb1", "mac": "00:00:00:00:00:00"}]}}])
    assert r.failed, r
    msg = r.last["msg"]
    assert "\n" not in msg and msg.startswith("set bridge rb1 "), msg
    assert "rolled back" in msg and r.last["changed"] is False, r
    assert "create bridge rb0" in r.last["rolled_back"], r
    assert snapshot(netns) == before


BAD = [
    ({"name": "cni0-is-far-too-long"}, None, "bridge cni0-is-far-too-long: name is 20 characters, the kernel allows at most 15"),
    ({"name": "cni0", "addresses": ["10.244.1.300/24"]}, None, "bridge cni0: '10.244.1.300/24' is not a valid IP address with prefix (e.g. 10.244.1.1/24)"),
    ({"name": "cni0", "addresses": ["10.244.1.1/24"], "ports": ["nosuch0"]}, None, "bridge cni0: port nosuch0 does not exist"),
    ({"name": "taken0"}, ["link", "add", "taken0", "type", "veth", "peer", "name", "taken1"],
     "bridge taken0: the name is taken by a link of kind veth, not bridge"),
    ({"name": "userbr"}, ["link", "add", "userbr", "type", "bridge"],
     "bridge userbr: a bridge link of that name exists and is not podnet.fabric's (alias None); remove it or pick another name"),
    ({"name": "cni0", "mtu": 20}, None, "bridge cni0: mtu 20 is outside 68..65535"),
    ({"name": "cni0", "mac": "01:00:5e:00:00:01"}, None, "bridge cni0: 01:00:5e:00:00:01 is a multicast MAC address"),
]


def compute_batched_cases(target_python, tmp_path_factory):
    """Each BAD case in a namespace of its own, the module called once per case, all the calls in
    one playbook (conftest.run_cases): [(task result, snapshot before, after)]."""
    with netns_pool() as make:
        prepared = []
        for bridge, setup, _message in BAD:
            ns = make()
            if setup:
                sh("ip", "-n", ns, *setup)
            # A valid bridge first in the list proves nothing is applied when a later entry is bad.
            prepared.append((ns, {"podnet.fabric.bridge": {"netns": ns, "owner": "itest-a", "bridges": [
                {"name": "okbr0", "addresses": ["10.1.0.1/24"]}, bridge]}}))
        return run_cases(prepared, snapshot, target_python, tmp_path_factory.mktemp("bridge-bad-input") / "play.yml")


@pytest.mark.xdist_group("bridge-bad-input")
@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_fails_with_one_line_and_changes_nothing(batched_cases, case):
    result, before, after = batched_cases[case]
    assert result.get("failed"), result
    assert result["msg"] == BAD[case][2]
    assert "\n" not in result["msg"]
    assert after == before


def test_missing_netns_is_an_error(playbook):
    r = playbook([{"podnet.fabric.bridge": {"netns": "pnt-does-not-exist", "bridges": [{"name": "cni0"}]}}])
    assert r.failed and r.last["msg"] == "netns pnt-does-not-exist: does not exist"
    assert snapshot("pnt-does-not-exist") == {"pnt-does-not-exist": None}
