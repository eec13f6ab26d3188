"""LoadBalancer VIPs on layer 2 on the lab (podnet.fabric.load_balancer after site.yml), seen
from the client host on rack A, the way a home router sees MetalLB: who answers ARP, where HTTP
lands, what the client's ARP cache says after the owner is cut off.

inventories/lab/manifests/metallb.yaml: pool rack-a 172.31.1.240/29, announced by rack A's nodes
(node1, node2) on eth0; web-lb (Cluster, every web pod) and web-lb-local (Local: web-1 on node1
and web-3 on node3, so node1 alone on rack A). The expected owner is computed here from
MetalLB's rule (candidates sorted by sha256(node + "#" + ip)), not by the code under test.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))
import inventory as labinventory  # noqa: E402  (lab/inventory.py: variants of inventories/lab)

REPORT = "/etc/ansible/facts.d/podnet_fabric_services.fact"
RACK_A = ("node1", "node2")
WEB_PODS = {"default/web-1", "default/web-2", "default/web-3"}


def lb_ip(host, name):
    seen = set(json.loads(host(n).file(REPORT).content_string)["services"]["default/" + name].get("loadBalancerIP")
               for n in ("node1", "node2", "node3"))
    assert len(seen) == 1 and None not in seen, "nodes disagree on %s's LoadBalancer IP: %s" % (name, seen)
    return seen.pop()


def metallb_order(nodes, ip):
    return sorted(nodes, key=lambda n: hashlib.sha256(("%s#%s" % (n, ip)).encode()).digest())


def mac(host, node):
    return host(node).check_output("cat /sys/class/net/eth0/address").strip().lower()


def arping(client, ip):
    out = client.run("arping -c 2 -w 3 -I eth0 %s" % ip).stdout
    return sorted(set(m.lower() for m in re.findall(r"reply from %s \[([0-9A-Fa-f:]+)\]" % re.escape(ip), out)))


def holds(host, node, ip):
    return ip in host(node).check_output("ip -4 -o addr show dev eth0")


def http(client, ip, count=1):
    out = client.run("for i in $(seq %d); do curl -s -m 3 http://%s/ || echo FAILED; echo; done" % (count, ip))
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    return [None if ln.startswith("FAILED") else dict(kv.split("=", 1) for kv in ln.split()) for ln in lines]


def neighbour(client, ip):
    out = client.run("ip -json neigh show %s dev eth0" % ip).stdout
    entries = json.loads(out) if out.strip() else []
    return entries[0].get("lladdr", "").lower() if entries else None


def units(host, node):
    """The running keepalived units of the role on ``node``."""
    out = host(node).run("systemctl list-units --state=active --plain --no-legend 'podnet-vrrp@*'").stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def test_vips_come_from_the_pool_and_exactly_the_expected_owner_answers_arp(host, lab):
    client = host("client")
    for name in ("web-lb", "web-lb-local"):
        ip = lb_ip(host, name)
        assert ip.startswith("172.31.1.24"), ip
    web = lb_ip(host, "web-lb")
    owner = metallb_order(RACK_A, web)[0]
    assert arping(client, web) == [mac(host, owner)]
    # one holder across the cluster; keepalived's VIP carries the role's label
    holders = [n for n in ("node1", "node2", "node3") if holds(host, n, web)]
    assert holders == [owner], holders
    assert "eth0:lb" in host(owner).check_output("ip -4 -o addr show dev eth0")
    # the candidates' interfaces answer only for what they hold
    for node in RACK_A:
        assert host(node).check_output("sysctl -n net.ipv4.conf.eth0.arp_ignore net.ipv4.conf.eth0.arp_announce").split() == ["1", "2"]
    assert units(host, "node3") == []


def test_http_to_the_vips_reaches_the_pods_local_keeps_the_client(host, lab):
    client = host("client")
    got = http(client, lb_ip(host, "web-lb"), 20)
    assert None not in got and set(a["pod"] for a in got) <= WEB_PODS and len(set(a["pod"] for a in got)) > 1
    got = http(client, lb_ip(host, "web-lb-local"), 5)
    assert None not in got and set(a["pod"] for a in got) == {"default/web-1"}
    assert set(a["client"].split(":")[0] for a in got) == {lab.var("client", "lab_ip")}


def test_a_local_vip_is_never_announced_by_a_node_without_a_local_endpoint(host):
    local = lb_ip(host, "web-lb-local")
    assert holds(host, "node1", local)
    for node in ("node2", "node3"):
        assert not holds(host, node, local)
        assert local not in host(node).check_output("cat /etc/keepalived/podnet-fabric-load_balancer-vi*.conf 2>/dev/null || true")


def test_owner_cut_off_the_next_takes_over_with_garp_and_keeps_it(host, lab, record_property):
    client = host("client")
    web = lb_ip(host, "web-lb")
    owner, standby = metallb_order(RACK_A, web)
    assert http(client, web)[0] is not None
    assert neighbour(client, web) == mac(host, owner)
    try:
        host(owner).check_output("ip link set eth0 down")
        start = time.monotonic()
        while time.monotonic() - start < 5 and neighbour(client, web) != mac(host, standby):
            time.sleep(0.05)
        moved = time.monotonic() - start
        # nothing was sent by the client meanwhile: only a gratuitous ARP moves its entry
        assert neighbour(client, web) == mac(host, standby), "the client still points at %s" % owner
        record_property("s_to_client_arp_on_standby", round(moved, 2))
        assert holds(host, standby, web)
        # through the new holder to the pods; web-1 (on the dead node) is still an endpoint, as
        # it is in Kubernetes until the node is declared NotReady, so only the others answer
        got = [a for a in http(client, web, 9) if a]
        assert got and all(a["node"] != owner for a in got), got
        host(owner).check_output("ip link set eth0 up")
        host(owner).check_output("systemctl reset-failed podnet-lab-net.service; systemctl restart podnet-lab-net.service")
        # the old owner is back: the VIP stays (nopreempt), the client still sees one MAC
        time.sleep(2)
        assert holds(host, standby, web) and not holds(host, owner, web)
        assert arping(client, web) == [mac(host, standby)]
    finally:
        host(owner).run("ip link set eth0 up; systemctl reset-failed podnet-lab-net.service; "
                        "systemctl restart podnet-lab-net.service")
        # put the lab back as MetalLB would have it: the standby lets go (its restarted process
        # waits its startup delay, hearing the first candidate that took over meanwhile)
        host(standby).run("systemctl restart 'podnet-vrrp@load_balancer-vi*.service'")
        start = time.monotonic()
        while time.monotonic() - start < 10 and not holds(host, owner, web):
            time.sleep(0.1)
    assert holds(host, owner, web) and not holds(host, standby, web)


def test_one_keepalived_per_instance_each_with_a_configuration_keepalived_accepts(host):
    # node1: web-lb (with node2) and web-lb-local (alone); node2: web-lb only
    assert [len(units(host, n)) for n in RACK_A] == [2, 1]
    for node in RACK_A:
        for unit in units(host, node):
            name = unit[len("podnet-vrrp@"):-len(".service")]
            out = host(node).run("keepalived --config-test --use-file=/etc/keepalived/podnet-fabric-%s.conf" % name)
            assert out.rc == 0, out.stdout + out.stderr


def apply_services(inventory, workdir):
    """podnet.fabric.service_proxy + load_balancer on the nodes (the roles that give out and
    announce the VIPs) with ``inventory``; returns (rc, output)."""
    play = Path(workdir) / "lb-play.yml"
    play.write_text("- hosts: nodes\n  gather_facts: false\n  roles:\n    - podnet.fabric.service_proxy\n"
                    "    - podnet.fabric.load_balancer\n", encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH="%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(play), "-e",
                           "lab_state_dir=%s" % labinventory.state_dir(env.get("PODNET_LAB", "podnet"))],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    return proc.returncode, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_removing_the_pool_withdraws_every_vip_and_restoring_it_brings_them_back(host, tmp_path):
    web, local = lb_ip(host, "web-lb"), lb_ip(host, "web-lb-local")
    inventory = labinventory.Variant().write(tmp_path / "inventory")
    path = inventory / "manifests" / "metallb.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["items"] = [o for o in doc["items"] if o["kind"] == "Service"]      # no pool, no advertisement
    path.write_text(yaml.safe_dump(doc))
    # nor the BGP pool (manifests/bgp.yaml; its Services ask for it): no pool at all, so every
    # LoadBalancer keeps only what it requests
    (inventory / "manifests" / "bgp.yaml").unlink()
    try:
        rc, out = apply_services(inventory, tmp_path)
        assert rc == 0, out
        for node in ("node1", "node2", "node3"):
            assert not holds(host, node, web) and not holds(host, node, local), node
            assert units(host, node) == [], node
            assert host(node).run("ls /etc/keepalived/podnet-fabric-load_balancer-vi*.conf").rc != 0
        assert arping(host("client"), web) == []
    finally:
        rc, out = apply_services(REPO / "inventories" / "lab", tmp_path)
    assert rc == 0, out
    owner = metallb_order(RACK_A, web)[0]
    start = time.monotonic()
    while time.monotonic() - start < 10 and not holds(host, owner, web):
        time.sleep(0.1)
    assert lb_ip(host, "web-lb") == web and holds(host, owner, web) and holds(host, "node1", local)
