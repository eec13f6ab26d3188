"""The load balancer's node plan (plugins/module_utils/load_balancer.py) and its keepalived
configuration (plugins/module_utils/keepalived.py): MetalLB's announcer order as VRRP priorities."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import cluster as c
from ansible_collections.podnet.fabric.plugins.module_utils import keepalived as k
from ansible_collections.podnet.fabric.plugins.module_utils import load_balancer as lb
from ansible_collections.podnet.fabric.plugins.module_utils import metallb as m
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

from .test_metallb import HOSTS, l2, lb as lb_service, nodes, pod, pool


def objects(**svc_spec):
    return nodes() + [
        pool("lab", "172.31.1.240/29"), l2("rack-a", nodeSelectors=[{"matchLabels": {"rack": "b"}}]),
        pod("web-1", "node1", "10.244.0.5"), pod("web-2", "node2", "10.244.1.5"), pod("web-3", "node3", "10.244.2.5"),
        lb_service("web-lb", **svc_spec),
        lb_service("web-local", externalTrafficPolicy="Local", selector={"app": "web", "tier": "x"}),
        pod("x-3", "node3", "10.244.2.9", labels={"app": "web", "tier": "x"}),
    ]


def plan(me, objs=None, **settings):
    return lb.node_plan(objs or objects(), me, HOSTS, {}, settings)


def test_vrrp_priorities_follow_metallbs_order_and_every_node_agrees():
    anns = plan("node1")["announcements"]
    web = [a for a in anns if a["service"] == "default/web-lb"][0]
    assert web["ip"] == "172.31.1.240" and web["nodes"] == m.announce_order(["node2", "node3"], "172.31.1.240")
    first, second = web["nodes"]
    one, two = plan(first)["instances"], plan(second)["instances"]
    shared = [i for i in one if "172.31.1.240" in i["vips"]][0]
    other = [i for i in two if "172.31.1.240" in i["vips"]][0]
    assert shared["vrid"] == other["vrid"] and shared["priority"] == 200 and other["priority"] == 190
    assert plan("node1")["instances"] == [] and plan("node1")["keepalived"] == []   # rack b only
    # Local: only node3 has an endpoint of web-local
    local = [a for a in anns if a["service"] == "default/web-local"][0]
    assert local["nodes"] == ["node3"]
    assert all(local["ip"] not in i["vips"] for i in plan("node2")["instances"])


def configs(me, **settings):
    return dict((c["name"], c["config"]) for c in plan(me, **settings)["keepalived"])


def test_one_keepalived_per_instance_vrrpv3_unicast_nopreempt_and_later_starts_down_the_order():
    instances = plan("node3")["instances"]
    texts = configs("node3")
    assert sorted(texts) == sorted("load_balancer-vi%d" % i["vrid"] for i in instances) and len(texts) == 2
    for inst in instances:
        text = texts["load_balancer-vi%d" % inst["vrid"]]
        assert "vrrp_version 3" in text and "state BACKUP" in text and "nopreempt" in text
        assert "advert_int 0.2\n" in text and "router_id node3-%d" % inst["vrid"] in text
        assert "%s/32 dev eth0 label eth0:lb" % inst["vips"][0] in text
        position = inst["nodes"].index("node3")
        # the second candidate starts 2 s later, so a simultaneous start elects the first
        assert ("vrrp_startup_delay %g" % (2.0 * position) in text) == bool(position)
        if len(inst["nodes"]) > 1:
            assert "unicast_src_ip 172.31.1.13" in text and "unicast_peer {\n        172.31.1.12\n    }" in text
        else:
            # a single candidate (web-local on node3): no unicast settings (keepalived refuses a
            # unicast source without peers)
            assert "unicast" not in text
    assert all("dev wlan0 label wlan0:lb" in t for t in configs("node3", interface="wlan0").values())
    assert all("advert_int 1\n" in t for t in configs("node3", keepalived={"advert_int": 1}).values())


def test_arp_mode_puts_each_vip_on_its_announcer_only():
    anns = plan("node1", mode="arp")["announcements"]
    owners = dict((a["ip"], a["nodes"][0]) for a in anns)
    for me in HOSTS:
        got = plan(me, mode="arp")
        assert got["keepalived"] == [] and got["interfaces"] == []
        assert sorted(v["address"] for v in got["vips"]) == sorted(ip for ip, n in owners.items() if n == me)
    assert plan("node2", mode="arp")["pools"] == ["172.31.1.240-172.31.1.247"]


def test_router_ids_are_unique_and_stable():
    many = [{"ip": "10.0.0.%d" % i, "nodes": ["a", "b"] if i % 2 else ["b", "a"], "node_interfaces": {}}
            for i in range(1, 40)] + [{"ip": "10.0.1.%d" % i, "nodes": ["n%d" % i], "node_interfaces": {}}
                                      for i in range(200)]
    groups = k.groups(many)
    assert len(groups) == 202 and len(set(g["vrid"] for g in groups)) == 202
    assert all(1 <= g["vrid"] <= 255 for g in groups)
    assert k.groups(list(reversed(many))) == groups
    with pytest.raises(FabricError, match="at most 255"):
        k.groups(many + [{"ip": "10.0.2.%d" % i, "nodes": ["m%d" % i]} for i in range(60)])


def test_interfaces_metallb_skips_are_skipped():
    objs = objects()
    objs[4]["spec"]["interfaces"] = ["cni0", "eth1"]        # the L2Advertisement
    assert all(i["interface"] == "eth1" for i in plan("node3", objs)["instances"])
    objs[4]["spec"]["interfaces"] = ["veth1234"]
    assert all(i["interface"] == "eth0" for i in plan("node3", objs)["instances"])
    with pytest.raises(FabricError, match="cni0 is an interface MetalLB never announces on"):
        plan("node3", interface="cni0")


def test_bad_settings_are_one_line():
    with pytest.raises(c.ClusterError, match="mode 'bgp' is not vrrp or arp"):
        plan("node1", mode="bgp")
    with pytest.raises(FabricError, match="advert_int 0.001 is not within"):
        plan("node3", keepalived={"advert_int": 0.001})
    with pytest.raises(c.ClusterError, match="unknown setting"):
        plan("node1", typo=1)
