"""The cluster DNS records served by a real unbound, asked with a real dig, across namespaces.

Three throw-away namespaces: ``srv`` runs unbound with the configuration cluster_dns renders,
``up`` plays the upstream (another unbound, with a zone ``example.test`` of its own and a decoy
``cluster.local`` zone that must never be asked), ``cli`` runs ``dig``. srv has a veth to each
(10.53.1.0/24 towards cli, 10.53.2.0/24 towards up); no packet leaves the namespaces. Answers are
read from dig's text, not from the code under test. Daemons are killed at teardown, pass or fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO, sh, unique

# The renderer runs here on the controller, as the role will run it: import the collection.
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.podnet.fabric.plugins.module_utils.cluster_dns import cluster_records, unbound_config  # noqa: E402

# setup.sh installs unbound and bind9-dnsutils (requirements-apt.txt): missing tools fail, not skip.

SRV_IP, CLI_IP, SRV_UP_IP, UP_IP = "10.53.1.1", "10.53.1.2", "10.53.2.1", "10.53.2.2"
EXTERNAL_A = "192.0.2.53"      # only a value in the upstream's zone: nothing is sent there
DECOY_A = "192.0.2.66"         # what the upstream says for cluster names: seeing it means "forwarded"

UPSTREAM_CONF = """server:
  interface: %(ip)s
  access-control: 0.0.0.0/0 allow
  module-config: "iterator"
  local-zone: "example.test." static
  local-data: "example.test. 60 IN SOA ns.example.test. hostmaster.example.test. 7 3600 600 86400 60"
  local-data: "www.example.test. 300 IN A %(external)s"
  local-zone: "cluster.local." static
  local-data: "nope.default.svc.cluster.local. 300 IN A %(decoy)s"
  local-data: "added.default.svc.cluster.local. 300 IN A %(decoy)s"
"""


def service(name, cluster_ip, ports=(), namespace="default", **spec):
    spec = dict(spec, ports=[{"name": n, "port": p, "protocol": proto} for n, p, proto in ports])
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


SERVICES = [
    service("kubernetes", "10.96.0.1", [("https", 443, "TCP")]),
    service("kube-dns", "10.96.0.10", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")], namespace="kube-system"),
    service("web", "None", [("http", 80, "TCP")], namespace="shop"),
    service("ext", None, type="ExternalName", externalName="www.example.test"),
]
SLICES = [{
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
    "metadata": {"name": "web-7x2k", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    "endpoints": [
        {"addresses": ["10.244.1.5"], "hostname": "web-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.2.6"], "conditions": {"ready": True}},
        {"addresses": ["10.244.1.9"], "hostname": "web-2", "conditions": {"ready": False}},
    ],
}]
PODS = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tools", "namespace": "shop"},
         "spec": {"nodeName": "node1"}, "status": {"podIP": "10.244.1.7"}}]


class Unbound(object):
    """One unbound in the foreground (-d) inside ``netns``, its files under ``root``."""

    def __init__(self, root, netns, name, text):
        self.netns = netns
        self.conf = os.path.join(root, name + ".conf")
        self.write(text)
        sh("unbound-checkconf", self.conf)
        self.log = open(os.path.join(root, name + ".log"), "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "unbound", "-d", "-c", self.conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def write(self, text):
        with open(self.conf, "w") as handle:
            handle.write(text)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cluster_conf(root, services):
    # Daemon settings for a test run: no user switch, no chroot, files in the test's directory.
    return unbound_config(
        cluster_records(services, SLICES, PODS), [UP_IP], interfaces=[SRV_IP], allow=["10.53.1.0/24"],
        forward_domains=["example.test"], control_socket=os.path.join(root, "ctl.sock"),
        server_options=['username: ""', 'chroot: ""', 'directory: "%s"' % root, 'pidfile: "%s"' % os.path.join(root, "srv.pid"),
                        "use-syslog: no"])


def dig(cli, *question):
    """(status, flags, answer RRs, authority RRs) from dig's text; each RR (name, type, data)."""
    out = sh("dig", "+time=2", "+tries=1", "+nocookie", "@" + SRV_IP, *question, netns=cli)
    status, flags, sections, current = None, [], {"ANSWER": [], "AUTHORITY": []}, None
    for line in out.splitlines():
        if line.startswith(";; ->>HEADER<<-"):
            status = line.split("status: ")[1].split(",")[0]
        elif line.startswith(";; flags:"):
            flags = line.split(":")[1].split(";")[0].split()
        elif line.startswith(";; ") and line.endswith(" SECTION:"):
            current = line[3:].split()[0]
        elif line.strip() and not line.startswith(";") and current in sections:
            name, _ttl, _class, rtype, data = line.split(None, 4)
            sections[current].append((name, rtype, data))
    assert status, out
    return status, flags, sections["ANSWER"], sections["AUTHORITY"]


def eventually(get, ok, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def dns_lab(netns_factory):
    srv, up, cli = netns_factory("pnt-dns-"), netns_factory("pnt-dns-"), netns_factory("pnt-dns-")
    pair = unique("pdn")
    for peer, ip_srv, ip_peer in ((cli, SRV_IP, CLI_IP), (up, SRV_UP_IP, UP_IP)):
        tag = "c" if peer == cli else "u"
        sh("ip", "link", "add", pair + tag, "netns", srv, "type", "veth", "peer", "name", "eth0", "netns", peer)
        for ns, dev, ip in ((srv, pair + tag, ip_srv), (peer, "eth0", ip_peer)):
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
    root = tempfile.mkdtemp(prefix="pnt-dns-")
    os.chmod(root, 0o755)
    daemons = []
    try:
        daemons.append(Unbound(root, up, "up", UPSTREAM_CONF % {"ip": UP_IP, "external": EXTERNAL_A, "decoy": DECOY_A}
                               + '  username: ""\n  chroot: ""\n  directory: "%s"\n  use-syslog: no\n' % root))
        daemons.append(Unbound(root, srv, "srv", cluster_conf(root, SERVICES)))
        control = ["unbound-control", "-c", daemons[1].conf]
        ready = eventually(lambda: subprocess.run(control + ["status"], capture_output=True, check=False).returncode, lambda rc: rc == 0)
        assert ready == 0, "the cluster unbound did not come up: %s" % open(daemons[1].log.name).read()
        yield {"root": root, "srv": daemons[1], "up": daemons[0], "cli": cli, "control": control}
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_service_headless_srv_ptr_and_version_records(dns_lab):
    cli = dns_lab["cli"]
    status, flags, answer, _auth = dig(cli, "kubernetes.default.svc.cluster.local", "A")
    assert (status, "aa" in flags, answer) == ("NOERROR", True, [("kubernetes.default.svc.cluster.local.", "A", "10.96.0.1")])

    # headless: the two ready endpoints, not web-2 (ready: false)
    _s, _f, answer, _a = dig(cli, "web.shop.svc.cluster.local", "A")
    assert sorted(answer) == [("web.shop.svc.cluster.local.", "A", "10.244.1.5"), ("web.shop.svc.cluster.local.", "A", "10.244.2.6")]
    assert dig(cli, "web-0.web.shop.svc.cluster.local", "A")[2] == [("web-0.web.shop.svc.cluster.local.", "A", "10.244.1.5")]
    assert dig(cli, "web-2.web.shop.svc.cluster.local", "A")[0] == "NXDOMAIN"

    _s, _f, answer, _a = dig(cli, "_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert sorted(answer) == [
        ("_http._tcp.web.shop.svc.cluster.local.", "SRV", "10 100 8080 10-244-2-6.web.shop.svc.cluster.local."),
        ("_http._tcp.web.shop.svc.cluster.local.", "SRV", "10 100 8080 web-0.web.shop.svc.cluster.local."),
    ]
    # every SRV target resolves, also the endpoint without a hostname field
    assert dig(cli, "10-244-2-6.web.shop.svc.cluster.local", "A")[2] == [("10-244-2-6.web.shop.svc.cluster.local.", "A", "10.244.2.6")]
    assert dig(cli, "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")[2] == [
        ("_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV", "10 100 53 kube-dns.kube-system.svc.cluster.local.")]

    # PTR (dig -x builds the reverse name itself): a ClusterIP, a headless endpoint, a pod
    for ip, name in (("10.96.0.10", "kube-dns.kube-system.svc.cluster.local."),
                     ("10.244.1.5", "web-0.web.shop.svc.cluster.local."),
                     ("10.244.1.7", "10-244-1-7.shop.pod.cluster.local.")):
        status, _f, answer, _a = dig(cli, "-x", ip)
        assert (status, [a[1:] for a in answer]) == ("NOERROR", [("PTR", name)]), ip
    assert dig(cli, "10-244-1-7.shop.pod.cluster.local", "A")[2] == [("10-244-1-7.shop.pod.cluster.local.", "A", "10.244.1.7")]
    assert dig(cli, "dns-version.cluster.local", "TXT")[2] == [("dns-version.cluster.local.", "TXT", '"1.1.0"')]


def test_external_name_is_followed_to_the_upstream_and_other_names_are_forwarded(dns_lab):
    cli = dns_lab["cli"]
    status, _f, answer, _a = dig(cli, "ext.default.svc.cluster.local", "A")
    assert (status, answer) == ("NOERROR", [("ext.default.svc.cluster.local.", "CNAME", "www.example.test."),
                                            ("www.example.test.", "A", EXTERNAL_A)])
    status, flags, answer, _a = dig(cli, "www.example.test", "A")
    # not authoritative here: the answer came from the upstream
    assert (status, "aa" in flags, answer) == ("NOERROR", False, [("www.example.test.", "A", EXTERNAL_A)])
    status, flags, _answer, auth = dig(cli, "nope.example.test", "A")
    assert (status, "aa" in flags, [a[:2] for a in auth]) == ("NXDOMAIN", False, [("example.test.", "SOA")])


def test_unknown_cluster_names_are_nxdomain_here_and_never_forwarded(dns_lab):
    cli = dns_lab["cli"]
    for name in ("nope.default.svc.cluster.local", "kubernetes.nope.svc.cluster.local", "1-2-3-4.shop.pod.cluster.local"):
        status, flags, answer, auth = dig(cli, name, "A")
        # the upstream would have answered nope.default... with DECOY_A
        assert (status, "aa" in flags, answer) == ("NXDOMAIN", True, []), name
        assert [a[:2] for a in auth] == [("cluster.local.", "SOA")], name
    # a name that exists with another type: NODATA, not NXDOMAIN and not forwarded
    status, flags, answer, _auth = dig(cli, "kubernetes.default.svc.cluster.local", "AAAA")
    assert (status, "aa" in flags, answer) == ("NOERROR", True, [])


def test_an_added_service_is_served_after_a_reload_without_restart(dns_lab):
    cli, srv = dns_lab["cli"], dns_lab["srv"]
    pidfile = os.path.join(dns_lab["root"], "srv.pid")
    pid = open(pidfile).read().strip()
    added = SERVICES + [service("added", "10.96.0.20", [("http", 80, "TCP")])]
    assert dig(cli, "added.default.svc.cluster.local", "A")[0] == "NXDOMAIN"
    srv.write(cluster_conf(dns_lab["root"], added))
    sh("unbound-checkconf", srv.conf)
    assert dig(cli, "added.default.svc.cluster.local", "A")[0] == "NXDOMAIN", "picked up before the reload?"
    sh(*dns_lab["control"], "reload")
    answer = eventually(lambda: dig(cli, "added.default.svc.cluster.local", "A")[2], lambda a: a)
    assert answer == [("added.default.svc.cluster.local.", "A", "10.96.0.20")]
    assert dig(cli, "_http._tcp.added.default.svc.cluster.local", "SRV")[2] == [
        ("_http._tcp.added.default.svc.cluster.local.", "SRV", "10 100 80 added.default.svc.cluster.local.")]
    assert dig(cli, "-x", "10.96.0.20")[2] == [("20.0.96.10.in-addr.arpa.", "PTR", "added.default.svc.cluster.local.")]
    # the same process: not restarted
    assert srv.proc.poll() is None and open(pidfile).read().strip() == pid == str(srv.proc.pid)
    assert dig(cli, "kubernetes.default.svc.cluster.local", "A")[2] == [("kubernetes.default.svc.cluster.local.", "A", "10.96.0.1")]
