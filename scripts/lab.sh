#!/usr/bin/env bash
# The podman lab on this machine: six systemd containers (node1..3, router, client, inet) on
# three internal segments, defined in inventories/lab (see lab/README.md).
#
#   scripts/lab.sh up        setup (idempotent), node image (built only if its recipe changed),
#                            lab/up.yml, converge playbooks/site.yml, print the summary
#   scripts/lab.sh converge  converge playbooks/site.yml again (extra args go to ansible-playbook)
#   scripts/lab.sh summary   hosts, pods, routes and pings (scripts/lab-summary.sh)
#   scripts/lab.sh verify    the molecule tests (molecule/default/tests) against this lab
#   scripts/lab.sh status    containers, segments and image of this lab
#   scripts/lab.sh down      remove the containers and segments (the image stays)
#
# PODNET_LAB=<prefix> (default podnet) names the lab: a second one can run beside the first.
# Molecule (scripts/molecule.sh) uses a lab of its own, so neither disturbs the other.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PODNET_LAB=${PODNET_LAB:-podnet}
INVENTORY=inventories/lab

log() { printf '[lab %s] %s\n' "$PODNET_LAB" "$*" >&2; }
venv() { export PATH="$ROOT/.venv/bin:$PATH"; }
playbook() { venv; ansible-playbook -i "$INVENTORY" "$@"; }
timed() {
  local what=$1 start rc=0
  shift
  start=$(date +%s)
  "$@" || rc=$?
  log "$what: $(($(date +%s) - start)) s$( ((rc == 0)) || echo " (FAILED, rc $rc)")"
  return $rc
}

cmd_up() {
  timed "setup" scripts/setup.sh
  if ! timed "lab up (image, segments, containers)" playbook lab/up.yml; then
    log "bringing the lab up failed: removing what was created"
    playbook lab/down.yml >/dev/null || true
    exit 1
  fi
  if ! timed "converge playbooks/site.yml" playbook playbooks/site.yml; then
    log "converge failed; the lab stays up for debugging (scripts/lab.sh down removes it)"
    exit 1
  fi
  cmd_summary
}

cmd_converge() { timed "converge playbooks/site.yml" playbook playbooks/site.yml "$@"; }

cmd_summary() { scripts/lab-summary.sh; }

cmd_verify() {
  venv
  pytest -p no:cacheprovider molecule/default/tests "$@"
}

cmd_status() {
  local image
  image=$(lab/image/build.sh --ref)
  echo "image (current recipe): $image $(podman image exists "$image" && echo built || echo 'not built')"
  echo "containers:"
  podman ps --all --filter "label=podnet.lab=$PODNET_LAB" \
    --format '  {{ index .Labels "podnet.lab.host" }}\t{{ .Names }}\t{{ .Status }}\t{{ .Image }}' | sort
  echo "segments:"
  podman network ls --format '{{ .Name }}' | grep -E "^$PODNET_LAB-" | sed 's/^/  /' || echo "  (none)"
}

cmd_down() { timed "lab down" playbook lab/down.yml; }

case ${1:-} in
  up | converge | summary | verify | status | down)
    c=$1
    shift
    "cmd_$c" "$@"
    ;;
  *)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
