"""podnet.fabric.node_report: a node's JSON local facts read (and one written) in one light task."""
from __future__ import annotations

import json
import os

import pytest

# node_report imports nothing but AnsibleModule (no pyroute2): one target interpreter, the nodes' own.
pytestmark = pytest.mark.single_target


def test_reports_read_written_only_when_different_and_bad_ones_named(playbook, tmp_path):
    facts = tmp_path / "facts.d"
    facts.mkdir()
    (facts / "podnet_fabric.fact").write_text(json.dumps({"podCIDR": "10.244.0.0/24"}))
    (facts / "other.fact").write_text("[section]\nkey=value\n")          # INI: setup's business
    (facts / "exec.fact").write_text("#!/bin/sh\necho '{}'\n")
    os.chmod(facts / "exec.fact", 0o755)
    report = {"services": {"default/web": {"clusterIP": "10.96.0.5", "nodePorts": {"http": 30080}}}}
    write = {"podnet.fabric.node_report": {"path": str(facts), "name": "podnet_fabric_services", "content": report}}
    read = {"podnet.fabric.node_report": {"path": str(facts)}}
    r = playbook([write, dict(write, name="again"), read,
                  {"ansible.builtin.debug": {"var": "podnet_fabric_reports"}}], check=True, diff=True)
    assert not r.failed and r[0]["changed"] and r[1]["changed"], r
    assert r[0]["diff"]["before"] == "" and '"clusterIP": "10.96.0.5"' in r[0]["diff"]["after"]
    assert not (facts / "podnet_fabric_services.fact").exists(), "check mode wrote the report"
    r = playbook([write, dict(write, name="again"), {"ansible.builtin.debug": {"var": "podnet_fabric_reports"}}])
    assert not r.failed and r[0]["changed"] and not r[1]["changed"], r
    assert r[2]["podnet_fabric_reports"] == {"podnet_fabric": {"podCIDR": "10.244.0.0/24"},
                                             "podnet_fabric_services": report}
    path = facts / "podnet_fabric_services.fact"
    assert oct(path.stat().st_mode & 0o777) == "0o644" and json.loads(path.read_text()) == report
    # the same bytes Ansible's to_nice_json wrote before this module existed
    assert path.read_text() == json.dumps(report, indent=4, sort_keys=True) + "\n"
    # a report that is not JSON: one line naming the file when the task depends on it
    (facts / "podnet_fabric.fact").write_text("{broken")
    r = playbook([dict(read, ignore_errors=True),
                  {"podnet.fabric.node_report": {"path": str(facts), "required": ["podnet_fabric"]},
                   "ignore_errors": True},
                  {"podnet.fabric.node_report": {"path": str(tmp_path / "missing")}}])
    assert not r[0].get("failed") and "podnet_fabric" not in r[0]["ansible_facts"]["podnet_fabric_reports"], r
    assert r[1]["failed"] and r[1]["msg"].startswith("report %s/podnet_fabric.fact: not readable JSON" % facts), r
    assert not r[2].get("failed") and r[2]["ansible_facts"]["podnet_fabric_reports"] == {}
