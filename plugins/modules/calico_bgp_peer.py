#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: calico_bgp_peer
short_description: Manage the BGP peers of a node's BIRD 2 daemon with Calico's BGPPeer fields
version_added: 0.2.0
description:
  - Writes one C(protocol bgp) block per peer, the way Calico's confd template writes them for
    BIRD (C(ttl security off; multihop;) or C(ttl security on; multihop N;), C(graceful restart),
    C(connect delay time 2), C(connect retry time 5), C(error wait time 5,30), C(gateway
    recursive), C(add paths on)), named as Calico names them (C(Node_10_0_0_2),
    C(Node_10_0_0_2_port_1179)).
  - "Layout: each owner's peers live in one file, C(CONFIG_DIR/OWNER.conf) (default
    C(/etc/bird/podnet.d/OWNER.conf)), mode 0640, group C(bird) where that group exists, since it
    holds the passwords. The main configuration I(config) includes the directory with one line,
    C(include \"CONFIG_DIR/*.conf\";), which the module appends to it when missing. Global
    things stay in the main file - C(router id), C(protocol device), C(direct), C(kernel),
    C(static), C(protocol bfd), filters - which M(podnet.fabric.bird_config) writes. Other files in the directory (another owner's, your own)
    are never written."
  - The complete new configuration is parsed by BIRD itself (C(bird -p -c), in a staging copy)
    before it replaces the old one, then C(birdc configure) loads it. A configuration BIRD rejects
    changes nothing - the running sessions stay up - and the error quotes BIRD's message, file,
    line and the offending line (passwords masked), naming the peer.
  - With I(wait), waits (at most I(wait_timeout) seconds) until every declared session is
    Established, and fails naming the peers that are not, with their state and BIRD's last error.
  - Check mode and C(--diff) show the owner's file before and after, passwords masked.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.BIRD
requirements:
  - BIRD 2 (Debian package bird2) on the target, its daemon started with I(config)
notes:
  - C(netns) is where C(birdc) and C(bird -p) run (the daemon's namespace); the files are the
    host's.
  - "Passive side: for a peer that is another Calico node (I(calico_node)), this node is passive
    when the peer's address is greater than I(node_ip), compared as strings as Calico does - so of
    each pair of nodes the one with the greater address connects and the other waits."
options:
  peers:
    description: The owner's BGP peers, one entry per peer (Calico BGPPeer fields).
    type: list
    elements: dict
    required: true
    suboptions:
      peer_ip:
        description: Calico C(peerIP) - the peer's address, optionally with a port (C(10.0.0.2:1179), C([fd00::2]:1179)).
        type: str
        required: true
      state:
        description: C(absent) removes the peer (when it is the owner's).
        type: str
        choices: [present, absent]
        default: present
      as_number:
        description: Calico C(asNumber) - the peer's AS. Required when I(state=present).
        type: int
      local_as_number:
        description: Calico C(localASNumber) - this node's AS towards this peer; default I(as_number) of the task.
        type: int
      password:
        description: Calico C(password) - TCP MD5 password of the session (at most 80 characters).
        type: str
      source_address:
        description: Calico C(sourceAddress) - C(UseNodeIP) sets I(node_ip) as the session's source address, C(None) leaves it to the kernel.
        type: str
        choices: [UseNodeIP, None]
        default: UseNodeIP
      keepalive_time:
        description:
          - Calico C(keepaliveTime) - seconds or a duration (C(20s), C(1m)). BIRD's default is a third of the hold time (240 s).
        type: str
      hold_time:
        description: Hold time (seconds or a duration); not a Calico field, BIRD's default 240 s when omitted.
        type: str
      max_restart_time:
        description: Calico C(maxRestartTime) - the graceful restart time (seconds or a duration); BIRD's default 120 s when omitted.
        type: str
      graceful_restart:
        description: Graceful restart for this peer (Calico always has it on).
        type: bool
        default: true
      ttl_security:
        description: Calico C(ttlSecurity) - hops to the peer with GTSM on (C(ttl security on; multihop N)); 0 is off (C(ttl security off; multihop)).
        type: int
        default: 0
      next_hop_mode:
        description: Calico C(nextHopMode) - C(Self) and C(Keep) set C(next hop self) / C(next hop keep).
        type: str
        choices: [Auto, Self, Keep]
        default: Auto
      num_allowed_local_as_numbers:
        description: Calico C(numAllowedLocalASNumbers) - C(allow local as N).
        type: int
      calico_node:
        description:
          - The peer is another Calico node (a mesh or node-selecting peering). Then Calico's rule
            decides the passive side (see notes); otherwise the session is active.
        type: bool
        default: false
      passive:
        description: Force C(passive on) (true) or off (false), instead of Calico's rule.
        type: bool
      bfd:
        description: BFD for this session (C(bfd on)); the main configuration must have a C(protocol bfd).
        type: bool
        default: false
      import_filter:
        description: C(all), C(none) or the name of a BIRD filter defined in the main configuration.
        type: str
        default: all
      export_filter:
        description:
          - C(all), C(none) or the name of a BIRD filter, for example C(podnet_export), which M(podnet.fabric.bird_config)
            defines - the node's originated routes and BGP-learned pool routes, as Calico's.
        type: str
        default: none
      rr_client:
        description:
          - This node is a route reflector and the peer its client (C(rr client;)), as Calico writes
            a reflector's sessions to the iBGP peers outside its cluster ID. The peer must be iBGP
            (I(as_number) = the local AS).
        type: bool
        default: false
      rr_cluster_id:
        description:
          - The reflector's cluster ID (C(rr cluster id X;)), IPv4-formatted (Calico's
            C(routeReflectorClusterID), for example C(244.0.0.1)); needs I(rr_client). Omitted,
            BIRD uses the router ID.
        type: str
      name:
        description: Protocol name; default Calico's C(<name_prefix>_<ip with _>[_port_<port>]).
        type: str
      name_prefix:
        description: Prefix of the default protocol name (Calico uses C(Mesh), C(Global), C(Node)).
        type: str
        default: Node
  node_ip:
    description: This node's address (Calico's node IP) - the source address and the passive-side comparison.
    type: str
  as_number:
    description: This node's AS (Calico BGPConfiguration C(asNumber)).
    type: int
    default: 64512
  listen_port:
    description:
      - Calico C(listenPort) - the port this node's BIRD listens on for these sessions; written as
        C(local port N;) in each block when not 179.
    type: int
    default: 179
  purge:
    description: Remove the owner's peers not listed in I(peers). Other owners' peers and files are never touched.
    type: bool
    default: false
  config:
    description: The main BIRD configuration, the file the daemon was started with.
    type: path
    default: /etc/bird/bird.conf
  config_dir:
    description: The directory the collection owns for the owners' peer files.
    type: path
    default: /etc/bird/podnet.d
  wait:
    description: Wait until every declared session is Established (not in check mode).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait at most.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: eBGP to the top-of-rack router, with an MD5 password and BFD, waiting for the session
  podnet.fabric.calico_bgp_peer:
    owner: routing
    node_ip: 172.31.1.11
    as_number: 64512
    peers:
      - {peer_ip: 172.31.1.254, as_number: 65000, password: "{{ tor_password }}", bfd: true,
         keepalive_time: 10s, max_restart_time: 120s, export_filter: podnet_export}
    purge: true
    wait: true

- name: A full mesh between nodes, passive side as Calico decides
  podnet.fabric.calico_bgp_peer:
    owner: routing
    node_ip: 172.31.1.11
    peers:
      - {peer_ip: 172.31.1.12, as_number: 64512, calico_node: true, name_prefix: Mesh}
      - {peer_ip: 172.31.2.13, as_number: 64512, calico_node: true, name_prefix: Mesh}
"""

RETURN = r"""
file:
  description: The owner's peers file.
  returned: always
  type: str
  sample: /etc/bird/podnet.d/bgp.conf
added:
  description: Protocols added (or to be added, in check mode).
  returned: always
  type: list
  elements: str
changed_peers:
  description: Protocols whose configuration changes (BIRD restarts those sessions).
  returned: always
  type: list
  elements: str
removed:
  description: Protocols removed.
  returned: always
  type: list
  elements: str
protocols:
  description: The owner's protocol names after the run.
  returned: always
  type: list
  elements: str
sessions:
  description:
    - The owner's sessions as BIRD reports them (when BIRD runs) - state, since (BIRD's stamp of the last state change), uptime
      (seconds, when Established), routes, and BIRD's last error.
    - BIRD's default time format prints the time of day only, so uptime is exact for sessions up less than a day; with
      C(timeformat protocol iso long;) in the main configuration it is exact for any age.
  returned: when BIRD is running
  type: list
  elements: dict
  sample:
    - {name: Node_10_0_0_2, state: Established, protocol_state: up, since: "23:10:05.123", uptime: 42,
       routes: {imported: 1, exported: 1, preferred: 1, filtered: 0}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.fabric.plugins.module_utils import bird
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.runner import Context, execute, finish, module_spec

ARGUMENT_SPEC = dict(
    peers=dict(type="list", elements="dict", required=True, options=dict(
        peer_ip=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        as_number=dict(type="int"),
        local_as_number=dict(type="int"),
        password=dict(type="str", no_log=True),
        source_address=dict(type="str", choices=["UseNodeIP", "None"], default="UseNodeIP"),
        keepalive_time=dict(type="str"),
        hold_time=dict(type="str"),
        max_restart_time=dict(type="str"),
        graceful_restart=dict(type="bool", default=True),
        ttl_security=dict(type="int", default=0),
        next_hop_mode=dict(type="str", choices=["Auto", "Self", "Keep"], default="Auto"),
        num_allowed_local_as_numbers=dict(type="int"),
        calico_node=dict(type="bool", default=False),
        passive=dict(type="bool"),
        bfd=dict(type="bool", default=False),
        import_filter=dict(type="str", default="all"),
        export_filter=dict(type="str", default="none"),
        rr_client=dict(type="bool", default=False),
        rr_cluster_id=dict(type="str"),
        name=dict(type="str"),
        name_prefix=dict(type="str", default="Node"),
    )),
    node_ip=dict(type="str"),
    as_number=dict(type="int", default=bird.DEFAULT_AS),
    listen_port=dict(type="int", default=179),
    purge=dict(type="bool", default=False),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=60),
    **bird.DAEMON_OPTIONS
)


def build(ctx):
    p = ctx.params
    if ctx.netns_missing() and not ctx.check_mode:
        raise FabricError("netns %s: does not exist" % ctx.netns)
    peers = [bird.normalize(peer, p["node_ip"], p["as_number"], p["listen_port"]) for peer in p["peers"]]
    plan, info = bird.plan(bird.daemon(ctx), ctx.owner, peers, purge=p["purge"])
    return plan, {"file": info["path"], "added": info["added"], "changed_peers": info["changed"],
                  "removed": info["removed"], "protocols": info["protocols"]}


def report_sessions(module, result):
    """Add the owner's sessions to ``result``; with wait, until Established (bounded)."""
    p = module.params
    names = result["protocols"]
    ctx = Context(p, check_mode=module.check_mode)
    if module.check_mode and ctx.netns_missing():
        return None   # an earlier task creates the namespace (and starts BIRD in it)
    d = bird.daemon(ctx)
    if not d.running():
        if p["wait"] and not module.check_mode and names:
            return "BIRD is not running (no answer on %s): sessions %s cannot come up" % (p["socket"], ", ".join(names))
        module.warn("BIRD is not running (no answer on %s): the configuration takes effect when it starts" % p["socket"])
        return None
    timeout = p["wait_timeout"] if p["wait"] and not module.check_mode else 0
    sessions, not_up = bird.wait_established(d, names, timeout)
    result["sessions"] = sessions
    if timeout and not_up:
        return "sessions not Established after %d s: %s" % (timeout, "; ".join(
            "%s %s%s" % (s["name"], s["state"], " (%s)" % s["last_error"] if s.get("last_error") else "") for s in not_up))
    return None


def main():
    module = AnsibleModule(argument_spec=module_spec(ARGUMENT_SPEC), supports_check_mode=True)
    result = execute(module.params, build, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    finish(module, result, report_sessions)


if __name__ == "__main__":
    main()
