#!/bin/bash
# pop-launch.sh plain|systemd N BASE POPDIR : becomes a lab POP (started by pop.ts in a private mount namespace).
#   plain:   run as `ip netns exec lab-popN unshare --mount --pid --uts --fork --kill-child pop-launch.sh …`;
#            this shell is the POP's PID 1 and execs `chroot ROOT sshd -D`.
#   systemd: run as `unshare --mount --fork --kill-child pop-launch.sh …` (NOT under `ip netns exec`: it remounts
#            /sys without the cgroup mounts nspawn needs); execs `systemd-nspawn --boot` on the POP's netns.
# Every mount is made in the private mount namespace, so they all vanish when the POP dies; none reach the host.
set -euo pipefail
MODE=$1; N=$2; BASE=$3; D=$4; R=$D/root
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$D/upper,workdir=$D/work" "$R"

# Per-POP identity, written through the overlay (never into the upper dir behind overlayfs' back).
echo "pop$N" > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.99.0.%s\tpop%s\n' $((10 + N)) "$N" > "$R/etc/hosts"
cat "$D/machine-id" > "$R/etc/machine-id"
for k in "$D"/ssh/ssh_host_*; do install -m "$([ "${k%.pub}" = "$k" ] && echo 600 || echo 644)" "$k" "$R/etc/ssh/"; done
install -m600 "$D/authorized_keys" "$R/root/.ssh/authorized_keys"
install -m600 -o 1000 -g 1000 "$D/authorized_keys" "$R/home/pop/.ssh/authorized_keys"

case $MODE in
plain)
  # containerd's overlayfs snapshotter cannot put its upper dirs on an overlay root: real directories here.
  mount --bind "$D/persist/rancher" "$R/var/lib/rancher"
  mount --bind "$D/persist/containerd" "$R/var/lib/containerd"
  mount -t proc proc "$R/proc"
  mount -t sysfs sysfs "$R/sys"
  mount -t tmpfs -o mode=755 tmpfs "$R/sys/fs/cgroup"
  mkdir "$R/sys/fs/cgroup/unified"; mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup/unified" 2>/dev/null || true
  mount -o remount,bind,ro "$R/sys" 2>/dev/null || true
  mount -t tmpfs -o mode=755,size=64m tmpfs "$R/dev"
  for d in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0"; do
    set -- $d; mknod -m 666 "$R/dev/$1" "$2" "$3" "$4"
  done
  mkdir "$R/dev/pts" "$R/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
  ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
  ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
  mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
  mount -t tmpfs -o mode=755,size=512m tmpfs "$R/run"; mkdir -m755 "$R/run/sshd"
  mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
  hostname "pop$N"
  # sshd -D is PID 1 of the POP's pid namespace: it reaps its sessions and any daemon an installer leaves behind.
  exec chroot "$R" /usr/sbin/sshd -D -e
  ;;
systemd)
  # nspawn --keep-unit makes payload/supervisor cgroups under its own cgroup: give every POP its own parent.
  for h in systemd unified; do
    mkdir -p "/sys/fs/cgroup/$h/lab-pop$N"; echo $$ > "/sys/fs/cgroup/$h/lab-pop$N/cgroup.procs"
  done
  # keep a handle on the netns, then hide the host's /run (nspawn writes /run/systemd/nspawn state there)
  mount --bind "/run/netns/lab-pop$N" "$D/netns"
  mount -t tmpfs -o mode=755 tmpfs /run
  exec systemd-nspawn --quiet --register=no --keep-unit "--machine=pop$N" -D "$R" --boot \
    "--network-namespace-path=$D/netns" --console=read-only \
    "--bind=$D/persist/rancher:/var/lib/rancher" "--bind=$D/persist/containerd:/var/lib/containerd"
  ;;
*) echo "pop-launch.sh: unknown mode $MODE" >&2; exit 2 ;;
esac
