"""vip_arp on the real kernel: a "node" and a "peer" namespace on one veth segment.

Checked from the peer with independent tools: `arping` (who answers for a VIP), the peer's own
neighbour table (gratuitous ARP with arp_accept=1), an AF_PACKET capture of the frames on the
wire (a small python run in the peer namespace), `ip -json addr` and `sysctl` in the node. Few
playbook runs, each checking several things, to keep the file fast (CI time is tight).
"""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time

from conftest import ip_json, sh, snapshot

OWNER, OTHER = "itest-vip", "itest-vip2"
NODE_IP, PEER_IP = "10.44.0.1/24", "10.44.0.2/24"
POOLS = ["10.44.0.8/29", "10.44.0.60-10.44.0.99"]
HELD_BY_PEER = "10.44.0.99"
USER_ALIAS = "10.44.0.60"

# Prints every ARP frame seen on the interface (hex, one per line) until stdin closes.
CAPTURE = r"""
import select, socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sock.bind((sys.argv[1], 0x0806))
print("ready", flush=True)
while True:
    ready, _, _ = select.select([sock, sys.stdin], [], [], 10)
    if sys.stdin in ready or not ready:
        break
    print(sock.recv(2048)[:42].hex(), flush=True)
"""


def segment(node, peer):
    """node va (10.44.0.1/24) <-> peer vb (10.44.0.2/24, also holds 10.44.0.99, accepts GARP)."""
    for ns in (node, peer):
        sh("sysctl", "-q", "-w", "net.ipv6.conf.default.addr_gen_mode=1", netns=ns)
    sh("ip", "-n", node, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", peer)
    sh("ip", "-n", node, "addr", "add", NODE_IP, "dev", "va")
    sh("ip", "-n", node, "addr", "add", USER_ALIAS + "/32", "dev", "va", "label", "va:1")  # the user's own alias
    sh("ip", "-n", peer, "addr", "add", PEER_IP, "dev", "vb")
    sh("ip", "-n", peer, "addr", "add", HELD_BY_PEER + "/32", "dev", "vb")
    sh("sysctl", "-q", "-w", "net.ipv4.conf.vb.arp_accept=1", netns=peer)
    sh("ip", "-n", node, "link", "set", "va", "up")
    sh("ip", "-n", peer, "link", "set", "vb", "up")
    return ip_json("link", "show", "va", netns=node)[0]["address"], ip_json("link", "show", "vb", netns=peer)[0]["address"]


def task(node, addresses, owner=OWNER, **kw):
    args = {"owner": owner, "netns": node, "pools": POOLS, "vips": [{"address": a, "interface": "va"} for a in addresses]}
    args.update(kw)
    return {"podnet.fabric.vip_arp": args}


def vips_on(node):
    """{address: label} of the /32s on va (independent view: ip -json)."""
    info = ip_json("addr", "show", "dev", "va", netns=node)[0]["addr_info"]
    return dict((a["local"], a.get("label")) for a in info if a["family"] == "inet" and a["prefixlen"] == 32)


def sysctls(node, ifname="va"):
    return [sh("sysctl", "-n", "net.ipv4.conf.%s.%s" % (ifname, key), netns=node).strip() for key in ("arp_ignore", "arp_announce")]


def state(node, peer):
    return {"ns": snapshot(node, peer), "sysctls": sysctls(node)}


def arping_macs(peer, vip):
    """The MACs that answer `arping` for ``vip`` from the peer (one request, 1 s at most)."""
    proc = subprocess.run(["ip", "netns", "exec", peer, "arping", "-c", "1", "-w", "1", "-I", "vb", vip],
                          capture_output=True, text=True, check=False)
    return sorted(set(m.lower() for m in re.findall(r"reply from %s \[([0-9A-Fa-f:]+)\]" % re.escape(vip), proc.stdout)))


def read_line(cap):
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(cap.stdout.fileno(), 1)
        if not chunk:
            break
        line += chunk
    return line


def read_garps(cap, vips, bursts, deadline):
    """Frames from the capture until every VIP's ``bursts`` GARP pairs arrived (or the deadline)."""
    data = b""
    while time.monotonic() < deadline:
        got = [arp(f) for f in data.decode().split()]
        if all(sum(1 for g in got if g["spa"] == g["tpa"] == vip) >= 2 * bursts for vip in vips):
            break
        ready = select.select([cap.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
        if ready:
            data += os.read(cap.stdout.fileno(), 65536)
    return data.decode().split()


def arp(hexframe):
    raw = bytes.fromhex(hexframe)
    return {"op": int.from_bytes(raw[20:22], "big"), "sha": raw[22:28].hex(":"), "spa": ".".join(str(b) for b in raw[28:32]),
            "tha": raw[32:38].hex(":"), "tpa": ".".join(str(b) for b in raw[38:42])}


def test_vip_lifecycle_garp_probe_purge(playbook, netns_factory):
    node, peer = netns_factory("pnt-vn-"), netns_factory("pnt-vp-")
    node_mac, peer_mac = segment(node, peer)
    # vc: an interface prepared without a VIP (interfaces, for keepalived's VIPs)
    sh("ip", "-n", node, "link", "add", "vc", "type", "veth", "peer", "name", "vd")
    for name in ("vc", "vd"):
        sh("ip", "-n", node, "link", "set", name, "up")
    wanted = ["10.44.0.10", "10.44.0.11"]
    start = state(node, peer)

    # 1. check mode with --diff: plans the VIPs and the sysctls, changes nothing, sends no GARP
    # (and interfaces prepared without a VIP; one that an earlier task would create is assumed)
    r = playbook([task(node, wanted, interfaces=["vc", "nope1"])], check=True, diff=True)
    assert not r.failed and r.changed, r
    res = r.last
    assert sorted(res["interfaces"]) == ["nope1", "va", "vc"] and res["actions"][:2] == [
        "set net.ipv4.conf.nope1.arp_ignore = 1 (was unset)", "set net.ipv4.conf.nope1.arp_announce = 2 (was unset)"], r
    assert res["diff"]["after"]["interface vc"] == {"arp_ignore": 1, "arp_announce": 2} and res["diff"]["before"]["interface vc"] == {
        "arp_ignore": 0, "arp_announce": 0}, r
    assert [e["action"] for e in res["vips"]] == ["added", "added"] and res["garp"]["frames_sent"] == 0, r
    assert res["diff"]["before"]["vip 10.44.0.10"] is None and res["diff"]["after"]["vip 10.44.0.10"]["state"] == "present", r
    assert res["diff"]["after"]["interface va"] == {"arp_ignore": 1, "arp_announce": 2}, r
    assert state(node, peer) == start and sysctls(node, "vc") == ["0", "0"], "check mode changed the system"
    assert not [n for n in ip_json("neigh", "show", "dev", "vb", netns=peer) if n["dst"] == "10.44.0.10"]

    # 2. the real run (and another owner's VIP), with the peer capturing the wire
    cap = subprocess.Popen(["ip", "netns", "exec", peer, "/usr/bin/python3", "-c", CAPTURE, "vb"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        assert read_line(cap) == b"ready\n"
        r = playbook([task(node, wanted, garp_count=3, garp_interval=0.4),
                      task(node, ["10.44.0.70"], owner=OTHER, garp=False)], diff=True)
        frames = read_garps(cap, wanted, 3, deadline=time.monotonic() + 3.0)
    finally:
        cap.communicate(b"", timeout=10)
    assert not r.failed and r.changed, r
    mine, theirs = r[0], r[1]
    label = "va:" + mine["owner_tag"]
    assert vips_on(node) == {"10.44.0.10": label, "10.44.0.11": label, "10.44.0.70": "va:" + theirs["owner_tag"], USER_ALIAS: "va:1"}
    assert sysctls(node) == ["1", "2"]
    assert mine["interfaces"]["va"]["sysctls_set"] == ["arp_ignore", "arp_announce"] and theirs["interfaces"]["va"]["sysctls_set"] == []
    assert mine["interfaces"]["va"]["wireless"] is False and mine["interfaces"]["va"]["promisc_set"] is False
    assert "PROMISC" not in ip_json("link", "show", "va", netns=node)[0]["flags"]
    assert [(e["address"], e["action"], e["garp"], e["probed"]) for e in mine["vips"]] == [
        ("10.44.0.10", "added", True, True), ("10.44.0.11", "added", True, True)]
    assert mine["garp"]["frames_sent"] == 4 and mine["garp"]["background_pid"], mine
    assert mine["timing"]["garp"] < 0.8, "the task waited for the GARP repeats: %s" % mine["timing"]
    # on the wire: per VIP three bursts of (request tha 0, reply tha = sha), all from the node's MAC
    garps = [arp(f) for f in frames if arp(f)["spa"] == arp(f)["tpa"] and arp(f)["spa"] in wanted]
    for vip in wanted:
        got = [(g["op"], g["sha"], g["tha"]) for g in garps if g["spa"] == vip]
        assert got == [(1, node_mac, "00:00:00:00:00:00"), (2, node_mac, node_mac)] * 3, (vip, got)
    probes = [arp(f) for f in frames if arp(f)["spa"] == "0.0.0.0"]
    assert sorted(set(p["tpa"] for p in probes)) == wanted + ["10.44.0.70"] and set(p["sha"] for p in probes) == {node_mac}
    # the peer learnt the VIP from the GARP alone (arp_accept=1), and arping gets exactly the node's MAC
    learnt = dict((n["dst"], n.get("lladdr")) for n in ip_json("neigh", "show", "dev", "vb", netns=peer))
    assert learnt.get("10.44.0.10") == node_mac, learnt
    assert arping_macs(peer, "10.44.0.11") == [node_mac]

    # 3. one run: idempotence (no GARP, no probe); bad input (one line naming the VIP, nothing
    # changed); purge removes only the owner's undeclared VIP; absent withdraws, once
    r = playbook([
        task(node, wanted),
        dict(task(node, ["10.44.0.12", HELD_BY_PEER]), ignore_errors=True),
        dict(task(node, ["10.44.1.5"]), ignore_errors=True),
        dict(task(node, [], vips=[{"address": "10.44.0.13", "interface": "nope0"}]), ignore_errors=True),
        task(node, ["10.44.0.10"], purge=True),
        task(node, ["10.44.0.10"], state="absent", interfaces=["nope1"]),   # absent: interfaces ignored
        task(node, [], interfaces=["vc"]),
    ])
    again, conflict, pool, missing, purge, absent, prepared = r.results
    assert not again.get("failed") and not again["changed"] and again["actions"] == [] and again["garp"] == {}, r
    assert "probe" not in again["timing"] and [e["action"] for e in again["vips"]] == ["kept", "kept"], r
    assert conflict["msg"] == ("vip %s on va: already answered on the segment by %s (ARP probe); not taking it (nothing was changed)"
                               % (HELD_BY_PEER, peer_mac)), r
    assert pool["msg"] == "vip 10.44.1.5: outside every declared pool (10.44.0.8/29, 10.44.0.60-10.44.0.99)", r
    assert missing["msg"] == "vip 10.44.0.13 on nope0: interface nope0 does not exist", r
    assert all(res["failed"] and not res["changed"] and res["actions"] == [] for res in (conflict, pool, missing)), r
    assert not purge.get("failed") and purge["actions"] == ["remove vip 10.44.0.11/32 from va (label %s)" % label], r
    assert not absent.get("failed") and absent["actions"] == ["remove vip 10.44.0.10/32 from va (label %s)" % label], r
    # what is left: exactly the other owner's VIP, the user's alias and the node's own address
    assert vips_on(node) == {"10.44.0.70": "va:" + theirs["owner_tag"], USER_ALIAS: "va:1"}
    assert any(a["local"] == "10.44.0.1" for a in ip_json("addr", "show", "dev", "va", netns=node)[0]["addr_info"])
    assert sysctls(node) == ["1", "2"] and "PROMISC" not in ip_json("link", "show", "va", netns=node)[0]["flags"]
    assert arping_macs(peer, "10.44.0.10") == [] and arping_macs(peer, "10.44.0.70") == [node_mac]
    # no VIPs, only interfaces (keepalived's case): the sysctls, no VIP, no probe, no GARP
    assert not prepared.get("failed") and prepared["actions"] == [
        "set net.ipv4.conf.vc.arp_ignore = 1 (was 0)", "set net.ipv4.conf.vc.arp_announce = 2 (was 0)"], r
    assert prepared["vips"] == [] and prepared["garp"] == {} and list(prepared["interfaces"]) == ["vc"] and "probe" not in prepared["timing"], r
    assert sysctls(node, "vc") == ["1", "2"] and vips_on(node) == {"10.44.0.70": "va:" + theirs["owner_tag"], USER_ALIAS: "va:1"}


def test_netns_view_of_wireless_interfaces(netns_factory):
    """The wireless check reads the namespace's own sysfs (its interfaces, not the host's)."""
    node = netns_factory("pnt-vw-")
    sh("ip", "-n", node, "link", "add", "vw0", "type", "veth", "peer", "name", "vw1")
    script = ("import sys; sys.path.insert(0, %r); "
              "from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec, vip_arp; "
              "rc, out, err = netns_exec.run([sys.executable, '-c', vip_arp.SYSFS_VIEW, 'vw0', 'lo', 'nope0'], netns=%r); "
              "print(out if rc == 0 else err)") % (str(__import__("conftest").REPO / ".collections"), node)
    out = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"vw0": {"exists": True, "wireless": False}, "lo": {"exists": True, "wireless": False},
                               "nope0": {"exists": False, "wireless": False}}
