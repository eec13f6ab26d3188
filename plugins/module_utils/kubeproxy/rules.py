# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iptables ruleset kube-proxy (1.28+, iptables mode, IPv4) writes for a node (pure).

:func:`build_ruleset` takes Services, EndpointSlices and the node's view and returns a
:class:`Ruleset`: the same filter and nat chains, rules, hashed chain names, comments and
probabilities as kubernetes pkg/proxy/iptables/proxier.go ``syncProxyRules``, in the order it
writes them (services in a fixed order, where kube-proxy walks a Go map). The ruleset renders as
kube-proxy's own iptables-restore input (:meth:`Ruleset.restore_text`, optionally the partial
sync of KEP-3453 that rewrites only changed services' chains), or as the ``chains``/``jumps`` or
``ruleset`` parameters of the nat_rule module. The jumps from built-in chains are kept apart, as
kube-proxy ensures them outside the restore.

Not covered: IPv6 and dual stack, the nfacct metric matches (``nfacct`` in the node view adds
them, as on kernels that have nfacct), node topology hints, the KUBE-PROXY-CANARY chains.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.names import kube_chain_name
from ansible_collections.podnet.fabric.plugins.module_utils.kubeproxy import model

SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
LARGE_CLUSTER_ENDPOINTS = 1000     # above this many endpoints kube-proxy drops per-endpoint comments
NFACCT_LOCALHOST = "localhost_nps_accepted_pkts"
NFACCT_INVALID = "ct_state_invalid_dropped_pkts"

_NEW = '-m conntrack --ctstate NEW '
# (table, built-in chain, rule): ensured by kube-proxy with "iptables -I" before each full sync.
JUMPS = (
    ("filter", "INPUT", _NEW + '-m comment --comment "kubernetes externally-visible service portals" -j ' + EXTERNAL_SERVICES),
    ("filter", "FORWARD", _NEW + '-m comment --comment "kubernetes externally-visible service portals" -j ' + EXTERNAL_SERVICES),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j ' + NODEPORTS),
    ("filter", "FORWARD", _NEW + '-m comment --comment "kubernetes service portals" -j ' + SERVICES),
    ("filter", "OUTPUT", _NEW + '-m comment --comment "kubernetes service portals" -j ' + SERVICES),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j ' + FORWARD),
    ("filter", "INPUT", _NEW + '-m comment --comment "kubernetes load balancer firewall" -j ' + PROXY_FIREWALL),
    ("filter", "OUTPUT", _NEW + '-m comment --comment "kubernetes load balancer firewall" -j ' + PROXY_FIREWALL),
    ("filter", "FORWARD", _NEW + '-m comment --comment "kubernetes load balancer firewall" -j ' + PROXY_FIREWALL),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j ' + SERVICES),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j ' + SERVICES),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j ' + POSTROUTING),
    # kubelet's anti-martian chain, which kube-proxy duplicates
    ("filter", "INPUT", "-j " + KUBELET_FIREWALL),
    ("filter", "OUTPUT", "-j " + KUBELET_FIREWALL),
)


@dataclass
class NodeView:
    """What kube-proxy knows about its own node (its flags and what it probed)."""
    name: str = ""
    node_ip: str = ""                      # --bind-address / the node's primary IP
    ips: list = field(default_factory=list)   # every local address (for nodeport_addresses)
    cluster_cidr: str = ""                 # --cluster-cidr (detect-local-mode ClusterCIDR); "" = none
    masquerade_bit: int = 14
    masquerade_mark: str = ""              # as written; default is kube-proxy's "%#08x" in Go: 0x00004000
    masquerade_all: bool = False
    random_fully: bool = True              # iptables supports MASQUERADE --random-fully
    localhost_nodeports: bool = True       # --iptables-localhost-nodeports
    nodeport_addresses: list = field(default_factory=list)   # --nodeport-addresses CIDRs; [] = all
    conntrack_tcp_liberal: bool = False    # nf_conntrack_tcp_be_liberal set: no INVALID drop rule
    nfacct: bool = False                   # the kernel has nfacct (adds kube-proxy's metric matches)
    zone: str = ""                         # the node's topology.kubernetes.io/zone

    @classmethod
    def from_dict(cls, data):
        if isinstance(data, cls):
            return data
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise FabricError("node view: unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(known))))
        view = cls(**data)
        if not view.node_ip and view.ips:
            view.node_ip = view.ips[0]
        if not view.masquerade_mark:
            if not 0 <= view.masquerade_bit <= 31:
                raise FabricError("node view: masquerade_bit %r is not 0-31" % (view.masquerade_bit,))
            view.masquerade_mark = "0x%08x" % (1 << view.masquerade_bit)
        return view


@dataclass
class Chain:
    """One chain of the ruleset; ``service`` is "ns/name" for per-service chains, None for shared ones."""
    table: str
    name: str
    rules: list
    service: object = None


class Ruleset(object):
    """kube-proxy's ruleset for one node: chains in write order plus the jumps into them."""

    def __init__(self):
        self._chains = {}            # (table, name) -> Chain
        self._headers = {}           # (table, name) in the order kube-proxy writes ":CHAIN" lines
        self._order = []             # (table, chain, rule) in kube-proxy's write order
        self.jumps = [dict(table=t, chain=c, rule=r, position="first") for t, c, r in JUMPS]

    # building
    def declare(self, table, name, service=None, header=True):
        """Make a chain; ``header`` is where kube-proxy writes its ":CHAIN" line (the order shown)."""
        key = (table, name)
        if key not in self._chains:
            self._chains[key] = Chain(table, name, [], service)
        if header and key not in self._headers:
            self._headers[key] = True

    def add(self, table, chain, *parts):
        rule = " ".join(p for p in parts if p)
        self._chains[(table, chain)].rules.append(rule)
        self._order.append((table, chain, rule))

    # reading
    @property
    def chains(self):
        """Every chain (filter first, then nat), each with its complete rule list."""
        return [self._chains[k] for t in ("filter", "nat") for k in self._headers if k[0] == t]

    def chain(self, table, name):
        return self._chains.get((table, name))

    def services(self):
        """{"ns/name": [Chain, ...]}: the chains a change to that service rewrites."""
        out = {}
        for c in self.chains:
            if c.service is not None:
                out.setdefault(c.service, []).append(c)
        return out

    def restore_text(self, changed_services=None, existing_chains=()):
        """kube-proxy's iptables-restore --noflush input.

        ``changed_services`` (a set of "ns/name") makes it a partial sync: the shared chains are
        written whole, per-service chains only for those services. ``existing_chains`` (nat chain
        names iptables-save shows) adds the flush and ``-X`` of stale KUBE-SVC/SVL/EXT/FW/SEP chains.
        """
        def wanted(table, name):
            c = self._chains[(table, name)]
            return c.service is None or changed_services is None or c.service in changed_services

        stale = sorted(set(n for n in existing_chains if n.startswith(SERVICE_CHAIN_PREFIXES))
                       - set(n for (t, n) in self._chains if t == "nat"))
        out = []
        for table in ("filter", "nat"):
            out.append("*" + table)
            out.extend(":%s - [0:0]" % c.name for c in self.chains if c.table == table and wanted(table, c.name)
                       and not (c.name == KUBELET_FIREWALL and not c.rules))
            if table == "nat":
                out.extend(":%s - [0:0]" % n for n in stale)
            rules = [(c, r) for t, c, r in self._order if t == table and wanted(t, c)]
            if table == "nat" and stale:
                last = rules.pop()        # the KUBE-NODEPORTS jump stays the last line
                rules.extend((None, n) for n in stale)
                rules.append(last)
            out.extend(("-A %s %s" % (c, r)) if c is not None else "-X " + r for c, r in rules)
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def nat_rule_params(self):
        """``chains`` and ``jumps`` for podnet.fabric.nat_rule (chains in declaration order)."""
        return {
            "chains": [{"table": c.table, "name": c.name, "rules": list(c.rules)} for c in self.chains],
            "jumps": [dict(j) for j in self.jumps],
        }

    def nat_rule_ruleset(self):
        """The same as one ``ruleset:`` string for nat_rule: ":CHAIN" blocks, then "-I" jumps."""
        out = []
        for table in ("filter", "nat"):
            out.append("*" + table)
            for c in self.chains:
                if c.table == table:
                    out.append(":%s - [0:0]" % c.name)
                    out.extend("-A %s %s" % (c.name, r) for r in c.rules)
            out.extend("-I %s %s" % (j["chain"], j["rule"]) for j in self.jumps if j["table"] == table)
            out.append("COMMIT")
        return "\n".join(out) + "\n"


def _comment(text):
    return '-m comment --comment "%s"' % text


def build_ruleset(services, endpoint_slices, node):
    """Services + EndpointSlices + the node's view -> :class:`Ruleset` (kube-proxy's syncProxyRules)."""
    view = NodeView.from_dict(node)
    ports = []
    for svc in services or []:
        ports.extend(model.service_ports(svc))
    ports.sort(key=lambda sp: (sp.name_string, sp.protocol))
    eps = model.endpoints_map(endpoint_slices or [], view.name)
    return _Writer(view).write(ports, eps)


class _Writer(object):
    def __init__(self, view):
        self.view = view
        self.rs = Ruleset()
        self.mark = view.masquerade_mark
        self.large = False
        self.seps = {}                    # ip:port -> KUBE-SEP- name, for the service port being written
        self.nodeport_ips = None          # None: every local address (addrtype LOCAL)
        self.localhost_nodeports = view.localhost_nodeports
        if view.nodeport_addresses:
            nets = []
            for cidr in view.nodeport_addresses:
                try:
                    nets.append(ipaddress.ip_network(cidr, strict=False))
                except ValueError as exc:
                    raise FabricError("node view: nodeport_addresses %r: %s" % (cidr, exc)) from exc
            nets = [n for n in nets if n.version == 4]
            if not any(n.prefixlen == 0 for n in nets):
                candidates = list(view.ips) + ["127.0.0.1"]
                self.nodeport_ips = [ip for ip in candidates if any(ipaddress.ip_address(ip) in n for n in nets)]
                if not any(ipaddress.ip_address("127.0.0.1") in n for n in nets):
                    self.localhost_nodeports = False

    def write(self, ports, eps):
        rs = self.rs
        for name in (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, PROXY_FIREWALL, KUBELET_FIREWALL):
            rs.declare("filter", name)
        for name in (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ):
            rs.declare("nat", name)
        rs.add("nat", POSTROUTING, "-m mark ! --mark %s/%s -j RETURN" % (self.mark, self.mark))
        rs.add("nat", POSTROUTING, "-j MARK --xor-mark " + self.mark)
        rs.add("nat", POSTROUTING, _comment("kubernetes service traffic requiring SNAT"), "-j MASQUERADE",
               "--random-fully" if self.view.random_fully else "")
        rs.add("nat", MARK_MASQ, "-j MARK --or-mark " + self.mark)
        if self.localhost_nodeports:
            rs.add("filter", KUBELET_FIREWALL, _comment("block incoming localnet connections"),
                   "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
        self.large = sum(len(eps.get(sp.key, ())) for sp in ports) > LARGE_CLUSTER_ENDPOINTS
        for sp in ports:
            self._service_port(sp, eps.get(sp.key, []))
        self._nodeports_jump()
        if not self.view.conntrack_tcp_liberal:
            rs.add("filter", FORWARD, "-m conntrack --ctstate INVALID",
                   "-m nfacct --nfacct-name " + NFACCT_INVALID if self.view.nfacct else "", "-j DROP")
        rs.add("filter", FORWARD, _comment("kubernetes forwarding rules"),
               "-m mark --mark %s/%s -j ACCEPT" % (self.mark, self.mark))
        rs.add("filter", FORWARD, _comment("kubernetes forwarding conntrack rule"),
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        return rs

    def _nodeports_jump(self):
        comment = _comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        if self.nodeport_ips is None:
            self.rs.add("nat", SERVICES, comment, "-m addrtype --dst-type LOCAL",
                        "" if self.localhost_nodeports else "! -d 127.0.0.0/8", "-j " + NODEPORTS)
            return
        for ip in self.nodeport_ips:
            if ipaddress.ip_address(ip).is_loopback and not self.localhost_nodeports:
                continue
            self.rs.add("nat", SERVICES, comment, "-d " + ip, "-j " + NODEPORTS)

    def _service_port(self, sp, endpoints):
        # pylint: disable=too-many-locals,too-many-branches,too-many-statements
        rs = self.rs
        proto = sp.protocol.lower()
        match = "-m %s -p %s" % (proto, proto)
        name = sp.name_string
        svc_chain = kube_chain_name("KUBE-SVC-", name, proto)
        digest = svc_chain[len("KUBE-SVC-"):]      # SVC, SVL, EXT and FW share one hash (portProtoHash)
        svl_chain, ext_chain, fw_chain = "KUBE-SVL-" + digest, "KUBE-EXT-" + digest, "KUBE-FW-" + digest
        self.seps = {}
        cluster_eps, local_eps, reachable, has_endpoints = model.categorize(endpoints, sp, self.view.zone)

        internal_chain = svl_chain if sp.internal_policy_local else svc_chain
        has_internal = has_endpoints and (bool(local_eps) or not sp.internal_policy_local)
        external_policy_chain = svl_chain if sp.external_policy_local else svc_chain
        has_external = has_endpoints and (bool(local_eps) or not sp.external_policy_local)
        uses_ext = has_endpoints and sp.externally_accessible
        uses_fw = has_endpoints and bool(sp.lb_vips) and bool(sp.lb_source_ranges)
        lb_chain = fw_chain if uses_fw else ext_chain

        int_target = int_comment = ext_target = ext_comment = ""
        if not has_endpoints:
            int_target = ext_target = "REJECT"
            int_comment = ext_comment = _comment("%s has no endpoints" % name)
        else:
            if not has_internal:
                int_target, int_comment = "DROP", _comment("%s has no local endpoints" % name)
            if not has_external:
                ext_target, ext_comment = "DROP", _comment("%s has no local endpoints" % name)
        dport = "--dport %d" % sp.port

        if has_internal:
            rs.add("nat", SERVICES, _comment("%s cluster IP" % name), match, "-d " + sp.cluster_ip, dport, "-j " + internal_chain)
        else:
            rs.add("filter", SERVICES, int_comment, match, "-d " + sp.cluster_ip, dport, "-j " + int_target)
        for ip in sp.external_ips:
            if has_endpoints:
                rs.add("nat", SERVICES, _comment("%s external IP" % name), match, "-d " + ip, dport, "-j " + ext_chain)
            if not has_external:
                rs.add("filter", EXTERNAL_SERVICES, ext_comment, match, "-d " + ip, dport, "-j " + ext_target)
        for ip in sp.lb_vips:
            if has_endpoints:
                rs.add("nat", SERVICES, _comment("%s loadbalancer IP" % name), match, "-d " + ip, dport, "-j " + lb_chain)
            if uses_fw:
                rs.add("filter", PROXY_FIREWALL, _comment("%s traffic not accepted by %s" % (name, fw_chain)),
                       match, "-d " + ip, dport, "-j DROP")
        if not has_external:
            for ip in sp.lb_vips:
                rs.add("filter", EXTERNAL_SERVICES, ext_comment, match, "-d " + ip, dport, "-j " + ext_target)
        if sp.node_port:
            nport = "--dport %d" % sp.node_port
            if has_endpoints:
                if self.localhost_nodeports and self.view.nfacct:
                    rs.add("nat", NODEPORTS, "-m comment --comment " + name, match, "-d 127.0.0.0/8", nport,
                           "-m nfacct --nfacct-name " + NFACCT_LOCALHOST, "-j " + ext_chain)
                rs.add("nat", NODEPORTS, "-m comment --comment " + name, match, nport, "-j " + ext_chain)
            if not has_external:
                rs.add("filter", EXTERNAL_SERVICES, ext_comment, "-m addrtype --dst-type LOCAL", match, nport, "-j " + ext_target)
        if sp.health_check_node_port:
            rs.add("filter", NODEPORTS, _comment("%s health check node port" % name), "-m tcp -p tcp",
                   "--dport %d" % sp.health_check_node_port, "-j ACCEPT")

        # From here on: the service's own chains (what a partial sync may skip).
        svc = sp.service
        if has_internal:
            args = (_comment("%s cluster IP" % name), match, "-d " + sp.cluster_ip, dport)
            cidr = self.view.cluster_cidr
            rs.declare("nat", internal_chain, svc, header=False)   # its ":CHAIN" line comes with its endpoints
            if self.view.masquerade_all:
                rs.add("nat", internal_chain, *args, "-j " + MARK_MASQ)
            elif cidr:
                rs.add("nat", internal_chain, *args, "! -s " + cidr, "-j " + MARK_MASQ)
        if uses_ext:
            rs.declare("nat", ext_chain, svc)
            if not sp.external_policy_local:
                rs.add("nat", ext_chain, _comment("masquerade traffic for %s external destinations" % name), "-j " + MARK_MASQ)
            else:
                if self.view.cluster_cidr:
                    rs.add("nat", ext_chain, _comment("pod traffic for %s external destinations" % name),
                           "-s " + self.view.cluster_cidr, "-j " + svc_chain)
                rs.add("nat", ext_chain, _comment("masquerade LOCAL traffic for %s external destinations" % name),
                       "-m addrtype --src-type LOCAL", "-j " + MARK_MASQ)
                rs.add("nat", ext_chain, _comment("route LOCAL traffic for %s external destinations" % name),
                       "-m addrtype --src-type LOCAL", "-j " + svc_chain)
            if has_external:
                rs.add("nat", ext_chain, "-j " + external_policy_chain)
        if uses_fw:
            self._firewall_chain(sp, fw_chain, ext_chain)
        if cluster_eps and sp.uses_cluster_endpoints:
            self._dispatch(sp, svc_chain, cluster_eps)
        if local_eps and sp.uses_local_endpoints:
            self._dispatch(sp, svl_chain, local_eps)
        for ep in reachable:
            self._endpoint_chain(sp, ep, match)

    def _firewall_chain(self, sp, fw_chain, ext_chain):
        rs = self.rs
        rs.declare("nat", fw_chain, sp.service)
        comment = _comment("%s loadbalancer IP" % sp.name_string)
        allow_node = False
        node_ip = ipaddress.ip_address(self.view.node_ip) if self.view.node_ip else None
        for net in sp.lb_source_ranges:
            rs.add("nat", fw_chain, comment, "-s " + str(net), "-j " + ext_chain)
            allow_node = allow_node or (node_ip is not None and node_ip in net)
        if allow_node:
            for ip in sp.lb_vips:
                rs.add("nat", fw_chain, comment, "-s " + ip, "-j " + ext_chain)
        rs.add("nat", fw_chain, _comment("other traffic to %s will be dropped by KUBE-PROXY-FIREWALL" % sp.name_string))

    def _sep(self, sp, ep):
        key = str(ep)
        if key not in self.seps:
            self.seps[key] = kube_chain_name("KUBE-SEP-", sp.name_string, sp.protocol.lower(), key)
        return self.seps[key]

    def _dispatch(self, sp, chain, endpoints):
        rs = self.rs
        rs.declare("nat", chain, sp.service)
        if sp.affinity:
            for ep in endpoints:
                sep = self._sep(sp, ep)
                rs.add("nat", chain, self._ep_comment('"%s -> %s"' % (sp.name_string, ep)),
                       "-m recent --name %s --rcheck --seconds %d --reap -j %s" % (sep, sp.sticky_seconds, sep))
        n = len(endpoints)
        for i, ep in enumerate(endpoints):
            prob = "-m statistic --mode random --probability %0.10f" % (1.0 / (n - i)) if i < n - 1 else ""
            rs.add("nat", chain, self._ep_comment('"%s -> %s"' % (sp.name_string, ep)), prob, "-j " + self._sep(sp, ep))

    def _ep_comment(self, text):
        return "" if self.large else "-m comment --comment " + text

    def _endpoint_chain(self, sp, ep, match):
        rs = self.rs
        sep = self._sep(sp, ep)
        rs.declare("nat", sep, sp.service)
        comment = self._ep_comment(sp.name_string)
        rs.add("nat", sep, comment, "-s " + ep.ip, "-j " + MARK_MASQ)
        recent = "-m recent --name %s --set" % sep if sp.affinity else ""
        rs.add("nat", sep, comment, recent, match, "-j DNAT --to-destination " + str(ep))
