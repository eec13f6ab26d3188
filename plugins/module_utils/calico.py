# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calico's BGP model computed on the controller: BGPConfiguration and BGPPeer objects parsed as
users paste them (projectcalico.org/v3), and each node's BGP peers computed the way Calico's
confd computes them, in the parameter shape of ``podnet.fabric.calico_bgp_peer``.

Pure functions, no Ansible. :func:`cluster.parse_objects` hands the two kinds here and keeps the
result on the :class:`cluster.Cluster` (``bgp_configurations``, ``bgp_peers``); :func:`node_bgp`
gives one node's slice::

    cluster = parse_objects(objects, hosts)
    bgp = node_bgp(cluster, "node1", pod_cidr=cidrs["node1"])
    # bgp["peers"] go straight into calico_bgp_peer's ``peers``, with node_ip=bgp["router_id"]
    # and as_number=bgp["as_number"]

Fields honoured (everything else in a manifest is accepted and ignored):

- BGPConfiguration ``default`` (the global one): ``spec.asNumber`` (default 64512, also
  ``a.b`` dotted), ``spec.nodeToNodeMeshEnabled`` (default true), ``spec.listenPort`` (default
  179), ``spec.serviceClusterIPs`` / ``serviceExternalIPs`` / ``serviceLoadBalancerIPs``
  (``[{cidr}]``, what every node originates), ``spec.nodeMeshMaxRestartTime``,
  ``spec.nodeMeshPassword`` (see passwords). ``logSeverityScreen``, ``bindMode``,
  ``communities`` and the rest are ignored (BIRD's logging and binding are the role's).
  BGPConfiguration ``node.<node name>``: Calico's per-node configuration; only ``listenPort``
  is read from it. Any other name is an error.
- BGPPeer: ``spec.node`` or ``spec.nodeSelector`` (the local side; neither: every node, a
  "global" peer), ``spec.peerIP`` (``ip`` or ``ip:port``) with ``spec.asNumber``, or
  ``spec.peerSelector`` (the peers are the Calico nodes it selects), ``localASNumber``,
  ``keepOriginalNextHop`` (next hop keep towards eBGP peers), ``nextHopMode``,
  ``sourceAddress`` (UseNodeIP | None), ``maxRestartTime``, ``keepaliveTime``, ``ttlSecurity``,
  ``numAllowedLocalASNumbers``, ``password`` (see passwords). ``filters`` is ignored: BGPFilter
  objects are not read here, every peer gets the role's import/export filters instead.
  ``reachableBy`` is an error (it needs a static route to the peer that nothing here writes).
- Node (as cluster.py parses it): annotations ``projectcalico.org/IPv4Address`` (the node IP),
  ``projectcalico.org/ASNumber`` (the node's own AS, else the global one) and
  ``projectcalico.org/RouteReflectorClusterID`` (the node is a route reflector of that
  cluster ID, an IPv4-formatted ID). These are the annotations Calico itself keeps a
  Kubernetes Node's ``spec.bgp`` in (datastore type kubernetes); calicoctl users set
  ``routeReflectorClusterID`` with ``calicoctl patch node``, which writes that annotation, and a
  label such as ``route-reflector=true`` that their BGPPeer selectors use.
- Selectors (``nodeSelector``, ``peerSelector``): the subset of Calico's selector syntax the
  documented route reflector and per-rack examples use - ``all()``, ``key == 'value'``,
  ``key != 'value'``, ``has(key)``, ``!has(key)``, joined with ``&&``; anything else is an error.

Passwords: Calico reads ``password.secretKeyRef`` from a Secret, which is not available here;
``secretKeyRef`` is an error. Put the password in the object's annotation
``podnet.fabric/password`` (BGPPeer) or ``podnet.fabric/node-mesh-password`` (the default
BGPConfiguration) instead - the object stays a valid Calico object and the value can come from
an Ansible vault.

Peers of a node (:func:`node_bgp`), after confd (projectcalico/calico
``confd/pkg/backends/calico/client.go`` updatePeersV1, nodeAsBGPPeers;
``confd/pkg/backends/calico/bgp_processor.go`` processMeshPeers, buildPeerFromData;
``confd/etc/calico/confd/templates/bird.cfg.template``):

- mesh (``Mesh_<ip>``): when nodeToNodeMeshEnabled, every other node that is not a route
  reflector, unless this node is one itself (route reflectors never mesh); AS = the peer's;
  the passive side is Calico's (``calico_node: true``);
- global peers (``Global_<ip>``, BGPPeers without node and nodeSelector), for every node;
  ``calico_node`` is true when the peer is a Calico node, so the passive side is Calico's;
- node peers (``Node_<ip>``, BGPPeers with node / nodeSelector) for the nodes they name, and
  the reverse peerings Calico adds so that a peering between two Calico nodes exists on both
  sides (the node a BGPPeer's peerSelector or peerIP designates peers back with the nodes its
  node / nodeSelector designates); both sides of node peers connect (Calico makes only mesh and
  global peers unidirectional);
- one session per address and port: the first one wins in the order mesh, global, node (Calico
  lets a global peering hide the same node-specific one; a mesh session and a BGPPeer to the same
  node would be two sessions BIRD cannot both keep);
- a node never peers itself; a route reflector treats an iBGP peer that is not a reflector of
  its cluster ID as its client (``rr client; rr cluster id X``: returned in ``route_reflector``,
  since calico_bgp_peer has no such option).

Bad input is a :class:`cluster.ClusterError` with one line naming the object and the field.
"""
from __future__ import annotations

import ipaddress
import re

from ansible_collections.podnet.fabric.plugins.module_utils import bird as _bird
from ansible_collections.podnet.fabric.plugins.module_utils import cluster as _cluster
from ansible_collections.podnet.fabric.plugins.module_utils import metallb as _metallb

API_VERSION = "projectcalico.org/v3"
CONFIG_KIND = "BGPConfiguration"
PEER_KIND = "BGPPeer"
KINDS = (CONFIG_KIND, PEER_KIND)
GLOBAL_CONFIG = "default"
DEFAULT_AS = 64512
DEFAULT_PORT = 179
AS_ANNOTATION = "projectcalico.org/ASNumber"
RR_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
PASSWORD_ANNOTATION = "podnet.fabric/password"
MESH_PASSWORD_ANNOTATION = "podnet.fabric/node-mesh-password"
ClusterError = _cluster.ClusterError

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"(?:'([^']*)'|\"([^\"]*)\")"
_TERMS = (
    (re.compile(r"^all\(\)$"), "all"),
    (re.compile(r"^has\(\s*(%s)\s*\)$" % _KEY), "has"),
    (re.compile(r"^!\s*has\(\s*(%s)\s*\)$" % _KEY), "!has"),
    (re.compile(r"^(%s)\s*==\s*%s$" % (_KEY, _VALUE)), "=="),
    (re.compile(r"^(%s)\s*!=\s*%s$" % (_KEY, _VALUE)), "!="),
)


# --- small parsers --------------------------------------------------------------------------------

def as_number(value, label, path):
    """Calico's numorstring.ASNumber: a number 1-4294967295 or the dotted ``a.b`` form."""
    text = str(value).strip()
    if isinstance(value, bool):
        text = ""
    match = re.match(r"^(\d+)\.(\d+)$", text)
    if match and int(match.group(1)) < 65536 and int(match.group(2)) < 65536:
        number = int(match.group(1)) * 65536 + int(match.group(2))
    elif re.match(r"^\d+$", text):
        number = int(text)
    else:
        raise ClusterError("%s: %s: %r is not an AS number" % (label, path, value))
    if not 0 < number < 2 ** 32:
        raise ClusterError("%s: %s: %s is not 1-4294967295" % (label, path, value))
    return number


def _port(value, label, path):
    if isinstance(value, bool) or not re.match(r"^\d+$", str(value)) or not 0 < int(value) < 65536:
        raise ClusterError("%s: %s: %r is not a port (1-65535)" % (label, path, value))
    return int(value)


def _seconds(value, label, path):
    """A Calico duration (``120s``, ``2m``) -> whole seconds, as a string (calico_bgp_peer's type)."""
    if value is None or value == "":
        return None
    try:
        return str(_bird.parse_duration(value))
    except ValueError as exc:
        raise ClusterError("%s: %s: %s" % (label, path, exc))


def _cidrs(value, label, path):
    """``[{cidr: ...}]`` -> [network strings]; IPv6 entries are an error (IPv4 only here)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClusterError("%s: %s must be a list of {cidr: ...}" % (label, path))
    out = []
    for i, item in enumerate(value):
        at = "%s[%d].cidr" % (path, i)
        if not isinstance(item, dict) or not item.get("cidr"):
            raise ClusterError("%s: %s is required" % (label, at))
        try:
            net = ipaddress.ip_network(str(item["cidr"]), strict=False)
        except ValueError:
            raise ClusterError("%s: %s: %r is not a CIDR" % (label, at, item["cidr"]))
        if net.version != 4:
            raise ClusterError("%s: %s: %s is IPv6, only IPv4 is supported" % (label, at, net))
        if str(net) not in out:
            out.append(str(net))
    return out


def _password(spec_value, annotations, annotation, label, path):
    """The password of a BGPPeer (or the mesh): the annotation; a secretKeyRef is refused."""
    if spec_value is not None:
        if isinstance(spec_value, dict) and "secretKeyRef" in spec_value:
            raise ClusterError("%s: %s.secretKeyRef: Secrets are not read here; put the password in annotation %s" % (
                label, path, annotation))
        raise ClusterError("%s: %s: only secretKeyRef exists in Calico and it is not read here; put the password in annotation %s" % (
            label, path, annotation))
    return annotations.get(annotation) or None


def parse_selector(text, label, path):
    """A Calico selector (the subset in the module docstring) -> list of (op, key, value), ANDed;
    ``all()`` is the empty list. None or "" -> None (the field is not set)."""
    if text is None or str(text).strip() == "":
        return None
    terms = []
    for part in str(text).split("&&"):
        part = part.strip()
        for regex, op in _TERMS:
            match = regex.match(part)
            if match:
                break
        else:
            raise ClusterError("%s: %s: %r is not supported (all(), key == 'v', key != 'v', has(key), !has(key), joined by &&)" % (
                label, path, str(text)))
        if op != "all":
            value = None
            if op in ("==", "!="):
                value = match.group(2) if match.group(2) is not None else match.group(3)
            terms.append((op, match.group(1), value))
    return terms


def selects(terms, labels):
    """Whether a parsed selector selects a node with ``labels``."""
    for op, key, value in terms:
        if op == "has" and key not in labels:
            return False
        if op == "!has" and key in labels:
            return False
        if op == "==" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


# --- the objects ----------------------------------------------------------------------------------

def object_label(kind, metadata, index):
    """How messages name a Calico object: "BGPPeer rack-a-tor" (they are cluster-scoped)."""
    if not metadata.get("name"):
        return "%s (the %s %s object)" % (kind, _cluster._ordinal(index), kind)
    return "%s %s" % (kind, metadata["name"])


def parse_configuration(obj, metadata, label):
    """A BGPConfiguration -> {name, node (for node.X), as_number, mesh, listen_port,
    service_cluster_ips, service_external_ips, service_load_balancer_ips, mesh_password,
    mesh_max_restart_time}; absent fields are None (the defaults apply in :func:`settings`)."""
    spec = _cluster._mapping(obj.get("spec"), "spec", label)
    annotations = _cluster._string_map(metadata.get("annotations"), "annotation", label)
    name = str(metadata["name"])
    out = {"name": name, "node": None, "as_number": None, "mesh": None, "listen_port": None,
           "service_cluster_ips": [], "service_external_ips": [], "service_load_balancer_ips": [],
           "mesh_password": None, "mesh_max_restart_time": None}
    if spec.get("listenPort") is not None:
        out["listen_port"] = _port(spec["listenPort"], label, "spec.listenPort")
    if name.startswith("node."):
        out["node"] = name[len("node."):]
        return out
    if name != GLOBAL_CONFIG:
        raise ClusterError("%s: metadata.name must be %s (the global configuration) or node.<node name>" % (label, GLOBAL_CONFIG))
    if spec.get("asNumber") is not None:
        out["as_number"] = as_number(spec["asNumber"], label, "spec.asNumber")
    out["mesh"] = _metallb.flag(spec.get("nodeToNodeMeshEnabled"), None, label, "spec.nodeToNodeMeshEnabled")
    for field, key in (("serviceClusterIPs", "service_cluster_ips"), ("serviceExternalIPs", "service_external_ips"),
                       ("serviceLoadBalancerIPs", "service_load_balancer_ips")):
        out[key] = _cidrs(spec.get(field), label, "spec." + field)
    out["mesh_password"] = _password(spec.get("nodeMeshPassword"), annotations, MESH_PASSWORD_ANNOTATION, label,
                                     "spec.nodeMeshPassword")
    out["mesh_max_restart_time"] = _seconds(spec.get("nodeMeshMaxRestartTime"), label, "spec.nodeMeshMaxRestartTime")
    return out


def parse_peer(obj, metadata, label):
    """A BGPPeer -> plain dict: name, node, node_selector, peer_ip, port, as_number,
    peer_selector (parsed selectors or None) and the session fields in calico_bgp_peer's names."""
    spec = _cluster._mapping(obj.get("spec"), "spec", label)
    annotations = _cluster._string_map(metadata.get("annotations"), "annotation", label)
    out = {"name": str(metadata["name"]), "label": label,
           "node": str(spec["node"]) if spec.get("node") else None,
           "node_selector": parse_selector(spec.get("nodeSelector"), label, "spec.nodeSelector"),
           "peer_selector": parse_selector(spec.get("peerSelector"), label, "spec.peerSelector"),
           "peer_ip": None, "port": None, "as_number": None}
    if out["node"] and out["node_selector"] is not None:
        raise ClusterError("%s: spec.node and spec.nodeSelector exclude each other" % label)
    if spec.get("peerIP"):
        if out["peer_selector"] is not None:
            raise ClusterError("%s: spec.peerIP and spec.peerSelector exclude each other" % label)
        try:
            ip, port = _bird.parse_peer_ip(spec["peerIP"])
        except ValueError as exc:
            raise ClusterError("%s: spec.peerIP: %r: %s" % (label, spec["peerIP"], exc))
        if ip.version != 4:
            raise ClusterError("%s: spec.peerIP: %s is IPv6, only IPv4 is supported" % (label, ip))
        out["peer_ip"], out["port"] = str(ip), port
        if spec.get("asNumber") is None:
            raise ClusterError("%s: spec.asNumber is required with spec.peerIP" % label)
        out["as_number"] = as_number(spec["asNumber"], label, "spec.asNumber")
    elif out["peer_selector"] is not None:
        if spec.get("asNumber") is not None:
            raise ClusterError("%s: spec.asNumber must not be set with spec.peerSelector (the selected nodes' AS is used)" % label)
    else:
        raise ClusterError("%s: spec.peerIP or spec.peerSelector is required" % label)
    if spec.get("reachableBy"):
        raise ClusterError("%s: spec.reachableBy is not supported here (it needs a static route to the peer)" % label)
    source = spec.get("sourceAddress") or "UseNodeIP"
    if source not in ("UseNodeIP", "None"):
        raise ClusterError("%s: spec.sourceAddress: %r is not UseNodeIP or None" % (label, source))
    next_hop = spec.get("nextHopMode") or "Auto"
    if next_hop not in ("Auto", "Self", "Keep"):
        raise ClusterError("%s: spec.nextHopMode: %r is not Auto, Self or Keep" % (label, next_hop))
    ttl = spec.get("ttlSecurity")
    if ttl is not None and (isinstance(ttl, bool) or not re.match(r"^\d+$", str(ttl)) or not 0 <= int(ttl) <= 255):
        raise ClusterError("%s: spec.ttlSecurity: %r is not 0-255 hops" % (label, ttl))
    allowed = spec.get("numAllowedLocalASNumbers")
    if allowed is not None and (isinstance(allowed, bool) or not re.match(r"^\d+$", str(allowed))):
        raise ClusterError("%s: spec.numAllowedLocalASNumbers: %r is not a number" % (label, allowed))
    out.update({
        "local_as_number": as_number(spec["localASNumber"], label, "spec.localASNumber") if spec.get("localASNumber") is not None else None,
        "keep_original_next_hop": _metallb.flag(spec.get("keepOriginalNextHop"), False, label, "spec.keepOriginalNextHop"),
        "next_hop_mode": next_hop,
        "source_address": source,
        "max_restart_time": _seconds(spec.get("maxRestartTime"), label, "spec.maxRestartTime"),
        "keepalive_time": _seconds(spec.get("keepaliveTime"), label, "spec.keepaliveTime"),
        "ttl_security": int(ttl or 0),
        "num_allowed_local_as_numbers": int(allowed or 0),
        "password": _password(spec.get("password"), annotations, PASSWORD_ANNOTATION, label, "spec.password"),
    })
    if out["password"] is not None and (len(out["password"]) > 80 or re.search(r'["\\\n\r]', out["password"])):
        raise ClusterError("%s: annotation %s: at most 80 characters without quotes, backslashes or newlines (TCP MD5)" % (
            label, PASSWORD_ANNOTATION))
    return out


def node_fields(node):
    """A parsed Node's Calico BGP fields: {name, ip, labels, as_number (None: the global AS),
    rr_cluster_id (None: not a route reflector)}."""
    label = "Node %s" % node["name"]
    annotations = node.get("annotations") or {}
    out = {"name": node["name"], "ip": node["ip"], "labels": node.get("labels") or {}, "as_number": None, "rr_cluster_id": None}
    if annotations.get(AS_ANNOTATION):
        out["as_number"] = as_number(annotations[AS_ANNOTATION], label, "annotation " + AS_ANNOTATION)
    cluster_id = annotations.get(RR_ANNOTATION)
    if cluster_id:
        try:
            out["rr_cluster_id"] = str(ipaddress.IPv4Address(cluster_id.strip()))
        except ValueError:
            raise ClusterError("%s: annotation %s: %r is not an IPv4-formatted cluster ID" % (label, RR_ANNOTATION, cluster_id))
    return out


def check_objects(configurations, peers, nodes):
    """Checks across objects; returns ({name: configuration}, peers). Also checks the nodes'
    Calico annotations, so that a bad one fails when the objects are parsed."""
    by_name = {}
    names = set(n["name"] for n in nodes)
    for cfg in configurations:
        if cfg["name"] in by_name:
            raise ClusterError("BGPConfiguration %s: declared twice" % cfg["name"])
        if cfg["node"] is not None and cfg["node"] not in names:
            raise ClusterError("BGPConfiguration %s: Node %s is not a Node of the cluster" % (cfg["name"], cfg["node"]))
        by_name[cfg["name"]] = cfg
    seen = set()
    for peer in peers:
        if peer["name"] in seen:
            raise ClusterError("BGPPeer %s: declared twice" % peer["name"])
        seen.add(peer["name"])
        if peer["node"] and peer["node"] not in names:
            raise ClusterError("BGPPeer %s: spec.node %s is not a Node of the cluster (nodes: %s)" % (
                peer["name"], peer["node"], ", ".join(sorted(names)) or "none"))
    for node in nodes:
        node_fields(node)
    return by_name, peers


# --- one node's BGP -------------------------------------------------------------------------------

def settings(cluster):
    """The global BGPConfiguration with Calico's defaults filled in."""
    cfg = dict((getattr(cluster, "bgp_configurations", None) or {}).get(GLOBAL_CONFIG) or {})
    return {
        "as_number": cfg.get("as_number") or DEFAULT_AS,
        "mesh": cfg.get("mesh") is not False,
        "listen_port": cfg.get("listen_port") or DEFAULT_PORT,
        "service_cluster_ips": list(cfg.get("service_cluster_ips") or []),
        "service_external_ips": list(cfg.get("service_external_ips") or []),
        "service_load_balancer_ips": list(cfg.get("service_load_balancer_ips") or []),
        "mesh_password": cfg.get("mesh_password"),
        "mesh_max_restart_time": cfg.get("mesh_max_restart_time"),
    }


def _listen_port(cluster, name, default):
    cfg = (getattr(cluster, "bgp_configurations", None) or {}).get("node." + name) or {}
    return cfg.get("listen_port") or default


def _calico_nodes(cluster, glob):
    out = []
    for node in cluster.nodes:
        fields = node_fields(node)
        fields["as_number"] = fields["as_number"] or glob["as_number"]
        fields["listen_port"] = _listen_port(cluster, node["name"], glob["listen_port"])
        out.append(fields)
    return out


def _local_nodes(peer, nodes):
    """The nodes on the local side of a BGPPeer (node / nodeSelector; neither: every node)."""
    if peer["node"]:
        return [n for n in nodes if n["name"] == peer["node"]]
    if peer["node_selector"] is not None:
        return [n for n in nodes if selects(peer["node_selector"], n["labels"])]
    return list(nodes)


def _remote_nodes(peer, nodes):
    """The Calico nodes on the remote side of a BGPPeer: those its peerSelector selects, or the
    ones with its peerIP (and AS, and port when given), as nodesWithIPPortAndAS."""
    if peer["peer_selector"] is not None:
        return [n for n in nodes if selects(peer["peer_selector"], n["labels"])]
    return [n for n in nodes if n["ip"] == peer["peer_ip"] and n["as_number"] == peer["as_number"]
            and (peer["port"] is None or peer["port"] == n["listen_port"])]


def _targets(peer, nodes):
    """(ip, port, as, rr cluster id, is a Calico node) of a BGPPeer's remote side, forwards."""
    if peer["peer_selector"] is not None:
        return [(n["ip"], n["listen_port"], n["as_number"], n["rr_cluster_id"], True) for n in _remote_nodes(peer, nodes)]
    port = peer["port"]
    if port is None:
        matching = _remote_nodes(peer, nodes)
        if matching:
            port = matching[0]["listen_port"]
    return [(peer["peer_ip"], port, peer["as_number"], None, any(n["ip"] == peer["peer_ip"] for n in nodes))]


def _entry(kind, ip, port, peer_as, me, fields=None, calico_node=False):
    """One calico_bgp_peer peer dict (only the options that are set)."""
    fields = fields or {}
    port = port if port and port != DEFAULT_PORT else None
    out = {"peer_ip": "%s:%d" % (ip, port) if port else ip,
           "name": _bird.protocol_name(ip, None if kind == "Mesh" else port, kind),
           "as_number": peer_as,
           "calico_node": bool(calico_node),
           "source_address": fields.get("source_address") or "UseNodeIP"}
    local_as = fields.get("local_as_number") or me["as_number"]
    if fields.get("local_as_number"):
        out["local_as_number"] = fields["local_as_number"]
    next_hop = fields.get("next_hop_mode") or "Auto"
    if next_hop == "Auto" and fields.get("keep_original_next_hop") and peer_as != local_as:
        next_hop = "Keep"       # Calico keeps the original next hop only towards eBGP peers
    if next_hop != "Auto":
        out["next_hop_mode"] = next_hop
    for key in ("password", "keepalive_time", "max_restart_time"):
        if fields.get(key):
            out[key] = fields[key]
    for key in ("ttl_security", "num_allowed_local_as_numbers"):
        if fields.get(key):
            out[key] = fields[key]
    return out, local_as


def node_bgp(cluster, me, pod_cidr=None, import_filter=None, export_filter=None):
    """Node ``me``'s BGP speaker as Calico's confd configures it: {as_number, router_id,
    listen_port, mesh, peers (calico_bgp_peer peer dicts, sorted by protocol name),
    route_reflector (None, or {cluster_id, clients: protocol names that are its clients}),
    originate {pod_cidr, service_cluster_ips, service_external_ips, service_load_balancer_ips}}.

    ``pod_cidr`` is the node's block (from :func:`cluster.allocate_pod_cidrs`); ``import_filter``
    / ``export_filter``, when given, are set on every peer (the role's BIRD filters)."""
    glob = settings(cluster)
    cluster.node(me)     # raises for an unknown node
    nodes = _calico_nodes(cluster, glob)
    mine = [n for n in nodes if n["name"] == me][0]
    peers = getattr(cluster, "bgp_peers", None) or []
    chosen = {}          # (ip, port) -> (peer dict, peer's rr cluster id, local AS)
    order = []

    def add(kind, ip, port, peer_as, rr_id, fields, calico_node):
        if ip == mine["ip"]:
            return       # never peer ourselves
        key = (ip, port if port and port != DEFAULT_PORT else DEFAULT_PORT)
        if key in chosen:
            return
        entry, local_as = _entry(kind, ip, port, peer_as, mine, fields, calico_node)
        chosen[key] = (entry, rr_id, local_as)
        order.append(key)

    # mesh: bgp_processor.go processMeshPeers (route reflectors neither mesh nor are meshed)
    if glob["mesh"] and not mine["rr_cluster_id"]:
        mesh_fields = {"password": glob["mesh_password"], "max_restart_time": glob["mesh_max_restart_time"]}
        for other in nodes:
            if other["name"] != me and not other["rr_cluster_id"]:
                add("Mesh", other["ip"], other["listen_port"], other["as_number"], None, mesh_fields, True)
    # global peers, then node-specific ones: client.go updatePeersV1's two passes
    for global_pass in (True, False):
        for peer in peers:
            is_global = peer["node"] is None and peer["node_selector"] is None
            if is_global != global_pass or mine not in _local_nodes(peer, nodes):
                continue
            for ip, port, peer_as, rr_id, calico_node in _targets(peer, nodes):
                add("Global" if is_global else "Node", ip, port, peer_as, rr_id, peer,
                    calico_node and is_global)
    # reverse peerings, so that a peering between two Calico nodes exists on both sides
    for peer in peers:
        if mine not in _remote_nodes(peer, nodes):
            continue
        fields = dict(peer, local_as_number=None)
        for other in _local_nodes(peer, nodes):
            # the other side presents its localASNumber when the BGPPeer sets one
            add("Node", other["ip"], other["listen_port"], peer["local_as_number"] or other["as_number"],
                other["rr_cluster_id"], fields, False)

    out_peers, clients = [], []
    for key in order:
        entry, rr_id, local_as = chosen[key]
        if import_filter:
            entry["import_filter"] = import_filter
        if export_filter:
            entry["export_filter"] = export_filter
        # buildPeerFromData: a reflector's iBGP peers outside its cluster ID are its clients
        if mine["rr_cluster_id"] and entry["as_number"] == local_as and rr_id != mine["rr_cluster_id"]:
            clients.append(entry["name"])
        out_peers.append(entry)
    out_peers.sort(key=lambda p: p["name"])
    return {
        "as_number": mine["as_number"],
        "router_id": mine["ip"],
        "listen_port": mine["listen_port"],
        "mesh": glob["mesh"],
        "peers": out_peers,
        "route_reflector": {"cluster_id": mine["rr_cluster_id"], "clients": sorted(clients)} if mine["rr_cluster_id"] else None,
        "originate": {
            "pod_cidr": str(ipaddress.ip_network(pod_cidr)) if pod_cidr else None,
            "service_cluster_ips": glob["service_cluster_ips"],
            "service_external_ips": glob["service_external_ips"],
            "service_load_balancer_ips": glob["service_load_balancer_ips"],
        },
    }
