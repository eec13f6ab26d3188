"""The cluster DNS on the lab (podnet.fabric.cluster_dns after `site.yml` converged), asked with
a real ``dig`` (and glibc's resolver, ``getent``) from inside the pods, never with the code under
test.

inventories/lab/manifests/dns.yaml: Service kube-system/kube-dns at 10.96.0.10 over the DNS pods
dns-1 (node1) and dns-3 (node3), each running unbound in its network namespace; web-headless
(headless over web-1..3) and ext (ExternalName www.example.test). services.yaml has web and the
other Services. The upstream is unbound on inet with its own zone example.test (lab/up.yml,
``lab_dns_zone`` in inventories/lab/hosts.yml).

``ip netns exec <pod>`` bind-mounts /etc/netns/<pod>/resolv.conf over /etc/resolv.conf, so a
bare ``dig`` asks what the pod's resolv.conf names: 10.96.0.10, reached through
podnet.fabric.service_proxy's DNAT (the tests marked ``through_proxy`` need it). Expected values
come from the manifests, the inventory, the service proxy's report of the clusterIPs it applied
(/etc/ansible/facts.d/podnet_fabric_services.fact) and the pods' addresses read with ``ip -json``.

Read-only tests first; the last ones stop / kill a DNS server and re-run the role with an extra
Service, and put everything back as the inventory says.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labcheck import ip_json

REPO = Path(__file__).resolve().parents[3]
KUBE_DNS_IP = "10.96.0.10"
DNS_PODS = {"dns-1": "node1", "dns-3": "node3"}           # kube-system, as dns.yaml declares them
PODS = {"web-1": "node1", "web-2": "node2", "web-3": "node3", "tools-1": "node1", "tools-3": "node3"}  # default
SERVICE_REPORT = "/etc/ansible/facts.d/podnet_fabric_services.fact"
SEARCH = "search default.svc.cluster.local svc.cluster.local cluster.local"

through_proxy = pytest.mark.skipif(
    not (REPO / "roles" / "service_proxy").is_dir(),
    reason="10.96.0.10 reaches the DNS pods through podnet.fabric.service_proxy's DNAT")


def netns(pod):
    return ("pod-kube-system-%s" if pod in DNS_PODS else "pod-default-%s") % pod


def node_of(pod):
    return DNS_PODS.get(pod) or PODS[pod]


def pod_ip(host, pod):
    return ip_json(host(node_of(pod)), "-n", netns(pod), "-4", "addr", "show", "eth0")[0]["addr_info"][0]["local"]


def in_pod(host, pod, cmd):
    return host(node_of(pod)).run("ip netns exec %s %s" % (netns(pod), cmd))


class Answer:
    """dig's reply, read from its text: status, header flags, answer and authority records
    (name, type, data), and the server that answered."""

    def __init__(self, text):
        self.text = text
        self.status, self.flags, self.server = None, [], None
        self.answer, self.authority = [], []
        section = None
        for line in text.splitlines():
            if line.startswith(";; ->>HEADER<<-"):
                self.status = line.split("status: ")[1].split(",")[0]
            elif line.startswith(";; flags:"):
                self.flags = line.split(":", 1)[1].split(";")[0].split()
            elif line.startswith(";; SERVER:"):
                self.server = line.split()[2].split("#")[0]
            elif line.startswith(";; ") and line.endswith(" SECTION:"):
                section = line[3:].split()[0]
            elif line.strip() and not line.startswith(";") and section in ("ANSWER", "AUTHORITY"):
                name, _ttl, _class, rtype, data = line.split(None, 4)
                (self.answer if section == "ANSWER" else self.authority).append((name, rtype, data))

    def data(self, rtype):
        return sorted(d for _n, t, d in self.answer if t == rtype)


def dig(host, pod, *question, server=None):
    """``dig`` in a pod: the pod's resolv.conf decides the server unless ``server`` is given."""
    args = ["+time=2", "+tries=2", "+nocookie"] + (["@" + server] if server else []) + list(question)
    out = in_pod(host, pod, "dig " + " ".join(args))
    assert out.rc == 0, "dig %s in pod %s failed: %s%s" % (" ".join(question), pod, out.stdout, out.stderr)
    answer = Answer(out.stdout)
    assert answer.status, out.stdout
    return answer


def cluster_ip(host, name, namespace="default"):
    """The clusterIP the service proxy reports it applied on node1."""
    report = json.loads(host("node1").file(SERVICE_REPORT).content_string)
    return report["services"]["%s/%s" % (namespace, name)]["clusterIP"]


def upstream_zone(lab):
    zone = lab.var(lab.hosts("internet")[0], "lab_dns_zone")
    records = dict((r.split()[0], r.split()[-1]) for r in zone["records"] if r.split()[3] == "A")
    return zone["name"], records


def eventually(get, ok, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


# --- what each node has ---------------------------------------------------------------------------

@pytest.mark.parametrize("pod", sorted(PODS))
def test_every_pod_gets_the_kubelet_resolv_conf(host, pod):
    out = in_pod(host, pod, "cat /etc/resolv.conf")
    assert out.rc == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert lines == ["nameserver " + KUBE_DNS_IP, SEARCH, "options ndots:5"]


@pytest.mark.parametrize("pod", sorted(DNS_PODS))
def test_dns_pod_runs_unbound_in_its_own_network_namespace(host, pod):
    node = host(DNS_PODS[pod])
    unit = "podnet-dns@%s.service" % netns(pod)
    assert node.run("systemctl is-active %s" % unit).stdout.strip() == "active"
    assert node.run("systemctl is-enabled %s" % unit).stdout.strip() == "enabled"
    pid = node.check_output("systemctl show -p MainPID --value %s" % unit)
    assert node.check_output("cat /proc/%s/comm" % pid) == "unbound"
    # the process's network namespace is the pod's (same inode), and it listens there on 53
    assert node.check_output("stat -L -c %%i /proc/%s/ns/net" % pid) == node.check_output("stat -L -c %%i /run/netns/%s" % netns(pod))
    listening = node.check_output("ip netns exec %s ss -Hlnu 'sport = :53'" % netns(pod))
    assert "0.0.0.0:53" in listening
    # dnsPolicy Default (as CoreDNS's pods): the DNS pod keeps the node's resolver
    assert node.run("test -e /etc/netns/%s/resolv.conf" % netns(pod)).rc != 0
    # no pod_workload HTTP server fighting unbound for TCP 53
    assert "0.0.0.0:53" in node.check_output("ip netns exec %s ss -Hlnt 'sport = :53'" % netns(pod))
    assert "python" not in node.check_output("ip netns exec %s ss -Hlntp 'sport = :53'" % netns(pod))


# --- records, through the pods' resolv.conf: 10.96.0.10 -----------------------------------------

@through_proxy
@pytest.mark.parametrize("pod", ["tools-1", "web-2", "tools-3"])   # node2 has no DNS pod: DNAT to another node
def test_service_name_is_its_cluster_ip_answered_by_the_dns_service(host, pod):
    answer = dig(host, pod, "web.default.svc.cluster.local", "A")
    assert answer.server == KUBE_DNS_IP
    assert (answer.status, "aa" in answer.flags) == ("NOERROR", True)
    assert answer.answer == [("web.default.svc.cluster.local.", "A", cluster_ip(host, "web"))]
    # the same over TCP (port dns-tcp)
    assert dig(host, pod, "+tcp", "web.default.svc.cluster.local", "A").data("A") == [cluster_ip(host, "web")]


@through_proxy
def test_short_name_resolves_through_the_search_path(host):
    # glibc's own resolver reads the pod's resolv.conf: search list and ndots:5
    out = in_pod(host, "tools-3", "getent hosts web")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == [cluster_ip(host, "web"), "web.default.svc.cluster.local"]
    answer = dig(host, "tools-1", "+search", "sticky", "A")
    assert answer.answer == [("sticky.default.svc.cluster.local.", "A", cluster_ip(host, "sticky"))]
    # another namespace by <svc>.<ns>, through the search list's svc.cluster.local
    assert in_pod(host, "web-2", "getent hosts kube-dns.kube-system").stdout.split()[0] == KUBE_DNS_IP


@through_proxy
def test_headless_service_answers_the_ready_pods_addresses(host):
    answer = dig(host, "tools-1", "web-headless.default.svc.cluster.local", "A")
    assert answer.status == "NOERROR"
    assert answer.data("A") == sorted(pod_ip(host, p) for p in ("web-1", "web-2", "web-3"))


@through_proxy
def test_srv_records_of_a_service_and_of_a_headless_service(host):
    answer = dig(host, "tools-3", "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert answer.data("SRV") == ["10 100 80 web.default.svc.cluster.local."]
    answer = dig(host, "tools-3", "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert answer.data("SRV") == ["10 100 53 kube-dns.kube-system.svc.cluster.local."]
    # headless: one SRV per pod, with the pod's port (targetPort http = 8080), each target resolving to it
    answer = dig(host, "tools-3", "_http._tcp.web-headless.default.svc.cluster.local", "SRV")
    targets = {}
    for data in answer.data("SRV"):
        priority, weight, port, target = data.split()
        assert (priority, weight, port) == ("10", "100", "8080"), data
        targets[target] = dig(host, "tools-3", target, "A").data("A")
    assert sorted(ip for ips in targets.values() for ip in ips) == sorted(pod_ip(host, p) for p in ("web-1", "web-2", "web-3"))


@through_proxy
def test_external_name_is_a_cname_followed_to_the_upstreams_address(host, lab):
    zone, records = upstream_zone(lab)
    answer = dig(host, "web-1", "ext.default.svc.cluster.local", "A")
    assert answer.status == "NOERROR"
    assert answer.answer == [("ext.default.svc.cluster.local.", "CNAME", "www.%s." % zone),
                             ("www.%s." % zone, "A", records["www.%s." % zone])]


@through_proxy
def test_ptr_records_of_a_service_ip_and_a_pod_ip(host):
    web = cluster_ip(host, "web")
    assert dig(host, "tools-1", "-x", web).data("PTR") == ["web.default.svc.cluster.local."]
    assert dig(host, "tools-1", "-x", KUBE_DNS_IP).data("PTR") == ["kube-dns.kube-system.svc.cluster.local."]
    tools3 = pod_ip(host, "tools-3")
    assert dig(host, "tools-1", "-x", tools3).data("PTR") == ["%s.default.pod.cluster.local." % tools3.replace(".", "-")]
    # a pod behind a headless Service: its reverse name is its name under that Service
    web2 = pod_ip(host, "web-2")
    assert dig(host, "tools-1", "-x", web2).data("PTR") == ["%s.web-headless.default.svc.cluster.local." % web2.replace(".", "-")]
    # and its pod record resolves forward
    assert dig(host, "tools-1", "%s.default.pod.cluster.local" % tools3.replace(".", "-"), "A").data("A") == [tools3]


@through_proxy
@pytest.mark.parametrize("name", ["nope.default.svc.cluster.local", "web.nope.svc.cluster.local", "nope.cluster.local"])
def test_unknown_cluster_name_is_nxdomain_from_the_cluster_dns_itself(host, name):
    answer = dig(host, "tools-3", name, "A")
    assert (answer.status, "aa" in answer.flags, answer.answer) == ("NXDOMAIN", True, [])
    assert [a[:2] for a in answer.authority] == [("cluster.local.", "SOA")]


@through_proxy
def test_other_names_are_forwarded_to_the_upstream(host, lab):
    zone, records = upstream_zone(lab)
    for name, ip in sorted(records.items()):
        answer = dig(host, "web-2", name, "A")
        # not authoritative here: it came from the upstream's zone
        assert (answer.status, "aa" in answer.flags, answer.data("A")) == ("NOERROR", False, [ip]), name
    answer = dig(host, "web-2", "nope." + zone, "A")
    assert (answer.status, [a[:2] for a in answer.authority]) == ("NXDOMAIN", [(zone + ".", "SOA")])


# --- the two DNS pods ----------------------------------------------------------------------------

@pytest.mark.parametrize("dns_pod", sorted(DNS_PODS))
def test_each_dns_pod_answers_every_pod_of_the_cluster_at_its_pod_ip(host, lab, dns_pod):
    zone, records = upstream_zone(lab)
    server = pod_ip(host, dns_pod)
    for pod in ("tools-1", "web-2", "tools-3"):
        assert dig(host, pod, "web-headless.default.svc.cluster.local", "A", server=server).data("A") == sorted(
            pod_ip(host, p) for p in ("web-1", "web-2", "web-3")), (dns_pod, pod)
        assert dig(host, pod, "www." + zone, "A", server=server).data("A") == [records["www.%s." % zone]], (dns_pod, pod)


def test_with_one_dns_pod_down_the_other_answers_and_a_killed_server_comes_back(host, lab):
    """dns-1's server stopped (its node down, as far as DNS goes): dns-3 still answers every
    pod, also those on node1. Through 10.96.0.10 about half of the new flows would still be sent
    to dns-1 until its endpoint is withdrawn (Kubernetes: its readiness probe failing); no
    readiness probes run here, so this test asks dns-3 by its address. Then unbound is killed
    outright: systemd starts it again (Restart=always) and it answers."""
    node1 = host("node1")
    unit = "podnet-dns@%s.service" % netns("dns-1")
    dns1, dns3 = pod_ip(host, "dns-1"), pod_ip(host, "dns-3")
    web = cluster_ip(host, "web")
    try:
        node1.check_output("systemctl stop %s" % unit)
        down = in_pod(host, "tools-1", "dig +time=1 +tries=1 @%s web.default.svc.cluster.local" % dns1)
        assert down.rc != 0 or "status: NOERROR" not in down.stdout, "dns-1 still answers while stopped"
        for pod in ("tools-1", "web-1", "web-2", "tools-3"):
            assert dig(host, pod, "web.default.svc.cluster.local", "A", server=dns3).data("A") == [web], pod
    finally:
        node1.run("systemctl start %s" % unit)
    assert dig(host, "tools-1", "web.default.svc.cluster.local", "A", server=dns1).data("A") == [web]

    pid = node1.check_output("systemctl show -p MainPID --value %s" % unit)
    node1.check_output("kill -9 %s" % pid)

    def ask_dns1():
        return in_pod(host, "tools-1", "dig +time=1 +tries=1 +short @%s web.default.svc.cluster.local" % dns1).stdout.strip()

    answer = eventually(ask_dns1, lambda out: out == web)
    assert answer == web, "unbound in dns-1 did not come back after being killed"
    assert node1.check_output("systemctl show -p MainPID --value %s" % unit) not in ("0", pid)


def test_a_rebooted_node_serves_dns_again_without_ansible(host, lab):
    """`podman restart node3` (a reboot): podnet-restore puts the pod back, then systemd starts its
    unbound (ordered after it), which answers pods on other nodes; node3's pods resolve again."""
    web = cluster_ip(host, "web")
    subprocess.run(["podman", "restart", lab.container("node3")], check=True, capture_output=True)
    node3 = host("node3")
    unit = "podnet-dns@%s.service" % netns("dns-3")

    def dns3_answer():
        out = node3.run("ip -n %s -4 -j addr show eth0" % netns("dns-3"))
        if out.rc != 0 or not json.loads(out.stdout or "[]"):
            return None
        ip = json.loads(out.stdout)[0]["addr_info"][0]["local"]
        return in_pod(host, "tools-1", "dig +time=1 +tries=1 +short @%s web.default.svc.cluster.local" % ip).stdout.strip()

    assert eventually(dns3_answer, lambda out: out == web, timeout=60) == web, "dns-3 does not answer after the reboot"
    assert node3.check_output("systemctl show -p NRestarts --value %s" % unit) == "0", "unbound started before its pod existed"

    def resolve_web():
        return in_pod(host, "tools-3", "getent hosts web").stdout.split()

    # through the service proxy's restored rules and the pod's resolv.conf, as before the reboot
    assert eventually(resolve_web, lambda a: a, timeout=30) == [web, "web.default.svc.cluster.local"]


# --- changes: the role alone, with one Service more, then as the inventory says ------------------

ROLE_ONLY = """- name: The cluster DNS alone
  hosts: nodes
  gather_facts: false
  roles:
    - role: podnet.fabric.cluster_dns
"""

EXTRA_SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns-probe", "namespace": "default"},
                 "spec": {"clusterIP": "10.96.200.53", "selector": {"app": "web"},
                          "ports": [{"name": "probe", "port": 5353, "protocol": "UDP", "targetPort": 5353}]}}


def run_role(tmp_path, extra_objects=()):
    """ansible-playbook with podnet.fabric.cluster_dns alone on the nodes; returns (rc, {host:
    changed}, output)."""
    playbook = tmp_path / "cluster_dns.yml"
    playbook.write_text(ROLE_ONLY)
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"cluster_extra_objects": list(extra_objects)}))
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (REPO / ".venv" / "bin", env.get("PATH", ""))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    cmd = ["ansible-playbook", "-i", str(REPO / "inventories" / "lab"), str(playbook), "-e", "@%s" % extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    try:
        stats = json.loads(proc.stdout)["stats"]
    except (ValueError, KeyError):
        stats = {}
    return proc.returncode, dict((h, s.get("changed", 0)) for h, s in stats.items()), proc.stdout[-4000:] + proc.stderr[-2000:]


def main_pids(host):
    return dict((pod, host(node).check_output("systemctl show -p MainPID --value podnet-dns@%s.service" % netns(pod)))
                for pod, node in DNS_PODS.items())


def test_a_service_added_and_removed_is_served_and_gone_after_a_reload_not_a_restart(host, tmp_path):
    pids = main_pids(host)
    name = "dns-probe.default.svc.cluster.local"
    servers = dict((pod, pod_ip(host, pod)) for pod in DNS_PODS)
    node2 = host("node2")
    # left behind on node2 by pods that are gone: a resolv.conf this role wrote (its first line)
    # and a DNS server's configuration; and a user's own per-netns resolv.conf, which stays
    node2.check_output("mkdir -p /etc/netns/pod-default-gone /etc/netns/user-ns /etc/podnet-fabric/dns")
    node2.check_output("printf '# podnet.fabric cluster_dns: of a pod gone\\nnameserver 10.96.0.10\\n' > /etc/netns/pod-default-gone/resolv.conf")
    node2.check_output("printf 'nameserver 192.0.2.53\\n' > /etc/netns/user-ns/resolv.conf")
    node2.check_output("printf 'server:\\n' > /etc/podnet-fabric/dns/pod-kube-system-gone.conf")
    try:
        rc, changed, out = run_role(tmp_path, [EXTRA_SERVICE])
        assert rc == 0, out
        # node1 and node3 reloaded their servers; node2 (no DNS pod) only lost what was left behind
        assert changed == {"node1": 1, "node2": 1, "node3": 1}, out
        assert node2.run("test -e /etc/netns/pod-default-gone").rc != 0
        assert node2.run("test -e /etc/podnet-fabric/dns/pod-kube-system-gone.conf").rc != 0
        assert node2.check_output("cat /etc/netns/user-ns/resolv.conf") == "nameserver 192.0.2.53"
        for pod, ip in servers.items():
            got = eventually(lambda: dig(host, "web-2", name, "A", server=ip).data("A"), lambda a: a == ["10.96.200.53"])
            assert got == ["10.96.200.53"], pod
            assert dig(host, "web-2", "-x", "10.96.200.53", server=ip).data("PTR") == [name + "."]
            assert dig(host, "web-2", "_probe._udp." + name, "SRV", server=ip).data("SRV") == ["10 100 5353 %s." % name]
        assert main_pids(host) == pids, "a changed configuration restarted unbound instead of reloading it"
    finally:
        node2.run("rm -rf /etc/netns/user-ns /etc/netns/pod-default-gone /etc/podnet-fabric/dns/pod-kube-system-gone.conf")
        rc, changed, out = run_role(tmp_path)
    assert rc == 0, out
    for pod, ip in servers.items():
        got = eventually(lambda: dig(host, "web-2", name, "A", server=ip).status, lambda s: s == "NXDOMAIN")
        assert got == "NXDOMAIN", "the removed Service's record is still served by %s" % pod
    assert main_pids(host) == pids
    # as the inventory says again: nothing more to change
    rc, changed, out = run_role(tmp_path)
    assert (rc, changed) == (0, {"node1": 0, "node2": 0, "node3": 0}), out
