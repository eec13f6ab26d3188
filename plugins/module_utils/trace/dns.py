# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A name looked up the way a pod's resolver does it, from inside the pod's namespace (read-only).

The namespace's resolv.conf is the one ``ip netns exec`` would bind-mount
(``/etc/netns/NAME/resolv.conf``, else ``/etc/resolv.conf``); a name with fewer dots than
``ndots`` is tried with each search domain first, then as it is (glibc's order), so a trace shows
the queries ``ndots:5`` costs. One A query per name over UDP to the first nameserver, sent from a
socket opened inside the namespace; only the answer section's A and CNAME records are read.
"""
from __future__ import annotations

import os
import random
import socket
import struct

from ansible_collections.podnet.fabric.plugins.module_utils import netns_exec

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_A, TYPE_CNAME, CLASS_IN = 1, 5, 1


def resolv_conf_path(netns):
    if netns:
        path = os.path.join("/etc/netns", netns, "resolv.conf")
        if os.path.exists(path):
            return path
    return "/etc/resolv.conf"


def parse_resolv_conf(text):
    """{nameservers, search, ndots} of a resolv.conf."""
    out = {"nameservers": [], "search": [], "ndots": 1}
    for line in (text or "").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            out["nameservers"].append(words[1])
        elif words[0] in ("search", "domain"):
            out["search"] = words[1:]
        elif words[0] == "options":
            for opt in words[1:]:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    out["ndots"] = min(int(opt[6:]), 15)
    return out


def candidates(name, conf):
    """The names the resolver asks, in order."""
    if name.endswith("."):
        return [name.rstrip(".")]
    with_search = ["%s.%s" % (name, domain.rstrip(".")) for domain in conf["search"]]
    if name.count(".") >= conf["ndots"]:
        return [name] + with_search
    return with_search + [name]


def build_query(qid, name):
    labels = b"".join(struct.pack("B", len(p)) + p.encode("ascii") for p in name.rstrip(".").split(".") if p)
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", TYPE_A, CLASS_IN)


def _name_at(data, offset):
    labels, jumped, end = [], False, offset
    for _hop in range(64):
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if not jumped:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumped = True
            continue
        if length == 0:
            return ".".join(labels), (end if jumped else offset + 1)
        labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise ValueError("DNS answer: name compression loop")


def parse_answer(data, qid):
    """(rcode, [A addresses], [CNAME targets]) of a reply to query ``qid``."""
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise ValueError("DNS answer for another query")
    offset = 12
    for _q in range(qd):
        offset = _name_at(data, offset)[1] + 4
    addrs, cnames = [], []
    for _a in range(an):
        _owner, offset = _name_at(data, offset)
        rtype, rclass, _ttl, rdlen = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        rdata = data[offset:offset + rdlen]
        if rclass == CLASS_IN and rtype == TYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntoa(rdata))
        elif rclass == CLASS_IN and rtype == TYPE_CNAME:
            cnames.append(_name_at(data, offset)[0])
        offset += rdlen
    return RCODES.get(flags & 0xF, str(flags & 0xF)), addrs, cnames


def _ask(server, name, timeout):
    qid = random.randint(1, 0xFFFF)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sock.sendto(build_query(qid, name), (server, 53))
        while True:
            data, peer = sock.recvfrom(4096)
            if peer[0] == server:
                return parse_answer(data, qid)
    finally:
        sock.close()


def lookup(name, netns=None, timeout=1.0):
    """Ask for ``name`` as the namespace's resolver would: {name, resolv_conf, nameserver, tried:
    [{qname, rcode, answers, cnames}], answers, qname (the one answered), error}."""
    path = resolv_conf_path(netns)
    try:
        with open(path) as handle:
            conf = parse_resolv_conf(handle.read())
    except OSError as exc:
        return {"name": name, "resolv_conf": path, "error": "cannot read %s: %s" % (path, exc.strerror)}
    out = {"name": name, "resolv_conf": path, "nameserver": None, "search": conf["search"], "ndots": conf["ndots"],
           "tried": [], "answers": [], "qname": None, "error": None}
    if not conf["nameservers"]:
        out["error"] = "%s lists no nameserver" % path
        return out
    server = out["nameserver"] = conf["nameservers"][0]
    for qname in candidates(name, conf):
        try:
            if netns:
                with netns_exec.joined(netns_exec.netns_path(netns)):
                    # the socket is bound to the namespace it is created in
                    rcode, addrs, cnames = _ask(server, qname, timeout)
            else:
                rcode, addrs, cnames = _ask(server, qname, timeout)
        except (OSError, ValueError, struct.error) as exc:
            out["tried"].append({"qname": qname, "rcode": None, "error": str(exc) or exc.__class__.__name__})
            out["error"] = "no answer from %s for %s: %s" % (server, qname, str(exc) or exc.__class__.__name__)
            return out
        out["tried"].append({"qname": qname, "rcode": rcode, "answers": addrs, "cnames": cnames})
        if rcode == "NOERROR" and addrs:
            out["answers"], out["qname"] = addrs, qname
            return out
        if rcode not in ("NXDOMAIN", "NOERROR"):
            out["error"] = "%s answered %s for %s" % (server, rcode, qname)
            return out
    out["error"] = "%s has no A record for %s (%d names tried)" % (server, name, len(out["tried"]))
    return out


def lines(result):
    """Human-readable lines of a lookup."""
    head = "dns: %s asked from %s" % (result["name"], result.get("resolv_conf"))
    if result.get("nameserver"):
        head = "dns: %s asked to %s (%s: search %s, ndots %s)" % (
            result["name"], result["nameserver"], result["resolv_conf"], " ".join(result["search"]) or "-",
            result["ndots"])
    out = [head]
    for t in result.get("tried", []):
        if t.get("rcode") is None:
            out.append("dns:   %s -> no answer (%s)" % (t["qname"], t.get("error")))
        else:
            out.append("dns:   %s -> %s%s" % (t["qname"], t["rcode"], (" A " + ", ".join(t["answers"])) if t["answers"] else ""))
    if result.get("error"):
        out.append("dns: %s" % result["error"])
    return out
