# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod hostPorts as the CNI portmap plugin writes them in iptables (pure: objects in, rules out).

:func:`build_hostports` takes a node's pods (``cluster.node_model()["pods"]`` entries: ``id``,
``netns``, ``ip`` or ``podIP``, ``ports`` with ``containerPort``/``hostPort``/``hostIP``/
``protocol``) and the node's settings (:class:`HostPortNode`) and returns :class:`HostPorts`:
the nat chains and jumps of containernetworking/plugins ``plugins/meta/portmap``
(``portmap_iptables.go``, ``chain.go``, ``utils.go``, release 1.1.1 as in Debian and the current
one alike), in the shapes the nat_rule module takes, plus the sysctls portmap sets::

    PREROUTING, OUTPUT (appended): -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    POSTROUTING (inserted first): -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
    CNI-HOSTPORT-DNAT, per pod and protocol (multiport, at most 15 ports a rule):
        -m comment --comment "dnat name: \\"NET\\" id: \\"ID\\"" -m multiport -p tcp --destination-ports 8080,8081 -j CNI-DN-<hash>
    CNI-DN-<hash>, per mapping: hairpin mark, localhost mark, DNAT (the mark rules must come first)
        -p tcp --dport 8080 -s <podIP>/<prefix> -j CNI-HOSTPORT-SETMARK
        -p tcp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK
        -p tcp --dport 8080 -j DNAT --to-destination <podIP>:80
    CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
    CNI-HOSTPORT-MASQ:    -m mark --mark 0x2000/0x2000 -j MASQUERADE
    sysctl net.ipv4.conf.<bridge>.route_localnet = 1 (127.0.0.1 may then be routed out of the bridge)

The hairpin rule's source is the pod's address *with its prefix* (portmap prints the pod's
IPNet, ``10.244.1.5/24``, which iptables reads as the whole pod subnet), so every pod of the
bridge reaching a hostPort through a node address is masqueraded, not only the pod itself.

What portmap calls the container id and the network name: a runtime hands the same
``CNI_CONTAINERID`` and network name to every plugin of a chain, host-local included, which
writes the id into its allocation file under ``/var/lib/cni/networks/<network>/``. Ours are what
the pods module gives IPAM: the network name is the IPAM network (``pod_network_ipam_network``,
default ``podnet``) and the container id is the pod's network namespace name
(``pod-<namespace>-<name>``), the ``<id>`` the IPAM file records as
``podnet.fabric:<owner>:<id>``. The owner prefix is left out on purpose: a real CNI plugin
refuses ``:`` in a container id, and the chain name must not change when another role takes
the pods over. So ``CNI-DN-`` + sha512(network + netns name)[:21 hex] is the chain the real
plugin would make for that pod, and its comment names the netns.

Bad input raises FabricError, one line naming the pod: a hostPort or containerPort outside
1-65535, a protocol other than TCP, UDP or SCTP, a hostIP that is not an address, a pod with
hostPorts but no IP, and two claims of one hostPort/protocol that overlap (the same hostIP, or
either is 0.0.0.0: the scheduler's NodePorts rule), within one pod or between pods.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.ruleset.parse import quote

TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
DNAT_PREFIX = "CNI-DN-"
CHAIN_NAME_LENGTH = 28           # portmap's maxChainLength: every CNI-DN- name is exactly this long
DEFAULT_MARK_BIT = 13            # portmap's DefaultMarkBit: 0x2000 (kube-proxy uses 14 and 15)
MULTIPORT_MAX = 15               # the multiport match takes at most 15 ports
COMMENT_MAX = 255                # iptables refuses longer comments
PROTOCOLS = ("TCP", "UDP", "SCTP")
WILDCARD_IPS = ("", "0.0.0.0")   # a hostPort on every address (Kubernetes' default hostIP)


@dataclass
class HostPortNode:
    """The node's portmap configuration (the fields of portmap's network config we honour)."""
    bridge: str = "cni0"          # the interface that routes to the pods: gets route_localnet
    network: str = "podnet"       # the CNI network name (our IPAM network), hashed into chain names
    pod_cidr: str = ""            # gives the prefix of pod IPs written without one
    snat: bool = True             # portmap "snat": masquerade hairpin and localhost traffic
    mark_bit: int = DEFAULT_MARK_BIT      # "markMasqBit"
    masq_all: bool = False        # "masqAll": mark traffic from any source, not only the pod subnet
    external_setmark_chain: str = ""      # "externalSetMarkChain", e.g. KUBE-MARK-MASQ (no SETMARK/MASQ chains then)
    conditions: list = field(default_factory=list)    # "conditionsV4": appended to the entry rules

    @classmethod
    def from_dict(cls, data):
        if isinstance(data, cls):
            return data
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise FabricError("hostport node settings: unknown key(s) %s" % ", ".join(unknown))
        node = cls(**data)
        if not 0 <= node.mark_bit <= 31:
            raise FabricError("hostport node settings: mark_bit %r is not 0-31" % (node.mark_bit,))
        return node


@dataclass
class Mapping:
    """One portmap entry: hostIP:hostPort/protocol -> the pod's containerPort."""
    host_port: int
    container_port: int
    protocol: str        # lower case, as the runtime hands it to CNI
    host_ip: str = ""


@dataclass
class HostPorts:
    """portmap's nat chains (write order) and jumps for one node, plus the sysctls to set."""
    chains: list = field(default_factory=list)     # [{"table", "name", "rules"}]
    jumps: list = field(default_factory=list)      # [{"table", "chain", "rule", "position"}]
    sysctls: dict = field(default_factory=dict)    # {"net.ipv4.conf.cni0.route_localnet": "1"}

    def chain(self, name):
        return next((c for c in self.chains if c["name"] == name), None)

    def nat_rule_params(self):
        """``chains`` and ``jumps`` for podnet.fabric.nat_rule."""
        return {"chains": [dict(c, rules=list(c["rules"])) for c in self.chains],
                "jumps": [dict(j) for j in self.jumps]}

    def nat_rule_ruleset(self):
        """The same as one ``ruleset:`` string: ":CHAIN" blocks, then "-A" (append) or "-I" jumps."""
        if not self.chains and not self.jumps:
            return ""
        out = ["*nat"]
        for c in self.chains:
            out.append(":%s - [0:0]" % c["name"])
            out.extend("-A %s %s" % (c["name"], r) for r in c["rules"])
        out.extend("%s %s %s" % ("-I" if j["position"] == "first" else "-A", j["chain"], j["rule"]) for j in self.jumps)
        out.append("COMMIT")
        return "\n".join(out) + "\n"


def dnat_chain_name(network, container_id):
    """portmap's per-container chain: CNI-DN- + sha512(network + container id) in hex, 28 characters."""
    return (DNAT_PREFIX + hashlib.sha512((network + container_id).encode()).hexdigest())[:CHAIN_NAME_LENGTH]


def dnat_comment(network, container_id):
    text = 'dnat name: "%s" id: "%s"' % (network, container_id)
    # portmap cuts to 253 + "..." (256 characters, which iptables refuses); we stay within 255.
    return text if len(text) <= COMMENT_MAX else text[:COMMENT_MAX - 3] + "..."


def build_hostports(pods, node=None):
    """portmap's rules for the node's pods (in the order given: the order CNI ADD ran them)."""
    node = HostPortNode.from_dict(node)
    claims = {}                      # (protocol, hostPort) -> [(hostIP, pod id)]
    wired = []                       # (container id, pod IPv4Interface, [Mapping])
    for pod in pods:
        mappings = pod_mappings(pod, claims)
        if mappings:
            wired.append((pod_container_id(pod), _pod_interface(pod, node), mappings))
    out = HostPorts()
    if not wired:
        return out                   # portmap creates nothing until a pod has a hostPort
    mark = "%#x/%#x" % (1 << node.mark_bit, 1 << node.mark_bit)
    setmark = node.external_setmark_chain or SETMARK
    if node.snat and not node.external_setmark_chain:
        out.chains.append(_chain(SETMARK, ['-m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark ' + mark]))
        out.chains.append(_chain(MASQ, ["-m mark --mark %s -j MASQUERADE" % mark]))
    top = _chain(TOP_DNAT, [])
    out.chains.append(top)
    for container_id, pod_if, mappings in wired:
        name = dnat_chain_name(node.network, container_id)
        top["rules"].extend(_entry_rules(node, container_id, mappings, name))
        out.chains.append(_chain(name, _dnat_rules(node, pod_if, mappings, setmark)))
    for builtin in ("PREROUTING", "OUTPUT"):
        out.jumps.append(_jump(builtin, "-m addrtype --dst-type LOCAL -j " + TOP_DNAT, "last"))
    if node.snat and not node.external_setmark_chain:
        # first: otherwise the bridge plugin's own masquerade rules in POSTROUTING would win
        out.jumps.append(_jump("POSTROUTING", '-m comment --comment "CNI portfwd requiring masquerade" -j ' + MASQ, "first"))
    if node.snat:
        out.sysctls["net.ipv4.conf.%s.route_localnet" % node.bridge] = "1"
    return out


def pod_container_id(pod):
    """Our CNI container id of a pod: its network namespace name (see the module docstring)."""
    return str(pod.get("netns") or pod["name"])


def pod_mappings(pod, claims):
    """The pod's hostPort entries as portmap mappings; records them in ``claims`` and refuses
    one that overlaps an earlier claim."""
    who = "Pod %s" % (pod.get("id") or pod_container_id(pod))
    out = []
    for port in pod.get("ports") or ():
        if not port.get("hostPort"):
            continue
        host_port = _port_number(port.get("hostPort"), "hostPort", who)
        container_port = _port_number(port.get("containerPort"), "containerPort", who)
        protocol = str(port.get("protocol") or "TCP")
        if protocol.upper() not in PROTOCOLS:
            raise FabricError("%s: hostPort %d has protocol %r; only %s are known" % (who, host_port, protocol, ", ".join(PROTOCOLS)))
        host_ip = _host_ip(port.get("hostIP"), who, host_port)
        key = (protocol.upper(), host_port)
        for other_ip, other in claims.get(key, ()):
            if host_ip == other_ip or host_ip in WILDCARD_IPS or other_ip in WILDCARD_IPS:
                holder = "declared twice in this pod" if other == who else "already taken by %s" % other
                raise FabricError("%s: hostPort %d/%s on %s is %s" % (who, host_port, key[0], host_ip or "0.0.0.0", holder))
        claims.setdefault(key, []).append((host_ip, who))
        out.append(Mapping(host_port, container_port, protocol.lower(), host_ip))
    return out


def _port_number(value, what, who):
    try:
        number = int(str(value).strip())     # 80 and "80", never 80.5 or True
    except ValueError:
        raise FabricError("%s: %s %r is not a port number" % (who, what, value))
    if not 0 < number < 65536:
        raise FabricError("%s: %s %d is outside 1-65535" % (who, what, number))
    return number


def _host_ip(value, who, host_port):
    if value in (None, ""):
        return ""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise FabricError("%s: hostPort %d has hostIP %r, which is not an IP address" % (who, host_port, value))


def _pod_interface(pod, node):
    who = "Pod %s" % (pod.get("id") or pod_container_id(pod))
    text = pod.get("podIP") or pod.get("ip")
    if not text:
        raise FabricError("%s: has hostPorts but no IP yet (wire the pod first)" % who)
    text = str(text)
    if "/" not in text:
        if not node.pod_cidr:
            raise FabricError("%s: IP %s has no prefix and the node has no pod_cidr to take one from" % (who, text))
        text = "%s/%d" % (text, ipaddress.ip_network(node.pod_cidr).prefixlen)
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise FabricError("%s: IP %r is not an address" % (who, text))
    if interface.version != 4:
        raise FabricError("%s: IP %s is IPv6, only IPv4 is supported" % (who, interface))
    return interface


def _entry_rules(node, container_id, mappings, chain):
    """The pod's rules in CNI-HOSTPORT-DNAT: per protocol (sorted), up to 15 ports a rule."""
    comment = "-m comment --comment %s" % quote(dnat_comment(node.network, container_id))
    conditions = "".join(" " + c for c in node.conditions)
    rules = []
    for protocol in sorted(set(m.protocol for m in mappings)):
        ports = [str(m.host_port) for m in mappings if m.protocol == protocol]
        for i in range(0, len(ports), MULTIPORT_MAX):
            rules.append("%s -m multiport -p %s --destination-ports %s%s -j %s" % (
                comment, protocol, ",".join(ports[i:i + MULTIPORT_MAX]), conditions, chain))
    return rules


def _dnat_rules(node, pod_if, mappings, setmark):
    """The pod's CNI-DN- chain: per mapping the hairpin and localhost marks, then the DNAT."""
    rules = []
    for m in mappings:
        host_ip = ipaddress.ip_address(m.host_ip) if m.host_ip else None
        if host_ip is not None and host_ip.version != 4:
            continue                 # portmap skips a hostIP of the other family (the port stays in the entry rule)
        base = "-p %s --dport %d" % (m.protocol, m.host_port)
        if host_ip is not None and not host_ip.is_unspecified:
            base += " -d %s" % host_ip
        if node.snat:
            rules.append("%s -s %s -j %s" % (base, "0.0.0.0/0" if node.masq_all else pod_if.with_prefixlen, setmark))
            if not node.masq_all:
                rules.append("%s -s 127.0.0.1 -j %s" % (base, setmark))
        rules.append("%s -j DNAT --to-destination %s:%d" % (base, pod_if.ip, m.container_port))
    return rules


def _chain(name, rules):
    return {"table": "nat", "name": name, "rules": rules}


def _jump(chain, rule, position):
    return {"table": "nat", "chain": chain, "rule": rule, "position": position}
