#!/usr/bin/env bash
# Runs `ansible-test sanity` on podnet.fabric from a fresh clone, with no network but PyPI.
#
#   scripts/sanity.sh                     # all sanity tests, Python 3.11
#   scripts/sanity.sh --test pep8 -v      # extra arguments go to `ansible-test sanity`
#
# Exit status is ansible-test's: non-zero when any sanity test fails.
#
# What it takes here (see /work/shared/LAB.md, "Collection test tools offline"):
# 1. ansible-test bootstraps pip into each sanity venv with a get-pip script it downloads from
#    ci-files.testing.ansible.com, which is unreachable. It uses
#    ~/.ansible/test/cache/get_pip_<ver>.py instead when that file exists, so we write one: a few
#    lines that run `pip install` from the pip wheel of that version, fetched from PyPI by hash.
# 2. ansible-test only works inside a path ending in ansible_collections/podnet/fabric, and it
#    resolves symlinks (a linked checkout, e.g. .collections/..., is seen as the checkout and
#    refused). So the collection is staged as a copy in a temp dir: the git-tracked files plus
#    untracked files that .gitignore does not exclude (work in progress is checked too; .venv,
#    .collections, .cache, tests/output are not copied).
# 3. `ansible-test sanity --python 3.11 --requirements`: each sanity test gets its own venv under
#    ~/.ansible/test/venv (requirements from PyPI), cached across runs; a cached run needs no
#    network at all (checked under `unshare -n`).
#
# No sanity test is skipped: none needs more network than PyPI. shellcheck is skipped by
# ansible-test itself when the shellcheck binary is missing (Debian package `shellcheck`).
# The warning 'Using locale "C.UTF-8" instead of "en_US.UTF-8"' is harmless: these machines
# have no en_US locale generated, and ansible-test falls back to C.UTF-8.
# Set PODNET_SANITY_KEEP=1 to keep the staged copy (path is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[sanity] %s\n' "$*" >&2; }

PYVER=${PODNET_SANITY_PYTHON:-3.11}
[[ -x .venv/bin/ansible-test ]] || scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"

# --- 1. the pip bootstrap shim --------------------------------------------------------------------
# sha256 of pip-<ver>-py3-none-any.whl on PyPI, one entry per pip version ansible-test asks for.
declare -A PIP_WHEEL_SHA256=(
  [24.2]=2cd581cf58ab7fcfca4ce8efa6dcacd0de5bf8d0a3eb9ec927e07405f4d9e2a2
)

# The pip version ansible-test installs into its venvs, read from the installed ansible_test.
pip_ver=$(python - "$PYVER" <<'PY'
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])
PY
)
cache=$HOME/.ansible/test/cache
shim=$cache/get_pip_${pip_ver//./_}.py
wheel_dir=$cache/podnet-pip-$pip_ver
wheel=$wheel_dir/pip-$pip_ver-py3-none-any.whl

if [[ -f $shim ]] && ! grep -q 'written by podnet.fabric' "$shim"; then
  log "using existing pip bootstrap script $shim"
elif [[ ! -f $shim || ! -f $wheel ]]; then
  sha=${PIP_WHEEL_SHA256[$pip_ver]:-}
  if [[ -z $sha ]]; then
    log "ansible-test wants pip $pip_ver, whose wheel hash is not pinned in $0:"
    log "add PIP_WHEEL_SHA256[$pip_ver] from https://pypi.org/project/pip/$pip_ver/#files"
    exit 2
  fi
  log "fetching pip $pip_ver wheel from PyPI for the bootstrap shim"
  mkdir -p "$wheel_dir"
  req=$(mktemp)
  printf 'pip==%s --hash=sha256:%s\n' "$pip_ver" "$sha" > "$req"
  pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$req" -d "$wheel_dir"
  rm -f "$req"
  [[ -f $wheel ]] || { log "pip download gave no $wheel"; exit 1; }
  cat > "$shim.tmp" <<PY
"""pip $pip_ver bootstrap for ansible-test, written by podnet.fabric scripts/sanity.sh.

Stands in for get-pip-$pip_ver.py from ci-files.testing.ansible.com (unreachable here): runs
\`pip install\` from the PyPI wheel with the arguments ansible-test gives, minus --no-setuptools
and --no-wheel (options of get-pip.py, not of pip install).
"""
import sys

WHEEL = "$wheel"
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402  (importable from the wheel only)

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--find-links", "$wheel_dir", *args]))
PY
  mv "$shim.tmp" "$shim"
  log "wrote $shim"
fi

# --- 2. stage the collection at .../ansible_collections/podnet/fabric --------------------------
stage_root=$(mktemp -d "${TMPDIR:-/tmp}/podnet-sanity.XXXXXX")
if [[ ${PODNET_SANITY_KEEP:-} == 1 ]]; then
  log "staged copy kept: $stage_root"
else
  trap 'rm -rf "$stage_root"' EXIT
fi
stage=$stage_root/ansible_collections/podnet/fabric
mkdir -p "$stage"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # tracked + untracked-not-ignored; skip tracked files deleted in the work tree, and the tool
  # dirs even when .gitignore misses them (its `.venv/` does not match a .venv symlink)
  git ls-files -z --cached --others --exclude-standard --deduplicate |
    while IFS= read -r -d '' f; do
      case $f in .venv | .venv/* | .collections | .collections/* | .cache | .cache/* | tests/output/*) continue ;; esac
      if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi
    done |
    tar -c --null --no-recursion -T - -f - | tar -x -C "$stage" -f -
else
  tar -c --exclude=./.git --exclude=./.venv --exclude=./.collections --exclude=./.cache \
    --exclude=./tests/output --exclude=__pycache__ --exclude=.pytest_cache -f - . |
    tar -x -C "$stage" -f -
fi

# --- 3. run ---------------------------------------------------------------------------------------
cd "$stage"
log "ansible-test sanity --python $PYVER --requirements $* (in $stage)"
start=$SECONDS
rc=0
ansible-test sanity --python "$PYVER" --requirements "$@" || rc=$?
log "ansible-test sanity exit $rc after $((SECONDS - start)) s"

# Keep the results next to the checkout (tests/output is git-ignored).
if [[ -d tests/output ]]; then
  rm -rf "$ROOT/tests/output"
  mkdir -p "$ROOT/tests"
  cp -a tests/output "$ROOT/tests/output"
  rm -rf "$ROOT/tests/output/.tmp"
fi
exit "$rc"
