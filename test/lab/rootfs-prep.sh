#!/bin/bash
# rootfs-prep.sh ROOT : stage 2 of a lab POP root filesystem — turn a debootstrapped tree into the read-only
# base every POP of that arch shares. Per-POP things (hostname, host keys, machine-id, authorized_keys) are
# written when a POP starts (pop-launch.sh), so one cached base serves every POP and every client key.
set -euo pipefail
R=$1
# debootstrap's openssh-server postinst generated host keys; POPs sharing them would defeat host-key pinning.
rm -f "$R"/etc/ssh/ssh_host_*
chroot "$R" /usr/sbin/useradd -m -u 1000 -s /bin/bash pop
echo 'pop ALL=(ALL) NOPASSWD:ALL' > "$R/etc/sudoers.d/pop"; chmod 440 "$R/etc/sudoers.d/pop"
install -d -m700 "$R/root/.ssh"; install -d -m700 -o 1000 -g 1000 "$R/home/pop/.ssh"
cat > "$R/etc/ssh/sshd_config.d/lab.conf" <<'EOC'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
UseDNS no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOC
# The build host's identity must not leak into POPs; the POP launcher writes its own.
: > "$R/etc/machine-id"; rm -f "$R/var/lib/dbus/machine-id"
echo pop > "$R/etc/hostname"; : > "$R/etc/resolv.conf"
printf '# lab POP: no disks to mount\n' > "$R/etc/fstab"
# A fresh edge host has no container runtime running: the k3s stand-in starts containerd itself, as k3s does.
# Periodic maintenance timers only burn the lab's two cores.
for u in containerd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer systemd-timesyncd.service getty@tty1.service; do
  ln -sfn /dev/null "$R/etc/systemd/system/$u"
done
rm -f "$R"/etc/systemd/system/multi-user.target.wants/containerd.service
# Mount points the launcher binds per-POP storage on (containerd cannot use overlayfs on an overlay root).
mkdir -p "$R/var/lib/rancher" "$R/var/lib/containerd"
# Under qemu-user (a foreign-arch root), systemd 252 cannot set up unit credentials ("Failed at step
# CREDENTIALS … Invalid argument"), so every unit with LoadCredential= fails and the POP boots "degraded".
# Nothing passes credentials to a lab POP: drop them there.
if [ "$(chroot "$R" dpkg --print-architecture)" != "$(dpkg --print-architecture)" ]; then
  for u in $(grep -l '^LoadCredential=' "$R"/lib/systemd/system/*.service); do
    mkdir -p "$R/etc/systemd/system/$(basename "$u").d"
    printf '# lab: qemu-user cannot set up credentials (see rootfs-prep.sh)\n[Service]\nLoadCredential=\n' \
      > "$R/etc/systemd/system/$(basename "$u").d/lab-no-credentials.conf"
  done
fi
