#!/bin/bash
# rootfs-debootstrap.sh ARCH PACKAGES_FILE OUT.tar.zst DEBCACHE : stage 1 of a lab POP root filesystem —
# a bookworm minbase with the listed packages, archived as-is. Slow (amd64 ~1 min, arm64 ~4+ min via qemu binfmt),
# so it is cached apart from the quick stage 2 (rootfs-prep.sh).
set -euo pipefail
ARCH=$1; PKGS=$2; OUT=$3; DEBCACHE=$4
MIRROR=${FSM_EDGE_LAB_MIRROR:-http://deb.debian.org/debian}
INC=$(grep -v '^\s*#' "$PKGS" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
WORK="$OUT.work"
# A debootstrap that failed half-way leaves /proc (and maybe /sys) mounted in its chroot: unmount everything
# under the work dir, deepest first, before removing it — else rm fails on /proc and every later build with it.
clean_work() {
  awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap clean_work EXIT
clean_work; mkdir -p "$WORK" "$DEBCACHE"
debootstrap --arch="$ARCH" --variant=minbase --include="$INC" --cache-dir="$DEBCACHE" \
  bookworm "$WORK/root" "$MIRROR" > "$WORK.log" 2>&1 || { tail -30 "$WORK.log" >&2; exit 1; }
rm -rf "$WORK/root/var/cache/apt/archives/"*.deb "$WORK/root/var/lib/apt/lists/"*_Packages
tar -C "$WORK/root" --numeric-owner --xattrs --xattrs-include='*' --zstd -cf "$OUT.part" .
mv "$OUT.part" "$OUT"
