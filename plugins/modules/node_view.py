#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: node_view
short_description: Show what the collection built on a node - pods, bridge, routes, VXLAN, Services, BGP, VIPs (read-only)
version_added: "0.4.0"
description:
  - Reads the live state of the node (or of the network namespace O(netns)) and of its pod
    namespaces, and returns it as one structured view (RV(view)) and as a compact text (RV(text))
    in the shape the seeds draw a node. Nothing is changed, in check mode or not.
  - The state is read as the P(podnet.fabric.trace#module) module reads it - C(iptables-save) of
    the flavour in use and, through netlink, links, addresses, routes, neighbours, VXLAN devices and
    their FDB entries - plus, in every pod namespace, its links, addresses and routes, and BIRD's
    C(birdc show protocols all) when C(birdc) is installed and its socket exists. C(ip) is never
    run.
  - "Pods: each pod namespace's veth, its address, the node's veth (the node link whose index is
    the pod side's peer index) and that veth's bridge. Routes: the main table's routes inside
    O(cluster_cidr), each classified C(direct) (host-gw, through a gateway), C(vxlan) (out of a
    VXLAN device, with the neighbour's MAC and the FDB's remote VTEP), C(bgp) (protocol bird),
    C(local) (the node's own pod CIDR on its bridge), C(multipath), C(blackhole)... and whether it
    is the active one of its destination (lowest metric)."
  - "Services from kube-proxy's nat table: C(KUBE-SERVICES) and C(KUBE-NODEPORTS) rules (their
    comments name the Service port), the C(KUBE-SVC-*) chain and its endpoints (the
    C(KUBE-SEP-*) chains' DNAT destinations, with their chance). VIPs: the /32 addresses on the
    uplink besides its network address, with their label; their owner is this node."
author:
  - podnet.fabric developers (@podnet)
options:
  namespaces:
    description:
      - The network namespaces to show as pods (names under C(/run/netns)).
      - Omitted, every namespace under C(/run/netns) whose name starts with O(netns_prefix).
    type: list
    elements: str
  netns_prefix:
    description: Which namespaces are pods when O(namespaces) is omitted (the pod_network role's prefix).
    type: str
    default: pod-
  pod_names:
    description:
      - The pods' names by namespace, as the pod_network role names them (a mapping of
        C(NETNS) to C(NAMESPACE/NAME)); a namespace not listed is named after itself (see the notes).
    type: dict
    default: {}
  cluster_cidr:
    description:
      - The cluster's pod address space; only routes inside it are shown.
      - Omitted, every main-table route except the default route and the connected subnets of
        devices that are not bridges or VXLAN devices.
    type: str
  uplink:
    description:
      - The interface holding the node's address (where VIPs live). Omitted, a VXLAN device's
        underlay device, else the default route's device.
    type: str
  name:
    description: The node's name in the view (default the namespace name, else the host name).
    type: str
  birdc:
    description: The birdc program; BGP sessions are left out when it is not installed.
    type: str
    default: birdc
  bird_socket:
    description: BIRD's control socket; BGP sessions are left out when it does not exist.
    type: path
    default: /run/bird/bird.ctl
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.IPTABLES_READ
attributes:
  check_mode:
    support: full
    details: Read-only; the result is the same in check mode.
  diff_mode:
    support: none
notes:
  - IPv4 only. A pod namespace that disappears while it is read is left out with a warning.
  - Without O(pod_names), a pod's name is its namespace's name without O(netns_prefix), the
    Kubernetes namespace taken up to the first dash (C(pod-default-web-1) is C(default/web-1));
    playbooks/show.yml passes the names from the cluster's objects.
  - Requires pyroute2 (Debian C(python3-pyroute2)) and iptables on the node.
seealso:
  - module: podnet.fabric.trace
"""

EXAMPLES = r"""
- name: What the collection built on this node
  podnet.fabric.node_view:
    cluster_cidr: 10.244.0.0/16
  register: node_view

- name: Print it
  ansible.builtin.debug:
    msg: "{{ node_view.text }}"

- name: Only two pod namespaces, in the node namespace lab-node1
  podnet.fabric.node_view:
    netns: lab-node1
    namespaces: [pod-default-web-1, pod-default-tools-1]
"""

RETURN = r"""
view:
  description:
    - The node's view. C(node), C(uplink) (C(dev), C(address)), C(bridges) (C(name), C(addresses),
      C(mtu), C(mac), C(ports)), C(pods) (C(netns), C(name), C(ifname), C(address), C(addresses),
      C(mac), C(veth), C(bridge), C(gateway)), C(routes) (C(dest), C(kind), C(dev), C(gateway),
      C(metric), C(protocol), C(active), C(nexthops), C(vxlan) with C(vni), C(port), C(mac),
      C(remote)), C(vxlan) (C(dev), C(vni), C(port), C(local), C(uplink), C(mac), C(peers) with
      C(ip), C(mac), C(remote)), C(neighbours) and C(fdb) of the VXLAN devices, C(services)
      (C(name), C(protocol), C(cluster_ip), C(port), C(chain), C(node_port), C(external_ips),
      C(external_chain), C(endpoints) with C(address), C(chance), C(chain), C(reject)), C(bgp)
      (C(sessions) with C(name), C(state), C(since), C(info), C(neighbor_address),
      C(neighbor_as); C(routes) learned, proto bird), C(vips) (C(address), C(dev), C(label),
      C(owner)).
  returned: always
  type: dict
text:
  description: The view as lines, one per bridge, pod, route, VXLAN peer, Service, BGP session, VIP.
  returned: always
  type: list
  elements: str
  sample:
    - node1  eth0 172.31.1.11/24
    - '  bridge cni0 10.244.1.1/24 mtu 1450, 2 port(s)'
    - '  pod default/web-1             10.244.1.5      eth0 <-> veth6a1f0c2d @ cni0'
    - '  route 10.244.3.0/24 via flannel.1 (VXLAN VNI 1 -> 172.31.2.13)'
    - '  service default/web:http 10.96.0.20:80/tcp -> 10.244.1.5:8080 (50%) 10.244.3.5:8080 (50%)'
    - '  bgp Node_172_31_1_12 Established since 19:20:01 (172.31.1.12 AS 65001)'
iptables_flavour:
  description: The iptables flavour read.
  returned: always
  type: str
  sample: nft
"""

import os
import shutil
import socket

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec, show
from ansible_collections.podnet.fabric.plugins.module_utils.bird import Bird
from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module
from ansible_collections.podnet.fabric.plugins.module_utils.trace import live
from ansible_collections.podnet.fabric.plugins.module_utils.vip_arp import Kernel

ARGUMENT_SPEC = dict(
    namespaces=dict(type="list", elements="str"),
    netns_prefix=dict(type="str", default="pod-"),
    pod_names=dict(type="dict", default={}),
    cluster_cidr=dict(type="str"),
    uplink=dict(type="str"),
    name=dict(type="str"),
    birdc=dict(type="str", default="birdc"),
    bird_socket=dict(type="path", default="/run/bird/bird.ctl"),
    iptables_flavour=dict(type="str", choices=["auto", "nft", "legacy"], default="auto"),
)


def _which(name):
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


def pod_namespaces(prefix, directory=netns_exec.NETNS_RUN_DIR):
    """Names under /run/netns starting with ``prefix``."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def read_pods(ctx, names):
    """{netns: its links, addresses, routes} (read in each pod namespace over netlink)."""
    out = {}
    for netns in names:
        if netns == ctx.netns:
            continue
        try:
            with core.open_netns(netns) as ipr:
                out[netns] = live.read_netlink(ipr)
        except FabricError as exc:
            ctx.warn("pod namespace %s left out: %s" % (netns, exc))
    return out


def read_labels(ctx):
    """{ip: address label} of the task's namespace (the VIPs' labels)."""
    return dict((a["address"], a["label"]) for a in Kernel(ctx.netlink()).addresses() if a.get("label"))


def read_protocols(ctx):
    """``birdc show protocols all`` in the task's namespace, or None without BIRD."""
    p = ctx.params
    birdc = _which(p["birdc"])
    if birdc is None or not os.path.exists(p["bird_socket"]):
        return None
    try:
        return Bird(ctx.run, socket=p["bird_socket"], birdc=birdc).birdc("show", "protocols", "all")
    except FabricError as exc:
        ctx.warn("BGP sessions left out: %s" % exc)
        return None


def build(ctx):
    p = ctx.params
    name = p["name"] or ctx.netns or socket.gethostname()
    state, flavour = live.read_state(name, ctx.netns, ctx.run, _which, p["iptables_flavour"])
    names = p["namespaces"] if p["namespaces"] is not None else pod_namespaces(p["netns_prefix"])
    view = show.node_view(name, state, pods=read_pods(ctx, names), protocols_text=read_protocols(ctx),
                          labels=read_labels(ctx), cluster_cidr=p["cluster_cidr"], uplink=p["uplink"],
                          netns_prefix=p["netns_prefix"], pod_names=p["pod_names"])
    return Plan(), {"view": view, "text": show.text_lines(view), "iptables_flavour": flavour}


def main():
    run_module(ARGUMENT_SPEC, build, owner=False)


if __name__ == "__main__":
    main()
