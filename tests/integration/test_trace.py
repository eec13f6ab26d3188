"""podnet.fabric.trace names the rules the kernel's own trace reports, in the same order.

Three throw-away namespaces: a pod-like client (10.244.1.5 behind veth), the node (kube-proxy's
ruleset built by the kubeproxy layer and loaded with iptables-nft-restore, an egress MASQUERADE,
a ``-t raw -j TRACE`` rule for the client's packets), and a server side holding the endpoints and
an outside address. For each flow a real SYN is sent from the client while ``xtables-monitor
--trace`` runs in the node's namespace; the rules the kernel reports for that packet
(table, chain, rule text) must be exactly the rule hops the module returns.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from conftest import REPO, sh

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset  # noqa: E402
from ansible_collections.podnet.fabric.plugins.module_utils.trace.kube_proxy import save_text  # noqa: E402

CLUSTER_CIDR = "10.244.0.0/16"
CLIENT, GATEWAY = "10.244.1.5", "10.244.1.1"
NODE_UP, SERVER, SERVER2 = "172.31.9.1", "172.31.9.2", "172.31.9.3"
EGRESS = '-s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "podnet egress" -j MASQUERADE'
TRACE_RULE = "-s %s/32 -p tcp -j TRACE" % CLIENT
FLOWS = {   # name: (dst, dport)
    "clusterip": ("10.96.0.20", 80),
    "no-endpoints": ("10.96.0.21", 80),
    "egress": (SERVER, 9999),
}
_TRACE_RE = re.compile(r"^\s*TRACE: \d+ ([0-9a-f]+) (\w+):([^:]+):(rule|policy|return):(?:0x[0-9a-f]+:)?(\S*)\s*(.*)$")


def _objects():
    def svc(name, ip):
        return {"metadata": {"namespace": "default", "name": name},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    slices = [{"metadata": {"namespace": "default", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "endpoints": [{"addresses": [SERVER]}, {"addresses": [SERVER2]}],
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    return [svc("web", "10.96.0.20"), svc("empty", "10.96.0.21")], slices


@pytest.fixture
def lab(netns_factory):
    client, node, server = netns_factory("pnt-c"), netns_factory("pnt-n"), netns_factory("pnt-s")
    for a, b, ns_a, ns_b in (("trc", "trn", client, node), ("trs", "trm", server, node)):
        sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
    sh("ip", "addr", "add", CLIENT + "/24", "dev", "trc", netns=client)
    sh("ip", "addr", "add", GATEWAY + "/24", "dev", "trn", netns=node)
    sh("ip", "addr", "add", NODE_UP + "/24", "dev", "trm", netns=node)
    for ip in (SERVER, SERVER2):
        sh("ip", "addr", "add", ip + "/24", "dev", "trs", netns=server)
    for ns, dev in ((client, "trc"), (node, "trn"), (node, "trm"), (server, "trs")):
        sh("ip", "link", "set", dev, "up", netns=ns)
    sh("ip", "route", "add", "default", "via", GATEWAY, netns=client)
    sh("ip", "route", "add", "default", "via", NODE_UP, netns=server)
    sh("ip", "route", "add", "default", "via", SERVER, netns=node)     # ClusterIPs route somewhere, as on a node
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=node)
    services, slices = _objects()
    rs = build_ruleset(services, slices, {"name": "node", "node_ip": NODE_UP, "cluster_cidr": CLUSTER_CIDR})
    text = save_text(rs, extra=[("raw", "PREROUTING", TRACE_RULE), ("nat", "POSTROUTING", EGRESS)])
    sh("iptables-nft-restore", netns=node, input=text)
    return client, node, server


def kernel_trace(node, client, dst, dport):
    """[(table, chain, rule)] the kernel reports for the first traced packet of one SYN."""
    mon = subprocess.Popen(["ip", "netns", "exec", node, "xtables-monitor", "--trace"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.4)            # let the monitor subscribe before the packet goes
        subprocess.run(["ip", "netns", "exec", client, "nc", "-z", "-w", "1", dst, str(dport)],
                       capture_output=True, timeout=5, check=False)
        time.sleep(0.3)
    finally:
        mon.terminate()
        try:
            out = mon.communicate(timeout=5)[0]
        except subprocess.TimeoutExpired:
            mon.kill()
            out = mon.communicate()[0]
    first = None
    hops = []
    for line in out.splitlines():
        m = _TRACE_RE.match(line)
        if not m:
            continue
        pid, table, chain, kind, verdict, rule = m.groups()
        first = first or pid
        if pid != first or kind != "rule":
            continue
        rule = re.sub(r"^-4 -t \S+ -A \S+ ?", "", rule.strip())
        hops.append((table, chain, rule))
    assert hops, "xtables-monitor reported nothing for %s:%d:\n%s" % (dst, dport, out[-3000:])
    return hops


def ours(result):
    return [(h["table"], h["chain"], h["rule"]) for h in result["hops"] if h["kind"] == "rule"]


def test_trace_names_the_rules_the_kernel_reports(lab, playbook):
    client, node, _server = lab
    kernel = dict((name, kernel_trace(node, client, dst, dport)) for name, (dst, dport) in FLOWS.items())
    chosen = [r for t, c, r in kernel["clusterip"] if "-j DNAT" in r]
    assert len(chosen) == 1, kernel["clusterip"]
    assert [c for t, c, r in kernel["clusterip"]][:4] == ["PREROUTING", "PREROUTING", "KUBE-SERVICES", "KUBE-SVC-" +
                                                          kernel["clusterip"][2][2].split("KUBE-SVC-")[1]]
    assert ("filter", "KUBE-SERVICES") in [(t, c) for t, c, r in kernel["no-endpoints"]]
    assert ("nat", "POSTROUTING", EGRESS) in kernel["egress"]
    endpoint = chosen[0].split("--to-destination ")[1].split()[0]

    def task(dst, dport, **more):
        return {"podnet.fabric.trace": dict(netns=node, src=CLIENT, dst=dst, dport=dport, iif="trn",
                                            iptables_flavour="nft", **more)}
    run = playbook([task(*FLOWS["clusterip"], endpoint=endpoint), task(*FLOWS["no-endpoints"]),
                    task(*FLOWS["egress"]), task(*FLOWS["clusterip"], endpoint="first")], check=True)
    assert not run.failed, run
    cluster, empty, egress, first = run.results
    assert ours(cluster) == kernel["clusterip"], (cluster["text"], kernel["clusterip"])
    assert cluster["verdict"] == "forwarded" and cluster["traces"][0]["packet"]["dst"] == endpoint.split(":")[0]
    dice = [h for h in cluster["hops"] if h.get("alternatives")]
    assert [a["leads_to"] for a in dice[0]["alternatives"]] == [SERVER + ":8080", SERVER2 + ":8080"]
    assert ours(empty) == kernel["no-endpoints"], (empty["text"], kernel["no-endpoints"])
    assert empty["verdict"] == "rejected" and "default/empty:http has no endpoints" in empty["hops"][-1]["rule"]
    assert ours(egress) == kernel["egress"], (egress["text"], kernel["egress"])
    assert egress["hops"][-1]["verdict"] == "MASQUERADE to %s" % NODE_UP
    assert not any(r["changed"] for r in run.results)
    assert first["traces"][0]["packet"]["dst"] == SERVER       # "first": the first endpoint's branch
