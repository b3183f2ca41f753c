// `./fsm-edge` at the root of a USB stick: a POSIX sh script (dash, busybox ash, bash) that picks the Node.js
// runtime for `uname -m` and runs the bundled CLI with it. What it checks: that the runtime and fsm-edge.mjs it
// is about to run match the stick's SHA256SUMS (a damaged copy; skipped with a note when the POP has no
// sha256sum). What it cannot check: that SHA256SUMS itself is genuine — whoever can write the stick can rewrite
// both. The checks that hold against tampering come after: fsm-edge verifies the bundle's signature against
// --trust-key (whose key id the technician compares with the one the operator gave) before anything is installed,
// and a backup only decrypts with its own key or passphrase. See the stick README.

/** Exit code of the launcher when the stick cannot run here (unknown arch, missing or damaged runtime). */
export const LAUNCHER_EXIT_UNUSABLE = 3;

export const STICK_LAUNCHER = `#!/bin/sh
# fsm-edge from a USB stick: runs the bundled CLI (fsm-edge.mjs) with the Node.js runtime for this machine.
# POSIX sh (dash, busybox). Usage: sudo ./fsm-edge <command> ...   (see README.txt)
# No execute bit (a vfat stick mounted noexec)? sudo sh ./fsm-edge <command> ...
set -u
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || { echo "fsm-edge: cannot find the stick directory of $0" >&2; exit ${LAUNCHER_EXIT_UNUSABLE}; }
machine=$(uname -m)
case "$machine" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64|armv8l|armv8b) arch=arm64 ;;
  *) echo "fsm-edge: this machine is $machine; the stick carries Node.js for x86_64 (amd64) and aarch64 (arm64) only" >&2
     exit ${LAUNCHER_EXIT_UNUSABLE} ;;
esac
node="$here/runtime/$arch/bin/node"
js="$here/fsm-edge.mjs"
for f in "$node" "$js"; do
  [ -f "$f" ] || { echo "fsm-edge: $f is missing: the stick was made without the $arch runtime, or the copy is incomplete" >&2; exit ${LAUNCHER_EXIT_UNUSABLE}; }
done

# The sha256 SHA256SUMS gives for a stick path, empty when none.
want_sum() { awk -v n="$1" '$2 == n || $2 == "*" n { print $1; exit }' "$here/SHA256SUMS" 2>/dev/null; }
check() { # <file to hash> <its name in SHA256SUMS>
  want=$(want_sum "$2")
  [ -n "$want" ] || { echo "fsm-edge: SHA256SUMS on the stick has no line for $2; make the stick again" >&2; exit ${LAUNCHER_EXIT_UNUSABLE}; }
  got=$(sha256sum < "$1" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "fsm-edge: $2 is damaged (sha256 $got, SHA256SUMS says $want); copy the stick again" >&2; exit ${LAUNCHER_EXIT_UNUSABLE}; }
}

# A stick mounted noexec (or a FAT copy without the execute bit): run a copy of the runtime from a temporary dir.
if [ ! -x "$node" ]; then
  tmp=$(mktemp -d "\${TMPDIR:-/tmp}/fsm-edge-node.XXXXXX") || exit ${LAUNCHER_EXIT_UNUSABLE}
  cp "$node" "$tmp/node" && chmod 0755 "$tmp/node" || { echo "fsm-edge: cannot copy the runtime to $tmp" >&2; exit ${LAUNCHER_EXIT_UNUSABLE}; }
  node="$tmp/node"
fi

if [ -n "\${FSM_EDGE_SKIP_STICK_CHECK:-}" ]; then
  echo "fsm-edge: FSM_EDGE_SKIP_STICK_CHECK is set: the runtime and fsm-edge.mjs are not checked against SHA256SUMS" >&2
elif command -v sha256sum >/dev/null 2>&1; then
  check "$node" "runtime/$arch/bin/node"
  check "$js" "fsm-edge.mjs"
else
  echo "fsm-edge: no sha256sum on this machine: the runtime and fsm-edge.mjs are not checked against SHA256SUMS" >&2
fi

FSM_EDGE_STICK="$here"
export FSM_EDGE_STICK
exec "$node" "$js" "$@"
`;
