"""BIRD's main configuration without a daemon: Calico's semantics in the rendered text, checked
line by line and parsed by BIRD 2 itself (``bird -p -c``, no daemon needed); ownership of the
file; the plan (systemctl replaced by a recording runner - the host's bird.service is never
touched)."""
from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.podnet.fabric.plugins.module_utils import bird, bird_main
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError

EXAMPLE = dict(router_id="172.31.1.11", originate=["10.244.1.0/24", "10.96.0.0/12"], kernel={"program": ["10.244.0.0/16"]},
               export=["10.244.0.0/16", "10.96.0.0/12"], bfd={"interval_ms": 100, "multiplier": 3})


def rendered(**params):
    return bird_main.render(bird_main.normalize(dict(EXAMPLE, **params)), "t1")


def bird_parses(text, tmp_path, peers=""):
    """(rc, message) of ``bird -p -c`` on ``text`` with ``peers`` as the included directory."""
    directory = tmp_path / "podnet.d"
    directory.mkdir(exist_ok=True)
    (directory / "t1.conf").write_text(peers)
    conf = tmp_path / "bird.conf"
    conf.write_text(text.replace(bird.include_line(bird.DEFAULT_DIR), bird.include_line(str(directory))))
    proc = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stderr + proc.stdout


def test_example_is_calicos_configuration_and_bird_takes_it(tmp_path):
    text = rendered()
    lines = text.splitlines()
    assert lines[0] == "# podnet.fabric:t1: BIRD main configuration of owner t1, written by podnet.fabric.bird_config."
    assert bird_main.file_owner(text) == "t1" and bird_main.file_owner("router id 1.1.1.1;\n") is None
    for line in ("router id 172.31.1.11;", "timeformat protocol iso long;", "  scan time 2;", "  route 10.244.1.0/24 blackhole;",
                 "  route 10.96.0.0/12 blackhole;", "  learn;", "  persist;", "  graceful restart;", "  merge paths on;",
                 "    export filter podnet_kernel;", "    interval 100 ms;", "    multiplier 3;", '  interface "*" {', "  multihop {"):
        assert line in lines, line
    # The kernel gets BGP-learned pool routes only - never the originated blackholes.
    kernel = text.split("filter podnet_kernel {")[1].split("}")[0]
    assert "RTS_BGP" in kernel and "10.244.0.0/16+" in kernel and "podnet_originate" not in kernel and "10.96." not in kernel
    export = text.split("filter podnet_export {")[1].split("\n}")[0]
    assert 'if proto = "podnet_originate4" then accept;' in export and "[ 10.96.0.0/12+, 10.244.0.0/16+ ]" in export
    assert export.strip().splitlines()[0] == "if net.len = 0 then reject;" and export.strip().endswith("reject;")
    assert lines[-1] == 'include "/etc/bird/podnet.d/*.conf";'
    peer = bird.render_file("t1", {"Mesh_172_31_1_12": bird.render_peer(bird.normalize(
        dict(peer_ip="172.31.1.12", as_number=64512, bfd=True, export_filter=bird_main.EXPORT_FILTER), "172.31.1.11"), "t1")})
    assert bird_parses(text, tmp_path, peer) == (0, "")


@pytest.mark.parametrize("params, present, absent", [
    (dict(kernel={"program": []}), ["    export none;"], ["export filter podnet_kernel"]),
    (dict(bfd=None), [], ["protocol bfd"]),
    (dict(originate=[]), [], ["protocol static", "podnet_originate"]),
    (dict(iso_time=False, log="/var/log/bird.log"), ['log "/var/log/bird.log" all;'], ["timeformat"]),
    (dict(kernel={"program": ["10.244.0.0/16"], "merge_paths": False, "learn": False, "persist": False, "scan_time": 10}),
     ["  merge paths off;", "  scan time 10;"], ["  learn;", "  persist;"]),
    (dict(originate=["fd00:10:244:1::/64"], export=["fd00:10:244::/48"], kernel={"program": ["fd00:10:244::/48"]}),
     ["protocol static podnet_originate6 {", "protocol kernel podnet_kernel6 {", "  ipv6;",
      "  if source = RTS_BGP && net.type = NET_IP6 && net ~ [ fd00:10:244::/48+ ] then accept;"], ["podnet_originate4"]),
    (dict(extra="filter mine { accept; }"), ["filter mine { accept; }"], []),
])
def test_variants_and_bird_parses_each(tmp_path, params, present, absent):
    text = rendered(**params)
    for line in present:
        assert line in text.splitlines(), line
    for word in absent:
        assert word not in text, word
    assert bird_parses(text, tmp_path) == (0, "")


@pytest.mark.parametrize("params, reason", [
    (dict(router_id="node1"), r"^router_id 'node1': must be an IPv4 address"),
    (dict(router_id="0.0.0.0"), r"^router_id 0\.0\.0\.0: must not be zero$"),
    (dict(originate=["10.244.1.1/24"]), r"^originate 10\.244\.1\.1/24: not a network: .*host bits set$"),
    (dict(export=["0.0.0.0/0"]), r"^export 0\.0\.0\.0/0: a default route is never"),
    (dict(kernel={"program": ["10.244.0.0/33"]}), r"^kernel program 10\.244\.0\.0/33: not a network"),
    (dict(kernel={"scan_time": 0}), r"^kernel scan_time 0: must be 1-3600"),
    (dict(bfd={"multiplier": 300}), r"^bfd multiplier 300: must be 1-255$"),
    (dict(log="bird.log"), r"^log 'bird.log': must be syslog, stderr or an absolute file path$"),
    (dict(extra='include "/etc/bird/podnet.d/*.conf";'), r"^extra: must not include the peers directory"),
])
def test_bad_input_names_the_field(params, reason):
    with pytest.raises(FabricError, match=reason):
        bird_main.normalize(dict(EXAMPLE, **params))


def test_bird_counts_routes():
    out = ("BIRD 2.0.12 ready.\n7 of 7 routes for 6 networks in table master4\n0 of 0 routes for 0 networks in table master6\n"
           "Total: 7 of 7 routes for 6 networks in 2 tables\n")
    assert bird_main.parse_route_count(out) == {"master4": {"routes": 7, "networks": 6}, "master6": {"routes": 0, "networks": 0}}


class Systemctl(object):
    """systemctl stand-in: answers is-enabled/is-active from ``state`` and records the verbs."""

    def __init__(self, enabled, active):
        self.state = {"enabled": enabled, "active": active}
        self.calls = []

    def __call__(self, argv, input_text=None):
        del input_text
        self.calls.append(argv[1:])
        if argv[1] == "is-enabled":
            return (0 if self.state["enabled"] else 1), ("enabled\n" if self.state["enabled"] else "disabled\n"), ""
        if argv[1] == "is-active":
            return (0 if self.state["active"] else 3), ("active\n" if self.state["active"] else "inactive\n"), ""
        self.state[{"enable": "enabled", "disable": "enabled", "start": "active", "stop": "active"}[argv[1]]] = argv[1] in ("enable", "start")
        return 0, "", ""


def daemon_in(tmp_path):
    def parse(argv, input_text=None):
        del input_text
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return bird.Bird(parse, config=str(tmp_path / "bird.conf"), directory=str(tmp_path / "podnet.d"), socket=str(tmp_path / "ctl"))


def test_plan_writes_validated_file_then_service_and_is_idempotent(tmp_path):
    daemon, systemctl = daemon_in(tmp_path), Systemctl(enabled=False, active=False)
    cfg = bird_main.normalize(dict(EXAMPLE, config_dir=daemon.directory))
    plan, info = bird_main.plan(daemon, "t1", cfg, run_host=systemctl, service="bird.service")
    # the peers' directory first: BIRD does not start on an include pattern whose directory is missing
    assert plan.descriptions == ["create %s" % daemon.directory, "write %s" % daemon.config, "enable bird.service",
                                 "start bird.service"], plan.descriptions
    assert plan.after["bird.service"] == {"enabled": True, "active": True} and not info["reconfigured"]
    assert not os.path.exists(daemon.config)
    plan.apply()
    assert os.path.isdir(daemon.directory)
    assert systemctl.calls[-2:] == [["enable", "bird.service"], ["start", "bird.service"]]
    assert oct(os.stat(daemon.config).st_mode & 0o777) == "0o640"
    again = bird_main.plan(daemon, "t1", cfg, run_host=systemctl, service="bird.service")[0]
    assert not again.actions and not again.before
    with pytest.raises(FabricError, match=r"bird\.conf: belongs to owner t1, not to owner t2; refusing to take it over$"):
        bird_main.plan(daemon, "t2", cfg)
    absent = bird_main.normalize(dict(state="absent"))
    plan = bird_main.plan(daemon, "t1", absent, run_host=systemctl, service="bird.service")[0]
    assert plan.descriptions == ["stop bird.service", "disable bird.service", "remove %s" % daemon.config]
    plan.apply()
    assert not os.path.exists(daemon.config) and systemctl.state == {"enabled": False, "active": False}


def test_foreign_file_needs_force_and_rejected_text_changes_nothing(tmp_path):
    daemon = daemon_in(tmp_path)
    os.makedirs(daemon.directory)
    with open(daemon.config, "w") as handle:
        handle.write("log syslog all;\nprotocol device {}\n")
    cfg = bird_main.normalize(dict(EXAMPLE, config_dir=daemon.directory))
    with pytest.raises(FabricError, match=r"is not podnet\.fabric.s \(no owner mark\) nor Debian.s untouched example"):
        bird_main.plan(daemon, "t1", cfg)
    assert bird_main.plan(daemon, "t1", cfg, force=True)[0].descriptions == ["write %s" % daemon.config]
    # absent leaves a file that is not podnet.fabric's alone
    assert not bird_main.plan(daemon, "t1", bird_main.normalize(dict(state="absent")))[0].actions
    bad = bird_main.normalize(dict(EXAMPLE, config_dir=daemon.directory, extra="filter f {\n  accep;\n}"))
    with pytest.raises(FabricError) as err:
        bird_main.plan(daemon, "t1", bad, force=True)
    line = bird_main.render(bad, "t1").splitlines().index("  accep;") + 1
    assert str(err.value).startswith("BIRD rejects the configuration: %s:%d:" % (daemon.config, line)) and str(err.value).endswith(": `accep;`")
    assert open(daemon.config).read() == "log syslog all;\nprotocol device {}\n"


def test_debians_untouched_example_is_replaced_without_force_and_absent_leaves_foreign_bird_alone(tmp_path, monkeypatch):
    daemon, systemctl = daemon_in(tmp_path), Systemctl(enabled=True, active=True)
    example = tmp_path / "example.conf"
    example.write_text("log syslog all;\nprotocol device {}\n")
    monkeypatch.setattr(bird_main, "PACKAGE_DEFAULT", str(example))
    os.makedirs(daemon.directory)
    with open(daemon.config, "w") as handle:
        handle.write(example.read_text())
    cfg = bird_main.normalize(dict(EXAMPLE, config_dir=daemon.directory))
    assert bird_main.plan(daemon, "t1", cfg)[0].descriptions == ["write %s" % daemon.config]
    # edited by its user: no longer Debian's example, so force is needed again
    with open(daemon.config, "a") as handle:
        handle.write("# mine\n")
    with pytest.raises(FabricError, match="nor Debian's untouched example"):
        bird_main.plan(daemon, "t1", cfg)
    # a BIRD that runs with a configuration that is not this owner's is not stopped by absent
    absent = bird_main.normalize(dict(state="absent"))
    assert not bird_main.plan(daemon, "t1", absent, run_host=systemctl, service="bird.service")[0].actions
    assert systemctl.calls == [] or all(c[0] == "is-enabled" or c[0] == "is-active" for c in systemctl.calls)


def test_absent_also_removes_the_owners_peers_file(tmp_path):
    daemon, systemctl = daemon_in(tmp_path), Systemctl(enabled=True, active=False)
    cfg = bird_main.normalize(dict(EXAMPLE, config_dir=daemon.directory))
    bird_main.plan(daemon, "t1", cfg, run_host=systemctl, service="bird.service")[0].apply()
    os.makedirs(daemon.directory, exist_ok=True)
    peers = os.path.join(daemon.directory, "t1.conf")
    other = os.path.join(daemon.directory, "t2.conf")
    bird.write_private(peers, bird.render_file("t1", []))
    bird.write_private(other, bird.render_file("t2", []))
    plan = bird_main.plan(daemon, "t1", bird_main.normalize(dict(state="absent")), run_host=systemctl, service="bird.service")[0]
    assert plan.descriptions == ["stop bird.service", "disable bird.service", "remove %s" % daemon.config, "remove %s" % peers]
    plan.apply()
    assert not os.path.exists(peers) and os.path.exists(other)
