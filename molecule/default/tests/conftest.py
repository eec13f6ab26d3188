"""Fixtures for tests against the podman lab (molecule's verify step, or plain pytest on a lab
that scripts/lab.sh brought up).

Hosts come from inventories/lab, templated the way ansible-playbook sees them (so PODNET_LAB
picks the lab), and are reached through testinfra's native ``podman://`` backend: one
``podman exec`` per command, not one Ansible process per assertion.

    def test_something(host, lab):
        node1 = host("node1")                      # testinfra Host for the container
        node1.run("ip -j route").stdout
        lab.var("node3", "node_ip")                # any inventory variable, templated
        lab.hosts("nodes")                         # host names of a group

Tests that take ``lab_host`` run once per host of the group "lab"; ``node`` once per host of
the group "nodes". Every test collected here carries the ``lab`` marker.

Note: ``host`` here is a factory and replaces testinfra's own parametrized ``host`` fixture, so
molecule's --connection/--ansible-inventory arguments to pytest have no effect.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
INVENTORY = os.environ.get("PODNET_LAB_INVENTORY", str(REPO / "inventories" / "lab"))


class LabInventory:
    """inventories/lab through Ansible's own inventory and templating code."""

    def __init__(self, source: str):
        # Imported here: only the lab tests need Ansible's internals.
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.plugins.loader import init_plugin_loader
        from ansible.vars.manager import VariableManager

        init_plugin_loader()
        self._loader = DataLoader()
        self._inventory = InventoryManager(loader=self._loader, sources=[source])
        self._variables = VariableManager(loader=self._loader, inventory=self._inventory)

    def hosts(self, pattern: str = "lab") -> list[str]:
        """Host names matching an Ansible host pattern, in inventory order."""
        return [h.name for h in self._inventory.get_hosts(pattern)]

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one inventory per session
    def _templar(self, name: str):
        from ansible.template import Templar

        hostvars = self._variables.get_vars(host=self._inventory.get_host(name))
        return Templar(loader=self._loader, variables=hostvars), hostvars

    def var(self, name: str, var: str, default=None):
        """One inventory variable of a host, fully templated (``default`` if undefined)."""
        templar, hostvars = self._templar(name)
        if var not in hostvars:
            return default
        return templar.template(hostvars[var])

    def container(self, name: str) -> str:
        """The podman container that is this inventory host."""
        if name in self.hosts("all"):
            return self.var(name, "lab_container")
        # a host a test added in a variant inventory (lab/inventory.py): the same naming
        return "%s-%s" % (self.var(self.hosts()[0], "lab_name"), name)

    def network(self, segment: str) -> str:
        """The podman network of a lab segment (a key of lab_networks: rack_a, ...)."""
        return "%s-%s" % (self.var(self.hosts()[0], "lab_name"), segment.replace("_", "-"))


@functools.lru_cache(maxsize=1)
def _lab() -> LabInventory:
    return LabInventory(INVENTORY)


@pytest.fixture(scope="session")
def lab() -> LabInventory:
    return _lab()


@pytest.fixture(scope="session")
def host(lab):
    """host("node1") -> testinfra Host on the container of inventory host node1."""
    cache: dict[str, testinfra.host.Host] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = testinfra.get_host("podman://" + lab.container(name))
        return cache[name]

    return get


def pytest_generate_tests(metafunc):
    if "lab_host" in metafunc.fixturenames:
        metafunc.parametrize("lab_host", _lab().hosts("lab"))
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", _lab().hosts("nodes"))


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
