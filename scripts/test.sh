#!/usr/bin/env bash
# The project's whole test suite, from a fresh machine: set-up, then every stage below in turn.
# A stage that fails does not stop the others; the exit status is non-zero if any failed.
#
#   scripts/test.sh              all stages
#   scripts/test.sh unit lint    only these stages
#
# Stages: unit (pure logic), integration (modules through ansible-playbook on real network
# namespaces of this machine, once with Debian's pyroute2 0.7.2 and once with PyPI's 0.9.x; tests
# of modules that never use pyroute2 are marked single_target and run with Debian's python only),
# sanity (ansible-test sanity, offline), lint (ansible-lint --profile production), molecule (the
# whole cluster on the podman lab: create, converge site.yml, idempotence, testinfra, destroy).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
bash scripts/setup.sh || { echo "[test] set-up failed" >&2; exit 1; }
export PATH="$ROOT/.venv/bin:$PATH"

stage_unit() { pytest -p no:cacheprovider -q tests/unit; }
# loadgroup: the cases a test module batches into one playbook (xdist_group marks, conftest's
# batched_cases) stay on one worker, so the batch runs once; every other test is handed out one
# by one as with the default "load".
stage_integration() { pytest -p no:cacheprovider -q -n 2 --dist loadgroup tests/integration; }
stage_sanity() { bash scripts/sanity.sh; }
stage_lint() { bash scripts/lint.sh; }
stage_molecule() { bash scripts/molecule.sh test; }

all=(unit integration sanity lint molecule)
stages=("${@:-${all[@]}}")
declare -A result seconds
failed=0
for s in "${stages[@]}"; do
  if ! declare -F "stage_$s" >/dev/null; then
    echo "[test] unknown stage $s (stages: ${all[*]})" >&2
    exit 2
  fi
  echo "===== [test] stage $s =====" >&2
  start=$(date +%s)
  if "stage_$s"; then result[$s]=passed; else result[$s]=FAILED; failed=$((failed + 1)); fi
  seconds[$s]=$(($(date +%s) - start))
done

echo "===== [test] summary ====="
for s in "${stages[@]}"; do
  printf '  %-12s %-7s %5d s\n' "$s" "${result[$s]}" "${seconds[$s]}"
done
leftover=$( (podman ps -aq 2>/dev/null | wc -l) || echo 0)
[[ $leftover -gt 0 ]] && echo "  note: $leftover podman container(s) still exist on this machine"
echo "stages: $((${#stages[@]} - failed)) passed, $failed failed"
((failed == 0))
