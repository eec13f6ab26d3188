# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BIRD 2 as podnet.fabric drives it: Calico's BGPPeer fields -> ``protocol bgp`` blocks.

Layout (the collection owns one directory, by default ``/etc/bird/podnet.d``):

- the main configuration (``/etc/bird/bird.conf``, the file the daemon was started with) holds
  what is global - ``router id``, ``protocol device``/``direct``/``kernel``/``static``,
  ``protocol bfd``, filters - and one line ``include "/etc/bird/podnet.d/*.conf";`` (added at its
  end when missing);
- each owner's peers live in ``<dir>/<owner>.conf``: a header naming the owner, then one block
  per peer between ``# peer NAME`` markers. Nothing else in the directory is ever written.

A change is rendered, then the complete new configuration (main file, every other file in the
directory as it is, the owner's new file) is parsed by BIRD itself (``bird -p -c``) in a staging
copy; only when BIRD accepts it does the owner's file replace the old one (rename), and
``birdc configure`` follows. Nothing here imports AnsibleModule: the command runner is passed in
(``run(argv) -> (rc, stdout, stderr)``, in the task's network namespace).
"""
from __future__ import annotations

import grp
import ipaddress
import os
import re
import secrets
import shutil
import tempfile
import time

from ansible_collections.podnet.fabric.plugins.module_utils import files, netns_exec
from ansible_collections.podnet.fabric.plugins.module_utils.owner import mark
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

DEFAULT_CONFIG = "/etc/bird/bird.conf"
DEFAULT_DIR = "/etc/bird/podnet.d"
DEFAULT_SOCKET = "/run/bird/bird.ctl"
DEFAULT_AS = 64512
MASK = "********"
# The options every module that drives a BIRD daemon takes (bird.daemon() reads them).
DAEMON_OPTIONS = dict(
    config=dict(type="path", default=DEFAULT_CONFIG),
    config_dir=dict(type="path", default=DEFAULT_DIR),
    socket=dict(type="path", default=DEFAULT_SOCKET),
    bird=dict(type="path", default="bird"),
    birdc=dict(type="path", default="birdc"),
)

_SYMBOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PASSWORD_RE = re.compile(r'(\bpassword\s+)"(?:[^"\\]|\\.)*"')
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_BIRD_ERROR_RE = re.compile(r"^(?:bird: )?(?P<path>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+) (?P<msg>.*)$", re.M)
_PROTOCOL_RE = re.compile(r"^\s*protocol\s+bgp\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


# --- Calico's BGPPeer fields -> one peer ---------------------------------------------------------

def parse_peer_ip(text):
    """Calico's peerIP: ``ip``, ``ip:port`` (IPv4) or ``[ipv6]:port`` -> (ip, port or None)."""
    text = str(text).strip()
    port = None
    host = text
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("not ip, ip:port or [ipv6]:port")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    ip = ipaddress.ip_address(host)
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("port %r is not 1-65535" % port)
        port = int(port)
    return ip, port


def parse_duration(value):
    """Calico's durations (``20s``, ``2m``, ``1m30s``, or plain seconds) -> whole seconds."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if re.match(r"^\d+$", text):
        return int(text)
    if not re.match(r"^(\d+(\.\d+)?(h|ms|m|s))+$", text):
        raise ValueError("%r is not a duration (seconds, or like 20s, 2m, 1m30s)" % value)
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    # Calico rounds half away from zero (Go's math.Round), not to even.
    return int(sum(float(n) * scale[u] for n, u in _DURATION_RE.findall(text)) + 0.5)


def protocol_name(ip, port=None, prefix="Node"):
    """Calico's protocol names: ``Node_10_0_0_2``, ``Global_fd00__2_port_1179``."""
    name = "%s_%s" % (prefix, str(ip).replace(".", "_").replace(":", "_"))
    if port:
        name += "_port_%d" % port
    return name


def calico_passive(peer_ip, node_ip):
    """Calico's rule for peerings between two Calico nodes (mesh, and global peers selecting
    nodes): this side is passive when the peer's IP is greater than the node's, compared as
    strings ("10.0.0.10" < "10.0.0.5"), so exactly one side of each pair connects - the one
    with the greater address."""
    return str(peer_ip) > str(node_ip)


def _as_number(value, what):
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("%s %r is not a number" % (what, value))
    return number


def normalize(params, node_ip=None, as_number=DEFAULT_AS, listen_port=None):
    """One peer of the task (Calico's BGPPeer spelling, snake_case) -> plain validated dict.
    ``listen_port``: the node's BGP port (Calico's listenPort), written only when not 179.

    Raises FabricError with one line naming the peer and the reason.
    """
    raw = params.get("peer_ip")
    label = "peer %s" % raw
    try:
        node = ipaddress.ip_address(node_ip) if node_ip else None
    except ValueError:
        raise FabricError("node_ip %r: not an IP address" % node_ip)
    try:
        ip, port = parse_peer_ip(raw)
        peer = {
            "peer_ip": str(ip),
            "port": port,
            "family": "ipv%d" % ip.version,
            "state": params.get("state") or "present",
            "as_number": _as_number(params.get("as_number"), "as_number"),
            "local_as_number": _as_number(params.get("local_as_number"), "local_as_number") or as_number,
            "keepalive_time": parse_duration(params.get("keepalive_time")),
            "hold_time": parse_duration(params.get("hold_time")),
            "max_restart_time": parse_duration(params.get("max_restart_time")),
            "graceful_restart": params.get("graceful_restart", True) is not False,
            "ttl_security": int(params.get("ttl_security") or 0),
            "next_hop_mode": params.get("next_hop_mode") or "Auto",
            "password": params.get("password") or None,
            "bfd": bool(params.get("bfd")),
            "num_allowed_local_as_numbers": int(params.get("num_allowed_local_as_numbers") or 0),
            "import_filter": params.get("import_filter") or "all",
            "export_filter": params.get("export_filter") or "none",
            "rr_client": bool(params.get("rr_client")),
            "rr_cluster_id": params.get("rr_cluster_id") or None,
            "listen_port": int(listen_port) if listen_port and int(listen_port) != 179 else None,
        }
    except ValueError as exc:
        raise FabricError("%s: %s" % (label, exc))
    peer["name"] = params.get("name") or protocol_name(ip, port, params.get("name_prefix") or "Node")
    label = "peer %s (%s)" % (raw, peer["name"])
    if peer["state"] == "absent":
        return peer
    if peer["as_number"] is None:
        raise FabricError("%s: as_number is required" % label)
    for key in ("as_number", "local_as_number"):
        if not 0 < peer[key] < 2 ** 32:
            raise FabricError("%s: %s %d is not 1-4294967295" % (label, key, peer[key]))
    if not _SYMBOL_RE.match(peer["name"]):
        raise FabricError("%s: name must be a BIRD symbol (letters, digits, '_', at most 64)" % label)
    for key in ("import_filter", "export_filter"):
        if peer[key] not in ("all", "none") and not _SYMBOL_RE.match(peer[key]):
            raise FabricError("%s: %s must be all, none or the name of a BIRD filter" % (label, key))
    if peer["rr_cluster_id"] is not None:
        if not peer["rr_client"]:
            raise FabricError("%s: rr_cluster_id needs rr_client: true (Calico writes both on a reflector's sessions to its clients)" % label)
        try:
            peer["rr_cluster_id"] = str(ipaddress.IPv4Address(str(peer["rr_cluster_id"])))
        except ValueError:
            raise FabricError("%s: rr_cluster_id %r is not IPv4-formatted (like 244.0.0.1)" % (label, peer["rr_cluster_id"]))
    if peer["rr_client"] and peer["as_number"] != peer["local_as_number"]:
        raise FabricError("%s: rr_client needs an iBGP peer (as_number %s is not the local AS %s)"
                          % (label, peer["as_number"], peer["local_as_number"]))
    if peer["listen_port"] is not None and not 0 < peer["listen_port"] < 65536:
        raise FabricError("%s: listen_port %s is not 1-65535" % (label, peer["listen_port"]))
    if peer["next_hop_mode"] not in ("Auto", "Self", "Keep"):
        raise FabricError("%s: next_hop_mode must be Auto, Self or Keep" % label)
    if not 0 <= peer["ttl_security"] <= 255:
        raise FabricError("%s: ttl_security must be 0-255 hops" % label)
    password = peer["password"]
    if password is not None and (len(password) > 80 or re.search(r'["\\\n\r]', password)):
        raise FabricError("%s: password must be at most 80 characters without quotes, backslashes or newlines (TCP MD5)" % label)
    source = params.get("source_address") or "UseNodeIP"
    if source not in ("UseNodeIP", "None"):
        raise FabricError("%s: source_address must be UseNodeIP or None" % label)
    if source == "UseNodeIP":
        if node is None:
            raise FabricError("%s: source_address UseNodeIP needs node_ip (or set source_address: None)" % label)
        if node.version != ip.version:
            raise FabricError("%s: node_ip %s is not of the peer's address family" % (label, node))
        peer["source_address"] = str(node)
    else:
        peer["source_address"] = None
    if node is not None and node == ip:
        raise FabricError("%s: is the node's own address" % label)
    passive = params.get("passive")
    if passive is None:
        passive = bool(params.get("calico_node")) and node is not None and calico_passive(ip, node)
    peer["passive"] = bool(passive)
    return peer


# --- rendering --------------------------------------------------------------------------------------

def render_peer(peer, owner):
    """The ``protocol bgp`` block of one peer, as Calico's template writes it for BIRD 2."""
    lines = ["# peer %s" % peer["name"],
             "protocol bgp %s {" % peer["name"],
             '  description "%s peer %s";' % (mark(owner), peer["peer_ip"]),
             "  local as %d;" % peer["local_as_number"],
             "  neighbor %s%s as %d;" % (peer["peer_ip"], " port %d" % peer["port"] if peer["port"] else "", peer["as_number"])]
    if peer["listen_port"]:
        lines.append("  local port %d;" % peer["listen_port"])
    if peer["source_address"]:
        lines.append("  source address %s;" % peer["source_address"])
    if peer["ttl_security"]:
        lines += ["  ttl security on;", "  multihop %d;" % peer["ttl_security"]]
    else:
        lines += ["  ttl security off;", "  multihop;"]
    if peer["passive"]:
        lines.append("  passive on;")
    if peer["rr_client"]:
        lines.append("  rr client;")
        if peer["rr_cluster_id"]:
            lines.append("  rr cluster id %s;" % peer["rr_cluster_id"])
    lines.append("  graceful restart %s;" % ("on" if peer["graceful_restart"] else "off"))
    if peer["graceful_restart"] and peer["max_restart_time"] is not None:
        lines.append("  graceful restart time %d;" % peer["max_restart_time"])
    if peer["hold_time"] is not None:
        lines.append("  hold time %d;" % peer["hold_time"])
    if peer["keepalive_time"] is not None:
        lines.append("  keepalive time %d;" % peer["keepalive_time"])
    if peer["password"]:
        lines.append('  password "%s";' % peer["password"])
    if peer["bfd"]:
        lines.append("  bfd on;")
    if peer["num_allowed_local_as_numbers"]:
        lines.append("  allow local as %d;" % peer["num_allowed_local_as_numbers"])
    lines += ["  connect delay time 2;", "  connect retry time 5;", "  error wait time 5,30;",
              "  %s {" % peer["family"],
              "    gateway recursive;",
              "    add paths on;",
              "    import %s;" % _filter(peer["import_filter"]),
              "    export %s;" % _filter(peer["export_filter"])]
    if peer["next_hop_mode"] != "Auto":
        lines.append("    next hop %s;" % peer["next_hop_mode"].lower())
    lines += ["  };", "}"]
    return "\n".join(lines) + "\n"


def _filter(name):
    return name if name in ("all", "none") else "filter %s" % name


def header(owner):
    return ("# %s: BGP peers of owner %s, written by podnet.fabric.calico_bgp_peer.\n"
            "# Do not edit: the next run of that owner rewrites this file.\n" % (mark(owner), owner))


def render_file(owner, blocks):
    """The owner's file: header, then the peers' blocks sorted by protocol name."""
    return header(owner) + "".join("\n" + blocks[name] for name in sorted(blocks))


def file_owner(text):
    """The owner named by a podnet.fabric peers file's header; None when it is not one."""
    match = re.match(r"^# %s:(\S+): BGP peers of owner " % re.escape(mark("")[:-1]), text or "")
    return match.group(1) if match else None


def parse_file(text):
    """{protocol name: block text} of an owner's file (as render_file wrote it)."""
    blocks, name, current = {}, None, []
    for line in (text or "").splitlines(True):
        match = re.match(r"^# peer (\S+)$", line.rstrip("\n"))
        if match:
            if name:
                blocks[name] = "".join(current).rstrip("\n") + "\n"
            name, current = match.group(1), [line]
        elif name:
            current.append(line)
    if name:
        blocks[name] = "".join(current).rstrip("\n") + "\n"
    return blocks


def masked(text):
    """``text`` with every ``password "..."`` shown as ``password "********"``."""
    if text is None:
        return None
    return _PASSWORD_RE.sub(lambda m: '%s"%s"' % (m.group(1), MASK), text)


def include_line(directory):
    return 'include "%s/*.conf";' % directory.rstrip("/")


# --- birdc show protocols all -------------------------------------------------------------------------

_COLUMNS = ("name", "proto", "table", "state", "since", "info")


def parse_protocols(text):
    """``birdc show protocols all`` -> {name: {...}}: proto, table, state (up/down/start),
    since (as BIRD prints it), info, and for BGP bgp_state, neighbor_address, neighbor_as,
    local_as, last_error, and per channel routes {imported, exported, preferred, filtered}."""
    out, current, channel = {}, None, None
    for raw in text.splitlines():
        line = re.sub(r"^\d{4}[-\s]", "", raw) if re.match(r"^\d{4}[-\s]", raw) else raw
        if not line.strip() or line.startswith(("BIRD ", "Name ", "Access restricted")):
            continue
        if not line[0].isspace():
            parts = line.split(None, 5)
            if len(parts) < 5:
                current = None
                continue
            current = dict(zip(_COLUMNS, parts + [""] * (6 - len(parts))))
            current["info"] = current["info"].strip()
            # "Since" may be two words ("2026-12-01 23:10:05") when timeformat says so.
            if re.match(r"^\d{4}-\d\d-\d\d$", current["since"]) and re.match(r"^\d\d:\d\d", current["info"]):
                words = current["info"].split(None, 1) + [""]
                current["since"] += " " + words[0]
                current["info"] = words[1].strip()
            current["channels"] = {}
            channel = None
            out[current["name"]] = current
            continue
        if current is None:
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            match = re.match(r"^\s*Channel (\S+)", line)
            if match:
                channel = current["channels"].setdefault(match.group(1), {})
            continue
        key, value = key.strip(), value.strip()
        if key == "Routes" and channel is not None:
            channel["routes"] = dict((word, int(num)) for num, word in re.findall(r"(\d+) (\w+)", value))
        elif key == "State" and channel is not None:
            channel["state"] = value
        elif channel is None:
            field = {"BGP state": "bgp_state", "Neighbor address": "neighbor_address", "Neighbor AS": "neighbor_as",
                     "Local AS": "local_as", "Last error": "last_error", "Neighbor ID": "neighbor_id",
                     "Hold timer": "hold_timer", "Keepalive timer": "keepalive_timer"}.get(key)
            if field:
                current[field] = value
    return out


def uptime(since, now=None):
    """Seconds since BIRD's ``since`` stamp (local time; ``HH:MM:SS[.fff]`` means today), or None."""
    now = time.time() if now is None else now
    text = since.split(".")[0]
    try:
        if re.match(r"^\d\d:\d\d:\d\d$", text):
            today = time.strftime("%Y-%m-%d", time.localtime(now))
            stamp = time.mktime(time.strptime("%s %s" % (today, text), "%Y-%m-%d %H:%M:%S"))
            if stamp > now + 1:
                stamp -= 86400
        elif re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", text):
            stamp = time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
        else:
            return None
    except ValueError:
        return None
    return max(0, int(now - stamp))


def session(proto):
    """The module's view of one BGP protocol from parse_protocols."""
    routes = {}
    for chan in proto.get("channels", {}).values():
        for key, num in chan.get("routes", {}).items():
            routes[key] = routes.get(key, 0) + num
    state = proto.get("bgp_state") or proto.get("info") or proto.get("state")
    out = {"name": proto["name"], "state": state, "protocol_state": proto.get("state"), "since": proto.get("since"),
           "uptime": uptime(proto.get("since", "")) if state == "Established" else None,
           "routes": {"imported": routes.get("imported", 0), "exported": routes.get("exported", 0),
                      "preferred": routes.get("preferred", 0), "filtered": routes.get("filtered", 0)}}
    if proto.get("last_error"):
        out["last_error"] = proto["last_error"]
    if proto.get("neighbor_address"):
        out["neighbor_address"] = proto["neighbor_address"]
    return out


# --- the daemon and its files ----------------------------------------------------------------------

def daemon(ctx):
    """The :class:`Bird` of a module's task (``ctx``: runner.Context): birdc in the task's
    namespace, ``bird -p`` in the caller's (it needs none)."""
    p = ctx.params
    return Bird(ctx.run, config=p["config"], directory=p["config_dir"], socket=p["socket"], bird=p["bird"], birdc=p["birdc"],
                parse_run=lambda argv, input_text=None: netns_exec.run(argv, input_text=input_text))


class Bird(object):
    """One BIRD daemon: its main config, the collection's directory, binaries and socket.

    ``run(argv, input_text=None) -> (rc, stdout, stderr)`` runs birdc in the daemon's namespace;
    ``parse_run`` (default ``run``) runs ``bird -p``, which needs no namespace (so check mode
    works before the namespace exists).
    """

    def __init__(self, run, config=DEFAULT_CONFIG, directory=DEFAULT_DIR, socket=DEFAULT_SOCKET, bird="bird", birdc="birdc",
                 parse_run=None):
        self.run = run
        self.parse_run = parse_run or run
        self.config = config
        self.directory = directory.rstrip("/")
        self.socket = socket
        self.bird = bird
        self.birdc_bin = birdc

    def owner_path(self, owner):
        return os.path.join(self.directory, "%s.conf" % owner)

    def read_dir(self):
        """{path: text} of the *.conf files in the directory (what the include loads)."""
        out = {}
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".conf") and not name.startswith(".") and os.path.isfile(path):
                out[path] = read(path)
        return out

    def birdc(self, *args):
        rc, out, err = self.run([self.birdc_bin, "-s", self.socket] + list(args))
        if rc != 0 or "Unable to connect" in out + err:
            lines = (err or out).strip().splitlines()
            raise FabricError("birdc -s %s %s: %s" % (self.socket, " ".join(args), lines[-1] if lines else "exit status %d" % rc))
        return out

    def running(self):
        return os.path.exists(self.socket) and self.run([self.birdc_bin, "-s", self.socket, "show", "status"])[0] == 0

    def protocols(self):
        return parse_protocols(self.birdc("show", "protocols", "all"))

    def configure(self):
        out = self.birdc("configure")
        if not re.search(r"^(\d{4}[-\s])?Reconfigur(ed|ation in progress|ation already in progress)", out, re.M):
            raise FabricError("birdc configure: %s" % " / ".join(line.strip() for line in out.splitlines()[1:] if line.strip()))
        return out

    def validate(self, main_text, files, owner_file=None, peers=None):
        """Parse the complete configuration - ``main_text`` for the main file and ``files``
        ({path in the directory: text}) for the directory - with ``bird -p`` in a staging copy.
        Raises FabricError quoting BIRD's message and line (naming the peer when the line is in
        ``owner_file``)."""
        token = secrets.token_hex(4)
        parent = os.path.dirname(self.directory)
        stage_dir = tempfile.mkdtemp(prefix=".podnet-staging-", dir=parent if os.path.isdir(parent) else None)
        stage_main = os.path.join(os.path.dirname(self.config) or ".", ".%s.podnet-%s" % (os.path.basename(self.config), token))
        try:
            names = {}
            for path, text in files.items():
                staged = os.path.join(stage_dir, os.path.basename(path))
                names[staged] = path
                write_private(staged, text)
            names[stage_main] = self.config
            write_private(stage_main, main_text.replace(include_line(self.directory), include_line(stage_dir)))
            rc, out, err = self.parse_run([self.bird, "-p", "-c", stage_main])
        finally:
            shutil.rmtree(stage_dir, ignore_errors=True)
            try:
                os.unlink(stage_main)
            except OSError:
                pass
        if rc == 0:
            return
        text = (err or out).strip()
        match = _BIRD_ERROR_RE.search(text)
        if not match:
            raise FabricError("BIRD rejects the configuration (bird -p): %s" % masked(text))
        path = names.get(match.group("path"), match.group("path"))
        number = int(match.group("line"))
        source = main_text if path == self.config else files.get(path, "")
        src_lines = source.splitlines()
        quoted = src_lines[number - 1].strip() if 0 < number <= len(src_lines) else ""
        where = "%s:%d:%s" % (path, number, match.group("col"))
        subject = "BIRD rejects the configuration"
        if path == owner_file:
            name = _block_at(src_lines, number)
            if name and peers and name in peers:
                subject = "peer %s (%s): BIRD rejects it" % (peers[name], name)
        raise FabricError("%s: %s %s: `%s`" % (subject, where, match.group("msg"), masked(quoted)))


def _block_at(lines, number):
    name = None
    for line in lines[:number]:
        match = re.match(r"^# peer (\S+)$", line)
        if match:
            name = match.group(1)
    return name


read = files.read


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def bird_gid():
    """BIRD's group (Debian runs the daemon as bird:bird), or None where it does not exist."""
    try:
        return grp.getgrnam("bird").gr_gid
    except KeyError:
        return None


def write_atomic(path, text, mode=0o640, like=None):
    """Write ``text`` to ``path`` by rename: mode 0640, group bird where it exists (or the
    mode and ownership of the file ``like``)."""
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp-%s" % (os.path.basename(path), secrets.token_hex(4)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None and os.path.exists(like):
            st = os.stat(like)
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
        else:
            gid = bird_gid()
            if gid is not None:
                os.chown(tmp, -1, gid)
            os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_dir(path):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o750)
        gid = bird_gid()
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, 0o750)


# --- plan -------------------------------------------------------------------------------------------

_NEIGHBOR_RE = re.compile(r"\bneighbor\s+([0-9A-Fa-f.:]+)(?:\s+port\s+(\d+))?\s+as\b")


def held(files, path, main_text, config):
    """What the rest of the configuration already defines: ({protocol name: holder},
    {(neighbor ip, port): holder}), the holder as error messages name it."""
    names, neighbors = {}, {}
    sources = [(other, text) for other, text in sorted(files.items()) if other != path] + [(config, main_text)]
    for source, text in sources:
        holder = file_owner(text)
        who = ("owner %s (%s)" % (holder, source)) if holder else "%s, not podnet.fabric's" % source
        for name in _PROTOCOL_RE.findall(text):
            names.setdefault(name, who)
        for ip, port in _NEIGHBOR_RE.findall(text):
            try:
                key = (str(ipaddress.ip_address(ip)), int(port or 179))
            except ValueError:
                continue
            neighbors.setdefault(key, who)
    return names, neighbors


def plan(daemon, owner, peers, purge=False):
    """Plan the owner's peers file. ``peers``: normalize()d dicts. Returns (Plan, info) where
    info has added/changed/removed protocol names and the owner's protocol names after the run.

    Validation by BIRD happens here (also in check mode), so a configuration BIRD rejects fails
    before anything is changed."""
    path = daemon.owner_path(owner)
    main_text = read(daemon.config)
    if main_text is None:
        raise FabricError("BIRD configuration %s: does not exist (point config at the daemon's bird.conf)" % daemon.config)
    files = daemon.read_dir()
    old_text = files.get(path)
    if old_text is not None and file_owner(old_text) != owner:
        raise FabricError("%s: exists and is not owner %s's podnet.fabric peers file; refusing to take it over" % (path, owner))
    old = parse_file(old_text)
    taken, neighbors = held(files, path, main_text, daemon.config)
    new, labels, seen = ({} if purge else dict(old)), {}, {}
    for peer in peers:
        name = peer["name"]
        label = "peer %s%s (%s)" % (peer["peer_ip"], ":%d" % peer["port"] if peer["port"] else "", name)
        neighbor = (peer["peer_ip"], peer["port"] or 179)
        if name in seen or neighbor in seen:
            raise FabricError("%s: declared twice in this task" % label)
        seen[name] = seen[neighbor] = True
        if peer["state"] == "absent":
            new.pop(name, None)
            continue
        if name in taken:
            raise FabricError("%s: protocol %s is already defined by %s; refusing to define it again" % (label, name, taken[name]))
        if neighbor in neighbors:
            raise FabricError("%s: %s is already a neighbor in %s; one session per peer address and port" % (label, peer["peer_ip"], neighbors[neighbor]))
        new[name] = render_peer(peer, owner)
        labels[name] = label.split(" (")[0][5:]

    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(n for n in set(new) & set(old) if new[n] != old[n])
    new_text = render_file(owner, new) if new else None
    include = include_line(daemon.directory)
    has_include = any(line.strip() == include for line in main_text.splitlines())
    new_main = main_text if has_include else main_text.rstrip("\n") + "\n\n# podnet.fabric: BGP peers, one file per owner\n%s\n" % include

    result = Plan()
    info = {"path": path, "added": added, "changed": changed, "removed": removed, "protocols": sorted(new), "peers": labels}
    result.before = {path: masked(old_text)}
    result.after = {path: masked(new_text)}
    if not has_include:
        result.before[daemon.config + " (include)"] = None
        result.after[daemon.config + " (include)"] = include
    if new_text == old_text and (has_include or new_text is None):
        result.before, result.after = {}, {}
        return result, info

    staged = dict(files)
    if new_text is None:
        staged.pop(path, None)
    else:
        staged[path] = new_text
    daemon.validate(new_main, staged, owner_file=path, peers=labels)

    parts = ["%s %s" % (verb, ", ".join(names)) for verb, names in (("add", added), ("change", changed), ("remove", removed)) if names]
    what = "write %s (%s)" % (path, "; ".join(parts)) if new_text is not None else "remove %s (%s)" % (path, "; ".join(parts))
    if not has_include:
        what = "add `%s` to %s; %s" % (include, daemon.config, what)
    result.add("%s, then birdc configure" % what,
               lambda: _install(daemon, path, new_text, old_text, None if has_include else (new_main, main_text)),
               lambda: _install(daemon, path, old_text, new_text, None if has_include else (main_text, new_main)))
    return result, info


def put(path, text):
    """Write ``text`` to ``path`` atomically (see write_atomic), or remove the file when None."""
    if text is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        write_atomic(path, text)


def _install(daemon, path, text, previous, main=None):
    """Put the owner's file (and the main file's include) in place, then ``birdc configure``.
    When BIRD refuses, the previous files are put back before the error is raised."""
    ensure_dir(daemon.directory)
    if main is not None:
        write_atomic(daemon.config, main[0], like=daemon.config)
    put(path, text)
    if not daemon.running():
        return
    try:
        daemon.configure()
    except FabricError:
        put(path, previous)
        if main is not None:
            write_atomic(daemon.config, main[1], like=daemon.config)
        raise


def wait_established(daemon, names, timeout, interval=0.5):
    """Poll ``show protocols all`` until every protocol in ``names`` is Established, at most
    ``timeout`` seconds. Returns (sessions, not_up)."""
    deadline = time.monotonic() + timeout
    while True:
        protos = daemon.protocols()
        sessions = [session(protos[n]) if n in protos else {"name": n, "state": "missing"} for n in names]
        not_up = [s for s in sessions if s["state"] != "Established"]
        if not not_up or time.monotonic() >= deadline:
            return sessions, not_up
        time.sleep(interval)
