# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From what a user names to the packet the trace follows (pure).

A user says "from pod default/client-1 to web.default.svc.cluster.local" or "from the client host to
node3's NodePort of default/web-local"; the trace needs addresses, a port, the node or namespace the
packet starts in and the interface it arrives on. :func:`request` answers from the states the nodes
returned (``podnet.fabric.trace`` with ``return_state``), so a Service is resolved the way the
nodes' kube-proxy rules say it is reached (their comments name ``namespace/name:port``), not the
way a manifest hopes it is.

Sources: ``pod:NS/NAME`` or ``NS/NAME`` (a pod's namespace state, locally generated there), ``HOST``
(any state read: a node, the client host, a router), ``IP`` (a host's address, or an outside
address with ``via`` = the node it enters).
Destinations: ``pod:NS/NAME`` or ``NS/NAME`` (its address; needs ``port`` for tcp/udp/sctp),
``svc:NS/NAME[:PORT]`` / ``NAME.NS.svc[.cluster.local][:PORT]`` (the ClusterIP), ``nodeport:NODE/NS/NAME[:PORT]``,
``lb:NS/NAME[:PORT]`` (the LoadBalancer IP), ``external:NS/NAME[:PORT]``, ``HOST[:PORT]``, ``IP[:PORT]``.
PORT is the Service port's name or number (default: its first port).
"""
from __future__ import annotations

import ipaddress

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError
from ansible_collections.podnet.fabric.plugins.module_utils.trace.state import NodeState

# kube-proxy's comments on its KUBE-SERVICES / KUBE-NODEPORTS rules -> how the service is reached
_KINDS = (("cluster IP", "svc"), ("has no endpoints", "svc"), ("external IP", "external"),
          ("loadbalancer IP", "lb"), ("has no local endpoints", None))
PREFIXES = ("pod", "svc", "nodeport", "lb", "external")


class ResolveError(FabricError):
    pass


def _is_ip(text):
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _split_port(text):
    """'name:port' -> (name, port or None); an IPv4 literal's port likewise."""
    if ":" in text:
        head, port = text.rsplit(":", 1)
        return head, port
    return text, None


def service_entries(state):
    """Every way kube-proxy's rules on one node reach a service port: [{service, port, kind, ip,
    dport, proto}] (kind svc|external|lb|nodeport; ip None for a NodePort: any local address)."""
    out = []
    for table, chain in (("nat", "KUBE-SERVICES"), ("filter", "KUBE-SERVICES"), ("filter", "KUBE-EXTERNAL-SERVICES"),
                         ("nat", "KUBE-NODEPORTS")):
        found = state.chain(table, chain)
        if not found:
            continue
        for rule in found[1]:
            comment = rule.comment or ""
            dport = proto = None
            for name, opts in rule.matches:
                for _neg, key, args in opts:
                    if key == "--dport" and name in ("tcp", "udp", "sctp"):
                        dport, proto = int(args[0].split(":")[0]), name
            if dport is None:
                continue
            dst = next((v for neg, k, v in rule.header if k == "-d" and not neg), None)
            ip = dst.split("/")[0] if dst else None
            if chain == "KUBE-NODEPORTS":
                if ip and ip.startswith("127."):
                    continue
                svc, kind = comment, "nodeport"
            else:
                kind = None
                svc = comment
                for suffix, k in _KINDS:
                    if comment.endswith(" " + suffix):
                        svc, kind = comment[:-len(suffix) - 1], k
                        break
                if kind is None or ip is None:
                    continue
                if table == "filter" and "has no local" in comment:
                    continue
            if not svc or "/" not in svc:
                continue
            name, port = (svc.split(":", 1) + [""])[:2]
            entry = {"service": name, "port": port, "kind": kind, "ip": ip, "dport": dport, "proto": proto,
                     "table": table, "chain": chain}
            if entry not in out:
                out.append(entry)
    return out


def _service_target(text):
    """'web.default.svc.cluster.local:http' -> ('default/web', 'http'); 'default/web:80' likewise."""
    head, port = _split_port(text)
    if "/" in head:
        return head, port
    labels = head.rstrip(".").split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return "%s/%s" % (labels[1], labels[0]), port
    raise ResolveError("trace: %r is not a Service (NS/NAME or NAME.NS.svc.cluster.local)" % text)


def _pick_port(entries, svc, port, what):
    if not entries:
        raise ResolveError("trace: no kube-proxy rule on the nodes read reaches %s as %s" % (svc, what))
    if port is None:
        first = entries[0]["port"]
        return [e for e in entries if e["port"] == first]
    chosen = [e for e in entries if e["port"] == port or str(e["dport"]) == str(port)]
    if not chosen:
        raise ResolveError("trace: %s has no port %s as %s (ports: %s)" % (
            svc, port, what, ", ".join(sorted(set("%s/%d" % (e["port"] or "-", e["dport"]) for e in entries)))))
    return chosen


class Resolver(object):
    """Names -> packets over the states of the hosts and pods read (``{name: state dict}``)."""

    def __init__(self, states):
        self.raw = dict(states)
        self.states = dict((n, NodeState.from_dict(dict(s, name=s.get("name") or n))) for n, s in self.raw.items())
        self.notes = []

    # --- where things are ----------------------------------------------------------------------------

    def primary_address(self, name):
        """A host's own address: the source of its default route (else its first non-loopback one)."""
        st = self.states[name]
        r = st.lookup("0.0.0.0") if any(r.net.prefixlen == 0 for r in st.routes) else None
        if r is not None and r.type == "unicast":
            dev = r.dev or (r.nexthops[0]["dev"] if r.nexthops else None)
            src = st.source_for(dev, r.gateway or (r.nexthops[0]["gateway"] if r.nexthops else None), r)
            if src:
                return src
        for dev, addrs in sorted(st.addresses.items()):
            for a in addrs:
                if dev != "lo" and not a.startswith("127."):
                    return a.split("/")[0]
        raise ResolveError("trace: %s has no IPv4 address" % name)

    def holder(self, ip):
        for name, st in self.states.items():
            if st.interface_of(ip):
                return name
        return None

    def _pod(self, text):
        name = text[4:] if text.startswith("pod:") else text
        if name not in self.states:
            pods = sorted(n for n in self.states if "/" in n)
            raise ResolveError("trace: pod %s was not read (pods read: %s)" % (name, ", ".join(pods) or "none"))
        return name

    def _services(self, order):
        """Service entries of the states in ``order`` first (the start's node), then the others."""
        seen = []
        for name in list(order) + sorted(self.states):
            if name in self.states and name not in seen:
                seen.append(name)
        for name in seen:
            for e in service_entries(self.states[name]):
                yield name, e

    # --- the two ends ---------------------------------------------------------------------------------

    def source(self, text, via=None):
        """{name, host, netns, src, iif}: where the packet starts."""
        text = str(text).strip()
        if text.startswith("pod:") or ("/" in text and not _is_ip(text.split("/", 1)[0])):
            name = self._pod(text)
            src = self.primary_address(name)
            self.notes.append("from pod %s (%s), in its namespace" % (name, src))
            return self._start(name, src, None)
        if text in self.states:
            self.notes.append("from host %s" % text)
            return self._start(text, None, None)
        if _is_ip(text):
            owner = self.holder(text)
            if owner is not None:
                self.notes.append("from %s, an address of %s" % (text, owner))
                return self._start(owner, text, None)
            if not via:
                raise ResolveError("trace: %s is no address of the hosts read; say which node it enters (via)" % text)
            if via not in self.states:
                raise ResolveError("trace: via %s was not read" % via)
            r = self.states[via].lookup(text)
            iif = (r.dev or (r.nexthops[0]["dev"] if r.nexthops else None)) if r is not None else None
            if iif is None:
                raise ResolveError("trace: %s has no route back to %s: which interface would it arrive on?" % (via, text))
            self.notes.append("from outside address %s, arriving on %s %s" % (text, via, iif))
            return self._start(via, text, iif)
        raise ResolveError("trace: source %r is no pod, host or address read" % text)

    def _start(self, name, src, iif):
        raw = self.raw[name]
        return {"name": name, "host": raw.get("host") or name, "netns": raw.get("netns"), "src": src, "iif": iif}

    def destination(self, text, protocol, port=None, start=None):
        """{dst, dport, proto}: what the packet is addressed to."""
        text = str(text).strip()
        order = [start] if start else []
        if start and self.raw.get(start, {}).get("host"):
            order.append(self.raw[start]["host"])
        prefix = text.split(":", 1)[0] if ":" in text else None
        if prefix in ("svc", "lb", "external") or ".svc" in text.split(":", 1)[0]:
            body = text[len(prefix) + 1:] if prefix in ("svc", "lb", "external") else text
            kind = prefix if prefix in ("lb", "external") else "svc"
            svc, sport = _service_target(body)
            entries = [e for _n, e in self._services(order) if e["service"] == svc and e["kind"] == kind]
            what = {"svc": "ClusterIP", "lb": "LoadBalancer IP", "external": "external IP"}[kind]
            e = _pick_port(entries, svc, sport or (str(port) if port else None), what)[0]
            self.notes.append("%s -> Service %s port %s -> %s %s:%d/%s (kube-proxy's %s %s rule)" % (
                text, svc, e["port"] or "-", what, e["ip"], e["dport"], e["proto"], e["table"], e["chain"]))
            out = {"dst": e["ip"], "dport": e["dport"], "proto": e["proto"]}
            if ".svc" in body.split(":", 1)[0]:
                out["lookup"] = body.split(":", 1)[0]     # a DNS name: the source's own lookup is traced too
            return out
        if prefix == "nodeport":
            body = text[len("nodeport:"):]
            node, _sep, rest = body.partition("/")
            if node not in self.states:
                raise ResolveError("trace: nodeport %s: node %s was not read" % (text, node))
            svc, sport = _service_target(rest)
            entries = [e for e in service_entries(self.states[node]) if e["service"] == svc and e["kind"] == "nodeport"]
            e = _pick_port(entries, svc, sport or (str(port) if port else None), "NodePort on %s" % node)[0]
            ip = self.primary_address(node)
            self.notes.append("%s -> NodePort %d/%s of %s port %s on %s (%s)" % (
                text, e["dport"], e["proto"], svc, e["port"] or "-", node, ip))
            return {"dst": ip, "dport": e["dport"], "proto": e["proto"]}
        head, tail = _split_port(text[4:] if prefix == "pod" else text)
        dport = int(tail) if tail and tail.isdigit() else (int(port) if port else None)
        if tail and not tail.isdigit():
            raise ResolveError("trace: %r: port %s is not a number" % (text, tail))
        if _is_ip(head):
            ip = head
        elif prefix == "pod" or "/" in head:
            name = self._pod("pod:" + head)
            ip = self.primary_address(name)
            self.notes.append("pod %s is %s" % (name, ip))
        elif head in self.states:
            ip = self.primary_address(head)
            self.notes.append("host %s is %s" % (head, ip))
        else:
            raise ResolveError("trace: destination %r is no pod, Service, host or address read" % text)
        proto = (protocol or "tcp").lower()
        if proto in ("tcp", "udp", "sctp") and dport is None:
            raise ResolveError("trace: a %s packet to %s needs a port" % (proto, text))
        return {"dst": ip, "dport": dport, "proto": proto}


def request(states, source, destination, protocol="tcp", port=None, via=None):
    """What the trace module is called with, and how the names were resolved::

        {"name", "host", "netns", "packet": {src, dst, proto, dport, iif}, "peers": [names], "resolved": [lines]}
    """
    if not states:
        raise ResolveError("trace: no states were read")
    res = Resolver(states)
    start = res.source(source, via)
    dst = res.destination(destination, protocol, port, start["name"])
    proto = dst["proto"] if dst.get("proto") else (protocol or "tcp")
    packet = {"src": start["src"], "dst": dst["dst"], "proto": proto, "dport": dst["dport"], "iif": start["iif"]}
    return {"name": start["name"], "host": start["host"], "netns": start["netns"], "packet": packet,
            "peers": sorted(n for n in states if n != start["name"]), "resolved": res.notes,
            "lookup": dst.get("lookup")}
