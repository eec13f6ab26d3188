"""veth core without a kernel: pairing by netnsid, ownership, plan order, honest gateway diff,
the planning Snapshot."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import veth
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

from .fake_netlink import FakeIPR, Msg


def view(index, kind="veth", link_index=None, link_netnsid=None, alias=None, name="x"):
    return {"index": index, "name": name, "kind": kind, "link_index": link_index, "link_netnsid": link_netnsid, "alias": alias}


def test_paired_uses_the_peers_netnsid_not_a_guess_from_indexes():
    host = view(7, link_index=2, link_netnsid=3)
    assert veth.paired(host, view(2), nsid=3)
    # Same index, but the host end points into another namespace: not this pair.
    assert not veth.paired(host, view(2), nsid=4)
    assert not veth.paired(host, view(5), nsid=3)
    assert not veth.paired(host, view(2, kind="bridge"), nsid=3)
    # Both ends in one namespace: each end's IFLA_LINK is the other's index, no netnsid.
    assert veth.paired(view(7, link_index=8), view(8, link_index=7), nsid=None)
    assert not veth.paired(view(7, link_index=8, link_netnsid=0), view(8, link_index=7), nsid=None)


def test_normalize_checks_the_gateway_against_the_pods_subnet():
    spec = veth.normalize({"name": "v0", "peer_netns": "pod", "addresses": ["10.244.1.2/24"], "gateway": "10.244.1.1"})
    assert spec["peer"] == "eth0" and spec["gateway"]["dest"] == "0.0.0.0/0" and spec["gateway"]["gateway"] == "10.244.1.1"
    with pytest.raises(FabricError, match=r"^veth v0: gateway 10.9.0.1 is not in the subnet"):
        veth.normalize({"name": "v0", "addresses": ["10.244.1.2/24"], "gateway": "10.9.0.1", "peer": "p0"})
    with pytest.raises(FabricError, match=r"^veth v0: hairpin needs a bridge$"):
        veth.normalize({"name": "v0", "peer": "p0", "hairpin": True})
    with pytest.raises(FabricError, match=r"^veth v0: peer has the same name in the same namespace$"):
        veth.normalize({"name": "v0", "peer": "v0"})


def node():
    ipr = FakeIPR()
    ipr.add_link("lo")
    ipr.add_link("cni0", kind="bridge", alias="podnet.fabric:a")
    return ipr


def add_pair(ipr, host, peer, alias="podnet.fabric:a"):
    h = ipr.add_link(host, kind="veth", alias=alias)
    p = ipr.add_link(peer, kind="veth", alias=alias)
    ipr.links[h - 1]["attrs"].append(("IFLA_LINK", p))
    ipr.links[p - 1]["attrs"].append(("IFLA_LINK", h))
    return h, p


def test_new_pair_is_created_in_one_request_and_nothing_irreversible_comes_first():
    ipr = node()
    spec = veth.normalize({"name": "v0", "peer": "p0", "mtu": 1450, "mac": "0a:58:0a:f4:01:02", "bridge": "cni0", "hairpin": True})
    plan = veth.plan(ipr, [spec], "a")
    assert plan.descriptions[0] == "create veth v0 with peer p0 in netns (host), mtu 1450, mac 0a:58:0a:f4:01:02, bridge cni0"
    assert "set veth v0 alias podnet.fabric:a, up" in plan.descriptions
    assert plan.irreversible_last()
    plan.actions[0].do()
    (_command, kw), = [c for c in ipr.requests("link") if c[0] == "add"]
    assert kw["peer"]["mtu"] == 1450 and kw["peer"]["address"] == "0a:58:0a:f4:01:02" and kw["master"] == 2


def test_purge_deletes_only_the_owners_undeclared_veths_last():
    ipr = node()
    add_pair(ipr, "vmine0", "pmine0")
    add_pair(ipr, "vother0", "pother0", alias="podnet.fabric:b")
    add_pair(ipr, "vold0", "pold0", alias="podnet.fabric")
    add_pair(ipr, "vuser0", "puser0", alias=None)
    keep = veth.normalize({"name": "vnew0", "peer": "pnew0"})
    plan = veth.plan(ipr, [keep], "a", purge=True)
    deletes = [d for d in plan.descriptions if d.startswith("delete")]
    # The peer ends carry the owner's alias too, so both ends of a pair are the owner's.
    assert deletes == ["delete veth pmine0", "delete veth vmine0"]
    assert plan.irreversible_last()


def test_another_owners_pair_is_refused_naming_both():
    ipr = node()
    add_pair(ipr, "v0", "p0", alias="podnet.fabric:b")
    with pytest.raises(FabricError, match=r"^veth v0: belongs to owner b, not to owner a; refusing to take it over$"):
        veth.plan(ipr, [veth.normalize({"name": "v0", "peer": "p0"})], "a")


def test_converged_pair_plans_nothing_and_diffs_nothing():
    ipr = node()
    add_pair(ipr, "v0", "p0")
    plan = veth.plan(ipr, [veth.normalize({"name": "v0", "peer": "p0"})], "a")
    assert plan.descriptions == []
    assert plan.before == plan.after


class CountingIPR(FakeIPR):
    def __init__(self):
        FakeIPR.__init__(self)
        self.dumps = []
        self.lookups = 0

    def get_links(self, *indexes):
        self.dumps.append(("links", indexes))
        return FakeIPR.get_links(self, *indexes)

    def get_routes(self, family=None, **kw):
        self.dumps.append(("routes", family))
        return FakeIPR.get_routes(self, family=family or None, **kw)  # AF_UNSPEC: every family

    def link_lookup(self, ifname):
        self.lookups += 1
        return FakeIPR.link_lookup(self, ifname)


def test_snapshot_dumps_once_while_planning_then_asks_the_kernel_again():
    ipr = CountingIPR()
    ipr.add_link("lo")
    ipr.add_route("10.0.0.0/24", oif=1)
    ipr.add_route("fd00::/64", oif=1)
    snap = veth.Snapshot(ipr)
    assert len(snap.get_links()) == len(snap.get_links()) == 1
    assert [m["family"] for m in snap.get_routes(family=2)] == [2]
    assert [m["family"] for m in snap.get_routes(family=10)] == [10]
    assert ipr.dumps == [("links", ()), ("routes", 0)]  # both families from one request
    snap.drop()
    snap.get_links()
    assert ipr.dumps[-1] == ("links", ())


def test_snapshot_remembers_indexes_until_a_link_is_deleted_or_renamed():
    ipr = CountingIPR()
    ipr.add_link("lo")
    ipr.add_link("v0", kind="veth")
    snap = veth.Snapshot(ipr)
    assert snap.link_lookup(ifname="v0") == snap.link_lookup(ifname="v0") == [2]
    assert ipr.lookups == 1
    assert snap.link_lookup(ifname="missing") == [] and snap.link_lookup(ifname="missing") == []
    assert ipr.lookups == 3  # a miss is not remembered (the link may be created next)
    snap.link("set", index=2, mtu=1400)
    snap.link_lookup(ifname="v0")
    assert ipr.lookups == 3
    snap.link("set", index=2, ifname="v1")
    snap.link_lookup(ifname="v0")
    assert ipr.lookups == 4


def test_snapshot_passes_everything_else_through():
    ipr = FakeIPR()
    snap = veth.Snapshot(ipr)
    snap.addr("add", index=1, address="10.0.0.1", prefixlen=24)
    assert ipr.requests("addr") == [("add", {"index": 1, "address": "10.0.0.1", "prefixlen": 24})]
    assert isinstance(Msg(), dict)
