"""playbooks/trace.yml on the lab, against the kernel's own trace.

For each flow the issue names (pod -> ClusterIP across nodes, client -> NodePort with Cluster and
Local policy, a pod to its own Service (hairpin), a Service without endpoints, egress to the
internet host, a LoadBalancer VIP) a real connection is made while every node runs
``xtables-monitor --trace`` with a ``-t raw ... -j TRACE`` rule for that flow's SYN; the kernel's
own choice of endpoint (its DNAT) is then given to the trace, which is run once for all flows
(states read once). On every node the packet passes, the rules the trace names must be, in
order, the rules the kernel reported for the first packet. A Service with ClientIP affinity:
after a few connections the trace must name, without any dice, the endpoint that answered.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import test_pod_network as podnet

REPO = Path(__file__).resolve().parents[3]
NODES = ("node1", "node2", "node3")
# every SYN to these ports (the Services' ports, the NodePorts and the pods' targetPort)
TRACE = "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports %s -j TRACE"
_EVENT = re.compile(r"^\s*TRACE: \d+ ([0-9a-f]+) (\w+):([^:]+):(rule|policy|return):(?:0x[0-9a-f]+:)?(\S*)\s*(.*)$")


class Flow(object):
    def __init__(self, name, source, to, sender, command, ports, accept=None, expect=None):
        self.name, self.source, self.to = name, source, to
        self.sender = sender            # ("pod", "tools-1") or ("host", "client")
        self.command = command          # what the sender runs (curl / nc), {ip} filled later
        self.ports = ports
        self.accept = accept or (lambda answer: True)
        self.expect = expect            # the trace's verdict
        self.kernel = None              # {node: [(table, chain, rule)]}
        self.answer = None


def _curl(url):
    return "curl -s -m 2 %s" % url


FLOWS = [
    # across nodes: the kernel's choice must be a pod on node2 (host-gw) or node3 (VXLAN)
    Flow("clusterip-across", "default/tools-1", "svc:default/web", ("pod", "tools-1"), _curl("http://{web}/"),
         (80, 8080), accept=lambda a: a and a.get("node") != "node1", expect="delivered"),
    Flow("nodeport-cluster", "client", "nodeport:node2/default/web-nodeport", ("host", "client"),
         _curl("http://{node2}:30080/"), (30080, 8080), accept=lambda a: a and a.get("node") != "node2",
         expect="delivered"),
    Flow("nodeport-local", "client", "nodeport:node1/default/web-local", ("host", "client"),
         _curl("http://{node1}:30081/"), (30081, 8080), accept=lambda a: a and a.get("pod") == "default/web-1",
         expect="delivered"),
    Flow("nodeport-local-no-endpoint", "client", "nodeport:node2/default/web-local", ("host", "client"),
         "nc -z -w 1 {node2} 30081", (30081, 8080), expect="dropped"),
    Flow("hairpin", "default/web-1", "svc:default/web", ("pod", "web-1"), _curl("http://{web}/"), (80, 8080),
         accept=lambda a: a and a.get("pod") == "default/web-1", expect="delivered"),
    Flow("no-endpoints", "default/tools-1", "svc:default/nothing", ("pod", "tools-1"), "nc -z -w 1 {nothing} 80",
         (80, 8080), expect="rejected"),
    Flow("egress", "default/tools-1", "inet:8090", ("pod", "tools-1"), _curl("http://{inet}:8090/"), (8090,),
         expect="delivered"),
    Flow("vip", "client", "lb:default/web-lb", ("host", "client"), _curl("http://{web-lb}/"), (80, 8080),
         expect="delivered"),
]


def _send(host, flow, addresses):
    cmd = flow.command.format(**addresses)
    kind, who = flow.sender
    if kind == "pod":
        out = podnet.in_pod(host, who, cmd)
    else:
        out = host(who).run(cmd)
    if out.stdout.startswith("pod="):
        return dict(kv.split("=", 1) for kv in out.stdout.split())
    return None


def _parse(out):
    """[(table, chain, rule)] of the first traced packet in xtables-monitor's output.

    The kernel's trace id follows the skb, which a bridge or NAT step may replace: the packet is
    told by its IP header's ID (kept through NAT and forwarding), given on each PACKET line."""
    first, current, hops = None, {}, []
    for line in out.splitlines():
        if line.startswith("PACKET:"):
            fields = line.split()
            ip_id = next((f[3:] for f in fields if f.startswith("ID=")), None)
            current[fields[2]] = ip_id
            first = first or ip_id
            continue
        m = _EVENT.match(line)
        if not m:
            continue
        tid, table, chain, kind, _verdict, rule = m.groups()
        if current.get(tid) != first or kind != "rule":
            continue
        rule = re.sub(r"^-4 -t \S+ -A \S+ ?", "", rule.strip())
        if rule.endswith("-j TRACE"):
            continue            # the test's own rule, gone when the trace reads the state
        hops.append((table, chain, rule))
    return hops


def _kernel_trace(lab, host, flow, addresses):
    """Run the flow's connection under xtables-monitor on every node; {node: first packet's rules}."""
    # stdbuf: the monitor's output goes to a pipe, and a block buffer would die with it
    monitors = dict((n, subprocess.Popen(["podman", "exec", lab.container(n), "stdbuf", "-oL", "xtables-monitor",
                                          "--trace"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                    for n in NODES)
    try:
        time.sleep(0.8)         # the monitors subscribe before the packet goes
        answer = _send(host, flow, addresses)
        time.sleep(0.3)
    finally:
        outputs = {}
        for node, mon in monitors.items():
            mon.terminate()
            try:
                outputs[node] = mon.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:
                mon.kill()
                outputs[node] = mon.communicate()[0]
    return answer, dict((n, _parse(o)) for n, o in outputs.items())


def _trace_rules(host, action):
    """The test's TRACE rules (every flow's ports) on every node: -I, or -D to take them away."""
    ports = sorted(set(p for f in FLOWS for p in f.ports))
    rule = TRACE % ",".join(str(p) for p in ports)
    for node in NODES:
        for chain in ("PREROUTING", "OUTPUT"):
            cmd = "iptables -t raw %s %s %s" % (action, chain + (" 1" if action == "-I" else ""), rule)
            if action == "-I":
                host(node).check_output(cmd)
            else:
                host(node).run(cmd)


def _addresses(lab, host):
    nat = host("node1").check_output("iptables-save -t nat")
    out = {}
    for svc in ("web", "nothing", "sticky"):
        m = re.search(r'-d (\S+)/32 -p tcp -m comment --comment "default/%s:http cluster IP"' % svc, nat)
        m = m or re.search(r'-d (\S+)/32 .*"default/%s:http has no endpoints"' % svc,
                           host("node1").check_output("iptables-save -t filter"))
        out[svc] = m.group(1)
    out["web-lb"] = re.search(r'-d (\S+)/32 -p tcp -m comment --comment "default/web-lb:http loadbalancer IP"',
                              nat).group(1)
    for name in NODES + ("inet",):
        out[name] = lab.var(name, "lab_ip")
    return out


def _run_trace(flows):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH="%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    extra = {"trace_flows": flows}
    proc = subprocess.run(["ansible-playbook", "-i", str(REPO / "inventories" / "lab"), "playbooks/trace.yml",
                           "-e", json.dumps(extra)], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks = data["plays"][0]["tasks"]
    task = next(t for t in tasks if t["task"]["name"] == "Trace each packet from where it starts")
    (result,) = [h for h in task["hosts"].values() if "results" in h]
    plans = next(t for t in tasks if t["task"]["name"] == "Resolve the names into packets")
    (facts,) = [h for h in plans["hosts"].values() if "ansible_facts" in h]
    return result["results"], facts["ansible_facts"]["trace_plans"]


def _ours(result):
    """{node: [(table, chain, rule)]} of the traced packet itself (no VXLAN outer packet, nodes only)."""
    out = {}
    for hop in result["hops"]:
        if hop["kind"] == "rule" and not hop.get("outer") and hop["node"] in NODES:
            out.setdefault(hop["node"], []).append((hop["table"], hop["chain"], hop["rule"]))
    return out


def _chosen_endpoint(kernel):
    for node in NODES:
        for _t, _c, rule in kernel.get(node, []):
            if "-j DNAT" in rule:
                return rule.split("--to-destination ")[1].split()[0]
    return "first"


@pytest.fixture(scope="module")
def traced(lab, host):
    addresses = _addresses(lab, host)
    _trace_rules(host, "-I")
    try:
        for flow in FLOWS:
            for _attempt in range(12):       # the kernel's dice: until it picks the endpoint the flow is about
                flow.answer, flow.kernel = _kernel_trace(lab, host, flow, addresses)
                if flow.accept(flow.answer):
                    break
            assert flow.accept(flow.answer), "%s: never answered as wanted: %r" % (flow.name, flow.answer)
    finally:
        _trace_rules(host, "-D")
    # ClientIP affinity: a few connections first, so tools-1 is in the chosen endpoint's recent list
    sticky = [podnet.http(host, "tools-1", addresses["sticky"], 80)["pod"] for _i in range(3)]
    assert len(set(sticky)) == 1, sticky
    wanted = [{"from": f.source, "to": f.to, "endpoint": _chosen_endpoint(f.kernel)} for f in FLOWS]
    wanted.append({"from": "default/tools-1", "to": "sticky.default.svc.cluster.local"})
    results, plans = _run_trace(wanted)
    out = dict((f.name, (f, r, p)) for f, r, p in zip(FLOWS, results, plans))
    out["sticky"] = (sticky, results[-1], plans[-1])
    return out


@pytest.mark.parametrize("name", [f.name for f in FLOWS])
def test_trace_names_the_rules_the_kernel_reports(traced, name):
    flow, result, _plan = traced[name]
    assert result["verdict"] == flow.expect, "\n".join(result["text"])
    ours = _ours(result)
    kernel = dict((n, hops) for n, hops in flow.kernel.items() if hops)
    assert sorted(ours) == sorted(kernel), ("nodes passed", sorted(ours), sorted(kernel), "\n".join(result["text"]))
    for node in kernel:
        assert ours[node] == kernel[node], (node, "\n".join(result["text"]), kernel[node])


def test_the_endpoint_named_is_the_one_that_answered(traced):
    for name in ("clusterip-across", "nodeport-cluster", "nodeport-local", "hairpin", "vip"):
        flow, result, _plan = traced[name]
        last = result["traces"][-1]
        assert last["node"] == flow.answer["pod"] and last["verdict"] == "delivered", (name, flow.answer, last)


def test_flows_as_the_seeds_tell_them(traced):
    flow, across, _plan = traced["clusterip-across"]
    assert across["traces"][0]["node"] == "default/tools-1"
    bridge = [h for h in across["hops"] if h["kind"] == "bridge"]
    assert (bridge[0]["node"], bridge[0]["dev"], bridge[0]["direction"]) == ("node1", "cni0", "in"), across["text"]
    assert bridge[-1]["direction"] == "out" and bridge[-1]["peer"] == flow.answer["pod"] + " eth0"
    if flow.answer["node"] == "node3":       # other rack: VXLAN, the packet keeps the pod's address
        encap = [h for h in across["hops"] if h["kind"] == "encap"]
        assert encap and encap[0]["vni"] == 1 and encap[0]["outer_dst"] == "172.31.2.13", across["text"]
    assert flow.answer["client"].split(":")[0] == across["traces"][0]["packet"]["src"]
    _flow, local, _plan = traced["nodeport-local"]
    assert traced["nodeport-local"][0].answer["client"].startswith("172.31.1.100:")
    assert local["traces"][-1]["packet"]["src"] == "172.31.1.100"       # Local keeps the client's address
    _flow, cluster, _plan = traced["nodeport-cluster"]
    assert any(h.get("verdict", "").startswith("MASQUERADE to ") for h in cluster["hops"] if h["node"] == "node2")
    _flow, egress, _plan = traced["egress"]
    assert [t["node"] for t in egress["traces"]][-2:] == ["router", "inet"]
    assert egress["traces"][-1]["packet"]["src"] == "172.31.1.11"
    _flow, empty, _plan = traced["no-endpoints"]
    assert "default/nothing:http has no endpoints" in empty["hops"][-1]["rule"]
    _flow, drop, _plan = traced["nodeport-local-no-endpoint"]
    assert "default/web-local:http has no local endpoints" in drop["hops"][-1]["rule"]
    _flow, vip, plan = traced["vip"]
    owner = vip["traces"][1]["node"]
    assert plan["resolved"][-1].startswith("lb:default/web-lb -> Service default/web-lb port http -> LoadBalancer IP")
    assert owner in NODES and vip["traces"][0]["node"] == "client"


def test_affinity_names_the_endpoint_that_answers(host, traced):
    before, result, plan = traced["sticky"]
    assert plan["packet"]["dport"] == 80
    after = podnet.http(host, "tools-1", plan["packet"]["dst"], 80)["pod"]
    assert result["traces"][-1]["node"] == before[0] == after, "\n".join(result["text"])
    # the name was looked up as tools-1's resolver does it (ndots:5: the search domains first),
    # and the query packet went through kube-proxy to a DNS pod
    lookup = result["lookup"]
    assert lookup["answers"] == [plan["packet"]["dst"]] and lookup["qname"] == "sticky.default.svc.cluster.local"
    assert [t["rcode"] for t in lookup["tried"]] == ["NXDOMAIN"] * 3 + ["NOERROR"], lookup["text"]
    assert lookup["trace"]["verdict"] == "delivered" and lookup["trace"]["traces"][-1]["node"].startswith("kube-system/dns-")
    assert "note" not in lookup
    notes = [h for h in result["hops"] if h.get("affinity")]
    assert notes and not any(h.get("alternatives") for h in result["hops"]), "\n".join(result["text"])
