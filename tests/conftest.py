"""Shared fixtures: run modules through ansible-playbook, and throw-away network namespaces.

Integration tests never touch the host's own links, routes or iptables: every object lives in a
namespace the test created (name prefixed ``pnt-``) and removed again, also when the test fails.
Results are checked with independent tools (``ip -json``, ``iptables-save``, ``ping``), never
with the code under test.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"

# The two pyroute2 versions the netlink layer must work with: Debian's python3-pyroute2 0.7.2
# (what a Pi/Debian node gets from apt) and PyPI's 0.9.x in the controller venv.
TARGET_PYTHONS = {
    "deb-pyroute2-0.7": "/usr/bin/python3",
    "pypi-pyroute2-0.9": str(VENV_BIN / "python"),
}


def pytest_addoption(parser):
    parser.addoption(
        "--target-python",
        action="append",
        choices=sorted(TARGET_PYTHONS),
        help="run integration tests only with these target interpreters (default: all)",
    )


# The nodes' real interpreter: what a test marked ``single_target`` runs with.
SINGLE_TARGET = "deb-pyroute2-0.7"


def pytest_generate_tests(metafunc):
    if "target_python" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("target_python") or sorted(TARGET_PYTHONS)
        if metafunc.definition.get_closest_marker("single_target"):
            # Modules that never import pyroute2 (directly or through module_utils) gain nothing
            # from a second interpreter: run them once, with Debian's /usr/bin/python3.
            # With a --target-python that leaves that one out, the test is reported as skipped.
            if SINGLE_TARGET in chosen:
                params = [pytest.param(TARGET_PYTHONS[SINGLE_TARGET], id=SINGLE_TARGET)]
            else:
                params = [pytest.param(TARGET_PYTHONS[SINGLE_TARGET], id=SINGLE_TARGET, marks=pytest.mark.skip(
                    reason="single_target: runs with %s only, which --target-python did not select" % SINGLE_TARGET))]
            metafunc.parametrize("target_python", params, scope="session")
            return
        metafunc.parametrize("target_python", [TARGET_PYTHONS[k] for k in chosen], ids=chosen, scope="session")


def unique(prefix="pnt"):
    """A short unique name (fits IFNAMSIZ with a 3-char suffix): prefix + 6 hex chars."""
    return "%s%s" % (prefix, secrets.token_hex(3))


def sh(*argv, netns=None, check=True, input=None):
    """Run a command (optionally in a netns via ip netns exec) and return stdout."""
    cmd = list(argv)
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def ip_json(*args, netns=None):
    """`ip -json ...` parsed: the independent view of the kernel state."""
    cmd = ["ip"]
    if netns:
        cmd += ["-n", netns]
    out = sh(*cmd, "-json", *args)
    return json.loads(out) if out.strip() else []


class PlaybookRun(object):
    def __init__(self, proc, results):
        self.proc = proc
        self.rc = proc.returncode
        self.results = results  # one dict per task, in order

    @property
    def failed(self):
        return self.rc != 0

    @property
    def changed(self):
        return any(r.get("changed") for r in self.results)

    def __getitem__(self, i):
        return self.results[i]

    @property
    def last(self):
        return self.results[-1]

    def __repr__(self):
        return "PlaybookRun(rc=%s, results=%s, stderr=%s)" % (self.rc, json.dumps(self.results, indent=1)[:6000], self.proc.stderr[-3000:])


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        PATH="%s:%s" % (VENV_BIN, env.get("PATH", "")),
    )
    env.update(extra)
    return env


def run_playbook(tasks, target_python, path, check=False, diff=False, extra_args=()):
    """Run a list of tasks (plain dicts, module calls) on localhost with ``target_python``, the
    play written to ``path``; returns a PlaybookRun."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    path.write_text(json.dumps(play, indent=1))
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "-i", "localhost,",
        "-c", "local",
        "-e", "ansible_python_interpreter=%s" % target_python,
        str(path),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(extra_args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), check=False)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    results = []
    for p in doc["plays"]:
        for t in p["tasks"]:
            res = t["hosts"].get("localhost", {})
            res["_task"] = t["task"]["name"]
            results.append(res)
    return PlaybookRun(proc, results)


def run_independent_tasks(tasks, target_python, path):
    """Tasks that do not depend on each other (each acts only in namespaces of its own) in one
    ansible-playbook run instead of one run each: every task gets ``ignore_errors`` so that one
    failing does not stop the next. Returns the per-task results, in order: a task's own
    ``failed``/``msg`` say what a playbook of that task alone would have said."""
    run = run_playbook([dict(t, ignore_errors=True) for t in tasks], target_python, path)
    assert len(run.results) == len(tasks), run
    return run.results


def run_cases(prepared, observe, target_python, path):
    """``prepared``: [(state, task)], one per case, each case with namespaces of its own. Every
    task runs in one playbook (run_independent_tasks); returns [(task result, observe(state)
    before, observe(state) after)], in order."""
    before = [observe(state) for state, _task in prepared]
    results = run_independent_tasks([task for _state, task in prepared], target_python, path)
    return [(res, was, observe(state)) for (state, _task), was, res in zip(prepared, before, results)]


@pytest.fixture
def playbook(tmp_path, target_python):
    """Run a list of tasks on localhost with the target interpreter; returns a PlaybookRun.

    ``playbook(tasks, check=False, diff=False)``: tasks are plain dicts (module calls).
    """
    counter = {"n": 0}

    def run(tasks, check=False, diff=False, extra_args=()):
        counter["n"] += 1
        return run_playbook(tasks, target_python, tmp_path / ("play%d.yml" % counter["n"]), check=check, diff=diff,
                            extra_args=extra_args)

    return run


_BATCHED = {}


@pytest.fixture
def batched_cases(request, target_python, tmp_path_factory):
    """The test module's ``compute_batched_cases(target_python, tmp_path_factory)`` once per
    target interpreter (and xdist worker), whatever order the items run in (the session-scoped
    ``target_python`` parameter interleaves modules, so a module-scoped fixture would be set up
    again and again): for the cases of a parametrized test whose set-ups and module calls are
    batched into one playbook (run_cases). It removes what it made itself (netns_pool) and
    returns plain data; each case's test item asserts on its own part. A failure is kept and
    raised again for every case."""
    key = (request.module.__name__, target_python)
    if key not in _BATCHED:
        try:
            _BATCHED[key] = (True, request.module.compute_batched_cases(target_python, tmp_path_factory))
        except Exception as exc:  # pylint: disable=broad-except
            _BATCHED[key] = (False, exc)
    ok, value = _BATCHED[key]
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def netns_pool():
    """``with netns_pool() as make``: ``make(prefix)`` creates a throw-away network namespace;
    all are deleted when the block ends, pass or fail (for fixtures of any scope)."""
    made = []

    def make(prefix="pnt-"):
        name = unique(prefix)
        sh("ip", "netns", "add", name)
        made.append(name)
        sh("ip", "link", "set", "lo", "up", netns=name)
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def netns_factory():
    """Create throw-away network namespaces; all are deleted at teardown, pass or fail."""
    with netns_pool() as make:
        yield make


@pytest.fixture
def netns(netns_factory):
    return netns_factory()


# What the kernel does by itself, asynchronously, is not "a change" a module made: carrier flags,
# IPv6 link-local autoconfiguration (fe80:: addresses, their routes, DAD states), counters, timers,
# and the default qdisc the kernel attaches the first time a link goes up (noop -> noqueue; it
# stays when the link goes down again, so a rolled-back "set up" cannot restore it).
_CARRIER_FLAGS = {"NO-CARRIER", "LOWER_UP", "M-DOWN", "DORMANT"}


def _kernel_made_route(route):
    dst = route.get("dst", "")
    return dst.startswith(("fe80:", "ff00:")) or (route.get("type") == "local" and dst.startswith("fe80:"))


def _clean_route(route):
    # "linkdown" follows the carrier, which a veth gets asynchronously after it goes up.
    route["flags"] = [f for f in route.get("flags", []) if f != "linkdown"]
    return route


def _clean_link(lk):
    for key in ("stats", "stats64", "operstate", "qdisc", "linkinfo_timers", "carrier_changes", "carrier_up_count", "carrier_down_count"):
        lk.pop(key, None)
    lk["flags"] = [f for f in lk.get("flags", []) if f not in _CARRIER_FLAGS]
    for section in ("info_data", "info_slave_data"):
        data = lk.get("linkinfo", {}).get(section, {})
        for key in list(data):
            if key.endswith("_timer"):
                data.pop(key)
    return lk


def snapshot(*namespaces):
    """Independent picture of namespaces' links, addresses, routes and permanent neighbours
    (`ip -json`), for "nothing changed" assertions. A namespace that does not exist maps to None.
    """
    # Only the namespaces asked for: other tests (xdist workers) create and delete their own.
    state = {}
    for ns in namespaces:
        if ns and not os.path.exists(os.path.join("/run/netns", ns)):
            state[ns] = None
            continue
        addrs = []
        for a in ip_json("addr", "show", netns=ns):
            _clean_link(a)
            a["addr_info"] = [dict((k, v) for k, v in ai.items() if k not in ("valid_life_time", "preferred_life_time", "tentative", "dadfailed"))
                              for ai in a.get("addr_info", []) if not (ai.get("family") == "inet6" and ai.get("scope") == "link")]
            addrs.append(a)
        state[ns or "host"] = {
            "links": [_clean_link(lk) for lk in ip_json("-d", "link", "show", netns=ns)],
            "addrs": addrs,
            "routes": [_clean_route(r) for r in ip_json("route", "show", "table", "all", netns=ns) if not _kernel_made_route(r)],
            "neigh": ip_json("neigh", "show", "nud", "permanent", netns=ns),
        }
    return state


@pytest.fixture
def four_runs(playbook):
    """community.crypto's pattern: check mode, real run, check again, real again.

    Asserts: check mode reports changed and leaves ``snap()`` untouched; the real run changes;
    both later runs report no change. Returns the four PlaybookRuns.
    """
    def run(tasks, snap):
        before = snap()
        check = playbook(tasks, check=True, diff=True)
        assert not check.failed, check
        assert check.changed, check
        assert snap() == before, "check mode changed the system"
        real = playbook(tasks, diff=True)
        assert not real.failed, real
        assert real.changed, real
        after = snap()
        check2 = playbook(tasks, check=True)
        assert not check2.failed and not check2.changed, check2
        real2 = playbook(tasks)
        assert not real2.failed and not real2.changed, real2
        assert snap() == after, "an idempotent run changed the system"
        return check, real, check2, real2
    return run
