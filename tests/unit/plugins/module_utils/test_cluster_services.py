"""Services in the cluster model: v1 Service parsing as the API server validates and defaults it,
clusterIP / nodePort allocation that never moves a value once given out, EndpointSlices as the
EndpointSlice controller writes them, and the result fed to kube-proxy's ruleset."""
from __future__ import annotations

import copy
import ipaddress
import random

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import build_ruleset
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name

HOSTS = ["node1", "node2", "node3"]
SERVICE_NET = ipaddress.ip_network(c.DEFAULT_SERVICE_CIDR)


def node(name, ip, zone=None):
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels[c.ZONE_LABEL] = zone
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def pod(name, node_name, labels, ip=None, ports=(), namespace="default"):
    """``ports``: container port numbers, or (number, name) / (number, name, protocol) tuples."""
    container_ports = []
    for p in ports:
        p = p if isinstance(p, tuple) else (p,)
        entry = {"containerPort": p[0]}
        if len(p) > 1:
            entry["name"] = p[1]
        if len(p) > 2:
            entry["protocol"] = p[2]
        container_ports.append(entry)
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
           "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x", "ports": container_ports}]}}
    if ip:
        obj["metadata"]["annotations"] = {c.IP_ADDRS_ANNOTATION: '["%s"]' % ip}
    return obj


def service(name, ports=None, namespace="default", status=None, **spec):
    spec.setdefault("ports", ports if ports is not None else [{"port": 80}])
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if status:
        obj["status"] = status
    return obj


def nodes():
    return [node("node1", "172.31.1.11", "zone-a"), node("node2", "172.31.1.12", "zone-b"), node("node3", "172.31.1.13")]


def model(objects, reports=None, **kwargs):
    return c.cluster_services(nodes() + objects, HOSTS, reports=reports, **kwargs)


def by_id(result):
    return dict(("%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]), s) for s in result["services"])


def addresses(result):
    """{id: (clusterIP, {port key: nodePort})}: what must never move."""
    return dict((sid, (entry.get("clusterIP"), entry.get("nodePorts", {}), entry.get("healthCheckNodePort")))
                for sid, entry in result["report"]["services"].items())


def as_reports(result, hosts=tuple(HOSTS)):
    """Every node reports what it applied (the same model)."""
    return dict((h, {"podCIDR": "ignored", "services": copy.deepcopy(result["report"]["services"])}) for h in hosts)


# --- parsing and defaults --------------------------------------------------------------------------

def test_defaults_filled_as_the_api_server_does():
    objects = [service("plain"),
               service("np", type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 8080},
                                                     {"name": "dns", "port": 53, "protocol": "UDP"}]),
               service("sticky", sessionAffinity="ClientIP"),
               service("lb", type="LoadBalancer"),
               service("ext", type="ExternalName", externalName="example.org.", ports=[]),
               service("ips", externalIPs=["192.168.2.50"])]
    got = by_id(model(objects))
    plain = got["default/plain"]["spec"]
    assert plain["type"] == "ClusterIP" and plain["sessionAffinity"] == "None"
    assert plain["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": 80}]
    assert plain["internalTrafficPolicy"] == "Cluster" and "externalTrafficPolicy" not in plain
    assert plain["clusterIPs"] == [plain["clusterIP"]] and plain["ipFamilies"] == ["IPv4"]
    assert got["default/plain"]["status"] == {"loadBalancer": {}}
    np = got["default/np"]["spec"]
    assert np["externalTrafficPolicy"] == "Cluster"
    assert [(p["name"], p["protocol"], p["targetPort"]) for p in np["ports"]] == [("http", "TCP", 8080), ("dns", "UDP", 53)]
    assert got["default/sticky"]["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert got["default/lb"]["spec"]["allocateLoadBalancerNodePorts"] is True
    ext = got["default/ext"]["spec"]
    assert ext == {"type": "ExternalName", "externalName": "example.org.", "sessionAffinity": "None"}
    # externalIPs make a ClusterIP service externally accessible: the external policy applies
    assert got["default/ips"]["spec"]["externalTrafficPolicy"] == "Cluster"


def test_declared_fields_are_kept():
    spec = dict(type="LoadBalancer", clusterIP="10.96.5.5", selector={"app": "web"}, externalTrafficPolicy="Local",
                internalTrafficPolicy="Local", healthCheckNodePort=30111, loadBalancerSourceRanges=[" 192.168.0.0/16"],
                sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
                publishNotReadyAddresses=True,
                ports=[{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080}])
    status = {"loadBalancer": {"ingress": [{"ip": "192.168.2.240"}]}}
    obj = service("web", status=status, **spec)
    obj["metadata"].update(labels={"app": "web"}, annotations={"note": "kept"})
    got = by_id(model([obj]))["default/web"]
    assert got["metadata"] == {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"note": "kept"}}
    assert got["spec"]["clusterIP"] == "10.96.5.5" and got["spec"]["healthCheckNodePort"] == 30111
    assert got["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web", "nodePort": 30080}]
    assert got["spec"]["loadBalancerSourceRanges"] == ["192.168.0.0/16"]
    assert got["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 60}}
    assert got["spec"]["publishNotReadyAddresses"] is True
    assert got["status"] == {"loadBalancer": {"ingress": [{"ip": "192.168.2.240", "ipMode": "VIP"}]}}


def test_a_session_affinity_config_without_affinity_is_dropped():
    # SetDefaults_Service clears it before validation sees it
    got = by_id(model([service("web", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}})]))["default/web"]
    assert got["spec"]["sessionAffinity"] == "None" and "sessionAffinityConfig" not in got["spec"]


def test_load_balancer_ip_becomes_the_ingress_when_no_controller_wrote_one():
    got = by_id(model([service("lb", type="LoadBalancer", loadBalancerIP="192.168.2.241")]))["default/lb"]
    assert got["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.2.241", "ipMode": "VIP"}]


BAD_SERVICES = [
    (dict(ports=[{"name": "a", "port": 80}, {"port": 81}]),
     "spec.ports[1].name: Required value: a Service with more than one port names each one"),
    (dict(ports=[{"port": 0}]), "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    (dict(ports=[{"port": "80"}]), 'spec.ports[0].port: Invalid value: "80": must be between 1 and 65535, inclusive'),
    (dict(ports=[{"port": 80, "protocol": "HTTP"}]),
     'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    (dict(ports=[{"port": 80, "targetPort": "8080"}]),
     'spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)'),
    (dict(ports=[{"port": 80, "targetPort": "a-very-long-port-name"}]),
     'spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": must be no more than 15 characters'),
    (dict(ports=[{"port": 80, "targetPort": 70000}]),
     "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    (dict(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]), 'spec.ports[1].name: Duplicate value: "http"'),
    (dict(ports=[{"name": "Http", "port": 80}]), 'spec.ports[0].name: Invalid value: "Http": must be a lowercase RFC 1123 label'),
    (dict(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]), "spec.ports[1]: Duplicate value: port 80/TCP"),
    (dict(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30001},
                                  {"name": "b", "port": 81, "nodePort": 30001}]),
     "spec.ports[1].nodePort: Duplicate value: 30001"),
    (dict(ports=[{"port": 80, "nodePort": 30001}]),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (dict(type="Internal"),
     'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    (dict(clusterIP="10.96.0.300"), 'spec.clusterIP: Invalid value: "10.96.0.300": must be empty, \'None\', or a valid IP address'),
    (dict(clusterIP="fd00::10"), 'spec.clusterIP: Invalid value: "fd00::10": IPv6 is not supported here (IPv4 only)'),
    (dict(clusterIP="10.96.0.5", clusterIPs=["10.96.0.6"]),
     'spec.clusterIPs[0]: Invalid value: "10.96.0.6": must match `clusterIP` "10.96.0.5"'),
    (dict(clusterIPs=["10.96.0.6", "fd00::6"]), "spec.clusterIPs: Invalid value:"),
    (dict(ipFamilyPolicy="RequireDualStack"), "spec.ipFamilyPolicy: Invalid value:"),
    (dict(type="NodePort", clusterIP="None"),
     'spec.clusterIP: Invalid value: "None": may not be set to \'None\' for NodePort services'),
    (dict(type="ExternalName", externalName="db.example.org", clusterIP="10.96.0.7"),
     "spec.clusterIP: Forbidden: may not be set for ExternalName services"),
    (dict(type="ExternalName", ports=[]), "spec.externalName: Required value"),
    (dict(type="ExternalName", externalName="not_a_host"), 'spec.externalName: Invalid value: "not_a_host"'),
    (dict(ports=[]), "spec.ports: Required value"),
    (dict(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"),
    (dict(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401"),
    (dict(sessionAffinity="Cookie"), 'spec.sessionAffinity: Unsupported value: "Cookie"'),
    (dict(externalIPs=["127.0.0.1"]),
     'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8)'),
    (dict(externalIPs=["169.254.1.1"]),
     'spec.externalIPs[0]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16)'),
    (dict(externalTrafficPolicy="Local"),
     'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'),
    (dict(type="NodePort", externalTrafficPolicy="Nearest"), 'spec.externalTrafficPolicy: Unsupported value: "Nearest"'),
    (dict(internalTrafficPolicy="Nearest"), 'spec.internalTrafficPolicy: Unsupported value: "Nearest"'),
    (dict(type="NodePort", healthCheckNodePort=30200),
     "spec.healthCheckNodePort: Invalid value: 30200: may only be set when `type` is 'LoadBalancer' and "
     "`externalTrafficPolicy` is 'Local'"),
    (dict(type="NodePort", loadBalancerSourceRanges=["10.0.0.0/8"]),
     "spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"),
    (dict(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/33"]),
     'spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value'),
    (dict(allocateLoadBalancerNodePorts=False), "spec.allocateLoadBalancerNodePorts: Forbidden"),
    (dict(type="LoadBalancer", loadBalancerIP="lb.example"), 'spec.loadBalancerIP: Invalid value: "lb.example"'),
    (dict(selector={"app": "not a value"}), 'spec.selector.app: Invalid value: "not a value"'),
]


@pytest.mark.parametrize("spec, message", BAD_SERVICES)
def test_bad_services_name_the_object_and_the_field(spec, message):
    with pytest.raises(c.ClusterError) as err:
        model([service("bad", **spec)])
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("Service default/bad: " + message), text


def test_bad_service_name_and_status():
    with pytest.raises(c.ClusterError, match=r'^Service default/Web: metadata.name: Invalid value: "Web": must be a '
                                             r'lowercase RFC 1035 label'):
        model([service("Web")])
    status = {"loadBalancer": {"ingress": [{"ip": "nope"}]}}
    with pytest.raises(c.ClusterError, match=r'^Service default/lb: status.loadBalancer.ingress\[0\].ip: Invalid value: "nope"'):
        model([service("lb", type="LoadBalancer", status=status)])


# --- allocation: declared, remembered, new -------------------------------------------------------

def test_first_address_is_kubernetes_and_new_values_come_from_the_dynamic_bands():
    objects = [service("kubernetes", ports=[{"name": "https", "port": 443, "targetPort": 6443}]),
               service("kube-dns", namespace="kube-system", clusterIP="10.96.0.10",
                       ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]),
               service("web", type="NodePort")]
    got = by_id(model(objects))
    assert got["default/kubernetes"]["spec"]["clusterIP"] == "10.96.0.1"
    assert got["kube-system/kube-dns"]["spec"]["clusterIP"] == "10.96.0.10"
    web = got["default/web"]["spec"]
    ip = ipaddress.ip_address(web["clusterIP"])
    # the API server's static band (first 256 addresses of a /12, first 86 ports) is left to declared values
    assert ip in SERVICE_NET and int(ip) - int(SERVICE_NET.network_address) > 256
    assert 30086 <= web["ports"][0]["nodePort"] <= 32767


def test_nobody_else_gets_the_kubernetes_address():
    with pytest.raises(c.ClusterError, match=r'^Service default/web: spec.clusterIP: Invalid value: "10.96.0.1": provided IP '
                                             r'is already allocated \(to Service default/kubernetes\)$'):
        model([service("web", clusterIP="10.96.0.1")])
    assert by_id(model([service("kubernetes", clusterIP="10.96.0.1")]))["default/kubernetes"]["spec"]["clusterIP"] == "10.96.0.1"


def test_declared_collisions_name_both_services():
    with pytest.raises(c.ClusterError, match=r'^Service default/b: spec.clusterIP: Invalid value: "10.96.0.50": provided IP '
                                             r'is already allocated \(to Service default/a\)$'):
        model([service("b", clusterIP="10.96.0.50"), service("a", clusterIP="10.96.0.50")])
    # node port numbers are exclusive across services whatever the protocol
    with pytest.raises(c.ClusterError, match=r"^Service default/b: spec.ports\[0\].nodePort: Invalid value: 30080: provided "
                                             r"port is already allocated \(to Service default/a\)$"):
        model([service("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]),
               service("b", type="NodePort", ports=[{"port": 53, "protocol": "UDP", "nodePort": 30080}])])


def test_declared_values_outside_their_range():
    with pytest.raises(c.ClusterError, match=r'^Service default/a: spec.clusterIP: Invalid value: "10.1.0.5": provided IP is '
                                             r'not in the valid range. The range of valid IPs is 10.96.0.0/12$'):
        model([service("a", clusterIP="10.1.0.5")])
    with pytest.raises(c.ClusterError, match=r"provided IP is not in the valid range"):
        model([service("a", clusterIP="10.111.255.255")])      # the broadcast address is never given out
    with pytest.raises(c.ClusterError, match=r"^Service default/a: spec.ports\[0\].nodePort: Invalid value: 40000: provided "
                                             r"port is not in the valid range. The range of valid ports is 30000-32767$"):
        model([service("a", type="NodePort", ports=[{"port": 80, "nodePort": 40000}])])
    got = by_id(model([service("a", type="NodePort", ports=[{"port": 80, "nodePort": 40000}])], node_port_range="40000-40100"))
    assert got["default/a"]["spec"]["ports"][0]["nodePort"] == 40000


def fleet(names, **spec):
    return [service(n, type="NodePort", **spec) for n in names]


def test_adding_removing_and_reordering_services_moves_nothing():
    first = model(fleet(["m", "n", "o"]))
    before = addresses(first)
    objects = fleet(["a", "m", "b", "n", "z"])                  # o removed, others around m and n
    objects.reverse()
    second = model(objects, as_reports(first))
    after = addresses(second)
    assert after["default/m"] == before["default/m"] and after["default/n"] == before["default/n"]
    assert "default/o" not in after
    third = model(fleet(["a", "b", "m", "n", "z", "o"]), as_reports(second))
    assert dict((k, addresses(third)[k]) for k in after) == after


def test_long_history_of_changes_keeps_every_surviving_value():
    rng = random.Random(11)
    names = ["svc%d" % i for i in range(12)]
    result = model(fleet(names))
    for step in range(30):
        previous = addresses(result)
        for _step in range(rng.randint(1, 3)):
            names.pop(rng.randrange(len(names)))
        for k in range(rng.randint(1, 3)):
            names.insert(rng.randrange(len(names) + 1), "new%d-%d" % (step, k))
        rng.shuffle(names)
        result = model(fleet(names), as_reports(result))
        now = addresses(result)
        for sid, value in previous.items():
            if sid in now:
                assert now[sid] == value, (step, sid)
        ips = [v[0] for v in now.values()]
        ports = [p for v in now.values() for p in v[1].values()]
        assert len(set(ips)) == len(ips) and len(set(ports)) == len(ports)


def test_a_small_range_fills_up_without_moving_anyone():
    # a /28 has no static band: 14 addresses, the first is default/kubernetes's
    names = ["s%02d" % i for i in range(13)]
    first = model([service(n) for n in names], service_cidr="10.96.0.0/28")
    ips = set(v[0] for v in addresses(first).values())
    assert len(ips) == 13 and "10.96.0.1" not in ips
    second = model([service(n) for n in reversed(names[1:])] + [service("t00")], as_reports(first), service_cidr="10.96.0.0/28")
    assert addresses(second)["default/t00"][0] == addresses(first)["default/s00"][0]   # the freed one
    with pytest.raises(c.ClusterError, match=r"^Service default/s99: spec.clusterIP: the service CIDR 10.96.0.0/28 has no "
                                             r"free address left$"):
        model([service(n) for n in names + ["s99"]], as_reports(first), service_cidr="10.96.0.0/28")


def test_without_reports_a_new_service_still_leaves_the_others_alone():
    # new values start at a slot derived from the service's own name: no reports needed unless two collide
    before = addresses(model(fleet(["m", "n"])))
    after = addresses(model(fleet(["a", "m", "b", "n"])))
    assert after["default/m"] == before["default/m"] and after["default/n"] == before["default/n"]


def test_a_reported_value_yields_to_a_declared_one():
    first = model(fleet(["a"]))
    ip, ports, _health = addresses(first)["default/a"]
    taken = [service("b", type="NodePort", clusterIP=ip, ports=[{"port": 8080, "nodePort": ports["/TCP"]}])]
    second = model(fleet(["a"]) + taken, as_reports(first))
    now = addresses(second)
    assert now["default/b"] == (ip, {"/TCP": ports["/TCP"]}, None)
    assert now["default/a"][0] != ip and now["default/a"][1]["/TCP"] != ports["/TCP"]
    # and from then on a keeps its new values
    third = model(list(reversed(fleet(["a"]) + taken)), as_reports(second))
    assert addresses(third) == now


def test_declared_values_are_remembered_when_the_declaration_goes():
    first = model([service("a", clusterIP="10.96.0.77", type="NodePort", ports=[{"port": 80, "nodePort": 30077}])])
    second = model(fleet(["a"]), as_reports(first))
    assert addresses(second)["default/a"] == ("10.96.0.77", {"/TCP": 30077}, None)


def test_nodes_reports_are_merged_the_same_way_on_every_node():
    first = model(fleet(["a"]))
    ip, ports, _health = addresses(first)["default/a"]
    stale = {"services": {"default/a": {"clusterIP": "10.96.200.1", "nodePorts": {"/TCP": 31999}}}}
    reports = {"node1": as_reports(first)["node1"], "node2": as_reports(first)["node2"], "node3": stale}
    got = addresses(model(fleet(["a"]), reports))["default/a"]
    assert got == (ip, ports, None)                               # two nodes against one
    reordered = dict(reversed(list(reports.items())))
    assert addresses(model(fleet(["a"]), reordered))["default/a"] == got
    # a tie goes to the lowest value; unreadable reports are no reports
    tie = {"node1": {"services": {"default/a": {"clusterIP": "10.100.0.9", "nodePorts": {"/TCP": 31000}}}},
           "node2": {"services": {"default/a": {"clusterIP": "10.100.0.8", "nodePorts": {"/TCP": 31001}}}},
           "node3": {"services": {"default/a": {"clusterIP": "garbage", "nodePorts": {"/TCP": "x"}}}}}
    assert addresses(model(fleet(["a"]), tie))["default/a"] == ("10.100.0.8", {"/TCP": 31000}, None)
    assert c.merge_service_reports({"node1": {"services": "nonsense"}, "node2": None}) == {}


def test_a_reported_value_outside_the_range_is_not_kept():
    reports = {"node1": {"services": {"default/a": {"clusterIP": "10.200.0.1", "nodePorts": {"/TCP": 40000}}}}}
    ip, ports, _health = addresses(model(fleet(["a"]), reports))["default/a"]
    assert ipaddress.ip_address(ip) in SERVICE_NET and 30000 <= ports["/TCP"] <= 32767


def test_same_port_number_on_two_protocols_shares_one_node_port():
    dns = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}, {"name": "metrics", "port": 9153}]
    got = by_id(model([service("dns", type="NodePort", ports=dns)]))["default/dns"]["spec"]["ports"]
    assert got[0]["nodePort"] == got[1]["nodePort"] != got[2]["nodePort"]
    declared = copy.deepcopy(dns)
    declared[1]["nodePort"] = 30053
    got = by_id(model([service("dns", type="NodePort", ports=declared)]))["default/dns"]["spec"]["ports"]
    assert got[0]["nodePort"] == got[1]["nodePort"] == 30053


def test_load_balancers_node_ports_and_health_check_port():
    objects = [service("lb", type="LoadBalancer", externalTrafficPolicy="Local"),
               service("bare", type="LoadBalancer", allocateLoadBalancerNodePorts=False, externalTrafficPolicy="Local")]
    first = model(objects)
    got = by_id(first)
    assert "nodePort" in got["default/lb"]["spec"]["ports"][0]
    assert "nodePort" not in got["default/bare"]["spec"]["ports"][0]
    checks = [got[s]["spec"]["healthCheckNodePort"] for s in ("default/lb", "default/bare")]
    assert all(30000 <= p <= 32767 for p in checks) and len(set(checks)) == 2
    second = model(list(reversed(objects)) + fleet(["x", "y"]), as_reports(first))
    assert dict((k, addresses(second)[k]) for k in addresses(first)) == addresses(first)


def test_headless_and_external_name_services_get_no_address():
    result = model([service("db", clusterIP="None", ports=[]), service("ext", type="ExternalName", externalName="a.example")])
    assert by_id(result)["default/db"]["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in by_id(result)["default/ext"]["spec"]
    assert result["report"] == {"services": {}}


def test_node_port_range_and_service_cidr_must_be_readable():
    with pytest.raises(c.ClusterError, match=r"^cluster: node port range '30000:32767' is not first-last"):
        model([], node_port_range="30000:32767")
    with pytest.raises(c.ClusterError, match=r"^cluster: service CIDR"):
        model([], service_cidr="10.96.0.1/12")


# --- EndpointSlices ----------------------------------------------------------------------------------

def web_cluster():
    return [
        pod("web-1", "node1", {"app": "web"}, ip="10.244.0.11", ports=[(8080, "http"), (9000, "metrics")]),
        pod("web-2", "node2", {"app": "web"}, ports=[(8081, "http")]),                  # IP reported below
        pod("web-3", "node3", {"app": "web"}, ip="10.244.2.13", ports=[(9000, "metrics")]),  # no "http" port
        pod("web-4", "node3", {"app": "web"}, ports=[(8080, "http")]),                  # not wired: no IP yet
        pod("web-x", "node1", {"app": "web"}, ip="10.244.0.99", ports=[(8080, "http")], namespace="other"),
        pod("db-1", "node2", {"app": "db"}, ip="10.244.1.20", ports=[5432]),
        service("web", selector={"app": "web"},
                ports=[{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9000}]),
    ]


REPORTS = {"node2": {"podCIDR": "10.244.1.0/24", "podIPs": {"default/web-2": "10.244.1.12"}}}


def endpoints_of(result, service_name):
    out = {}
    for sl in result["endpoint_slices"]:
        if sl["metadata"]["labels"][c.SERVICE_NAME_LABEL] != service_name:
            continue
        ports = tuple((p["name"], p["port"], p["protocol"]) for p in sl["ports"])
        for ep in sl["endpoints"]:
            out[ep["targetRef"]["name"] if "targetRef" in ep else ep["addresses"][0]] = (ep["addresses"][0], ports)
    return out


def test_slices_hold_the_selected_pods_with_their_resolved_ports():
    result = model(web_cluster(), REPORTS)
    assert endpoints_of(result, "web") == {
        "web-1": ("10.244.0.11", (("http", 8080, "TCP"), ("metrics", 9000, "TCP"))),
        "web-2": ("10.244.1.12", (("http", 8081, "TCP"), ("metrics", 9000, "TCP"))),
        # a numeric targetPort is taken as it is; the pod without an "http" port is left out of that port only
        "web-3": ("10.244.2.13", (("metrics", 9000, "TCP"),)),
    }
    [first] = [sl for sl in result["endpoint_slices"] if sl["endpoints"][0]["targetRef"]["name"] == "web-1"]
    assert first["apiVersion"] == "discovery.k8s.io/v1" and first["addressType"] == "IPv4"
    assert first["metadata"]["namespace"] == "default" and first["metadata"]["labels"] == {
        c.SERVICE_NAME_LABEL: "web", c.MANAGED_BY_LABEL: c.SLICE_CONTROLLER}
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert first["endpoints"] == [{"addresses": ["10.244.0.11"], "conditions": {"ready": True, "serving": True, "terminating": False},
                                   "nodeName": "node1", "zone": "zone-a",
                                   "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"}}]


def test_slices_do_not_depend_on_manifest_order_and_names_are_stable():
    result = model(web_cluster(), REPORTS)
    again = model(list(reversed(web_cluster())), REPORTS)
    assert result["endpoint_slices"] == again["endpoint_slices"]
    assert all(sl["metadata"]["name"].startswith("web-") and len(sl["metadata"]["name"]) <= 63 for sl in result["endpoint_slices"])
    assert len(set(sl["metadata"]["name"] for sl in result["endpoint_slices"])) == len(result["endpoint_slices"])


def test_named_port_matches_the_protocol_too():
    objects = [pod("dns-1", "node1", {"app": "dns"}, ip="10.244.0.53", ports=[(53, "dns", "UDP"), (5353, "dns")]),
               service("dns", selector={"app": "dns"}, ports=[{"name": "udp", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                                                              {"name": "tcp", "port": 53, "targetPort": "dns"}])]
    assert endpoints_of(model(objects), "dns") == {"dns-1": ("10.244.0.53", (("udp", 53, "UDP"), ("tcp", 5353, "TCP")))}


def test_a_named_target_port_no_selected_pod_declares_is_an_error():
    objects = web_cluster()
    objects[-1]["spec"]["ports"][0]["targetPort"] = "htttp"
    with pytest.raises(c.ClusterError, match=r'^Service default/web: spec.ports\[0\].targetPort: "htttp": no selected pod '
                                             r'declares a TCP container port of that name \(selected: default/web-1, '
                                             r'default/web-2, default/web-3, default/web-4\)$'):
        model(objects)


def test_a_selector_matching_nothing_gives_no_slices():
    result = model([service("empty", selector={"app": "none"}, ports=[{"port": 80, "targetPort": "http"}])])
    assert result["endpoint_slices"] == []


def test_headless_services_get_slices_external_names_do_not():
    objects = [pod("db-1", "node2", {"app": "db"}, ip="10.244.1.20", ports=[5432]),
               service("db", clusterIP="None", selector={"app": "db"}, ports=[{"port": 5432}]),
               service("alias", type="ExternalName", externalName="db.example.org", selector={"app": "db"}, ports=[])]
    result = model(objects)
    [sl] = result["endpoint_slices"]
    assert sl["metadata"]["labels"][c.HEADLESS_LABEL] == "" and sl["metadata"]["labels"][c.SERVICE_NAME_LABEL] == "db"


def test_pod_hostname_under_its_subdomain_service():
    objects = [pod("db-0", "node1", {"app": "db"}, ip="10.244.0.30"), pod("db-1", "node2", {"app": "db"}, ip="10.244.1.31"),
               service("db", clusterIP="None", selector={"app": "db"}, ports=[{"port": 5432}])]
    objects[0]["spec"].update(hostname="db-0", subdomain="db")
    objects[1]["spec"].update(hostname="db-1", subdomain="other")
    [sl] = model(objects)["endpoint_slices"]
    assert [ep.get("hostname") for ep in sl["endpoints"]] == ["db-0", None]
    objects[0]["spec"]["hostname"] = "DB_0"
    with pytest.raises(c.ClusterError, match=r'^Pod default/db-0: spec.hostname: Invalid value: "DB_0"'):
        model(objects)


def test_more_than_a_hundred_endpoints_are_split_into_slices():
    objects = [pod("p%03d" % i, HOSTS[i % 3], {"app": "big"}, ip="10.244.%d.%d" % (i // 200, 2 + i % 200)) for i in range(230)]
    objects.append(service("big", selector={"app": "big"}))
    slices = model(objects)["endpoint_slices"]
    assert [len(sl["endpoints"]) for sl in slices] == [100, 100, 30]


def outside_slice(service_name="internet", **extra):
    obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": service_name + "-1", "namespace": "default",
                        "labels": {c.SERVICE_NAME_LABEL: service_name}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": ["203.0.113.10"], "conditions": {"ready": True}}],
           "ports": [{"name": "http", "port": 8080}]}
    obj.update(extra)
    return obj


def test_a_service_without_selector_takes_the_declared_slices():
    result = model([service("internet", ports=[{"name": "http", "port": 80}]), outside_slice()])
    [sl] = result["endpoint_slices"]
    assert sl == {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "internet-1", "namespace": "default", "labels": {c.SERVICE_NAME_LABEL: "internet"}},
                  "addressType": "IPv4",
                  "endpoints": [{"addresses": ["203.0.113.10"], "conditions": {"ready": True}}],
                  "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["metadata"].update(labels={}),
     "EndpointSlice default/internet-1: metadata.labels.kubernetes.io/service-name: Required value"),
    (lambda s: s.update(addressType="IPv6"),
     'EndpointSlice default/internet-1: addressType: Unsupported value: "IPv6": supported values: "IPv4"'),
    (lambda s: s["endpoints"][0].update(addresses=["127.0.0.1"]),
     'EndpointSlice default/internet-1: endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range'),
    (lambda s: s["endpoints"][0].update(addresses=[]),
     "EndpointSlice default/internet-1: endpoints[0].addresses: Required value"),
    (lambda s: s["ports"][0].update(port=0),
     "EndpointSlice default/internet-1: ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    (lambda s: s.update(apiVersion="v1"), "EndpointSlice default/internet-1: apiVersion 'v1' is not discovery.k8s.io/v1"),
    (lambda s: s["metadata"]["labels"].update({c.SERVICE_NAME_LABEL: "intranet"}),
     "EndpointSlice default/internet-1: metadata.labels.kubernetes.io/service-name: Service default/intranet is not declared"),
])
def test_bad_declared_slices(mutate, message):
    sl = outside_slice()
    mutate(sl)
    with pytest.raises(c.ClusterError) as err:
        model([service("internet", ports=[{"name": "http", "port": 80}]), sl])
    assert str(err.value).startswith(message), str(err.value)


# --- into kube-proxy ----------------------------------------------------------------------------

NODE_VIEW = {"name": "node1", "node_ip": "172.31.1.11", "cluster_cidr": "10.244.0.0/16"}


def dnat_targets(rs, chain):
    """The ip:port each KUBE-SEP chain a service chain jumps to DNATs to."""
    out = []
    for rule in rs.chain("nat", chain).rules:
        if "-j KUBE-SEP-" in rule:
            sep = rule.split("-j ")[-1]
            [dnat] = [r for r in rs.chain("nat", sep).rules if "DNAT" in r]
            out.append(dnat.split("--to-destination ")[1])
    return out


def test_the_model_is_what_build_ruleset_takes():
    objects = web_cluster() + [service("internet", ports=[{"name": "http", "port": 80}]), outside_slice(),
                               service("front", type="NodePort", selector={"app": "web"},
                                       ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}])]
    result = model(objects, REPORTS)
    rs = build_ruleset(result["services"], result["endpoint_slices"], NODE_VIEW)
    web_http = kube_chain_name("KUBE-SVC-", "default/web:http", "tcp")
    assert dnat_targets(rs, web_http) == ["10.244.0.11:8080", "10.244.1.12:8081"]   # not web-3 (no such port), not web-4
    web_metrics = kube_chain_name("KUBE-SVC-", "default/web:metrics", "tcp")
    assert dnat_targets(rs, web_metrics) == ["10.244.0.11:9000", "10.244.1.12:9000", "10.244.2.13:9000"]
    assert dnat_targets(rs, kube_chain_name("KUBE-SVC-", "default/internet:http", "tcp")) == ["203.0.113.10:8080"]
    web_ip = by_id(result)["default/web"]["spec"]["clusterIP"]
    services_rules = rs.chain("nat", "KUBE-SERVICES").rules
    assert any("-d %s --dport 80 -j %s" % (web_ip, web_http) in r for r in services_rules)
    front_ext = kube_chain_name("KUBE-EXT-", "default/front:http", "tcp")
    assert any("--dport 30080 -j " + front_ext in r for r in rs.chain("nat", "KUBE-NODEPORTS").rules)
    # the endpoint chains carry kube-proxy's own names for them
    sep = kube_chain_name("KUBE-SEP-", "default/web:http", "tcp", "10.244.0.11:8080")
    assert rs.chain("nat", sep).rules[-1].endswith("-j DNAT --to-destination 10.244.0.11:8080")


def test_a_service_whose_pods_are_not_wired_yet_rejects():
    result = model([pod("web-4", "node3", {"app": "web"}, ports=[(8080, "http")]),
                    service("web", selector={"app": "web"}, ports=[{"port": 80, "targetPort": "http"}])])
    rs = build_ruleset(result["services"], result["endpoint_slices"], NODE_VIEW)
    assert any("default/web has no endpoints" in r and "-j REJECT" in r for r in rs.chain("filter", "KUBE-SERVICES").rules)


# --- the filter -----------------------------------------------------------------------------------

def test_filter_is_registered_and_reports_bad_input_as_a_filter_error():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.podnet.fabric.plugins.filter.services import FilterModule

    cluster_services = FilterModule().filters()["cluster_services"]
    got = cluster_services(nodes() + web_cluster(), HOSTS, "10.96.0.0/12", "30000-32767", REPORTS)
    assert got == model(web_cluster(), REPORTS)
    with pytest.raises(AnsibleFilterError, match=r"^cluster_services: Service default/bad: spec.ports\[0\].port"):
        cluster_services(nodes() + [service("bad", ports=[{"port": 0}])], HOSTS)
