#!/usr/bin/env bash
# Runs ansible-lint with the production profile over the podnet.fabric checkout, offline.
#
#   scripts/lint.sh                 # the whole collection
#   scripts/lint.sh roles/node      # extra arguments go to ansible-lint (paths, -v, ...)
#
# Settings live in .ansible-lint (offline: true, exclude_paths). Exit status is ansible-lint's.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[lint] %s\n' "$*" >&2; }

[[ -x .venv/bin/ansible-lint ]] || scripts/setup.sh
# podnet.fabric.* names resolve through ansible.cfg's collections_path: make sure the link
# setup.sh creates is there (a fresh clone that only ran pip would lack it).
if [[ ! -e .collections/ansible_collections/podnet/fabric ]]; then
  mkdir -p .collections/ansible_collections/podnet
  ln -sfn ../../.. .collections/ansible_collections/podnet/fabric
fi

export PATH="$ROOT/.venv/bin:$PATH"

start=$SECONDS
rc=0
ansible-lint --profile production --offline -c "$ROOT/.ansible-lint" "$@" || rc=$?
log "ansible-lint exit $rc after $((SECONDS - start)) s"
exit "$rc"
