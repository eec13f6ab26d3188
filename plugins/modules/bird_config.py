#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: bird_config
short_description: Write BIRD 2's main configuration the way Calico's confd does, and run the daemon
version_added: 0.2.0
description:
  - Writes the main BIRD 2 configuration (default C(/etc/bird/bird.conf)) from structured
    parameters, with the semantics of Calico's confd templates, and keeps C(bird.service)
    enabled and running (I(state=present)) or stopped and disabled (I(state=absent)).
  - "What it writes: C(router id); C(timeformat protocol iso long) (I(iso_time)); C(protocol
    device podnet_device) with C(scan time 2); C(protocol direct podnet_direct) (Calico's
    interface list, so that C(gateway recursive) resolves the peers' next hops); C(protocol
    static podnet_originate4) (and C(podnet_originate6)) with each I(originate) prefix as
    C(route PREFIX blackhole;); C(protocol kernel podnet_kernel4) (and C(6)) with Calico's
    C(learn; persist; scan time 2; graceful restart; merge paths on); C(protocol bfd podnet_bfd)
    (I(bfd)); the I(extra) text; and last C(include \"CONFIG_DIR/*.conf\";), the peers of
    M(podnet.fabric.calico_bgp_peer)."
  - "Two filters with fixed names. C(podnet_kernel), the kernel channel's export: only
    BGP-learned routes inside I(kernel.program) reach the kernel (Calico programs only IP-pool
    routes); the originated blackholes never do - a blackhole for a service range in the kernel
    would break local connects. C(podnet_export), for calico_bgp_peer's I(export_filter): the
    originated routes and BGP-learned routes inside I(export) (so that a route reflector reflects
    the pool routes), nothing else - never kernel-learned or connected routes, never a default
    route. Peers keep C(import all), as Calico's."
  - The first line of the file carries the owner's mark. Another owner's file is never replaced
    (the task fails naming both owners); a file that is not podnet.fabric's (the package's
    default) only with I(force).
  - The complete new main file, with the peers' files as they are, is parsed by BIRD itself
    (C(bird -p -c), in a staging copy) before it replaces the old one; a configuration BIRD
    rejects changes nothing, and the error quotes BIRD's message, the file, the line and the
    offending text. When BIRD runs, C(birdc configure) loads a changed file - BIRD reconfigures
    in place, so sessions the change does not affect stay Established.
  - I(state=absent) stops and disables the service, removes the owner's main file (a file that is
    not podnet.fabric's is left alone) and deletes the routes BIRD left in the kernel (with
    C(persist), BIRD leaves its routes when it stops), so that switching routing modes leaves
    nothing stale.
  - Check mode and C(--diff) show the file before and after, the service change and the kernel
    routes to delete.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.BIRD
requirements:
  - BIRD 2 (Debian package bird2) on the target
  - pyroute2 on the target for I(state=absent) (Debian python3-pyroute2)
notes:
  - C(netns) is where C(birdc) runs and where I(state=absent) deletes BIRD's kernel routes (the
    daemon's namespace); the files and the systemd service are the host's. A daemon started by
    hand in a namespace (C(bird -c FILE -s SOCKET)) is managed with I(manage_service=false).
  - "BIRD 2 installs its routes with C(proto bird) (RTPROT_BIRD, 12) and metric 32: BIRD 2.0
    hardcodes the protocol, it cannot be the owner's route protocol. Other podnet.fabric owners'
    routes (metric 0) are therefore never the same kernel route as BIRD's."
  - "BFD: the timers apply to single-hop sessions (C(interface \"*\")) and to multihop ones
    (C(multihop)); Calico's peers are C(multihop), so BIRD requests multihop BFD sessions (UDP
    port 4784) for them."
options:
  state:
    description: C(present) writes the file and runs the daemon; C(absent) undoes it (see above).
    type: str
    choices: [present, absent]
    default: present
  router_id:
    description: BIRD's C(router id), IPv4-formatted (Calico uses the node's IPv4 address). Required when I(state=present).
    type: str
  originate:
    description:
      - Prefixes this node originates, each a C(route PREFIX blackhole;) of C(protocol static podnet_originate4)/C(6)
        - Calico's pod CIDR block(s), the service ranges (serviceClusterIPs, serviceExternalIPs,
        serviceLoadBalancerIPs) and LoadBalancer /32s. Sent to BGP peers through C(podnet_export), never to the kernel.
    type: list
    elements: str
    default: []
  export:
    description:
      - Ranges whose BGP-learned routes C(podnet_export) sends on to peers (the IP pools, the service ranges), so
        that a route reflector reflects them. Each range covers itself and every longer prefix inside it.
    type: list
    elements: str
    default: []
  kernel:
    description: The kernel protocol (Calico's template).
    type: dict
    suboptions:
      program:
        description:
          - Ranges whose BGP-learned routes BIRD installs in the kernel (Calico programs the IP pools); every longer
            prefix inside a range is programmed. Empty - BIRD installs nothing (its routes already there leave).
        type: list
        elements: str
        default: []
      merge_paths:
        description: C(merge paths on) - equal routes from several peers become one multipath (ECMP) kernel route.
        type: bool
        default: true
      scan_time:
        description: Seconds between scans of the kernel table.
        type: int
        default: 2
      graceful_restart:
        description: C(graceful restart;) - after a restart BIRD syncs its kernel routes instead of flushing them.
        type: bool
        default: true
      learn:
        description: C(learn;) - alien kernel routes are learned into BIRD's table (they are never exported to peers).
        type: bool
        default: true
      persist:
        description: C(persist;) - BIRD leaves its routes in the kernel when it stops.
        type: bool
        default: true
  bfd:
    description:
      - BFD timers; omitted, no C(protocol bfd) is written (then no peer may have C(bfd on)). The top-of-rack router
        (FRR) uses 100 ms x 3, see podnet.fabric's frr module_utils.
    type: dict
    suboptions:
      interval_ms:
        description: Transmit and receive interval in milliseconds.
        type: int
        default: 100
      multiplier:
        description: Missed packets before the session is down.
        type: int
        default: 3
  iso_time:
    description: C(timeformat protocol iso long;) - BIRD prints full dates, so session uptimes are exact at any age.
    type: bool
    default: true
  log:
    description: Where BIRD logs - C(syslog), C(stderr) or an absolute file path.
    type: str
    default: syslog
  extra:
    description: BIRD text written before the include line (own filters, functions). Validated by BIRD like the rest.
    type: str
  force:
    description: Replace a main file that is not podnet.fabric's (the bird2 package's default). Another owner's file is never replaced.
    type: bool
    default: false
  manage_service:
    description:
      - Enable and start I(service) (present), stop and disable it (absent), with C(systemctl). Set false where the daemon is
        started otherwise (in a network namespace, by a test).
      - With false and I(state=absent), BIRD must not be running (it would put its routes back).
    type: bool
    default: true
  service:
    description: The systemd unit of the daemon.
    type: str
    default: bird.service
  config:
    description: The main BIRD configuration, the file the daemon is started with.
    type: path
    default: /etc/bird/bird.conf
  config_dir:
    description: The peers' directory (M(podnet.fabric.calico_bgp_peer)'s I(config_dir)), included at the end.
    type: path
    default: /etc/bird/podnet.d
"""

EXAMPLES = r"""
- name: BIRD as Calico configures it on node1 (block 10.244.1.0/24, service range 10.96.0.0/12)
  podnet.fabric.bird_config:
    owner: routing
    router_id: 172.31.1.11
    originate: [10.244.1.0/24, 10.96.0.0/12]
    export: [10.244.0.0/16, 10.96.0.0/12]
    kernel:
      program: [10.244.0.0/16]
    bfd: {interval_ms: 100, multiplier: 3}
    force: true            # the first run replaces the bird2 package's bird.conf

- name: The peers use the module's export filter
  podnet.fabric.calico_bgp_peer:
    owner: routing
    node_ip: 172.31.1.11
    peers:
      - {peer_ip: 172.31.1.12, as_number: 64512, calico_node: true, name_prefix: Mesh, export_filter: podnet_export}

- name: Another routing mode - BIRD stops, its file and its kernel routes go
  podnet.fabric.bird_config:
    owner: routing
    state: absent
"""

RETURN = r"""
file:
  description: The main configuration file.
  returned: always
  type: str
  sample: /etc/bird/bird.conf
reconfigured:
  description: The file changed while BIRD ran, so C(birdc configure) loaded it (in check mode - would).
  returned: always
  type: bool
removed_routes:
  description: BIRD's kernel routes deleted (I(state=absent)), as C(ip route) prints them.
  returned: always
  type: list
  elements: str
  sample: ["10.244.2.0/24 via 172.31.1.12 dev eth0 metric 32"]
export_filter:
  description: The name of the filter peers export with (calico_bgp_peer's I(export_filter)).
  returned: always
  type: str
  sample: podnet_export
routes:
  description: C(birdc show route count) after the run - per table, routes and networks.
  returned: when BIRD is running
  type: dict
  sample: {master4: {routes: 5, networks: 4}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils import bird, bird_main, netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import Context, execute, finish, module_spec

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    router_id=dict(type="str"),
    originate=dict(type="list", elements="str", default=[]),
    export=dict(type="list", elements="str", default=[]),
    kernel=dict(type="dict", options=dict(
        program=dict(type="list", elements="str", default=[]),
        merge_paths=dict(type="bool", default=True),
        scan_time=dict(type="int", default=2),
        graceful_restart=dict(type="bool", default=True),
        learn=dict(type="bool", default=True),
        persist=dict(type="bool", default=True),
    )),
    bfd=dict(type="dict", options=dict(
        interval_ms=dict(type="int", default=100),
        multiplier=dict(type="int", default=3),
    )),
    iso_time=dict(type="bool", default=True),
    log=dict(type="str", default="syslog"),
    extra=dict(type="str"),
    force=dict(type="bool", default=False),
    manage_service=dict(type="bool", default=True),
    service=dict(type="str", default=bird_main.DEFAULT_SERVICE),
    **bird.DAEMON_OPTIONS
)


def build(ctx):
    p = ctx.params
    if ctx.netns_missing() and not ctx.check_mode:
        raise FabricError("netns %s: does not exist" % ctx.netns)
    cfg = bird_main.normalize(p)
    daemon = bird.daemon(ctx)
    running = not ctx.netns_missing() and daemon.running()
    ipr = ctx.netlink() if cfg["state"] == "absent" else None
    plan, info = bird_main.plan(daemon, ctx.owner, cfg, run_host=netns_exec.run, ipr=ipr, running=running,
                                service=p["service"] if p["manage_service"] else None, force=p["force"])
    info["export_filter"] = bird_main.EXPORT_FILTER
    return plan, info


def main():
    module = AnsibleModule(argument_spec=module_spec(ARGUMENT_SPEC), supports_check_mode=True,
                           required_if=[("state", "present", ("router_id",))])
    if module.params["state"] == "absent":
        from ansible_collections.podnet.fabric.plugins.module_utils.netlink import core
        core.require_pyroute2(module)
    result = execute(module.params, build, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    finish(module, result, report_routes)


def report_routes(module, result):
    """BIRD's route counts, when it runs (a failure to read them is only a warning)."""
    ctx = Context(module.params, check_mode=module.check_mode)
    if not ctx.netns_missing():
        daemon = bird.daemon(ctx)
        try:
            if daemon.running():
                result["routes"] = bird_main.parse_route_count(daemon.birdc("show", "route", "count"))
        except FabricError as exc:
            module.warn("birdc show route count: %s" % exc)
    return None


if __name__ == "__main__":
    main()
