"""vip_arp without a kernel: labels, input checks, ARP bytes, and the plan against a fake kernel."""
from __future__ import annotations

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import vip_arp as v
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.modules import vip_arp as module

MAC = "02:00:00:00:00:01"
OTHER_MAC = "02:00:00:00:00:99"


# --- ownership labels ------------------------------------------------------------------------------

def test_owner_tag_is_stable_short_and_per_owner():
    tag = v.owner_tag("loadbalancer")
    assert tag == v.owner_tag("loadbalancer") and len(tag) == 5 and tag.startswith("v")
    assert v.owner_tag("loadbalancer") != v.owner_tag("other")
    assert v.tag_of_label("eth0:" + tag) == tag


def test_labels_fit_the_kernel_and_keep_the_tag_for_long_names():
    tag = v.owner_tag("lb")
    assert v.label_for("eth0", "lb") == "eth0:" + tag
    long_label = v.label_for("wlx001122334455", "lb")
    assert len(long_label) == 15 and long_label == "wlx001122:" + tag
    assert v.tag_of_label(long_label) == tag


@pytest.mark.parametrize("label", [None, "", "eth0", "eth0:1", "eth0:vip1", "eth0:vip12x", "eth0:xabcd", "eth0:vAB!d"])
def test_user_labels_are_never_taken_for_an_owner_tag(label):
    assert v.tag_of_label(label) is None


# --- input -----------------------------------------------------------------------------------------

def test_parse_vip_accepts_bare_and_host_addresses():
    assert v.parse_vip("192.0.2.10") == "192.0.2.10"
    assert v.parse_vip(" 192.0.2.10/32 ") == "192.0.2.10"


@pytest.mark.parametrize("bad,reason", [
    ("192.0.2.300", "not an IPv4 address"),
    ("nonsense", "not an IPv4 address"),
    ("192.0.2.0/24", "not an IPv4 address"),
    ("2001:db8::1", "IPv6 addresses are announced with NDP"),
    ("224.0.0.5", "multicast"),
    ("0.0.0.0", "unspecified"),
])
def test_parse_vip_rejects_with_one_line_naming_the_vip(bad, reason):
    with pytest.raises(FabricError) as err:
        v.parse_vip(bad)
    text = str(err.value)
    assert text.startswith("vip %s:" % bad) and reason in text and "\n" not in text


def test_pools_cidrs_and_ranges():
    pools = v.parse_pools(["192.0.2.0/28", "10.1.0.10 - 10.1.0.20", "2001:db8::/64"])
    assert v.in_pools("192.0.2.15", pools) and not v.in_pools("192.0.2.16", pools)
    assert v.in_pools("10.1.0.10", pools) and v.in_pools("10.1.0.20", pools) and not v.in_pools("10.1.0.21", pools)
    assert v.in_pools("198.51.100.1", None)


@pytest.mark.parametrize("bad", ["10.1.0.20-10.1.0.10", "10.1.0.300/24", "10.0.0.1-2001:db8::1", "pool-a"])
def test_bad_pools_name_the_pool(bad):
    with pytest.raises(FabricError) as err:
        v.parse_pools([bad])
    assert str(err.value).startswith("pool %s:" % bad)


def test_normalize_checks_pools_duplicates_and_interfaces():
    vips = [{"address": "192.0.2.1", "interface": "eth0"}, {"address": "192.0.2.2/32", "interface": "wlan0"}]
    assert v.normalize(vips, ["192.0.2.0/24"]) == [{"address": "192.0.2.1", "interface": "eth0"},
                                                   {"address": "192.0.2.2", "interface": "wlan0"}]
    cases = [
        ([{"address": "198.51.100.7", "interface": "eth0"}], ["192.0.2.0/24", "192.0.3.1-192.0.3.9"],
         "vip 198.51.100.7: outside every declared pool (192.0.2.0/24, 192.0.3.1-192.0.3.9)"),
        ([{"address": "192.0.2.1", "interface": "eth0"}] * 2, None, "vip 192.0.2.1 on eth0: declared twice"),
        ([{"address": "192.0.2.1", "interface": "eth0"}, {"address": "192.0.2.1", "interface": "eth1"}], None,
         "vip 192.0.2.1: declared on two interfaces (eth0 and eth1); a VIP is announced on one"),
        ([{"address": "192.0.2.1", "interface": "a-very-long-ifname"}], None, "vip 192.0.2.1: interface a-very-long-ifname: name is 18"),
        ([{"address": "192.0.2.1", "interface": None}], None, "vip 192.0.2.1: needs an interface"),
    ]
    for entries, pools, message in cases:
        with pytest.raises(FabricError) as err:
            v.normalize(entries, pools)
        assert str(err.value).startswith(message), str(err.value)
    # withdrawing a VIP that has left the pool is allowed
    assert v.normalize([{"address": "198.51.100.7", "interface": "eth0"}], ["192.0.2.0/24"], state="absent")


def test_module_option_ranges():
    good = {"garp_count": 5, "garp_interval": 1.1, "probe_timeout": 0.3}
    module.check_ranges(good)
    for key, value in (("garp_count", 0), ("garp_interval", 0.0), ("probe_timeout", 9.0)):
        with pytest.raises(FabricError) as err:
            module.check_ranges(dict(good, **{key: value}))
        assert str(err.value).startswith(key)


# --- packets ---------------------------------------------------------------------------------------

def test_garp_frames_byte_for_byte():
    request, reply = v.garp_frames(MAC, "192.0.2.10")
    # dst ff.., src MAC, ethertype 0806 | htype 1, ptype 0800, hlen 6, plen 4, op | sha spa tha tpa
    assert request.hex() == ("ffffffffffff" "020000000001" "0806" "0001" "0800" "06" "04" "0001"
                             "020000000001" "c000020a" "000000000000" "c000020a")
    assert reply.hex() == ("ffffffffffff" "020000000001" "0806" "0001" "0800" "06" "04" "0002"
                           "020000000001" "c000020a" "020000000001" "c000020a")
    assert len(request) == len(reply) == 42


def test_probe_frame_claims_nothing():
    pkt = v.parse_arp(v.probe_frame(MAC, "192.0.2.10"))
    assert pkt == {"op": 1, "sha": MAC, "spa": "0.0.0.0", "tha": "00:00:00:00:00:00", "tpa": "192.0.2.10"}


def test_parse_arp_ignores_what_is_not_ipv4_arp():
    frame = v.garp_frames(MAC, "192.0.2.10")[1]
    assert v.parse_arp(frame)["op"] == 2
    assert v.parse_arp(frame[:30]) is None
    assert v.parse_arp(frame[:12] + b"\x08\x00" + frame[14:]) is None


def test_conflicts_are_other_macs_speaking_for_the_vip():
    mine = {"192.0.2.10": MAC, "192.0.2.11": MAC}
    frames = [
        v.arp_frame(2, v.mac_bytes(OTHER_MAC), "192.0.2.10", v.mac_bytes(MAC), "0.0.0.0", v.mac_bytes(MAC)),  # reply to the probe
        v.garp_frames(MAC, "192.0.2.11")[0],          # ourselves: no conflict
        v.probe_frame(OTHER_MAC, "192.0.2.11"),        # someone else probing: claims nothing
        b"\x00" * 60,
    ]
    assert v.conflicts(frames, mine) == {"192.0.2.10": OTHER_MAC}


def test_the_child_scripts_compile():
    compile(v.REPEATER, "repeater", "exec")
    compile(v.SYSFS_VIEW, "sysfs_view", "exec")


# --- the plan against a fake kernel ---------------------------------------------------------------

class FakeKernel(object):
    def __init__(self, links=None, addrs=None, sysctls=None, wireless=(), answers=None):
        self.ipr = object()
        self.links_ = links if links is not None else {"eth0": {"index": 2, "mac": MAC, "flags": 0x1003, "master": None, "kind": "device"}}
        self.addrs = list(addrs or [])
        self.sysctls = dict(sysctls or {})
        self.wireless_ = set(wireless)
        self.answers = dict(answers or {})
        self.log = []

    def links(self):
        return self.links_

    def addresses(self):
        return list(self.addrs)

    def read_sysctl(self, ifname, key):
        return self.sysctls.get((ifname, key), 0)

    def write_sysctl(self, ifname, key, value):
        self.log.append(("sysctl", ifname, key, value))
        self.sysctls[(ifname, key)] = value

    def wireless(self, ifnames):
        return self.wireless_ & set(ifnames)

    def set_promisc(self, ifname, on):
        self.log.append(("promisc", ifname, on))
        self.links_[ifname]["flags"] |= 0x100 if on else 0

    def add_address(self, ifname, vip, label):
        self.log.append(("add", vip, ifname, label))
        self.addrs.append({"address": vip, "prefixlen": 32, "index": self.links_[ifname]["index"], "label": label})

    def del_address(self, ifname, vip, label):
        self.log.append(("del", vip, ifname, label))
        self.addrs = [a for a in self.addrs if not (a["address"] == vip and a["label"] == label)]

    def probe(self, targets, timeout):
        self.log.append(("probe", sorted(t[0] for t in targets), timeout))
        return dict((vip, self.answers[vip]) for vip, _i, _m in targets if vip in self.answers)

    def announce(self, jobs, count, interval):
        self.log.append(("garp", sorted(jobs), count, interval))
        return {"frames_sent": 2 * len(jobs), "background_pid": 4242 if count > 1 else None}


def vips(*addresses, interface="eth0"):
    return [{"address": a, "interface": interface} for a in addresses]


def apply(kern, wanted, owner="lb", **kw):
    plan, report = v.plan(kern, wanted, owner, **kw)
    assert plan.irreversible_last()
    plan.apply()
    return plan, report


def test_fresh_vips_sysctls_then_addresses_then_garp_and_a_second_run_does_nothing():
    kern = FakeKernel()
    label = v.label_for("eth0", "lb")
    plan, report = apply(kern, vips("192.0.2.10", "192.0.2.11"), garp_count=5, garp_interval=1.1)
    assert [entry[0] for entry in kern.log] == ["probe", "sysctl", "sysctl", "add", "add", "garp"]
    assert kern.log[0] == ("probe", ["192.0.2.10", "192.0.2.11"], 0.3)
    assert kern.log[-1] == ("garp", [("192.0.2.10", "eth0", MAC), ("192.0.2.11", "eth0", MAC)], 5, 1.1)
    assert plan.descriptions[0] == "set net.ipv4.conf.eth0.arp_ignore = 1 (was 0)"
    assert plan.descriptions[2] == "add vip 192.0.2.10/32 on eth0 (label %s)" % label
    assert [(e["address"], e["action"], e["garp"], e["probed"]) for e in report["vips"]] == [
        ("192.0.2.10", "added", True, True), ("192.0.2.11", "added", True, True)]
    assert report["garp"] == {"vips": ["192.0.2.10", "192.0.2.11"], "bursts": 5, "interval": 1.1,
                              "frames_sent": 4, "background_pid": 4242}
    assert report["interfaces"]["eth0"] == {"wireless": False, "promisc": False, "promisc_set": False,
                                            "arp_ignore": 1, "arp_announce": 2, "sysctls_set": ["arp_ignore", "arp_announce"]}
    assert plan.before["vip 192.0.2.10"] is None and plan.after["vip 192.0.2.10"]["label"] == label

    kern.log = []
    again, report = v.plan(kern, vips("192.0.2.10", "192.0.2.11"), "lb")
    assert not again.changed and kern.log == [] and report["garp"] == {}
    assert [e["action"] for e in report["vips"]] == ["kept", "kept"]
    assert again.before == again.after


def test_check_mode_plans_everything_and_sends_only_the_probe():
    kern = FakeKernel()
    plan = v.plan(kern, vips("192.0.2.10"), "lb", check_mode=True)[0]
    assert plan.changed and [e[0] for e in kern.log] == ["probe"]
    # an interface an earlier task would create: assumed, not probed
    kern = FakeKernel(links={})
    plan, report = v.plan(kern, vips("192.0.2.10"), "lb", check_mode=True)
    assert plan.changed and kern.log == [] and report["vips"][0]["probed"] is False


def test_probe_answer_is_an_error_naming_vip_and_mac_and_changes_nothing():
    kern = FakeKernel(answers={"192.0.2.11": OTHER_MAC})
    with pytest.raises(FabricError) as err:
        v.plan(kern, vips("192.0.2.10", "192.0.2.11"), "lb")
    assert str(err.value) == ("vip 192.0.2.11 on eth0: already answered on the segment by %s (ARP probe); "
                              "not taking it (nothing was changed)" % OTHER_MAC)
    assert [e[0] for e in kern.log] == ["probe"]
    # without the probe it is taken
    plan = v.plan(kern, vips("192.0.2.11"), "lb", probe=False)[0]
    assert plan.changed


def test_purge_and_absent_remove_only_the_owners_vips():
    mine, theirs = v.label_for("eth0", "lb"), v.label_for("eth0", "other")
    addrs = [
        {"address": "192.0.2.1", "prefixlen": 24, "index": 2, "label": "eth0"},       # the node's own
        {"address": "192.0.2.50", "prefixlen": 32, "index": 2, "label": "eth0:1"},    # the user's alias
        {"address": "192.0.2.10", "prefixlen": 32, "index": 2, "label": mine},
        {"address": "192.0.2.11", "prefixlen": 32, "index": 2, "label": mine},
        {"address": "192.0.2.20", "prefixlen": 32, "index": 2, "label": theirs},
    ]
    kern = FakeKernel(addrs=addrs, sysctls={("eth0", "arp_ignore"): 1, ("eth0", "arp_announce"): 2})
    plan, report = apply(kern, vips("192.0.2.10"), purge=True)
    assert kern.log == [("del", "192.0.2.11", "eth0", mine)]
    assert plan.descriptions == ["remove vip 192.0.2.11/32 from eth0 (label %s)" % mine]
    assert [(e["address"], e["action"]) for e in report["vips"]] == [("192.0.2.10", "kept"), ("192.0.2.11", "removed")]
    assert sorted(a["address"] for a in kern.addrs) == ["192.0.2.1", "192.0.2.10", "192.0.2.20", "192.0.2.50"]

    kern.log = []
    apply(kern, vips("192.0.2.10"), state="absent")
    assert kern.log == [("del", "192.0.2.10", "eth0", mine)]
    plan, report = v.plan(kern, vips("192.0.2.10"), "lb", state="absent")
    assert not plan.changed and report["vips"][0]["action"] == "none"


def test_an_address_that_is_not_the_owners_is_never_taken_or_removed():
    theirs = v.label_for("eth0", "other")
    kern = FakeKernel(addrs=[{"address": "192.0.2.20", "prefixlen": 32, "index": 2, "label": theirs},
                             {"address": "192.0.2.1", "prefixlen": 24, "index": 2, "label": "eth0"}])
    for vip, state, text in (("192.0.2.20", "present", "another owner's VIP; refusing to take over it"),
                             ("192.0.2.1", "present", "not owner lb's; refusing to take over it"),
                             ("192.0.2.1", "absent", "not owner lb's; refusing to remove it")):
        with pytest.raises(FabricError) as err:
            v.plan(kern, vips(vip), "lb", state=state)
        assert str(err.value).startswith("vip %s on eth0: already an address of this namespace" % vip)
        assert str(err.value).endswith(text), str(err.value)
    assert kern.log == []


@pytest.mark.parametrize("lnk,reason", [
    (None, "interface eth0 does not exist"),
    ({"flags": 0x1002}, "the interface is down"),
    ({"flags": 0x1083}, "the interface does not do ARP"),
    ({"flags": 0x9, "mac": "00:00:00:00:00:00"}, "a loopback interface answers no ARP"),
    ({"master": 7}, "the interface is a port of another device (index 7)"),
])
def test_interfaces_the_kernel_cannot_answer_on(lnk, reason):
    base = {"index": 2, "mac": MAC, "flags": 0x1003, "master": None, "kind": "device"}
    kern = FakeKernel(links={} if lnk is None else {"eth0": dict(base, **lnk)})
    with pytest.raises(FabricError) as err:
        v.plan(kern, vips("192.0.2.10"), "lb")
    assert str(err.value).startswith("vip 192.0.2.10 on eth0: " + reason)
    assert kern.log == []


def test_wireless_gets_promisc_and_others_are_left_alone():
    links = {"eth0": {"index": 2, "mac": MAC, "flags": 0x1003, "master": None, "kind": "device"},
             "wlan0": {"index": 3, "mac": "02:00:00:00:00:02", "flags": 0x1003, "master": None, "kind": "device"}}
    kern = FakeKernel(links=links, wireless=["wlan0"])
    wanted = vips("192.0.2.10") + vips("192.0.2.11", interface="wlan0")
    plan, report = apply(kern, wanted, garp=False)
    assert ("promisc", "wlan0", True) in kern.log and not [e for e in kern.log if e[0] == "promisc" and e[1] == "eth0"]
    assert "set wlan0 promisc on (wireless: ARP for a VIP goes unanswered otherwise)" in plan.descriptions
    assert report["interfaces"]["wlan0"]["promisc_set"] and report["interfaces"]["wlan0"]["wireless"]
    assert not report["interfaces"]["eth0"]["promisc"]
    assert not [e for e in kern.log if e[0] == "garp"] and report["garp"] == {}
    assert plan.before["interface wlan0"]["promisc"] is False and plan.after["interface wlan0"]["promisc"] is True


def test_force_garp_announces_held_vips_and_a_rollback_undoes_the_rest():
    kern = FakeKernel()
    apply(kern, vips("192.0.2.10"))
    kern.log = []
    plan, report = apply(kern, vips("192.0.2.10"), force_garp=True, garp_count=1)
    assert [e[0] for e in kern.log] == ["garp"] and report["vips"][0]["garp"] and report["garp"]["background_pid"] is None
    assert plan.descriptions == ["send gratuitous ARP (request and reply) for 192.0.2.10 on eth0 once"]

    # a failing announcement rolls the new address and the sysctls back
    kern = FakeKernel()

    def broken(jobs, count, interval):
        raise OSError(19, "No such device")
    kern.announce = broken
    plan = v.plan(kern, vips("192.0.2.10"), "lb")[0]
    with pytest.raises(FabricError) as err:
        plan.apply()
    assert "gratuitous ARP: No such device (errno 19) (rolled back: 3 actions undone)" in str(err.value)
    assert kern.addrs == [] and kern.sysctls == {("eth0", "arp_ignore"): 0, ("eth0", "arp_announce"): 0}


def test_a_vip_moved_to_another_interface_is_added_there_and_removed_here():
    links = {"eth0": {"index": 2, "mac": MAC, "flags": 0x1003, "master": None, "kind": "device"},
             "eth1": {"index": 3, "mac": "02:00:00:00:00:03", "flags": 0x1003, "master": None, "kind": "device"}}
    kern = FakeKernel(links=links, addrs=[{"address": "192.0.2.10", "prefixlen": 32, "index": 2, "label": v.label_for("eth0", "lb")}])
    plan = apply(kern, vips("192.0.2.10", interface="eth1"), garp=False)[0]
    assert [e[0] for e in kern.log] == ["probe", "sysctl", "sysctl", "add", "del"]
    assert plan.before["vip 192.0.2.10"]["interface"] == "eth0" and plan.after["vip 192.0.2.10"]["interface"] == "eth1"


def test_kernel_reads_wireless_and_sysctls_from_the_namespaces_files(tmp_path):
    for name, marker in (("wlan0", "phy80211"), ("wlan1", "wireless"), ("eth0", None)):
        (tmp_path / "sys/class/net" / name).mkdir(parents=True)
        if marker:
            (tmp_path / "sys/class/net" / name / marker).mkdir()
    conf = tmp_path / "proc/sys/net/ipv4/conf/eth0"
    conf.mkdir(parents=True)
    (conf / "arp_ignore").write_text("0\n")
    kern = v.Kernel(object(), None, sys_root=str(tmp_path / "sys"), proc_root=str(tmp_path / "proc"))
    assert kern.wireless(["wlan0", "wlan1", "eth0", "nope0"]) == {"wlan0", "wlan1"}
    assert kern.read_sysctl("eth0", "arp_ignore") == 0 and kern.read_sysctl("eth0", "arp_announce") is None
    kern.write_sysctl("eth0", "arp_ignore", 1)
    assert (conf / "arp_ignore").read_text() == "1\n"
    # a namespace that does not exist yet (check mode) has nothing
    assert v.Kernel(None, "pnt-none").wireless(["wlan0"]) == set() and v.Kernel(None, "pnt-none").links() == {}


# --- interfaces prepared without a VIP (keepalived moves the VIPs itself) ------------------------

def _two_links(**eth1):
    return {"eth0": {"index": 2, "mac": MAC, "flags": 0x1003, "master": None, "kind": "device"},
            "wlan0": dict({"index": 3, "mac": "02:00:00:00:00:02", "flags": 0x1003, "master": None, "kind": "device"}, **eth1)}


def test_interfaces_without_vips_get_the_sysctls_and_promisc_and_nothing_else():
    kern = FakeKernel(links=_two_links(), wireless=["wlan0"], sysctls={("eth0", "arp_ignore"): 1, ("eth0", "arp_announce"): 2})
    plan, report = apply(kern, [], interfaces=["eth0", "wlan0"])
    assert sorted(kern.log) == [("promisc", "wlan0", True), ("sysctl", "wlan0", "arp_announce", 2), ("sysctl", "wlan0", "arp_ignore", 1)]
    assert plan.descriptions == ["set net.ipv4.conf.wlan0.arp_ignore = 1 (was 0)", "set net.ipv4.conf.wlan0.arp_announce = 2 (was 0)",
                                 "set wlan0 promisc on (wireless: ARP for a VIP goes unanswered otherwise)"]
    assert report["vips"] == [] and report["garp"] == {}
    assert report["interfaces"]["eth0"] == {"wireless": False, "promisc": False, "promisc_set": False,
                                            "arp_ignore": 1, "arp_announce": 2, "sysctls_set": []}
    assert report["interfaces"]["wlan0"]["promisc_set"] and report["interfaces"]["wlan0"]["sysctls_set"] == ["arp_ignore", "arp_announce"]
    assert plan.after["interface wlan0"] == {"arp_ignore": 1, "arp_announce": 2, "promisc": True}
    again = v.plan(kern, [], "lb", interfaces=["eth0", "wlan0"])[0]
    assert not again.changed


def test_an_interface_with_a_vip_and_in_interfaces_is_prepared_once():
    kern = FakeKernel()
    plan, report = apply(kern, vips("192.0.2.10"), interfaces=["eth0"], garp=False)
    assert [e[0] for e in kern.log] == ["probe", "sysctl", "sysctl", "add"] and list(report["interfaces"]) == ["eth0"]


@pytest.mark.parametrize("lnk,reason", [
    (None, "interface wlan0: does not exist"),
    ({"flags": 0x1002}, "interface wlan0: the interface is down"),
    ({"flags": 0x1083}, "interface wlan0: the interface does not do ARP"),
    ({"master": 7}, "interface wlan0: the interface is a port of another device (index 7)"),
])
def test_interfaces_are_checked_like_those_of_vips_before_anything_changes(lnk, reason):
    links = _two_links(**(lnk or {}))
    if lnk is None:
        del links["wlan0"]
    kern = FakeKernel(links=links)
    with pytest.raises(FabricError) as err:
        v.plan(kern, vips("192.0.2.10"), "lb", interfaces=["wlan0"])
    assert str(err.value).startswith(reason), str(err.value)
    assert kern.log == []     # not even the probe of the VIP


def test_check_mode_assumes_a_missing_interface_and_absent_ignores_interfaces():
    kern = FakeKernel(links={})
    plan, report = v.plan(kern, [], "lb", interfaces=["wlan0"], check_mode=True)
    assert plan.changed and kern.log == []
    assert plan.descriptions == ["set net.ipv4.conf.wlan0.arp_ignore = 1 (was unset)", "set net.ipv4.conf.wlan0.arp_announce = 2 (was unset)"]
    assert report["interfaces"]["wlan0"]["wireless"] is False
    # state absent: interfaces play no part (not even checked), only VIPs are withdrawn
    plan, report = v.plan(kern, [], "lb", state="absent", interfaces=["wlan0"])
    assert not plan.changed and report["interfaces"] == {}


def test_normalize_interfaces():
    assert v.normalize_interfaces(["eth0", "wlan0"]) == ["eth0", "wlan0"] and v.normalize_interfaces(None) == []
    for bad, message in ((["eth0", "eth0"], "interface eth0: listed twice in interfaces"),
                         (["a-very-long-ifname"], "interface a-very-long-ifname: name is 18"),
                         ([""], "interface name '': must be a non-empty string")):
        with pytest.raises(FabricError) as err:
            v.normalize_interfaces(bad)
        assert str(err.value).startswith(message), str(err.value)


def test_the_module_takes_no_vips_and_records_for_the_restorer_but_replays_without_the_probe():
    assert module.ARGUMENT_SPEC["vips"]["default"] == [] and "required" not in module.ARGUMENT_SPEC["vips"]
    assert module.ARGUMENT_SPEC["interfaces"] == {"type": "list", "elements": "str", "default": []}
    recorded = {"vips": [{"address": "192.0.2.10", "interface": "eth0"}], "probe": True, "garp": True, "owner": "lb"}
    replayed = module.replay_params(recorded)
    assert replayed == dict(recorded, probe=False) and recorded["probe"] is True
    source = open(module.__file__).read()
    assert 'persist_as="vip_arp"' in source and "podnet.fabric.attributes.PERSIST" in source
