#!/usr/bin/env bash
# Builds the lab node image localhost/podnet-lab-node:<recipe hash> from Debian packages, with no
# container registry: debootstrap --variant=minbase bookworm (+ packages.txt), a few edits in the
# chroot (daemons disabled, no baked-in machine-id/hostname/resolver), then
# `tar | podman import` with CMD /sbin/init.
#
# The recipe hash covers every file in this directory, so the image is rebuilt only when the
# recipe changes; otherwise the build is skipped. Downloaded .debs are kept in
# .cache/lab-image/debs (debootstrap --cache-dir) for the next rebuild.
#
# Usage: lab/image/build.sh [--ref] [--force]
#   --ref    print the image reference for the current recipe and exit (no build)
#   --force  rebuild even if the image exists
# stdout: the image reference (one line); progress goes to stderr.
#
# The Debian mirror is the one apt on this machine already uses for bookworm (read with
# `apt-get indextargets`); PODNET_DEBIAN_MIRROR overrides it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE=bookworm
IMAGE_REPO=${PODNET_LAB_IMAGE_REPO:-localhost/podnet-lab-node}
CACHE=${PODNET_CACHE_DIR:-$ROOT/.cache}/lab-image
# Units that packages.txt brings in enabled: roles enable what a host needs.
DISABLE_UNITS=(bird.service frr.service keepalived.service dnsmasq.service iperf3.service
  unbound.service unbound-resolvconf.service)
# Timers that are useless in an offline lab container.
MASK_UNITS=(apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer)

log() { printf '[lab-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe_hash() {
  (cd "$HERE" && find . -type f ! -name '*~' ! -name '.*.swp' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum) | sha256sum | cut -c1-12
}

debian_mirror() {
  if [[ -n ${PODNET_DEBIAN_MIRROR:-} ]]; then
    echo "$PODNET_DEBIAN_MIRROR"
    return
  fi
  # SITE of the first deb source apt is configured with for this suite (not -updates/-security).
  # shellcheck disable=SC2016  # $(...) are apt-get indextargets placeholders, not shell
  apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(SITE)' 2>/dev/null |
    awk -v suite="$SUITE" '$1 == "deb" && $2 == suite { print $3; exit }'
}

packages() {
  grep -vE '^[[:space:]]*(#|$)' "$HERE/packages.txt" | tr -s '[:space:]' '\n' | paste -sd, -
}

force=0
print_ref=0
for arg in "$@"; do
  case $arg in
    --ref) print_ref=1 ;;
    --force) force=1 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

hash=$(recipe_hash)
ref="$IMAGE_REPO:$hash"
if ((print_ref)); then
  echo "$ref"
  exit 0
fi

mkdir -p "$CACHE/debs"
# One build at a time (lab.sh and molecule may both ask for the image).
exec 9>"$CACHE/build.lock"
flock 9

if ((!force)) && podman image exists "$ref"; then
  log "image $ref exists (recipe unchanged): skipping the build"
  echo "$ref"
  exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap is missing (run scripts/setup.sh)"
mirror=$(debian_mirror)
[[ -n $mirror ]] || die "no apt source for '$SUITE' found; set PODNET_DEBIAN_MIRROR"

start=$(date +%s)
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/podnet-lab-rootfs.XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys in the target while it installs; a failed run leaves them.
  awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

log "building $ref: debootstrap --variant=minbase $SUITE from $mirror"
debootstrap --variant=minbase --include="$(packages)" --cache-dir="$CACHE/debs" \
  "$SUITE" "$rootfs" "$mirror" > "$CACHE/debootstrap.log" 2>&1 ||
  { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
log "debootstrap done in $(($(date +%s) - start)) s"

# --- edits in the chroot ------------------------------------------------------------------------
in_root() { chroot "$rootfs" "$@"; }
for unit in "${DISABLE_UNITS[@]}"; do
  if [[ -e $rootfs/lib/systemd/system/$unit ]]; then
    in_root systemctl --quiet disable "$unit"
  fi
done
for unit in "${MASK_UNITS[@]}"; do
  if [[ -e $rootfs/lib/systemd/system/$unit ]]; then
    in_root systemctl --quiet mask "$unit"
  fi
done
# Every container gets its own machine-id (systemd generates one at boot when the file is
# empty), its hostname from podman, and no resolver of this machine: the lab is offline, and
# the DNS work writes resolv.conf itself.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/etc/hostname" "$rootfs/var/lib/dbus/machine-id"
: > "$rootfs/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$rootfs/etc/hosts"
# A Pi-like login: user "pi" (uid 1000) with passwordless sudo, SSH keys only. Host keys are not
# baked in: lab/up.yml writes each host's own (generated per lab) before the first boot.
in_root useradd --create-home --uid 1000 --user-group --shell /bin/bash pi
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' > "$rootfs/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$rootfs/etc/sudoers.d/010_pi-nopasswd"
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUseDNS no\n' \
  > "$rootfs/etc/ssh/sshd_config.d/podnet-lab.conf"
rm -f "$rootfs"/etc/ssh/ssh_host_*
in_root systemctl --quiet enable ssh.service
in_root apt-get clean
rm -f "$rootfs"/var/cache/apt/*.bin

# --- import -------------------------------------------------------------------------------------
log "importing into podman as $ref"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -c . |
  podman import \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL podnet.lab.recipe=$hash" \
    --message "podnet.fabric lab node image, recipe $hash" \
    - "$ref" >/dev/null

# Drop images of older recipes that no container uses any more.
podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE_REPO" |
  while read -r old; do
    [[ $old == "$ref" ]] || podman rmi "$old" >/dev/null 2>&1 || true
  done

log "built $ref in $(($(date +%s) - start)) s ($(podman image inspect --format '{{.Size}}' "$ref" |
  awk '{ printf "%d MB", $1 / 1e6 }'))"
echo "$ref"
