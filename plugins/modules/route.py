#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: route
short_description: Manage IPv4/IPv6 routes on a host or inside a network namespace
version_added: 0.1.0
description:
  - Adds, replaces and deletes routes over netlink (pyroute2) - routes to other nodes' pod
    subnets (host-gw, or C(via <subnet>.0 dev flannel.1 onlink) for VXLAN), default routes inside
    pods, blackhole routes for a node's own block, ECMP multipath routes, routes in other tables.
  - Every route it installs carries its I(owner)'s route protocol - a number from 150..179
    registered once per host for the owner in C(/etc/iproute2/rt_protos.d/podnet-fabric.conf), so
    C(ip route) prints C(proto OWNER). The first run of a new owner registers it (an action of
    its own, undone on failure; check mode only reads the file). Only routes with the owner's
    number are ever replaced or deleted. Routes of the kernel, of DHCP, of routing daemons, of
    Docker or a real CNI, of other owners and those the user added by hand are never touched,
    also not by I(purge).
  - A route is identified by its address family, table, destination and metric (as the kernel
    does). When such a route exists with the owner's protocol and different attributes it is
    replaced in place; when it exists with another owner's protocol, or with one that is not
    podnet.fabric's, the task fails naming both instead of taking it over.
  - Routes of podnet.fabric 0.1 (C(proto 149)) are adopted by the owner that declares them - the
    route is replaced in place with the owner's protocol (no delete and re-add, so no gap in
    forwarding). Undeclared C(proto 149) routes are never purged.
  - Adds and replaces run first, each with an undo; deletions run last (a deleted route cannot
    be put back as it was).
  - Input is validated before anything changes - a gateway that is not on a connected network
    of the namespace (without I(onlink)), a I(dev) that does not exist, a I(src) that is not a
    local address, a bad CIDR fail the task with one line naming the route, and the namespace is
    left as it was. A kernel error while applying rolls back the changes already made.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
requirements:
  - pyroute2 >= 0.7.2 on the target (Debian package python3-pyroute2)
notes:
  - In check mode a I(dev) that does not exist yet (an earlier task would create it) is assumed
    to be there, and what depends on it (the gateway check through it) is not checked.
  - Deleting a link (for example recreating a VXLAN device) makes the kernel drop the routes
    through it; run this module after the modules that manage the links.
options:
  routes:
    description: The routes to manage, one entry per route.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description:
          - Destination network in CIDR notation (host bits zero), for example C(10.244.2.0/24),
            C(fd00:10:244:2::/64), or C(default) (the IPv4 default route; C(::/0) for IPv6).
        type: str
        required: true
      state:
        description:
          - C(present) makes the route exist with exactly these attributes; C(absent) deletes
            the route with this destination, table and metric when the owner has it (a route
            of another owner or not podnet.fabric's is an error, not silently left or removed).
        type: str
        choices: [present, absent]
        default: present
      gateway:
        description: Next hop address (C(via)). Must be of the destination's address family.
        type: str
      dev:
        description:
          - Outgoing interface. Without a gateway this is a directly connected route (scope
            link), for example a pod's C(default) route C(dev eth0). With a gateway and without
            I(dev), the kernel picks the link of the connected network the gateway is on.
        type: str
      onlink:
        description:
          - Pretend the gateway is directly reachable on I(dev) even though no connected route
            covers it (the flannel/Calico VXLAN route C(via 10.244.2.0 dev flannel.1 onlink)).
            Needs I(gateway) and I(dev).
        type: bool
        default: false
      metric:
        description:
          - Route metric (priority); part of the route's identity. Default 0 for IPv4 and 1024
            for IPv6, as the kernel does.
        type: int
      table:
        description:
          - Routing table - C(main) (default), C(local), C(default), or a number 1..4294967295.
        type: str
        default: main
      scope:
        description:
          - IPv4 route scope - C(universe), C(site), C(link), C(host) or a number. Default as in
            C(ip route) - C(link) for a unicast route without gateway, C(host) for a local
            route, otherwise C(universe). IPv6 routes have no scope.
        type: str
      type:
        description:
          - Route type. C(blackhole), C(unreachable), C(prohibit) and C(throw) take no gateway or
            dev (Calico announces each node's block as a blackhole route).
        type: str
        choices: [unicast, local, blackhole, unreachable, prohibit, throw]
        default: unicast
      src:
        description: Preferred source address (C(src)); must be an address of the namespace.
        type: str
      mtu:
        description: Path MTU for this route (the C(mtu) route metric). Omit for none.
        type: int
      nexthops:
        description:
          - ECMP multipath - two or more next hops that share the traffic by weight. Exclusive
            with I(gateway), I(dev) and I(onlink) on the route itself.
          - Compared as a set, so the order does not matter.
        type: list
        elements: dict
        suboptions:
          gateway:
            description: Next hop address.
            type: str
          dev:
            description: Outgoing interface of this next hop.
            type: str
          weight:
            description: Relative weight 1..256.
            type: int
            default: 1
          onlink:
            description: As I(onlink) above, for this next hop.
            type: bool
            default: false
  protocol:
    description:
      - Pin the owner's route protocol number (for example to keep the number a host already
        uses for this owner). It must agree with the registry - a number registered for another
        owner, or another number than the one registered for this owner, is an error.
      - Omit to use (or register) the owner's number from the registry, the normal case.
      - Refused - 0..3 (the kernel's and plain C(ip route add)'s), 149 (podnet.fabric 0.1's) and
        numbers iproute2 names for other programs (C(static), C(bird), C(bgp) ...).
    type: int
  purge:
    description:
      - Delete the owner's routes (those with its protocol) that are not listed in I(routes), in
        every table a listed route uses and in the tables of I(purge_tables), for IPv4 and IPv6.
        Routes with any other protocol, and podnet.fabric 0.1's C(proto 149) routes, are never
        touched.
      - Needs an explicit I(owner).
    type: bool
    default: false
  purge_tables:
    description:
      - More tables to purge the owner's undeclared routes in, besides those the listed routes
        use - C(main), C(local), C(default) or numbers. Table C(main) is purged only when a
        listed route is in it or it is listed here (so a task that only manages table 100 never
        touches the owner's routes in main).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Flannel-style routes to the other nodes' pod subnets through the VTEP
  podnet.fabric.route:
    owner: pod_routing
    routes:
      - dest: 10.244.2.0/24
        gateway: 10.244.2.0
        dev: flannel.1
        onlink: true
      - dest: 10.244.3.0/24
        gateway: 10.244.3.0
        dev: flannel.1
        onlink: true
    purge: true   # nodes that left the cluster lose their route (pod_routing's, in table main)

- name: host-gw - the pod subnet of a node on the same L2 segment
  podnet.fabric.route:
    owner: pod_routing
    routes:
      - dest: 10.244.2.0/24
        gateway: 192.168.1.12

- name: A pod's default route, set up the ptp way (gateway /32 on the link first)
  podnet.fabric.route:
    owner: pod_network
    netns: pod-web-1
    routes:
      - dest: 10.244.1.1/32
        dev: eth0
      - dest: default
        gateway: 10.244.1.1
        dev: eth0

- name: Calico-style blackhole for the node's own block, and an ECMP route to a service VIP
  podnet.fabric.route:
    owner: pod_routing
    routes:
      - dest: 10.244.1.0/26
        type: blackhole
      - dest: 10.96.0.10/32
        nexthops:
          - gateway: 192.168.1.11
          - gateway: 192.168.1.12
            weight: 2

- name: A second owner keeps its own routes in table 100 and purges only there
  podnet.fabric.route:
    owner: egress
    routes:
      - dest: default
        gateway: 192.168.1.254
        table: 100
    purge: true

- name: Remove every route of the owner vip in table main and table 200 (none declared)
  podnet.fabric.route:
    owner: vip
    routes: []
    purge: true
    purge_tables: [main, "200"]
"""

RETURN = r"""
routes:
  description:
    - The declared and purged routes as they are after the run (as they would be, in check
      mode), in user terms. Purged and absent routes have C(state=absent).
  returned: always
  type: list
  elements: dict
  sample:
    - dest: 10.244.2.0/24
      state: present
      table: main
      metric: 0
      type: unicast
      scope: universe
      protocol: 150
      gateway: 10.244.2.0
      dev: flannel.1
      onlink: true
      src: null
      mtu: null
      nexthops: []
protocol:
  description: The owner's route protocol number (C(ip route) prints the owner's name for it).
  returned: always
  type: int
  sample: 150
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink", "delete route 10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink"]
"""

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import route
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

ARGUMENT_SPEC = dict(
    routes=dict(type="list", elements="dict", required=True, options=dict(
        dest=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        gateway=dict(type="str"),
        dev=dict(type="str"),
        onlink=dict(type="bool", default=False),
        metric=dict(type="int"),
        table=dict(type="str", default="main"),
        scope=dict(type="str"),
        type=dict(type="str", choices=sorted(route.TYPES), default="unicast"),
        src=dict(type="str"),
        mtu=dict(type="int"),
        nexthops=dict(type="list", elements="dict", options=dict(
            gateway=dict(type="str"),
            dev=dict(type="str"),
            weight=dict(type="int", default=1),
            onlink=dict(type="bool", default=False),
        )),
    )),
    protocol=dict(type="int"),
    purge=dict(type="bool", default=False),
    purge_tables=dict(type="list", elements="str", default=[]),
)


def build(ctx):
    params = ctx.params
    pinned = route.check_protocol(params["protocol"]) if params["protocol"] is not None else None
    wanted = [route.normalize(r) for r in params["routes"]]
    tables = [route.check_table(t, "purge_tables") for t in params["purge_tables"]]
    plan, number = route.plan_for_owner(ctx.netlink(), wanted, ctx.owner, pinned=pinned, check_mode=ctx.check_mode,
                                        purge=params["purge"], purge_tables=tables)
    return plan, {"routes": [plan.after[k] for k in sorted(plan.after)], "protocol": number}


def main():
    run_module(ARGUMENT_SPEC, build, persist_as="route")


if __name__ == "__main__":
    main()
