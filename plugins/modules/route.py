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
  - Every route it installs carries a protocol number (C(proto 149) in C(ip route) unless
    I(protocol) says otherwise). Only routes with that number are ever replaced or deleted.
    Routes of the kernel, of DHCP, of routing daemons, of Docker or a real CNI, and those the
    user added by hand are never touched, also not by I(purge).
  - A route is identified by its address family, table, destination and metric (as the kernel
    does). When such a route exists with the task's protocol and different attributes it is
    replaced in place; when it exists with another protocol the task fails instead of taking it
    over.
  - Input is validated before anything changes - a gateway that is not on a connected network
    of the namespace (without I(onlink)), a I(dev) that does not exist, a I(src) that is not a
    local address, a bad CIDR fail the task with one line naming the route, and the namespace is
    left as it was. A kernel error while applying rolls back the changes already made.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
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
            the route with this destination, table and metric when the task owns it (a route
            with another protocol is an error, not silently left or removed).
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
      - The protocol number that marks the routes this task owns (C(proto N) in C(ip route)).
      - Two owners can keep their routes apart (and purge independently) with different numbers.
      - 0..3 are refused - they are set by the kernel (C(kernel), C(redirect)) or are the
        unmarked default of a plain C(ip route add) (C(boot)).
    type: int
    default: 149
  purge:
    description:
      - Delete routes with I(protocol) that are not listed in I(routes), in table C(main) and in
        every table a listed route uses, for IPv4 and IPv6. Routes with any other protocol are
        never touched.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Flannel-style routes to the other nodes' pod subnets through the VTEP
  podnet.fabric.route:
    routes:
      - dest: 10.244.2.0/24
        gateway: 10.244.2.0
        dev: flannel.1
        onlink: true
      - dest: 10.244.3.0/24
        gateway: 10.244.3.0
        dev: flannel.1
        onlink: true
    purge: true   # nodes that left the cluster lose their route

- name: host-gw - the pod subnet of a node on the same L2 segment
  podnet.fabric.route:
    routes:
      - dest: 10.244.2.0/24
        gateway: 192.168.1.12

- name: A pod's default route, set up the ptp way (gateway /32 on the link first)
  podnet.fabric.route:
    netns: pod-web-1
    routes:
      - dest: 10.244.1.1/32
        dev: eth0
      - dest: default
        gateway: 10.244.1.1
        dev: eth0

- name: Calico-style blackhole for the node's own block, and an ECMP route to a service VIP
  podnet.fabric.route:
    routes:
      - dest: 10.244.1.0/26
        type: blackhole
      - dest: 10.96.0.10/32
        nexthops:
          - gateway: 192.168.1.11
          - gateway: 192.168.1.12
            weight: 2

- name: A second owner (for example the egress role) keeps its own routes in table 100
  podnet.fabric.route:
    protocol: 150
    routes:
      - dest: default
        gateway: 192.168.1.254
        table: 100
    purge: true
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
      protocol: 149
      gateway: 10.244.2.0
      dev: flannel.1
      onlink: true
      src: null
      mtu: null
      nexthops: []
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink", "delete route 10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core, route
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, finish


def main():
    module = AnsibleModule(
        argument_spec=dict(
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
            protocol=dict(type="int", default=core.OWNER_ROUTE_PROTO),
            purge=dict(type="bool", default=False),
            netns=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    core.require_pyroute2(module)
    try:
        protocol = route.check_protocol(module.params["protocol"])
        wanted = [route.normalize(r) for r in module.params["routes"]]
        with core.open_netns(module.params["netns"], missing_ok=module.check_mode) as ipr:
            plan = route.plan(ipr, wanted, protocol=protocol, purge=module.params["purge"],
                              assume_links=module.check_mode)
            finish(module, plan, routes=[plan.after[k] for k in sorted(plan.after)])
    except FabricError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
