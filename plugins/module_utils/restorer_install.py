# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install the node restorer (podnet-restore, a zip application) and its systemd unit.

Planned like everything else: file writes first (undo puts the old bytes back), then what
systemd is told (daemon-reload, enable, start/restart), which cannot be taken back.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import zipfile

from ansible_collections.podnet.fabric.plugins.module_utils import files
from ansible_collections.podnet.fabric.plugins.module_utils.plan import FabricError, Plan, noop

UNIT_TEMPLATE = """\
# podnet.fabric {version} (module podnet.fabric.node_restore); rewritten by every converge.
[Unit]
Description=podnet.fabric restore: the declared pod network at boot and on link up ({version})
Documentation=https://github.com/podnet/fabric
# Ordered like ifupdown's networking.service: after the kernel modules and sysctls are in,
# before network.target; pod workload units order themselves after this one.
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service systemd-sysctl.service network-pre.target
Wants=network-pre.target
Before=network.target network-online.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=notify
NotifyAccess=main
Environment=PYTHONDONTWRITEBYTECODE=1
Environment=PODNET_FABRIC_RESTORE_DIR={state_dir}
ExecStart={python} {path} run
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def decode(bundle):
    """(bytes, version) of the base64 zip application; FabricError when it is not one."""
    try:
        data = base64.b64decode(bundle, validate=True)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text = archive.read("ansible_collections/podnet/fabric/plugins/module_utils/version.py").decode()
            archive.getinfo("__main__.py")
    except (binascii.Error, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise FabricError("bundle: not a podnet-restore zip application (%s); use lookup('podnet.fabric.restorer_bundle')" % exc)
    match = re.search(r'COLLECTION_VERSION = "([^"]+)"', text)
    if not match:
        raise FabricError("bundle: carries no collection version")
    return data, match.group(1)


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path, data, mode):
    if data is not None:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    files.write_atomic(path, data, mode)


def _digest(data):
    return None if data is None else hashlib.sha256(data).hexdigest()


def plan(ctx, params):
    """The plan for ``params`` (the module's), and the module's result keys."""
    unit = params["unit"]
    unit_path = os.path.join(params["unit_dir"], unit)
    present = params["state"] == "present"
    if present:
        data, version = decode(params["bundle"])
        unit_text = UNIT_TEMPLATE.format(version=version, state_dir=params["state_dir"], python=params["python"],
                                         path=params["path"]).encode()
    else:
        data, version, unit_text = None, None, None
    old_data, old_unit = _read(params["path"]), _read(unit_path)
    systemd = _systemd(ctx, unit)
    result = {"version": version, "path": params["path"], "unit": unit, "sha256": _digest(data),
              "enabled": systemd["enabled"], "active": systemd["active"]}
    p = Plan()
    p.before = {"restorer": {"sha256": _digest(old_data), "unit": (old_unit or b"").decode() or None,
                             "enabled": systemd["enabled"], "active": systemd["active"]}}
    p.after = {"restorer": {"sha256": _digest(data), "unit": (unit_text or b"").decode() or None,
                            "enabled": present, "active": present}}
    if data != old_data:
        p.add("%s %s" % ("install podnet-restore %s (sha256 %s) as" % (version, _digest(data)[:12]) if present
                         else "remove podnet-restore", params["path"]),
              lambda: _write(params["path"], data, 0o755), lambda: _write(params["path"], old_data, 0o755))
    if unit_text != old_unit:
        p.add("%s unit %s" % ("write" if present else "remove", unit_path),
              lambda: _write(unit_path, unit_text, 0o644), lambda: _write(unit_path, old_unit, 0o644))
    if not present:
        if systemd["active"]:
            p.actions.insert(0, _irreversible(ctx, "stop %s" % unit, ["systemctl", "stop", unit]))
        if systemd["enabled"]:
            p.actions.insert(1 if systemd["active"] else 0, _irreversible(ctx, "disable %s" % unit, ["systemctl", "disable", unit]))
        if unit_text != old_unit and systemd["running"]:
            p.actions.append(_irreversible(ctx, "systemctl daemon-reload", ["systemctl", "daemon-reload"]))
        return p, result
    if not systemd["running"]:
        if not ctx.check_mode:
            raise FabricError("unit %s: systemd is not running on this host (%s); podnet-restore needs it" % (unit, systemd["state"]))
        return p, result
    if unit_text != old_unit:
        p.actions.append(_irreversible(ctx, "systemctl daemon-reload", ["systemctl", "daemon-reload"]))
    if not systemd["enabled"]:
        p.actions.append(_irreversible(ctx, "enable %s" % unit, ["systemctl", "enable", unit]))
    if not systemd["active"]:
        p.actions.append(_irreversible(ctx, "start %s" % unit, ["systemctl", "start", unit]))
    elif data != old_data or unit_text != old_unit:
        # The new code (or unit) takes over at once; it replays the state, which this converge
        # is about to rewrite anyway.
        p.actions.append(_irreversible(ctx, "restart %s" % unit, ["systemctl", "restart", unit]))
    return p, result


def _irreversible(ctx, text, argv):
    from ansible_collections.podnet.fabric.plugins.module_utils.plan import Action

    def do():
        rc, out, err = ctx.run(argv)
        if rc != 0:
            lines = (err or out).strip().splitlines()
            raise FabricError("%s: rc %d: %s" % (" ".join(argv), rc, lines[-1] if lines else "no output"))
    return Action(text, do if not ctx.check_mode else noop, irreversible=True)


def _systemd(ctx, unit):
    """What systemd says of ``unit`` (running: systemd is PID 1 and answers)."""
    state = "absent"
    if os.path.isdir("/run/systemd/system"):
        rc, out, _err = ctx.run(["systemctl", "is-system-running"])
        state = out.strip() or "unknown"
    running = state not in ("absent", "offline", "unknown")
    if not running:
        return {"running": False, "state": state, "enabled": False, "active": False}
    _rc, enabled, _err = ctx.run(["systemctl", "is-enabled", unit])
    _rc, active, _err = ctx.run(["systemctl", "is-active", unit])
    return {"running": True, "state": state, "enabled": enabled.strip() == "enabled",
            "active": active.strip() in ("active", "activating", "reloading")}
