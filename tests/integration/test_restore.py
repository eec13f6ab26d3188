"""The node restorer on the real kernel: modules record (persist), podnet-restore replays.

A "node" is a throw-away namespace with an uplink veth to a "peer" namespace; a "reboot" deletes
the node's namespace and its pods' namespaces and makes an empty one of the same name with the
uplink the OS would bring (as `podman restart` does to a lab node). The restorer runs as the
zip application the node role installs (built by the restorer_bundle lookup), with the target
interpreter, against a state directory of the test's own. Checked with `ip -json`,
`iptables-save` and ping, never with the code under test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, ip_json, sh, snapshot, unique

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.lookup.restorer_bundle import bundle  # noqa: E402

OWNER_PODS, OWNER_ROUTES = "itest-a", "itest-b"
SUBNET = "10.244.1.0/24"


@pytest.fixture
def restorer(tmp_path):
    path = tmp_path / "podnet-restore.pyz"
    path.write_bytes(bundle())
    return path


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "restore"


@pytest.fixture
def pod_names():
    made = []

    def make(count):
        names = [unique("pnt-rs-") for _i in range(count)]
        made.extend(names)
        return names
    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def boot(node, peer):
    """What the OS gives the node before anything of ours: lo, and the uplink to the peer."""
    if not os.path.exists("/run/netns/" + node):
        sh("ip", "netns", "add", node)
    sh("ip", "link", "set", "lo", "up", netns=node)
    for ns in (node, peer):
        sh("sysctl", "-q", "-w", "net.ipv6.conf.default.addr_gen_mode=1", netns=ns)
        sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", netns=ns)
    sh("ip", "-n", node, "link", "add", "uplink", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "down0", "netns", peer)
    sh("ip", "-n", node, "addr", "add", "192.0.2.1/24", "dev", "uplink")
    sh("ip", "-n", node, "link", "set", "uplink", "up")
    if not any(a.get("ifname") == "down0" and a.get("addr_info") for a in ip_json("addr", "show", netns=peer)):
        sh("ip", "-n", peer, "addr", "add", "192.0.2.2/24", "dev", "down0")
    sh("ip", "-n", peer, "link", "set", "down0", "up")


def reboot(node, peer, pods):
    """Everything the kernel held is gone; the files (IPAM, restore state) stay."""
    # the pair goes now, not whenever the kernel gets round to tearing the namespace down
    sh("ip", "-n", peer, "link", "del", "down0")
    for ns in pods + [node]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    sh("ip", "netns", "add", node)
    boot(node, peer)


def tasks(node, pods, data_dir, state_dir, persist=True):
    env = {"PODNET_FABRIC_RESTORE_DIR": str(state_dir)}
    return [
        {"podnet.fabric.pods": {
            "netns": node, "owner": OWNER_PODS, "bridge": "cni0", "manage_bridge": True, "mtu": 1450,
            "bridge_mac": "0a:58:0a:f4:01:01", "persist": persist, "purge": True,
            "ipam": {"subnet": SUBNET, "data_dir": str(data_dir), "network": "pnt"},
            "pods": [{"name": p} for p in pods]}, "environment": env},
        {"podnet.fabric.route": {
            "netns": node, "owner": OWNER_ROUTES, "persist": persist, "purge": True,
            "routes": [{"dest": "10.244.2.0/24", "gateway": "192.0.2.2", "dev": "uplink"},
                       {"dest": "198.51.100.0/24", "gateway": "192.0.2.2"}]}, "environment": env},
        {"podnet.fabric.nat_rule": {
            "netns": node, "owner": OWNER_ROUTES, "persist": persist, "purge": True,
            "chains": [{"table": "nat", "name": "PNT-EGRESS", "rules": [
                "-s %s ! -d %s -j MASQUERADE" % (SUBNET, SUBNET)]}],
            "jumps": [{"table": "nat", "chain": "POSTROUTING", "rule": "-j PNT-EGRESS"}]}, "environment": env},
    ]


def picture(node, pods):
    """The node's and its pods' kernel state without what differs between two boots by nature
    (interface indexes, peer namespace ids)."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("ifindex", "link_index", "link_netnsid", "index")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    snap = strip(snapshot(node, *pods))
    rules = [line for line in sh("iptables-save", netns=node).splitlines() if not line.startswith(("#", ":"))]
    return [snap, rules]


def differences(a, b, path=""):
    """The paths at which two pictures differ (readable assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), "%s/%s" % (path, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, "%s[%d]" % (path, i))]
    return [] if a == b else ["%s: %r != %r" % (path, a, b)]


def restore(python, restorer, state_dir, *args):
    env = dict(os.environ, PODNET_FABRIC_RESTORE_DIR=str(state_dir))
    return subprocess.run([python, str(restorer)] + list(args or ["apply"]), capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_a_reboot_is_put_back_exactly_and_a_converge_then_finds_nothing(
        playbook, netns_factory, pod_names, tmp_path, restorer, state_dir, target_python):
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    pods = pod_names(3)
    run = playbook(tasks(node, pods, tmp_path / "ipam", state_dir))
    assert not run.failed, run
    assert sorted(os.listdir(state_dir)) == [".lock", OWNER_PODS + ".json", OWNER_ROUTES + ".json"]
    assert oct(os.stat(state_dir / (OWNER_PODS + ".json")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(state_dir).st_mode & 0o777) == "0o700"
    converged = picture(node, pods)

    reboot(node, peer, pods)
    assert picture(node, pods) != converged
    done = restore(target_python, restorer, state_dir)
    assert done.returncode == 0, done
    assert "%s/pods in netns %s: restored" % (OWNER_PODS, node) in done.stdout, done.stdout
    assert "%s/nat_rule in netns %s: restored" % (OWNER_ROUTES, node) in done.stdout, done.stdout
    diffs = differences(picture(node, pods), converged)
    assert not diffs, "\n".join(diffs)
    # the pods answer again: the bridge is their gateway
    sh("ping", "-c1", "-W2", "10.244.1.1", netns=pods[0])

    again = playbook(tasks(node, pods, tmp_path / "ipam", state_dir))
    assert not again.failed and not again.changed, again
    assert restore(target_python, restorer, state_dir).stdout.count("as declared") == 3


def test_a_pod_removed_by_a_converge_does_not_come_back_at_the_next_boot(
        playbook, netns_factory, pod_names, tmp_path, restorer, state_dir, target_python):
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    pods = pod_names(2)
    assert not playbook(tasks(node, pods, tmp_path / "ipam", state_dir)).failed
    run = playbook(tasks(node, pods[:1], tmp_path / "ipam", state_dir))
    assert not run.failed and run.changed, run
    converged = picture(node, pods[:1])
    reboot(node, peer, pods)
    assert restore(target_python, restorer, state_dir).returncode == 0
    assert not os.path.exists("/run/netns/" + pods[1])
    diffs = differences(picture(node, pods[:1]), converged)
    assert not diffs, "\n".join(diffs)


def test_check_mode_and_diff_show_the_record_and_persist_false_forgets_it(
        playbook, netns_factory, pod_names, tmp_path, state_dir):
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    pods = pod_names(1)
    first = tasks(node, pods, tmp_path / "ipam", state_dir)
    assert not playbook(first).failed
    record = json.loads((state_dir / (OWNER_ROUTES + ".json")).read_text())
    assert sorted(record["modules"]) == ["nat_rule", "route"]
    assert record["modules"]["route"]["params"]["routes"][0]["dest"] == "10.244.2.0/24"

    changed = first[1]["podnet.fabric.route"]["routes"][0]
    changed["dest"] = "10.244.3.0/24"
    check = playbook(first, check=True, diff=True)
    assert not check.failed and check.changed, check
    diff = check[1]["diff"]
    key = "restore state %s/route" % OWNER_ROUTES
    assert diff["before"][key]["params"]["routes"][0]["dest"] == "10.244.2.0/24"
    assert diff["after"][key]["params"]["routes"][0]["dest"] == "10.244.3.0/24"
    assert any(a.startswith("record route for restore") for a in check[1]["actions"]), check[1]["actions"]
    assert json.loads((state_dir / (OWNER_ROUTES + ".json")).read_text()) == record, "check mode wrote the record"

    forget = playbook(tasks(node, pods, tmp_path / "ipam", state_dir, persist=False))
    assert not forget.failed and forget.changed, forget
    assert not (state_dir / (OWNER_ROUTES + ".json")).exists()
    assert not (state_dir / (OWNER_PODS + ".json")).exists()
    assert not playbook(tasks(node, pods, tmp_path / "ipam", state_dir, persist=False)).changed


def test_a_state_it_cannot_use_changes_nothing_and_says_why_in_one_line(playbook, netns_factory, pod_names, tmp_path,
                                                                        restorer, state_dir, target_python):
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    pods = pod_names(1)
    assert not playbook(tasks(node, pods, tmp_path / "ipam", state_dir)).failed
    path = state_dir / (OWNER_ROUTES + ".json")
    good = path.read_text()
    reboot(node, peer, pods)
    before = picture(node, pods)

    def version(doc):
        doc["modules"]["route"]["version"] = "9.9.9"

    def fmt(doc):
        doc["format"] = 7
    for damage, reason in ((version, "route was recorded by podnet.fabric 9.9.9"), (fmt, "state format 7 is unknown"),
                           (None, "not valid JSON")):
        if damage is None:
            path.write_text(good[:40])
        else:
            doc = json.loads(good)
            damage(doc)
            path.write_text(json.dumps(doc))
        done = restore(target_python, restorer, state_dir)
        assert done.returncode == 1, done
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1, lines
        assert str(path) in lines[0] and reason in lines[0] and lines[0].endswith("nothing restored"), lines
        assert picture(node, pods) == before, reason
    # the good state again: restored
    path.write_text(good)
    assert restore(target_python, restorer, state_dir).returncode == 0
    assert picture(node, pods) != before


def start_service(python, restorer, state_dir):
    """podnet-restore run as the unit runs it (stops by itself after 20 s); it reads the state
    again every 0.5 s when idle (30 s in the unit), so a converge after its start is seen soon."""
    env = dict(os.environ, PODNET_FABRIC_RESTORE_DIR=str(state_dir))
    return subprocess.Popen([python, "-c", "import sys; sys.path.insert(0, %r); "
                             "from ansible_collections.podnet.fabric.plugins.module_utils import node_restore as n; "
                             "n.REFRESH_SECONDS = 0.5; n.run(stop_after=20)" % str(restorer)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.parametrize("started", ["after the converge", "before the converge"])
def test_link_up_puts_the_routes_back_and_traffic_flows(playbook, netns_factory, pod_names, tmp_path,
                                                        restorer, state_dir, target_python, started):
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    pods = pod_names(1)
    service = None
    if started == "before the converge":       # a fresh node: the unit runs before any state exists
        service = start_service(target_python, restorer, state_dir)
        line = service.stdout.readline()
        assert line.startswith("podnet-restore: boot: 0 entries, 0 restored, 0 failed in "), line
    assert not playbook(tasks(node, pods, tmp_path / "ipam", state_dir)).failed
    # the peer answers for 10.244.2.1 (a pod of "another node")
    sh("ip", "-n", peer, "addr", "add", "10.244.2.1/32", "dev", "lo")
    sh("ip", "-n", peer, "route", "add", SUBNET, "via", "192.0.2.1")
    sh("ping", "-c1", "-W2", "10.244.2.1", netns=pods[0])
    if service is None:
        service = start_service(target_python, restorer, state_dir)
    try:
        if started == "after the converge":
            lines = [service.stdout.readline() for _i in range(4)]
            # layer order: links (pods) before routes before rules
            assert [line.split(": as declared")[0] for line in lines[:3]] == [
                "podnet-restore: %s/%s in netns %s" % (owner, module, node)
                for owner, module in ((OWNER_PODS, "pods"), (OWNER_ROUTES, "route"), (OWNER_ROUTES, "nat_rule"))], lines
            assert lines[3].startswith("podnet-restore: boot: 3 entries, 0 restored, 0 failed in "), lines
        else:
            time.sleep(1.0)   # one refresh: the node's namespace is watched from then on
        time.sleep(0.3)   # the watch is bound right after the boot line
        sh("ip", "-n", node, "link", "set", "uplink", "down")
        assert [r["dst"] for r in ip_json("route", "show", "proto", OWNER_ROUTES, netns=node)] == []
        sh("ip", "-n", node, "link", "set", "uplink", "up")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            routes = sorted(r["dst"] for r in ip_json("route", "show", "proto", OWNER_ROUTES, netns=node))
            if routes == ["10.244.2.0/24", "198.51.100.0/24"]:
                break
            time.sleep(0.02)
        assert routes == ["10.244.2.0/24", "198.51.100.0/24"]
        sh("ping", "-c1", "-W2", "10.244.2.1", netns=pods[0])
        summary = ""
        while "link uplink up" not in summary:
            summary = service.stdout.readline()
            assert summary, "the restorer ended without a summary"
        assert "link uplink up: 3 entries, 1 restored, 0 failed" in summary, summary
    finally:
        service.terminate()
        service.communicate(timeout=10)


def test_vip_arp_is_replayed_without_the_probe_and_announces_the_vip_again(
        playbook, netns_factory, restorer, state_dir, target_python):
    """vip_arp with persist: the record is the task's parameters (probe as declared); the
    restorer re-adds a lost VIP, sets the sysctls again and sends the gratuitous ARP, and does not
    probe - the peer answering for one of the VIPs at boot does not stop it."""
    node, peer = netns_factory(), netns_factory()
    boot(node, peer)
    owner, held, announced = "itest-vip", "192.0.2.50", "192.0.2.51"
    sh("sysctl", "-q", "-w", "net.ipv4.conf.down0.arp_accept=1", netns=peer)
    run = playbook([{"podnet.fabric.vip_arp": {
        "netns": node, "owner": owner, "persist": True, "garp_count": 2, "garp_interval": 0.1,
        "vips": [{"address": a, "interface": "uplink"} for a in (held, announced)]},
        "environment": {"PODNET_FABRIC_RESTORE_DIR": str(state_dir)}}])
    assert not run.failed and run.changed, run
    assert run[0]["actions"][-1].startswith("record vip_arp for restore at boot and link up (owner %s, " % owner), run
    params = json.loads((state_dir / (owner + ".json")).read_text())["modules"]["vip_arp"]["params"]
    assert params["probe"] is True and params["vips"] == [{"address": a, "interface": "uplink"} for a in (held, announced)]
    assert "persist" not in params and params["netns"] == node

    def vips():
        info = ip_json("addr", "show", "dev", "uplink", netns=node)[0]["addr_info"]
        return sorted((a["local"], a.get("label")) for a in info if a["prefixlen"] == 32)
    converged = vips()
    label = "uplink:" + run[0]["owner_tag"]
    assert converged == [(held, label), (announced, label)]
    # the kernel loses the VIPs and the sysctls; the peer now answers for one VIP itself, and
    # forgets what the converge's gratuitous ARP taught it
    for vip in (held, announced):
        sh("ip", "-n", node, "addr", "del", vip + "/32", "dev", "uplink")
    sh("sysctl", "-q", "-w", "net.ipv4.conf.uplink.arp_ignore=0", "net.ipv4.conf.uplink.arp_announce=0", netns=node)
    sh("ip", "-n", peer, "addr", "add", held + "/32", "dev", "down0")
    sh("ip", "-n", peer, "neigh", "flush", "dev", "down0")

    done = restore(target_python, restorer, state_dir)
    assert done.returncode == 0, done
    assert "%s/vip_arp in netns %s: restored, 5 actions" % (owner, node) in done.stdout, done.stdout
    assert vips() == converged
    assert [sh("sysctl", "-n", "net.ipv4.conf.uplink." + k, netns=node).strip() for k in ("arp_ignore", "arp_announce")] == ["1", "2"]
    # the first burst was sent before the restorer went on: the peer learnt the VIP from it alone
    learnt = dict((n["dst"], n.get("lladdr")) for n in ip_json("neigh", "show", "dev", "down0", netns=peer))
    assert learnt.get(announced) == "02:00:00:00:00:01", learnt
    assert restore(target_python, restorer, state_dir).stdout.count("as declared") == 1
