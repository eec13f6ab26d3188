#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: nat_rule
short_description: Manage whole iptables chains and their hooks in one atomic iptables-restore
version_added: 0.1.0
description:
  - Declares whole iptables chains (in the nat, filter, mangle, raw or security table) with all
    their rules, plus the jump rules that hook them into chains the module does not own
    (C(PREROUTING), C(OUTPUT), C(POSTROUTING), C(FORWARD), or an existing chain such as C(DOCKER-USER)).
  - Rules are written in iptables-save syntax (what follows C(-A CHAIN)), so any match or target
    iptables knows can be used (statistic, recent, addrtype, mark, comment, conntrack ...; DNAT,
    SNAT, MASQUERADE, MARK, REJECT ...).
  - Reads the tables once with C(iptables-save), computes what differs in the chains it owns, and
    applies everything in one C(iptables-restore --noflush) transaction, the way kube-proxy does.
    Only chains whose rules changed are rewritten; owned chains no longer declared are flushed
    and deleted (with O(purge)); jumps are inserted once and never duplicated. When nothing
    differs, iptables-restore is not run at all.
  - Ownership is explicit. Owned jumps carry the comment C(podnet.fabric:OWNER); owned chains are
    recorded in a registry chain C(PODNET-OWN-<hash>) per owner and table, written in the same
    transaction. Chains the module does not own (Docker's, kube-proxy's, other owners', the
    user's own) and foreign rules in built-in chains are never modified; declaring such a chain
    is an error.
  - Rules are compared the way iptables prints them back (C(-p tcp --dport 80) is the same rule as
    C(-p tcp -m tcp --dport 80), C(-d 10.0.0.1) as C(-d 10.0.0.1/32), C(--probability 0.5000000000)
    as C(0.50000000000), options in any order). Matches and targets the module does not model are
    checked against what iptables prints after applying, and that spelling is remembered.
  - iptables commits each table atomically, so each table is one action. When a later table is
    rejected, the tables already committed are put back as they were (the owned chains' saved
    text), so a failed run changes nothing; a put-back that fails is reported.
  - In check mode with O(netns) naming a namespace that does not exist yet (an earlier task
    creates it), the tables are taken as empty and everything is predicted as created.
author:
  - podnet.fabric developers (@podnet)
extends_documentation_fragment:
  - podnet.fabric.attributes
  - podnet.fabric.attributes.NETNS
  - podnet.fabric.attributes.OWNER
  - podnet.fabric.attributes.PERSIST
options:
  chains:
    description:
      - Chains this owner manages, each with its complete list of rules.
      - A chain that exists but is not owned by O(owner) is an error, as is a built-in chain.
      - With O(state=absent), the listed chains are deleted (their O(chains[].rules) are ignored).
    type: list
    elements: dict
    default: []
    suboptions:
      table:
        description: Table of the chain; defaults to O(table).
        type: str
        choices: [nat, filter, mangle, raw, security]
      name:
        description:
          - Chain name, at most 28 characters (for example C(KUBE-SVC-NPX46M4PTMTKRN6Y)).
          - Names starting with C(PODNET-OWN-) are reserved.
        type: str
        required: true
      rules:
        description:
          - The chain's rules in order, each in iptables-save syntax without C(-A CHAIN),
            for example C(-p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080).
          - A rule may jump (C(-j)/C(-g)) to a chain declared in the same task, an existing chain
            of the table, or an iptables target.
          - An empty list makes an empty chain.
        type: list
        elements: str
        default: []
  jumps:
    description:
      - Rules this owner places into chains it does not own, typically the jumps from built-in
        chains into its own chains. Each gets the comment C(podnet.fabric:OWNER) added, which is
        how it is found again (and never duplicated).
      - An existing jump is left where it is; O(jumps[].position) applies when it is inserted.
    type: list
    elements: dict
    default: []
    suboptions:
      table:
        description: Table of the chain; defaults to O(table).
        type: str
        choices: [nat, filter, mangle, raw, security]
      chain:
        description: A built-in chain of the table, or an existing chain not owned by podnet.fabric.
        type: str
        required: true
      rule:
        description: The rule in iptables-save syntax, for example C(-m comment --comment "kubernetes service portals" -j KUBE-SERVICES).
        type: str
        required: true
      position:
        description: Insert at the top of O(jumps[].chain) (like kube-proxy) or append at its end.
        type: str
        choices: [first, last]
        default: first
  ruleset:
    description:
      - The same as O(chains) and O(jumps), written as iptables-restore input. C(:CHAIN) declares
        a chain this owner owns, followed by its C(-A CHAIN rule) lines; C(-A) or C(-I CHAIN [1])
        on any other chain (C(PREROUTING), C(DOCKER-USER) ...) is a jump, appended or inserted first.
        C(*table) starts and C(COMMIT) ends each table; other commands are refused.
      - Meant for large, generated rulesets, for example from a template. Ansible handles one
        string far faster than thousands of list items (15,000 rules load in milliseconds instead
        of seconds).
      - Combined with O(chains) and O(jumps) when those are given too.
    type: str
  table:
    description: Default table for O(chains) and O(jumps) items that do not name one.
    type: str
    choices: [nat, filter, mangle, raw, security]
    default: nat
  purge:
    description:
      - Delete owned chains and owned jumps of this O(owner) that the task does not declare (in
        every table where the owner has any). Set it when the task declares the owner's complete
        ruleset.
      - Never removes anything the owner does not own. Needs an explicit O(owner).
    type: bool
    default: false
  state:
    description:
      - V(present) makes the declared chains and jumps exist exactly as declared.
      - V(absent) deletes the declared chains and jumps; with neither O(chains) nor O(jumps) it
        deletes everything this O(owner) owns.
    type: str
    choices: [present, absent]
    default: present
  sysctls:
    description:
      - Kernel settings the rules depend on, in the task's namespace, a mapping of sysctl key to
        value (for example C(net.ipv4.conf.all.route_localnet) to C(1), which DNAT to 127.0.0.1
        needs, as kube-proxy and the CNI portmap plugin set it). Use the slash form
        (C(net/ipv4/conf/eth0.100/route_localnet)) for an interface name with dots.
      - Only settings that differ are written, before the tables; a failure later puts them back.
        A key the kernel does not have is an error (in check mode it is predicted as set, since
        an earlier task may create its interface).
      - Settings are never reverted when no longer declared or with O(state=absent) (kube-proxy
        does not either); with O(persist) they are recorded and set again at boot.
    type: dict
    default: {}
  iptables_flavour:
    description:
      - Which iptables to use. V(auto) decides like kube-proxy's iptables-wrapper (kubelet's
        C(KUBE-IPTABLES-HINT) chain in nft or legacy tables), then keeps to the flavour where
        podnet.fabric chains already are, then picks the flavour holding more rules (nft on a tie).
      - The result says which was used and why.
    type: str
    choices: [auto, legacy, nft]
    default: auto
  wait:
    description: Seconds iptables-restore waits for the xtables lock (C(-w)).
    type: int
    default: 5
notes:
  - Needs C(iptables-save)/C(iptables-restore) (iptables 1.8 with C(iptables-nft-*) and
    C(iptables-legacy-*) binaries, or a single legacy/nft pair). IPv4 only.
  - A rule with a comma-separated C(-s)/C(-d) list becomes one rule per address, as in iptables.
  - Host names in C(-s)/C(-d) are refused (iptables would resolve them once, at apply time).
seealso:
  - name: kube-proxy iptables mode
    description: The ruleset layout this module is built to express (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*).
    link: https://kubernetes.io/docs/reference/networking/virtual-ips/
"""

EXAMPLES = r"""
- name: A ClusterIP service with two endpoints, hooked in like kube-proxy
  podnet.fabric.nat_rule:
    owner: services
    purge: true
    chains:
      - name: KUBE-MARK-MASQ
        rules:
          - -j MARK --or-mark 0x4000
      - name: KUBE-POSTROUTING
        rules:
          - -m mark ! --mark 0x4000/0x4000 -j RETURN
          - -j MARK --xor-mark 0x4000
          - -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
      - name: KUBE-SERVICES
        rules:
          - -d 10.96.0.10 -p tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j KUBE-SVC-WEB
      - name: KUBE-SVC-WEB
        rules:
          - -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-WEB1
          - -j KUBE-SEP-WEB2
      - name: KUBE-SEP-WEB1
        rules:
          - -s 10.244.1.5 -j KUBE-MARK-MASQ
          - -p tcp -j DNAT --to-destination 10.244.1.5:8080
      - name: KUBE-SEP-WEB2
        rules:
          - -s 10.244.2.7 -j KUBE-MARK-MASQ
          - -p tcp -j DNAT --to-destination 10.244.2.7:8080
    jumps:
      - chain: PREROUTING
        rule: -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
      - chain: OUTPUT
        rule: -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
      - chain: POSTROUTING
        rule: -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING

- name: Masquerade pod traffic leaving the node (filter and nat in one transaction)
  podnet.fabric.nat_rule:
    owner: egress
    chains:
      - name: PODNET-EGRESS
        rules:
          - -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
      - table: filter
        name: PODNET-FORWARD
        rules:
          - -s 10.244.0.0/16 -j ACCEPT
          - -d 10.244.0.0/16 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    jumps:
      - chain: POSTROUTING
        rule: -j PODNET-EGRESS
      - table: filter
        chain: FORWARD
        rule: -j PODNET-FORWARD

- name: Inside a pod's network namespace
  podnet.fabric.nat_rule:
    netns: pod-a
    owner: hostports
    chains:
      - name: PODNET-HOSTPORT
        rules:
          - -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.5:80
    jumps:
      - chain: PREROUTING
        rule: -m addrtype --dst-type LOCAL -j PODNET-HOSTPORT

- name: A generated ruleset as one text (kube-proxy's own format), much faster for thousands of rules
  podnet.fabric.nat_rule:
    owner: kube-services
    purge: true
    ruleset: "{{ lookup('ansible.builtin.template', 'kube-services.rules.j2') }}"
    # kube-services.rules.j2 renders e.g.:
    #   *nat
    #   :KUBE-SERVICES - [0:0]
    #   :KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
    #   -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
    #   -A KUBE-SVC-NPX46M4PTMTKRN6Y -p tcp -j DNAT --to-destination 192.168.1.10:6443
    #   -I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    #   -I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    #   COMMIT

- name: Remove everything the owner "egress" has, in every table
  podnet.fabric.nat_rule:
    owner: egress
    state: absent
"""

RETURN = r"""
iptables_flavour:
  description: The iptables flavour used.
  returned: always
  type: str
  sample: nft
iptables_flavour_reason:
  description: Why that flavour was chosen.
  returned: always
  type: str
  sample: "nft by default (rules: nft 0, legacy 0)"
timing:
  description: Seconds spent reading the tables (C(read), iptables-save), planning (C(plan)), in iptables-restore (C(restore)), and in total.
  returned: always
  type: dict
  sample: {read: 0.021, plan: 0.034, restore: 0.018, apply: 0.02, total: 0.075}
chains_created:
  description: Chains created, as C(table/CHAIN).
  returned: always
  type: list
  elements: str
  sample: [nat/KUBE-SVC-NPX46M4PTMTKRN6Y]
chains_updated:
  description: Owned chains whose rules were rewritten, as C(table/CHAIN).
  returned: always
  type: list
  elements: str
  sample: []
chains_deleted:
  description: Owned chains flushed and deleted, as C(table/CHAIN).
  returned: always
  type: list
  elements: str
  sample: [nat/KUBE-SEP-AAAAAAAAAAAAAAAA]
jumps_added:
  description: "Owned jumps inserted, as C(table/CHAIN: rule), the rule as iptables prints it."
  returned: always
  type: list
  elements: str
  sample: ['nat/PREROUTING: -m comment --comment "podnet.fabric:services" -j KUBE-SERVICES']
jumps_removed:
  description: Owned jumps deleted, in the same form.
  returned: always
  type: list
  elements: str
  sample: []
sysctls_changed:
  description: Keys of O(sysctls) written (or in check mode to be written).
  returned: always
  type: list
  elements: str
  sample: [net.ipv4.conf.all.route_localnet]
restore_lines:
  description: Lines in the iptables-restore transaction (0 when nothing needed changing).
  returned: always
  type: int
  sample: 42
commands:
  description: The commands that ran (iptables-restore appears only when something changed).
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/iptables-nft-save, /usr/sbin/iptables-legacy-save]
learned:
  description:
    - Chains with rules the module could not canonicalise for sure, where iptables printed them
      differently than predicted; the printed spelling was recorded so they are not rewritten again.
  returned: when something was applied
  type: list
  elements: str
  sample: []
actions:
  description: What was (or in check mode would be) done.
  returned: always
  type: list
  elements: str
  sample: ["nat_rule owner services: iptables-nft-restore --noflush table nat (6 created, 3 jumps added)"]
diff:
  description: With C(--diff), the owned chains and jumps that change, before and after, in iptables-save syntax.
  returned: when diff mode is on
  type: dict
"""

import os
import shutil

from ansible_collections.podnet.fabric.plugins.module_utils import sysctl
from ansible_collections.podnet.fabric.plugins.module_utils.plan import Plan
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset import core
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.flavour import Tools
from ansible_collections.podnet.fabric.plugins.module_utils.runner import run_module

TABLES = ["nat", "filter", "mangle", "raw", "security"]

ARGUMENT_SPEC = dict(
    chains=dict(type="list", elements="dict", default=[], options=dict(
        table=dict(type="str", choices=TABLES),
        name=dict(type="str", required=True),
        rules=dict(type="list", elements="str", default=[]),
    )),
    jumps=dict(type="list", elements="dict", default=[], options=dict(
        table=dict(type="str", choices=TABLES),
        chain=dict(type="str", required=True),
        rule=dict(type="str", required=True),
        position=dict(type="str", choices=["first", "last"], default="first"),
    )),
    ruleset=dict(type="str"),
    table=dict(type="str", choices=TABLES, default="nat"),
    purge=dict(type="bool", default=False),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    sysctls=dict(type="dict", default={}),
    iptables_flavour=dict(type="str", choices=["auto", "legacy", "nft"], default="auto"),
    wait=dict(type="int", default=5),
)


def _summarised(params):
    """module_args to echo back, without megabytes of rules: Ansible's result handling would
    otherwise spend seconds parsing the ruleset it sent in."""
    args = dict(params)
    if args.get("ruleset") and len(args["ruleset"]) > 4096:
        args["ruleset"] = "<%d lines, %d bytes>" % (args["ruleset"].count("\n") + 1, len(args["ruleset"]))
    for key in ("chains", "jumps"):
        if len(args.get(key) or ()) > 100:
            args[key] = "<%d items>" % len(args[key])
    return args


def _which(name):
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


def build(ctx):
    missing = ctx.check_mode and ctx.netns_missing()
    params = dict(ctx.params, owner=ctx.owner)
    settings = Plan()
    wanted = params.get("sysctls") if params.get("state", "present") == "present" else {}
    changed = sysctl.plan(settings, wanted, sysctl.Settings(ctx.netns), ctx.check_mode, missing)
    plan, result = core.build(params, ctx.run, Tools(_which), core.xtables_target_lookup(), warn=ctx.warn,
                              diff=ctx.diff, check_mode=ctx.check_mode, timing=ctx.timing, netns_missing=missing)
    if settings.actions:
        # settings first: the rules that need them are then never live without them
        plan.actions[:0] = settings.actions
        plan.before.update(settings.before)
        plan.after.update(settings.after)
    result["sysctls_changed"] = changed
    return plan, result


def main():
    run_module(ARGUMENT_SPEC, build, pyroute2=False, summarise=_summarised, persist_as="nat_rule")


if __name__ == "__main__":
    main()
