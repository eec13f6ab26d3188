# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host-local style IPAM: one file per allocated address in a data directory.

Same on-disk layout as the CNI host-local plugin (``<data_dir>/<network>/<ip>`` holding the
owner's id, created with O_EXCL so two allocators never hand out one address), so allocations are
stable across runs and readable by people who know CNI. Only files that look like addresses of
the managed range are ever considered ours; ``last_reserved_ip.0`` style files are left alone.
"""
from __future__ import annotations

import ipaddress
import os

from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan


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

    def candidates(self):
        ip = self.start
        while ip <= self.end:
            if ip != self.gateway:
                yield ip
            ip += 1


def read(directory, rng):
    """{id: ip} of the allocations on disk within ``rng`` (other files are not ours)."""
    owners = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return owners
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            continue
        if ip not in rng.subnet:
            continue
        with open(os.path.join(directory, name)) as handle:
            owner = handle.read().split("\n")[0].strip()
        owners.setdefault(owner, str(ip))
    return owners


def plan(directory, rng, allocations, purge=True):
    """Plan allocations. ``allocations``: [{'id', 'ip' (optional fixed)}]. The plan's ``after``
    maps id -> ip (what the pods get; in check mode, what they would get)."""
    result = Plan()
    current = read(directory, rng)
    taken = dict((ip, owner) for owner, ip in current.items())
    wanted_ids = []
    for entry in allocations:
        owner = entry["id"]
        if not owner or "\n" in owner:
            raise FabricError("ipam: allocation id %r is empty or has a newline" % (owner,))
        if owner in wanted_ids:
            raise FabricError("ipam %s: declared twice" % owner)
        wanted_ids.append(owner)
    after = {}
    release = [o for o in sorted(current) if o not in wanted_ids] if purge else []
    for owner in release:
        del taken[current[owner]]
    # Fixed addresses first, so a dynamic allocation never takes an address someone asked for.
    for entry in sorted(allocations, key=lambda e: not e.get("ip")):
        owner, fixed = entry["id"], entry.get("ip")
        if fixed:
            try:
                ip = ipaddress.ip_address(fixed)
            except ValueError:
                raise FabricError("ipam %s: %r is not a valid IP address" % (owner, fixed))
            if not rng.usable(ip):
                raise FabricError("ipam %s: %s is outside the allocatable range %s-%s of %s (or is the gateway)" % (owner, ip, rng.start, rng.end, rng.subnet))
            holder = taken.get(str(ip))
            if holder is not None and holder != owner:
                raise FabricError("ipam %s: %s is already allocated to %s" % (owner, ip, holder))
            if current.get(owner) and current[owner] != str(ip):
                del taken[current[owner]]
                result.add("release %s from %s" % (current[owner], owner), _release_fn(directory, current[owner]))
            after[owner] = str(ip)
        elif owner in current:
            after[owner] = current[owner]
            continue
        else:
            ip = next((c for c in rng.candidates() if str(c) not in taken), None)
            if ip is None:
                raise FabricError("ipam %s: no free address left in %s-%s" % (owner, rng.start, rng.end))
            after[owner] = str(ip)
        if current.get(owner) != after[owner]:
            taken[after[owner]] = owner
            result.add("allocate %s to %s" % (after[owner], owner), _claim_fn(directory, after[owner], owner),
                       _release_fn(directory, after[owner]))
    for owner in release:
        result.add("release %s from %s" % (current[owner], owner), _release_fn(directory, current[owner]))
    result.before = current
    result.after = dict((o, after[o]) for o in wanted_ids)
    if not purge:
        for owner in current:
            result.after.setdefault(owner, current[owner])
    return result


def _claim_fn(directory, ip, owner):
    def claim():
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(directory, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, (owner + "\n").encode())
        finally:
            os.close(fd)
    return claim


def _release_fn(directory, ip):
    def release():
        try:
            os.unlink(os.path.join(directory, ip))
        except FileNotFoundError:
            pass
    return release
