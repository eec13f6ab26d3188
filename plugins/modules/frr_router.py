#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: frr_router
short_description: FRR 8.4 as the racks' top-of-rack router, eBGP with the nodes
version_added: 0.2.0
description:
  - Renders the router's complete C(frr.conf) (and C(daemons) with bgpd and bfdd on) from plain
    data - the router, its node neighbors and the cluster's address space - as
    C(podnet.fabric.tor_neighbors) and C(podnet.fabric.tor_settings) compute them from Calico's
    objects. Policy, BFD profile, ECMP and graceful restart are described in
    C(plugins/module_utils/frr.py).
  - A changed C(frr.conf) is checked by C(vtysh --dryrun) before anything changes (also in check
    mode); a candidate vtysh rejects fails with one line quoting vtysh's message and the line,
    passwords masked, and nothing is changed.
  - When FRR runs and only C(frr.conf) changed, the new file is installed (0640, C(frr:frr)) and
    applied by C(frr-reload.py --reload) - no restart, sessions stay up; when the reload fails the
    previous file is put back and reloaded. A changed C(daemons) file restarts C(frr.service).
    With I(service), C(frr.service) is enabled and started.
  - When nothing changed in the files but FRR runs a configuration that differs from C(frr.conf)
    (someone used vtysh), the file is applied again (C(frr-reload.py --test) finds the drift).
  - Both files carry the owner mark C(podnet.fabric:OWNER) in a comment. A C(frr.conf) of
    another owner, or one written by hand (no mark, with configuration in it), is refused
    naming both, unless I(force). Debian's own C(frr.conf) (logging only) and C(daemons) are
    taken over.
  - With I(wait), waits (at most I(wait_timeout) seconds) until every neighbor is Established
    and fails naming the ones that are not, with their state and FRR's last error.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.OWNER
requirements:
  - FRR 8.4 (Debian packages frr and frr-pythontools) on the target
notes:
  - The C(hostname) in C(frr.conf) is for the daemons; vtysh always shows the host's own name,
    so a difference there is not drift.
  - IPv4 forwarding is not in the file; applying it with C(frr-reload.py) turns IPv4 forwarding
    on, as a router needs (keep the sysctl on across reboots).
options:
  router:
    description: The router itself.
    type: dict
    required: true
    suboptions:
      hostname:
        description: The daemons' host name.
        type: str
        required: true
      as_number:
        description: The router's AS (1-4294967295); every node neighbor is in another AS (eBGP).
        type: int
        required: true
      router_id:
        description: The BGP router ID (an IPv4 address, usually one of the router's).
        type: str
        required: true
  neighbors:
    description: The nodes peering with the router, one entry each (what C(podnet.fabric.tor_neighbors) returns).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The node's name (the neighbor's description, and how errors name it); default the address.
        type: str
      address:
        description: The node's IPv4 address (its BGP source address).
        type: str
        required: true
      as_number:
        description: The AS the node presents (its C(localASNumber) towards the router, or its own AS).
        type: int
        required: true
      password:
        description: TCP MD5 password of the session (printable ASCII without whitespace, at most 80 characters).
        type: str
      bfd:
        description: BFD on the session (the profile of I(settings.bfd)).
        type: bool
        default: true
      rack:
        description: The node's rack (written into the description).
        type: str
      description:
        description: The neighbor's description; default the name and the rack.
        type: str
  settings:
    description: The cluster's address space, BFD, timers, ECMP.
    type: dict
    required: true
    suboptions:
      cluster_cidr:
        description: The pod network; pod CIDRs inside it are accepted from the nodes and relayed to the other nodes.
        type: str
        required: true
      cluster_node_prefix:
        description: The nodes' pod CIDR prefix length (the shortest prefix accepted inside I(cluster_cidr)).
        type: int
        default: 24
      pod_prefix_max:
        description: The longest prefix accepted inside I(cluster_cidr); default I(cluster_node_prefix).
        type: int
      service_cidrs:
        description: ClusterIP and external IP ranges the nodes announce (the range itself or anything inside it is accepted).
        type: list
        elements: str
        default: []
      load_balancer_cidrs:
        description: LoadBalancer ranges the nodes announce (the /32s of MetalLB's BGP mode pass).
        type: list
        elements: str
        default: []
      announce_default:
        description: Send the nodes a default route (C(default-originate)).
        type: bool
        default: false
      maximum_paths:
        description: ECMP paths per prefix (1-256).
        type: int
        default: 16
      bfd:
        description: The BFD profile C(podnet-nodes).
        type: dict
        suboptions:
          detect_multiplier:
            description: Packets lost before the session is down.
            type: int
            default: 3
          receive_interval:
            description: Milliseconds.
            type: int
            default: 100
          transmit_interval:
            description: Milliseconds.
            type: int
            default: 100
      keepalive_time:
        description: BGP keepalive (seconds, or like C(10s)); with I(hold_time).
        type: str
      hold_time:
        description: BGP hold time (seconds, 0 or at least 3 and 3 x I(keepalive_time)); with I(keepalive_time).
        type: str
      graceful_restart:
        description: C(bgp graceful-restart).
        type: bool
        default: true
      restart_time:
        description: Graceful restart time (seconds, 1-4095; FRR's default 120).
        type: str
      ipv6_forwarding:
        description: Leave IPv6 forwarding on; false writes C(no ipv6 forwarding).
        type: bool
        default: false
      extra_config:
        description: FRR lines appended as they are (the router's own static routes, logging); vtysh checks them with the rest.
        type: list
        elements: str
        default: []
  force:
    description: Adopt a C(frr.conf) or C(daemons) file of another owner or written by hand.
    type: bool
    default: false
  config_dir:
    description: FRR's configuration directory (C(frr.conf), C(daemons)).
    type: path
    default: /etc/frr
  vty_socket:
    description: The directory of the daemons' vty sockets, for daemons started with C(--vty_socket); default FRR's own.
    type: path
  service:
    description:
      - Manage C(frr.service) - enable and start it, restart it when the C(daemons) file changed.
      - False for daemons started by hand (tests run them in a network namespace); the files are
        still written, and a running FRR is still reloaded.
    type: bool
    default: true
  vtysh:
    description: The vtysh binary.
    type: path
    default: /usr/bin/vtysh
  frr_reload:
    description: FRR's C(frr-reload.py) (Debian package frr-pythontools).
    type: path
    default: /usr/lib/frr/frr-reload.py
  wait:
    description: Wait until every neighbor is Established (not in check mode).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait at most.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: The top-of-rack router, its neighbors computed from Calico's objects
  podnet.fabric.frr_router:
    owner: tor_router
    router: {hostname: router, as_number: 65000, router_id: 172.31.1.254}
    neighbors: "{{ objects | podnet.fabric.tor_neighbors(['172.31.1.254', '172.31.2.254'], manifests=paths) }}"
    settings: "{{ objects | podnet.fabric.tor_settings('10.244.0.0/16', manifests=paths) }}"
    wait: true

- name: Two nodes by hand, ECMP over 8 paths, BFD at 300 ms x 3
  podnet.fabric.frr_router:
    owner: tor_router
    router: {hostname: tor1, as_number: 65000, router_id: 10.0.0.1}
    neighbors:
      - {name: node1, address: 10.0.0.11, as_number: 65001, password: "{{ vault_tor_password }}", rack: a}
      - {name: node2, address: 10.0.0.12, as_number: 65001, password: "{{ vault_tor_password }}", rack: a}
    settings:
      cluster_cidr: 10.244.0.0/16
      load_balancer_cidrs: [10.0.10.0/24]
      maximum_paths: 8
      bfd: {receive_interval: 300, transmit_interval: 300}
"""

RETURN = r"""
config:
  description: The frr.conf written.
  returned: always
  type: str
  sample: /etc/frr/frr.conf
reloaded:
  description: frr-reload.py applied the file to the running daemons (or would, in check mode).
  returned: success
  type: bool
restarted:
  description: frr.service was restarted (or would be) because the daemons file changed.
  returned: success
  type: bool
started:
  description: frr.service was started (or would be).
  returned: success
  type: bool
drift:
  description: What differed between the running daemons and an unchanged frr.conf (C(- line) / C(+ line)), passwords masked.
  returned: success
  type: list
  elements: str
neighbors:
  description: The neighbors declared, as C(name address AS).
  returned: success
  type: list
  elements: str
sessions:
  description: The neighbors' sessions as FRR reports them (when FRR runs) - state, uptime (seconds), prefixes received and sent, BFD status, last error.
  returned: when FRR is running
  type: list
  elements: dict
  sample:
    - {name: node1, address: 172.31.1.11, state: Established, uptime: 42, prefixes_received: 2, prefixes_sent: 1, bfd: up}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils import frr
from ansible_collections.podnet.fabric.plugins.module_utils.runner import Context, execute, finish, module_spec

ARGUMENT_SPEC = dict(
    router=dict(type="dict", required=True, options=dict(
        hostname=dict(type="str", required=True),
        as_number=dict(type="int", required=True),
        router_id=dict(type="str", required=True),
    )),
    neighbors=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str"),
        address=dict(type="str", required=True),
        as_number=dict(type="int", required=True),
        password=dict(type="str", no_log=True),
        bfd=dict(type="bool", default=True),
        rack=dict(type="str"),
        description=dict(type="str"),
    )),
    settings=dict(type="dict", required=True, options=dict(
        cluster_cidr=dict(type="str", required=True),
        cluster_node_prefix=dict(type="int", default=24),
        pod_prefix_max=dict(type="int"),
        service_cidrs=dict(type="list", elements="str", default=[]),
        load_balancer_cidrs=dict(type="list", elements="str", default=[]),
        announce_default=dict(type="bool", default=False),
        maximum_paths=dict(type="int", default=16),
        bfd=dict(type="dict", options=dict(
            detect_multiplier=dict(type="int", default=3),
            receive_interval=dict(type="int", default=100),
            transmit_interval=dict(type="int", default=100),
        )),
        keepalive_time=dict(type="str"),
        hold_time=dict(type="str"),
        graceful_restart=dict(type="bool", default=True),
        restart_time=dict(type="str"),
        ipv6_forwarding=dict(type="bool", default=False),
        extra_config=dict(type="list", elements="str", default=[]),
    )),
    force=dict(type="bool", default=False),
    config_dir=dict(type="path", default=frr.DEFAULT_CONFIG_DIR),
    vty_socket=dict(type="path"),
    service=dict(type="bool", default=True),
    vtysh=dict(type="path", default=frr.VTYSH),
    frr_reload=dict(type="path", default=frr.FRR_RELOAD),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=60),
)


def daemon(ctx):
    p = ctx.params
    return frr.Frr(ctx.run, config_dir=p["config_dir"], vty_socket=p["vty_socket"], vtysh=p["vtysh"],
                   frr_reload=p["frr_reload"], manage_service=p["service"])


def desired(ctx):
    """(router, neighbors, config text, daemons text, passwords) from the task's parameters."""
    p = ctx.params
    neighbors = [dict((k, v) for k, v in n.items() if v is not None) for n in p["neighbors"]]
    config = frr.render(p["router"], neighbors, p["settings"], owner=ctx.owner)
    router = frr.normalize_router(p["router"])
    peers = frr.normalize_neighbors(neighbors, router)
    return peers, config, frr.render_daemons(owner=ctx.owner), [n["password"] for n in peers if n["password"]]


def build(ctx):
    peers, config, daemons, secrets = desired(ctx)
    labels = dict((str(n["address"]), n["name"]) for n in peers)
    plan, info = frr.plan(daemon(ctx), ctx.owner, config, daemons, force=ctx.params["force"], secrets=secrets,
                          labels=labels, warn=ctx.warn)
    return plan, {"config": info["config"], "reloaded": info["reload"], "restarted": info["restart"],
                  "started": info["start"], "drift": info["drift"],
                  "neighbors": ["%s %s %d" % (n["name"], n["address"], n["as_number"]) for n in peers]}


def report_sessions(module, result):
    """Add the neighbors' sessions to ``result``; with wait, until Established (bounded)."""
    p = module.params
    ctx = Context(p, check_mode=module.check_mode, owner=result.get("owner"))
    d = daemon(ctx)
    if not d.running():
        if p["wait"] and not module.check_mode and p["neighbors"]:
            return "FRR is not running (vtysh gets no answer): the sessions cannot come up"
        return None
    peers = frr.normalize_neighbors([dict((k, v) for k, v in n.items() if v is not None) for n in p["neighbors"]],
                                    frr.normalize_router(p["router"]))
    timeout = p["wait_timeout"] if p["wait"] and not module.check_mode else 0
    sessions, not_up = frr.wait_established(d, peers, timeout)
    result["sessions"] = sessions
    if timeout and not_up:
        return "neighbors not Established after %d s: %s" % (timeout, "; ".join(
            "%s (%s) %s%s" % (s["name"], s["address"], s["state"],
                              ": %s" % s["last_error"] if s.get("last_error") else " (BFD %s)" % (s.get("bfd") or "not up"))
            for s in not_up))
    return None


def main():
    module = AnsibleModule(argument_spec=module_spec(ARGUMENT_SPEC, netns=False), supports_check_mode=True)
    result = execute(module.params, build, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    finish(module, result, report_sessions)


if __name__ == "__main__":
    main()
