#!/usr/bin/env bash
# Installs everything this checkout needs on a fresh Debian 12 machine, idempotently and fast
# when nothing changed: Debian packages (requirements-apt.txt), the controller venv
# (requirements.txt -> .venv), podman's two settings for this kind of VM, and the link that makes
# the checkout resolve as the collection podnet.fabric.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages --------------------------------------------------------------------------
mapfile -t apt_pkgs < <(grep -vE '^\s*(#|$)' requirements-apt.txt)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# bird2's and keepalived's packages enable and start their services; here both run only inside
# the tests' own namespaces.
systemctl disable --now bird.service keepalived.service frr.service >/dev/null 2>&1 || true

# --- controller venv ----------------------------------------------------------------------------
# Python 3.11 is the newest the pinned ansible-core supports; prefer the one on PATH (pyenv on
# these machines), fall back to Debian's.
PY=${PODNET_PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating .venv with $PY and requirements.txt"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# --- podman on this VM: runc (crun refuses hybrid cgroups) and no default ulimits ---------------
conf=/etc/containers/containers.conf
if [[ -d /etc/containers ]] && ! grep -q 'podnet.fabric' "$conf" 2>/dev/null; then
  log "writing $conf (runtime runc, no default ulimits)"
  cat > "$conf" <<'CONF'
# written by podnet.fabric scripts/setup.sh
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
fi

# --- the checkout as the collection podnet.fabric ------------------------------------------------
mkdir -p .collections/ansible_collections/podnet
ln -sfn ../../.. .collections/ansible_collections/podnet/fabric
log "ready: ansible-core $(.venv/bin/python -c "import ansible.release as r; print(r.__version__)"), pyroute2 $(.venv/bin/python -c 'import pyroute2;print(pyroute2.__version__)') (controller), Debian python3-pyroute2 on /usr/bin/python3 (targets)"
