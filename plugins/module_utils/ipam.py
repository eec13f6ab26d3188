# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host-local IPAM, on disk exactly as the CNI host-local plugin keeps it, so that a real
host-local (containernetworking/plugins ``plugins/ipam/host-local/backend/disk``) and this
module can share one directory ``<data_dir>/<network>``:

- one file per allocated address, named after the address, created with O_EXCL, holding
  ``<container id>\\r\\n<ifname>`` (host-local's ``LineBreak``);
- ``last_reserved_ip.<range index>`` holds the address reserved last; the next allocation
  starts after it and wraps round (host-local's iterator), so a released address is not
  handed out again at once;
- every read and write happens under ``flock(LOCK_EX)`` on the directory's ``lock`` file, the
  lock host-local takes for each ADD and DEL.

Ownership: the container id this module writes is ``podnet.fabric:<owner>:<id>``. Files with
any other id belong to someone else (a real host-local's container, another owner) and are
never released; purge (off unless asked) releases only the owner's own allocations.
Release 0.1 wrote ``<id>\\n`` (no mark, no ifname): such an allocation is legacy; the owner that
declares its id adopts it in place (same address, the file rewritten with the mark), and purge
never removes it.

Public interface (the ``ipam`` and ``pods`` modules call it)::

    rng = Range(subnet, range_start=None, range_end=None, gateway=None, what="ipam")
    with lock(directory):                      # recommended: serialise read -> plan -> apply
        p = plan(directory, rng, allocations, owner="default", purge=False, ifname="eth0")
        p.apply()

(``lock`` creates the directory, as host-local does; to leave nothing behind on bad input, call
``plan`` once before it when the directory does not exist yet: with nothing on disk it only
validates.)
    p.after  # {id: "10.244.1.5"} (what the allocations get; in check mode, would get)

``allocations`` is ``[{"id": ..., "ip": optional fixed address, "ifname": optional}]``. Every
action takes the lock itself unless this process already holds it through :func:`lock`.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os

from ansible_collections.podnet.fabric.plugins.module_utils import owner as owners
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan

LINE_BREAK = "\r\n"
LAST_RESERVED = "last_reserved_ip."
LOCK_FILE = "lock"
RANGE_INDEX = "0"          # one range: host-local's rangeID of the first (only) range set
DEFAULT_IFNAME = "eth0"

_held = {}                 # directory -> depth of lock() held by this process


class Range(object):
    def __init__(self, subnet, range_start=None, range_end=None, gateway=None, what="ipam"):
        try:
            self.subnet = ipaddress.ip_network(subnet, strict=True)
        except ValueError as exc:
            raise FabricError("%s: subnet %r is not a valid network: %s" % (what, subnet, exc))
        hosts_first = self.subnet.network_address + 1
        hosts_last = self.subnet.broadcast_address - 1 if self.subnet.version == 4 else self.subnet.broadcast_address
        self.gateway = self._addr(gateway, what, "gateway") if gateway else hosts_first
        self.start = self._addr(range_start, what, "range_start") if range_start else hosts_first
        self.end = self._addr(range_end, what, "range_end") if range_end else hosts_last
        if self.start > self.end:
            raise FabricError("%s: range_start %s is after range_end %s" % (what, self.start, self.end))

    def _addr(self, text, what, key):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise FabricError("%s: %s %r is not a valid IP address" % (what, key, text))
        if ip not in self.subnet:
            raise FabricError("%s: %s %s is outside subnet %s" % (what, key, ip, self.subnet))
        return ip

    def usable(self, ip):
        return self.start <= ip <= self.end and ip != self.gateway

    def candidates(self, after=None):
        """Allocatable addresses in host-local's order: after ``after`` (the last reserved) when
        it is in the range, wrapping round; from the start otherwise."""
        first = after + 1 if after is not None and self.start <= after < self.end else self.start
        ip = first
        while ip <= self.end:
            if ip != self.gateway:
                yield ip
            ip += 1
        ip = self.start
        while ip < first:
            if ip != self.gateway:
                yield ip
            ip += 1


# --- the lock -------------------------------------------------------------------------------------

@contextlib.contextmanager
def lock(directory, check_mode=False):
    """Hold host-local's lock (flock LOCK_EX on ``<directory>/lock``), creating both like
    host-local does. In check mode nothing is created: a shared lock when the file exists.
    Re-entrant within this process. The directory and lock file stay (as with host-local: a
    process may be waiting on that lock file); validate input first (see :func:`plan` on a
    directory that does not exist) to leave nothing behind on bad input."""
    if _held.get(directory):
        _held[directory] += 1
        try:
            yield
        finally:
            _held[directory] -= 1
        return
    path = os.path.join(directory, LOCK_FILE)
    if check_mode:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            fd = None
    else:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH if check_mode else fcntl.LOCK_EX)
        _held[directory] = 1
        yield
    finally:
        _held.pop(directory, None)
        if fd is not None:
            os.close(fd)


# --- reading ----------------------------------------------------------------------------------

class Entry(object):
    """One allocation file: who holds the address (owner None: not podnet.fabric's)."""
    __slots__ = ("ip", "container_id", "ifname", "owner", "id", "text")

    def __init__(self, ip, text):
        self.ip = ip
        self.text = text
        content = text.strip()
        cid, sep, ifname = content.partition(LINE_BREAK)
        self.container_id = cid.strip()
        self.ifname = ifname.strip() if sep else None
        self.owner, self.id = parse_id(self.container_id, has_ifname=bool(sep))

    def holder(self):
        if self.owner is None:
            return "container %s (not podnet.fabric's)" % self.container_id
        if self.owner == owners.LEGACY:
            return "%s (release 0.1)" % self.id
        return "%s of owner %s" % (self.id, self.owner)


def container_id(owner, ident):
    """The container id this module writes for ``ident`` of ``owner``."""
    return "%s:%s" % (owners.mark(owner), ident)


def parse_id(cid, has_ifname=True):
    """(owner, id) of a container id: (owner, id) for ours, (LEGACY, id) for release 0.1's
    ``<id>\\n`` files (no ifname line), (None, cid) for anyone else's."""
    prefix = owners.mark("")
    if cid.startswith(prefix):
        who, sep, ident = cid[len(prefix):].partition(":")
        if who and sep and ident:
            return who, ident
    if not has_ifname and cid:
        return owners.LEGACY, cid
    return None, cid


def read(directory, rng):
    """{ip text: Entry} of the allocation files within ``rng``'s subnet (other files are not
    allocations: ``lock``, ``last_reserved_ip.N``, addresses of other subnets)."""
    out = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            continue
        if ip not in rng.subnet:
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8", newline="") as handle:
                out[str(ip)] = Entry(str(ip), handle.read())
        except OSError:
            continue
    return out


def last_reserved(directory):
    """The text of ``last_reserved_ip.0`` (None when absent)."""
    try:
        with open(os.path.join(directory, LAST_RESERVED + RANGE_INDEX), encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


# --- planning ---------------------------------------------------------------------------------

def _check_id(ident):
    if not ident or not isinstance(ident, str) or "\n" in ident or "\r" in ident or ident != ident.strip():
        raise FabricError("ipam: allocation id %r is empty, has a line break or surrounding blanks" % (ident,))


def plan(directory, rng, allocations, owner=owners.DEFAULT_OWNER, purge=False, ifname=DEFAULT_IFNAME):
    """Plan ``owner``'s allocations in ``directory`` for range ``rng``.

    ``allocations``: [{'id', 'ip' (optional fixed address), 'ifname' (optional)}]. An id keeps
    its address; a fixed ``ip`` is honoured (moved when it changes); with ``purge`` the owner's
    ids not listed are released. Other owners', legacy and foreign (real host-local) files are
    never touched, only adopted (legacy, when declared).

    Returns a Plan: ``before``/``after`` map id -> ip for this owner (``after``: what the
    allocations get, in check mode what they would get). Every action is reversible (allocate
    <-> remove the file, release <-> write it back, last_reserved_ip put back).
    """
    result = Plan()
    entries = read(directory, rng)
    mine = dict((e.id, e) for e in entries.values() if e.owner == owner)
    legacy = dict((e.id, e) for e in entries.values() if e.owner == owners.LEGACY)
    wanted = []
    for entry in allocations:
        ident = entry["id"]
        _check_id(ident)
        if ident in wanted:
            raise FabricError("ipam %s: declared twice" % ident)
        wanted.append(ident)
    taken = set(entries)
    release = [i for i in sorted(mine) if i not in wanted] if purge else []
    for ident in release:
        taken.discard(mine[ident].ip)
    after = {}
    claims = []            # (ident, ip, ifname)
    moves = []             # entries released because their id moves to a fixed address
    adopt = []
    # Fixed addresses first, so a dynamic allocation never takes an address someone asked for.
    for entry in sorted(allocations, key=lambda e: not e.get("ip")):
        ident, fixed = entry["id"], entry.get("ip")
        dev = entry.get("ifname") or ifname
        have = mine.get(ident) or legacy.get(ident)
        if fixed:
            try:
                ip = ipaddress.ip_address(fixed)
            except ValueError:
                raise FabricError("ipam %s: %r is not a valid IP address" % (ident, fixed))
            if not rng.usable(ip):
                raise FabricError("ipam %s: %s is outside the allocatable range %s-%s of %s (or is the gateway)"
                                  % (ident, ip, rng.start, rng.end, rng.subnet))
            holder = entries.get(str(ip))
            if str(ip) in taken and not (holder is not None and have is holder):
                raise FabricError("ipam %s: %s is already allocated to %s" % (ident, ip, holder.holder() if holder else "another"))
            if have is not None and have.ip != str(ip):
                moves.append(have)
                taken.discard(have.ip)
                have = None
            after[ident] = str(ip)
            if have is None:
                taken.add(str(ip))
                claims.append((ident, str(ip), dev))
        elif have is not None:
            after[ident] = have.ip
        else:
            after[ident] = None
            claims.append((ident, None, dev))
        if have is not None and have.owner == owners.LEGACY:
            adopt.append((have, dev))
    last = last_reserved(directory)
    try:
        cursor = ipaddress.ip_address(last.strip()) if last else None
    except ValueError:
        cursor = None
    for ident, ip, dev in claims:
        if ip is None:
            found = next((c for c in rng.candidates(cursor) if str(c) not in taken), None)
            if found is None:
                raise FabricError("ipam %s: no free address left in %s-%s" % (ident, rng.start, rng.end))
            ip = str(found)
            cursor = found
            taken.add(ip)
            after[ident] = ip
        text = container_id(owner, ident) + LINE_BREAK + dev
        result.add("allocate %s to %s" % (ip, ident), _claim_fn(directory, ip, text), _release_fn(directory, ip))
    if any(ip is None for ident, ip, dev in claims):
        new_last = str(cursor)
        if new_last != last:
            result.add("record %s as last reserved" % new_last, _write_last_fn(directory, new_last),
                       _write_last_fn(directory, last))
    for have, dev in adopt:
        text = container_id(owner, have.id) + LINE_BREAK + dev
        result.add("adopt %s of %s (release 0.1)" % (have.ip, have.id), _rewrite_fn(directory, have.ip, text),
                   _rewrite_fn(directory, have.ip, have.text))
    for have in moves + [mine[i] for i in release]:
        result.add("release %s from %s" % (have.ip, have.id), _release_fn(directory, have.ip),
                   _restore_fn(directory, have.ip, have.text))
    result.before = dict((i, e.ip) for i, e in mine.items())
    result.before.update((i, legacy[i].ip) for i in wanted if i in legacy)
    result.after = dict((i, after[i]) for i in wanted)
    if not purge:
        for ident, e in mine.items():
            result.after.setdefault(ident, e.ip)
    return result


# --- actions (each under the lock) --------------------------------------------------------------

def _write_exclusive(directory, ip, text):
    fd = os.open(os.path.join(directory, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _claim_fn(directory, ip, text):
    def claim():
        with lock(directory):
            try:
                _write_exclusive(directory, ip, text)
            except FileExistsError:
                raise FabricError("ipam %s: taken meanwhile by another allocator" % ip)
    return claim


def _release_fn(directory, ip):
    def release():
        with lock(directory):
            try:
                os.unlink(os.path.join(directory, ip))
            except FileNotFoundError:
                pass
    return release


def _restore_fn(directory, ip, text):
    def restore():
        with lock(directory):
            _write_exclusive(directory, ip, text)
    return restore


def _rewrite_fn(directory, ip, text):
    def rewrite():
        with lock(directory):
            path = os.path.join(directory, ip)
            tmp = path + ".podnet-tmp"
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.rename(tmp, path)
    return rewrite


def _write_last_fn(directory, text):
    def write():
        with lock(directory):
            path = os.path.join(directory, LAST_RESERVED + RANGE_INDEX)
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                return
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    return write
