"""Variants of inventories/lab for tests and benchmarks: more nodes, a node inserted in the
middle, pods removed. Writes a copy of the inventory directory (hosts.yml, group_vars,
manifests/) with the changes; the lab's state (keys, known_hosts) stays the original lab's, so
pass ``-e lab_state_dir=<that dir>`` (what :func:`state_dir` returns) to ansible-playbook.

    python3 lab/inventory.py --nodes 6 OUT_DIR          # node1..node6 (new ones alternate racks)
    python3 lab/inventory.py --insert node1b:a:node1 OUT_DIR   # node1b on rack A, after node1

A new node ``nodeK`` sits on rack A or B with address 172.31.<rack>.<10+K> (unique last byte,
which is also its management address) and runs one pod ``web-K`` serving port 8080.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "inventories" / "lab"
RACK_SUBNETS = {"a": "172.31.1", "b": "172.31.2"}
RACK_AS = {"a": "65001", "b": "65002"}


def state_dir(lab_name: str) -> str:
    """The original lab's key/known_hosts directory (group_vars/lab.yml's lab_state_dir)."""
    return str(REPO / ".cache" / "lab" / lab_name)


def _load_all(path: Path) -> list:
    """The objects of a manifest file: its documents, a List's items unpacked."""
    out = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(doc.get("items") or [])
        elif doc is not None:
            out.append(doc)
    return out


def _dump_all(path: Path, docs: list) -> None:
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs}, sort_keys=False), encoding="utf-8")


def node_object(name: str, rack: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "rack-" + rack},
                         "annotations": {"projectcalico.org/IPv4Address": ip + "/24",
                                         # Calico's AS per rack, as manifests/nodes.yaml (BGP)
                                         "projectcalico.org/ASNumber": RACK_AS[rack]}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


def web_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "web", "image": "agnhost", "ports": [{"containerPort": 8080}]}]}}


class Variant:
    """A copy of inventories/lab being edited; :meth:`write` puts it in a directory."""

    def __init__(self, source: Path = SOURCE):
        self.source = source
        self.hosts = yaml.safe_load((source / "hosts.yml").read_text(encoding="utf-8"))
        self.nodes = _load_all(source / "manifests" / "nodes.yaml")
        self.pods = _load_all(source / "manifests" / "pods.yaml")

    def node_names(self) -> list:
        return list(self.hosts["all"]["children"]["nodes"]["hosts"])

    def add_node(self, name: str, rack: str, after: str | None = None, ip: str | None = None, pod: str | None = None):
        """Add node ``name`` on rack ``rack`` right after node ``after`` (at the end when None),
        in the inventory and in the Node manifests, with one web pod (``pod``, default web-<name>)."""
        index = len(self.node_names()) + 1
        ip = ip or "%s.%d" % (RACK_SUBNETS[rack], 10 + index)
        hosts = self.hosts["all"]["children"]["nodes"]["hosts"]
        items = list(hosts.items())
        pos = len(items) if after is None else [key for key, _value in items].index(after) + 1
        items.insert(pos, (name, {"lab_ip": ip, "rack": rack}))
        self.hosts["all"]["children"]["nodes"]["hosts"] = dict(items)
        names = [n["metadata"]["name"] for n in self.nodes]
        npos = len(names) if after is None else names.index(after) + 1
        self.nodes.insert(npos, node_object(name, rack, ip))
        self.pods.append(web_pod(pod or "web-" + name.replace("node", ""), name))
        return ip

    def drop_pod(self, name: str):
        self.pods = [p for p in self.pods if p["metadata"]["name"] != name]

    def write(self, out: Path) -> Path:
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(self.source, out)
        (out / "hosts.yml").write_text("---\n" + yaml.safe_dump(self.hosts, sort_keys=False), encoding="utf-8")
        _dump_all(out / "manifests" / "nodes.yaml", copy.deepcopy(self.nodes))
        _dump_all(out / "manifests" / "pods.yaml", copy.deepcopy(self.pods))
        return out


def scaled(nodes: int) -> Variant:
    """The lab with ``nodes`` nodes (>= 3): node4... appended, alternating rack A and B."""
    variant = Variant()
    for k in range(4, nodes + 1):
        variant.add_node("node%d" % k, "a" if k % 2 == 0 else "b")
    return variant


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--insert", action="append", default=[], metavar="NAME:RACK:AFTER")
    args = parser.parse_args(argv)
    variant = scaled(args.nodes)
    for spec in args.insert:
        name, rack, after = spec.split(":")
        variant.add_node(name, rack, after)
    print(variant.write(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
