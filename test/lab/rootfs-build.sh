#!/bin/bash
# rootfs-build.sh ARCH DEBOOTSTRAP.tar.zst ROOTFS.tar.zst CACHEDIR : build the two cache stages of a POP root
# filesystem if missing (see rootfs-cache.ts). Run under flock by the caller; every output appears atomically.
set -euo pipefail
A=$1; DB=$2; OUT=$3; C=$4; SRC=$(dirname "$(readlink -f "$0")")
[ -f "$OUT" ] && exit 0
if [ ! -f "$DB" ]; then
  "$SRC/rootfs-debootstrap.sh" "$A" "$SRC/rootfs-packages.txt" "$DB" "$C/debs-$A"
  rm -f "$DB.work.log"
fi
W="$OUT.work"; rm -rf "$W"; mkdir -p "$W"
tar -C "$W" --numeric-owner --xattrs --xattrs-include='*' --zstd -xf "$DB"
"$SRC/rootfs-prep.sh" "$W"
tar -C "$W" --numeric-owner --xattrs --xattrs-include='*' --zstd -cf "$OUT.part" .
rm -rf "$W"; mv "$OUT.part" "$OUT"
# superseded keys of this arch are dead weight
for f in "$C/rootfs-$A-"*.tar.zst "$C/debootstrap-$A-"*.tar.zst; do
  [ "$f" = "$OUT" ] || [ "$f" = "$DB" ] || rm -f "$f"
done
