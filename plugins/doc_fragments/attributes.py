# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment(object):
    # Every podnet.fabric module plans first and applies only outside check mode.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target is a Linux host with network namespaces.
    support: full
    platforms: posix
"""

    # For modules that act inside a named network namespace instead of the caller's.
    NETNS = r"""
options:
  netns:
    description:
      - Name of the network namespace (as in C(/run/netns/NAME)) to act in.
      - Omit to act in the network namespace the module runs in (the host's).
      - A namespace that does not exist is an error; nothing is created in that case.
    type: str
"""

    # Modules that read iptables-save (the flavour detected as kube-proxy does).
    IPTABLES_READ = r"""
options:
  iptables_flavour:
    description: Which iptables to read; C(auto) detects it as kube-proxy does.
    type: str
    choices: [auto, nft, legacy]
    default: auto
"""

    # Every module that creates objects: whose they are.
    OWNER = r"""
options:
  owner:
    description:
      - Who owns the objects this task manages - the role or playbook, for example
        C(pod_network). Whatever the task creates carries this owner (link alias
        C(podnet.fabric:OWNER), a namespace's loopback alias, the route protocol registered for
        the owner in C(/etc/iproute2/rt_protos.d/podnet-fabric.conf), the iptables registry and
        comments, the IPAM file), and I(purge) removes only this owner's objects.
      - Declaring an object another owner holds fails, naming both owners. Objects of
        podnet.fabric 0.1 (plain C(podnet.fabric) mark, route protocol 149) are adopted in place
        by the owner that declares them; purge never removes them.
      - Omitted, the owner is C(default), and I(purge) is an error, so that two playbooks that
        do not name themselves can never remove each other's objects.
      - 1-32 characters of C(a-z), C(0-9), C(_), C(.), C(-).
    type: str
"""

    # Modules whose state a node restores by itself (podnet.fabric.node_restore).
    PERSIST = r"""
options:
  persist:
    description:
      - Record this task's parameters on the node, in the owner's root-only file
        C(/var/lib/podnet-fabric/restore/OWNER.json), so that the node's restorer
        (C(podnet-restore.service), installed by M(podnet.fabric.node_restore) and the
        C(podnet.fabric.node) role) applies them again at boot and whenever a link comes back
        up, through this module's own code, without the controller.
      - The record is the last action of the task, so check mode and C(--diff) show it, and a
        failed task records nothing. One record per module and owner; a later persisted run of
        the same module and owner replaces it, so what is no longer declared is not restored.
      - V(false) forgets this module's earlier record for the owner (if any).
    type: bool
    default: false
"""

    # The modules that drive a BIRD 2 daemon (calico_bgp_peer, bird_config).
    BIRD = r"""
options:
  socket:
    description: BIRD's control socket.
    type: path
    default: /run/bird/bird.ctl
  bird:
    description: The C(bird) binary (used as C(bird -p -c) to validate).
    type: path
    default: bird
  birdc:
    description: The C(birdc) binary.
    type: path
    default: birdc
"""
