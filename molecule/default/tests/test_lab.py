"""The lab itself: hosts boot, the underlay lab/up.yml sets is in place, traffic between the
racks and to the internet segment goes through the router, and nothing leads out of the lab.

These hold before and after converge: the roles own pod routes, never the underlay.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess

from labcheck import ip_json, ping

# Flannel's default cluster CIDR, unless the inventory says otherwise (cluster_cidr).
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"


def router_ip(lab, segment):
    return lab.var("router", "lab_networks")[segment]["router_ip"]


def test_systemd_is_running(host, lab_host):
    h = host(lab_host)
    state = h.run("systemctl is-system-running").stdout.strip()
    assert state == "running", "%s: %s; failed units:\n%s" % (
        lab_host, state, h.run("systemctl --failed --no-legend").stdout)


def test_underlay_unit_enabled_and_applied(host, lab_host):
    h = host(lab_host)
    assert h.run("systemctl is-enabled podnet-lab-net.service").stdout.strip() == "enabled"
    assert h.run("systemctl is-active podnet-lab-net.service").stdout.strip() == "active"


def test_addresses_match_inventory(host, lab, lab_host):
    links = {l["ifname"]: l for l in ip_json(host(lab_host), "-4", "addr", "show")}
    networks = lab.var(lab_host, "lab_networks")
    for link in lab.var(lab_host, "lab_links"):
        prefixlen = int(networks[link["network"]]["subnet"].split("/")[1])
        assert link["ifname"] in links, "%s has no %s" % (lab_host, link["ifname"])
        got = {(a["local"], a["prefixlen"]) for a in links[link["ifname"]]["addr_info"]}
        assert (link["address"], prefixlen) in got, (lab_host, link, got)


def test_node_vars_describe_the_uplink(host, lab, node):
    uplink = lab.var(node, "node_uplink")
    addrs = ip_json(host(node), "-4", "addr", "show", "dev", uplink)[0]["addr_info"]
    assert lab.var(node, "node_ip") in [a["local"] for a in addrs]
    segment = "rack_%s" % lab.var(node, "rack")
    assert lab.var(node, "node_gateway") == router_ip(lab, segment)


DAEMONS = ("bird", "frr", "keepalived", "dnsmasq", "unbound")
# What the roles install (issue 4), plus python3-apt for Ansible's apt module.
PACKAGES = ("iproute2", "iptables", "python3-pyroute2", "bird2", "frr", "keepalived", "dnsmasq",
            "iperf3", "iputils-arping", "tcpdump", "curl", "netcat-openbsd", "procps",
            "iputils-ping", "python3", "systemd", "systemd-sysv", "dbus", "python3-apt",
            "unbound", "bind9-dnsutils")


def test_image_ships_daemons_disabled(host):
    # The client runs no role that enables a daemon, so it shows the image's defaults.
    h = host("client")
    units = " ".join("%s.service" % d for d in DAEMONS)
    enabled = h.run("systemctl is-enabled %s" % units).stdout.split()
    active = h.run("systemctl is-active %s" % units).stdout.split()
    assert enabled == ["disabled"] * len(DAEMONS), dict(zip(DAEMONS, enabled))
    assert "active" not in active, dict(zip(DAEMONS, active))


def test_image_has_the_packages_roles_use(host):
    out = host("client").run(
        "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' %s" % " ".join(PACKAGES)).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    assert not set(PACKAGES) - installed


def test_router_forwards(host):
    assert host("router").check_output("sysctl -n net.ipv4.ip_forward") == "1"


def _cross_rack(host, lab, src, dst, via_segment):
    h = host(src)
    dst_ip = lab.var(dst, "node_ip")
    route = ip_json(h, "route", "get", dst_ip)[0]
    assert route.get("gateway") == router_ip(lab, via_segment), route
    assert ping(h, dst_ip).rc == 0, "%s cannot reach %s" % (src, dst)
    # One hop short of the destination the router itself answers: the path goes through it.
    short = ping(h, dst_ip, ttl=1)
    assert short.rc != 0 and "Time to live exceeded" in short.stdout, short.stdout
    assert router_ip(lab, via_segment) in short.stdout, short.stdout


def test_rack_a_reaches_rack_b_through_the_router(host, lab):
    _cross_rack(host, lab, "node1", "node3", "rack_a")


def test_rack_b_reaches_rack_a_through_the_router(host, lab):
    _cross_rack(host, lab, "node3", "node2", "rack_b")


def test_same_rack_is_one_hop(host, lab):
    assert ping(host("node1"), lab.var("node2", "node_ip"), ttl=1).rc == 0


def test_nodes_and_client_reach_the_internet_host(host, lab):
    inet_ip = lab.var("inet", "lab_ip")
    for name in lab.hosts("nodes:clients"):
        assert ping(host(name), inet_ip).rc == 0, "%s cannot reach inet" % name


def test_internet_host_reaches_node_ips_via_router(host, lab):
    h = host("inet")
    for node in lab.hosts("nodes"):
        route = ip_json(h, "route", "get", lab.var(node, "node_ip"))[0]
        assert route.get("gateway") == router_ip(lab, "internet"), route
        assert ping(h, lab.var(node, "node_ip")).rc == 0, node


def test_internet_host_has_no_route_to_pods(host, lab):
    pod_cidr = ipaddress.ip_network(
        lab.var(lab.hosts("nodes")[0], "cluster_cidr", DEFAULT_CLUSTER_CIDR))
    h = host("inet")
    assert not ip_json(h, "route", "show", "default")
    for address in (pod_cidr[1], pod_cidr[-2]):
        result = h.run("ip route get %s" % address)
        assert result.rc != 0 and "unreachable" in result.stderr, (address, result.stdout)
    for route in ip_json(h, "route", "show"):
        if route["dst"] != "default":
            assert not ipaddress.ip_network(route["dst"]).overlaps(pod_cidr), route


def test_router_has_no_way_out(host):
    # Only its connected segments (and, later, what BGP teaches it): no default route.
    assert not ip_json(host("router"), "route", "show", "default")


def test_lab_networks_are_internal_and_unaddressed_on_this_machine(lab):
    for segment in lab.var("router", "lab_networks"):
        name = lab.network(segment)
        info = json.loads(subprocess.run(
            ["podman", "network", "inspect", name], check=True, capture_output=True, text=True,
        ).stdout)[0]
        assert info["internal"] is True, name
        assert info["dns_enabled"] is False, name
        assert info.get("ipam_options", {}).get("driver") == "none", name
        assert not info.get("subnets"), name
        bridge = info["network_interface"]
        addrs = json.loads(subprocess.run(
            ["ip", "-json", "-4", "addr", "show", "dev", bridge], check=True,
            capture_output=True, text=True,
        ).stdout)
        assert not [a for link in addrs for a in link.get("addr_info", [])], (
            "this machine has an IPv4 address on %s (%s)" % (bridge, name))
