"""pods core without a kernel: parameters, stable names and MACs, IPAM through the ipam core."""
from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import pods
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError


def params(pod_list, **extra):
    out = {"bridge": "cni0", "manage_bridge": True, "gateway": None, "mtu": 1450, "hairpin": True,
           "ipam": {"subnet": "10.244.1.0/24", "range_start": None, "range_end": None, "network": None, "data_dir": "/nonexistent"},
           "pods": [dict({"veth": None, "ifname": "eth0", "addresses": None, "mtu": None, "mac": None, "hairpin": None}, **p) for p in pod_list]}
    out.update(extra)
    return out


def test_names_and_macs_are_stable_and_fit_the_kernel():
    name = pods.veth_name("pod-default-web-1")
    assert name == pods.veth_name("pod-default-web-1") and name.startswith("veth") and len(name) == 12
    assert name != pods.veth_name("pod-default-web-2")
    assert pods.mac_for(ipaddress.ip_address("10.244.1.2")) == "0a:58:0a:f4:01:02"


def test_normalize_defaults_from_the_task_and_the_ipam_range():
    cfg = pods.normalize(params([{"name": "p1"}, {"name": "p2", "mtu": 1400, "hairpin": False, "addresses": ["10.244.1.50/24"]}]))
    assert cfg["gateway"] == "10.244.1.1"
    assert cfg["ipam"]["directory"] == "/nonexistent/cni0"
    p1, p2 = cfg["pods"]
    assert (p1["mtu"], p1["hairpin"], p1["addresses"], p1["ifname"]) == (1450, True, None, "eth0")
    assert (p2["mtu"], p2["hairpin"], p2["addresses"]) == (1400, False, ["10.244.1.50/24"])


@pytest.mark.parametrize("pod_list,extra,message", [
    ([{"name": "p1"}, {"name": "p1"}], {}, "pod p1: declared twice"),
    ([{"name": "p1", "veth": "v0"}, {"name": "p2", "veth": "v0"}], {}, "pod p2: veth v0 is declared for another pod too"),
    ([{"name": "p1"}], {"ipam": None}, "pod p1: has no addresses and the task has no ipam to allocate one from"),
    ([{"name": "a/b"}], {}, "netns 'a/b': invalid name"),
    ([{"name": "p1", "mac": "01:00:5e:00:00:01"}], {}, "pod p1 mac: 01:00:5e:00:00:01 is a multicast MAC address"),
])
def test_bad_input_is_one_line_naming_the_pod(pod_list, extra, message):
    with pytest.raises(FabricError) as err:
        pods.normalize(params(pod_list, **extra))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_ipam_allocates_through_the_ipam_core_and_reserves_fixed_addresses(tmp_path):
    cfg = pods.normalize(params([{"name": "p1"}, {"name": "p2", "addresses": ["10.244.1.9/24"]}, {"name": "p3"}],
                                ipam={"subnet": "10.244.1.0/24", "range_start": None, "range_end": None, "network": "n",
                                      "data_dir": str(tmp_path)}))
    sub, allocated = pods.plan_ipam(cfg, cfg["pods"], "a", purge=False)
    assert allocated == {"p1": "10.244.1.2/24", "p3": "10.244.1.3/24"}
    assert not (tmp_path / "n").exists(), "planning wrote nothing"
    sub.apply()
    assert sorted(p.name for p in (tmp_path / "n").iterdir() if p.name[0].isdigit()) == ["10.244.1.2", "10.244.1.3", "10.244.1.9"]
    again, allocated2 = pods.plan_ipam(cfg, cfg["pods"], "a", purge=False)
    assert allocated2 == allocated and not again.changed
