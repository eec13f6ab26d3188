#!/usr/bin/env bash
# Runs the molecule scenario "default" (the whole cluster in the podman lab) with the project's
# environment: setup.sh, the venv on PATH, a lab of its own (PODNET_MOLECULE_LAB, default
# podnetm, so a lab from scripts/lab.sh is never touched).
#
#   scripts/molecule.sh                 molecule test -s default (create, converge, idempotence,
#                                       verify, destroy); the lab is removed afterwards even if
#                                       molecule itself dies
#   scripts/molecule.sh converge|verify|login|destroy ...   one molecule step (the lab stays)
#   scripts/molecule.sh test -s lab     the lab alone (molecule/lab: no roles, a ping converge)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
export PODNET_MOLECULE_LAB=${PODNET_MOLECULE_LAB:-podnetm}

action=${1:-test}
(($#)) && shift

# shellcheck disable=SC2317  # called through the trap
teardown() {
  # molecule test destroys the lab itself (--destroy=always); this covers a molecule that
  # crashed or was interrupted.
  PODNET_LAB=$PODNET_MOLECULE_LAB ansible-playbook -i inventories/lab lab/down.yml >/dev/null 2>&1 ||
    echo "[molecule] teardown of lab $PODNET_MOLECULE_LAB failed: run PODNET_LAB=$PODNET_MOLECULE_LAB scripts/lab.sh down" >&2
}

scenario=(-s default)
for arg in "$@"; do
  [[ $arg == -s || $arg == --scenario-name* ]] && scenario=()
done

start=$(date +%s)
rc=0
if [[ $action == test ]]; then
  # In the background so that a TERM sent to this script alone (a CI timeout) stops molecule
  # too before the teardown runs.
  trap teardown EXIT
  molecule "$action" "${scenario[@]}" "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM
  wait "$child" || rc=$?
else
  molecule "$action" "${scenario[@]}" "$@" || rc=$?
fi
echo "[molecule] $action: $(($(date +%s) - start)) s, rc $rc" >&2
exit $rc
