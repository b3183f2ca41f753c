#!/usr/bin/env bash
# Installs what `npm test`, `npm run demo` and the benchmarks need on a fresh Debian machine (as root):
# Debian packages, node_modules, and the lab's cached root filesystems. Safe to run again; fast when warm.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}

APT_PKGS=(openssh-server openssh-client debootstrap qemu-user-static binfmt-support containerd docker-registry
  iptables iproute2 pv socat netcat-openbsd bc systemd-container zstd rsync tmux curl ca-certificates openssl python3 busybox
  chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  # policy-rc.d keeps the packages' own daemons (sshd, containerd, registry) from starting on the host.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node_modules: reinstall when the lock file changed since the last install.
stamp=node_modules/.fsm-edge-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The lab's root filesystems are built once (debootstrap, minutes) and cached outside the repo.
if [ "$what" != unit ] && [ -f scripts/lab.ts ]; then
  npx tsx scripts/lab.ts cache
fi
