"""bridge module on the real kernel, checked with `ip -json -d`."""
from __future__ import annotations

import pytest

from conftest import ip_json, sh, snapshot


def link(ns, name):
    return ip_json("-d", "link", "show", name, netns=ns)[0]


def inet(ns, name):
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in ip_json("addr", "show", name, netns=ns)[0]["addr_info"]
                  if not a["local"].startswith("fe80"))


def test_bridge_four_runs_reconciles_every_property(four_runs, playbook, netns):
    sh("ip", "-n", netns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    tasks = [{"podnet.fabric.bridge": {"netns": netns, "bridges": [{
        "name": "cni0", "addresses": ["10.244.1.1/24", "fd00:244:1::1/64"], "mtu": 1400,
        "mac": "0a:58:0a:f4:01:01", "stp": True, "promisc": True, "ports": ["up0"], "hairpin": True}]}}]
    check, real, _check2, _real2 = four_runs(tasks, lambda: snapshot(netns))
    br = link(netns, "cni0")
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["mtu"] == 1400 and br["address"] == "0a:58:0a:f4:01:01"
    assert br["ifalias"] == "podnet.fabric"
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
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "bridges": [{"name": "cni0", "state": "absent"}]}}])
    assert not r.failed and r.changed, r
    assert not [lk for lk in ip_json("link", netns=netns) if lk["ifname"] == "cni0"]


def test_purge_touches_only_owned_bridges(playbook, netns):
    sh("ip", "-n", netns, "link", "add", "docker0", "type", "bridge")  # someone else's
    sh("ip", "-n", netns, "addr", "add", "172.17.0.1/16", "dev", "docker0")
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "bridges": [{"name": "cni0"}, {"name": "cni1"}]}}])
    assert not r.failed, r
    foreign = snapshot(netns)[netns]
    foreign_link = [lk for lk in foreign["links"] if lk["ifname"] == "docker0"]
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "bridges": [{"name": "cni0"}], "purge": True}}])
    assert not r.failed and r.changed, r
    names = [lk["ifname"] for lk in ip_json("link", netns=netns)]
    assert "cni0" in names and "cni1" not in names and "docker0" in names
    after = snapshot(netns)[netns]
    assert [lk for lk in after["links"] if lk["ifname"] == "docker0"] == foreign_link
    assert inet(netns, "docker0") == ["172.17.0.1/16"]


@pytest.mark.parametrize("bridge,setup,message", [
    ({"name": "cni0-is-far-too-long"}, None, "bridge cni0-is-far-too-long: name is 20 characters, the kernel allows at most 15"),
    ({"name": "cni0", "addresses": ["10.244.1.300/24"]}, None, "bridge cni0: '10.244.1.300/24' is not a valid IP address with prefix (e.g. 10.244.1.1/24)"),
    ({"name": "cni0", "addresses": ["10.244.1.1/24"], "ports": ["nosuch0"]}, None, "bridge cni0: port nosuch0 does not exist"),
    ({"name": "taken0"}, ["link", "add", "taken0", "type", "veth", "peer", "name", "taken1"],
     "bridge taken0: the name is taken by a link of kind veth, not bridge"),
    ({"name": "userbr"}, ["link", "add", "userbr", "type", "bridge"],
     "bridge userbr: a bridge link of that name exists and is not owned by podnet.fabric (alias None); remove it or pick another name"),
    ({"name": "cni0", "mtu": 20}, None, "bridge cni0: mtu 20 is outside 68..65535"),
    ({"name": "cni0", "mac": "01:00:5e:00:00:01"}, None, "bridge cni0: 01:00:5e:00:00:01 is a multicast MAC address"),
])
def test_bad_input_fails_with_one_line_and_changes_nothing(playbook, netns, bridge, setup, message):
    if setup:
        sh("ip", "-n", netns, *setup)
    before = snapshot(netns)
    # A valid bridge first in the list proves nothing is applied when a later entry is bad.
    r = playbook([{"podnet.fabric.bridge": {"netns": netns, "bridges": [{"name": "okbr0", "addresses": ["10.1.0.1/24"]}, bridge]}}])
    assert r.failed
    assert r.last["msg"] == message
    assert "\n" not in r.last["msg"]
    assert snapshot(netns) == before


def test_missing_netns_is_an_error(playbook):
    r = playbook([{"podnet.fabric.bridge": {"netns": "pnt-does-not-exist", "bridges": [{"name": "cni0"}]}}])
    assert r.failed and r.last["msg"] == "netns pnt-does-not-exist: does not exist"
    assert snapshot("pnt-does-not-exist") == {"pnt-does-not-exist": None}
