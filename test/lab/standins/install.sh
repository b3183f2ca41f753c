#!/bin/bash
# ---------------------------------------------------------------------------------------------------------------
# STAND-IN for k3s's install.sh (https://get.k3s.io) — fsm-edge lab only, never shipped by fsm-edge.
#
# The real script cannot be downloaded in this environment. This stand-in behaves like the real one for the
# paths an airgapped installer uses, so that the installer meets the same files, exit codes and messages:
#   INSTALL_K3S_SKIP_DOWNLOAD (true|binary|selinux), INSTALL_K3S_SKIP_START, INSTALL_K3S_SKIP_ENABLE,
#   INSTALL_K3S_FORCE_RESTART, INSTALL_K3S_EXEC (+ script args), INSTALL_K3S_BIN_DIR, INSTALL_K3S_BIN_DIR_READ_ONLY,
#   INSTALL_K3S_SYSTEMD_DIR, INSTALL_K3S_NAME, INSTALL_K3S_TYPE, INSTALL_K3S_SYMLINK (skip|force),
#   INSTALL_K3S_VERSION/CHANNEL/CHANNEL_URL (only to fail like the real script does offline),
#   K3S_URL (must be https://, implies agent and needs K3S_TOKEN or K3S_TOKEN_FILE), and every K3S_*, CONTAINERD_*
#   and *_PROXY variable, which is written to the service's env file (mode 0600).
# It never downloads anything: without INSTALL_K3S_SKIP_DOWNLOAD it fails the way the real script fails on a host
# with no internet ("Download failed"). Only systemd hosts are supported (the lab's POPs); openrc is refused.
# ---------------------------------------------------------------------------------------------------------------
set -e
set -o noglob

GITHUB_URL=${GITHUB_URL:-https://github.com/k3s-io/k3s/releases}

info() { echo '[INFO] ' "$@"; }
warn() { echo '[WARN] ' "$@" >&2; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

find_supervisor() {
    if [ -x /sbin/openrc-run ]; then
        fatal 'openrc host: the fsm-edge install.sh stand-in only implements the systemd path'
    fi
    if [ -x /bin/systemctl ] || type systemctl >/dev/null 2>&1; then
        HAS_SYSTEMD=true
        return
    fi
    fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
}

# One argument per line, each single-quoted for the unit's ExecStart (systemd understands '…' quoting).
quote_arg() { printf '%s\n' "$1" | sed "s/'/'\\\\''/g;1s/^/'/;\$s/\$/'/"; }
exec_lines() {
    printf ' \\\n'
    for a in "$@"; do printf '\t%s \\\n' "$(quote_arg "$a")"; done
}

setup_env() {
    case "$1" in
        -*|"")
            if [ -z "${K3S_URL}" ]; then
                CMD_K3S=server
            else
                if [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
                    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
                fi
                CMD_K3S=agent
            fi
            ;;
        *)
            CMD_K3S=$1
            shift
            ;;
    esac
    case "${K3S_URL}" in
        ""|https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
    esac
    CMD_K3S_EXEC="${CMD_K3S}$(exec_lines "$@")"

    if [ -n "${INSTALL_K3S_NAME}" ]; then
        SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "${CMD_K3S}" = server ]; then
        SYSTEM_NAME=k3s
    else
        SYSTEM_NAME=k3s-${CMD_K3S}
    fi
    if printf '%s' "${SYSTEM_NAME}" | grep -q '[][!#$%&()*;<=>?\_`{|}/[:space:]]'; then
        fatal "Invalid characters for system name: ${SYSTEM_NAME}"
    fi

    SUDO=sudo
    [ "$(id -u)" -eq 0 ] && SUDO=

    SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}

    if [ -n "${INSTALL_K3S_BIN_DIR}" ]; then
        BIN_DIR=${INSTALL_K3S_BIN_DIR}
    else
        BIN_DIR=/usr/local/bin
        if ! $SUDO sh -c "touch ${BIN_DIR}/k3s-ro-test && rm -rf ${BIN_DIR}/k3s-ro-test" 2>/dev/null; then
            [ -d /opt/bin ] && BIN_DIR=/opt/bin
        fi
    fi
    SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}

    SERVICE_K3S=${SYSTEM_NAME}.service
    UNINSTALL_K3S_SH=${UNINSTALL_K3S_SH:-${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh}
    KILLALL_K3S_SH=${KILLALL_K3S_SH:-${BIN_DIR}/k3s-killall.sh}
    FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SERVICE_K3S}
    FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env

    PRE_INSTALL_HASHES=$(installed_hashes)

    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && INSTALL_K3S_SKIP_DOWNLOAD=true
    INSTALL_K3S_CHANNEL_URL=${INSTALL_K3S_CHANNEL_URL:-'https://update.k3s.io/v1-release/channels'}
    INSTALL_K3S_CHANNEL=${INSTALL_K3S_CHANNEL:-'stable'}
}

installed_hashes() {
    $SUDO sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true
}

skip_binary_download() { [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = true ] || [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = binary ]; }

arch_suffix() {
    ARCH=${ARCH:-$(uname -m)}
    case $ARCH in
        amd64|x86_64) ARCH=amd64; SUFFIX= ;;
        arm64|aarch64) ARCH=arm64; SUFFIX=-arm64 ;;
        s390x) SUFFIX=-s390x ;;
        arm*) ARCH=arm; SUFFIX=-armhf ;;
        *) fatal "Unsupported architecture $ARCH" ;;
    esac
}

# The real script downloads the binary and its hash here. This stand-in never touches the network; it reports
# exactly what the real script reports when github.com / update.k3s.io cannot be reached.
download_and_verify() {
    if skip_binary_download; then
        info 'Skipping k3s download and verify'
        [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
        return
    fi
    arch_suffix
    command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || fatal 'Can not find curl or wget for downloading files'
    if [ -n "${INSTALL_K3S_VERSION}" ]; then
        VERSION_K3S=${INSTALL_K3S_VERSION}
    else
        info "Finding release for channel ${INSTALL_K3S_CHANNEL}"
        echo "curl: (6) Could not resolve host: ${INSTALL_K3S_CHANNEL_URL#https://}" | cut -d/ -f1 >&2
        VERSION_K3S=${INSTALL_K3S_CHANNEL}
    fi
    info "Using ${VERSION_K3S} as release"
    info "Downloading hash ${GITHUB_URL}/download/${VERSION_K3S}/sha256sum-${ARCH}.txt"
    fatal 'Download failed'
}

selinux_step() {
    if [ "${INSTALL_K3S_SKIP_SELINUX_RPM}" = true ] || [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = true ] \
        || [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = selinux ] || [ ! -d /usr/share/selinux ]; then
        info 'Skipping installation of SELinux RPM'
        return
    fi
    fatal 'SELinux host: the fsm-edge install.sh stand-in does not install the k3s-selinux RPM'
}

create_symlinks() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    [ "${INSTALL_K3S_SYMLINK}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ ! -e "${BIN_DIR}/${cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
            found=$(command -v ${cmd} 2>/dev/null || true)
            if [ -z "${found}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
                info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
                $SUDO ln -sf k3s "${BIN_DIR}/${cmd}"
            else
                info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${found}"
            fi
        else
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
        fi
    done
}

create_killall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    info "Creating killall script ${KILLALL_K3S_SH}"
    $SUDO tee "${KILLALL_K3S_SH}" >/dev/null <<'KILLALL'
#!/bin/sh
# k3s-killall.sh (written by the fsm-edge install.sh STAND-IN): stops k3s and everything it started.
[ $(id -u) -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR $0 $@
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
set -x
for service in /etc/systemd/system/k3s*.service; do
    [ -s $service ] && systemctl stop $(basename $service)
done
descendants() { for c in $(ps -e -o ppid= -o pid= | awk -v p="$1" '$1==p{print $2}'); do echo $c; descendants $c; done; }
{ set +x; } 2>/dev/null
pids=$(ps -e -o pid= -o args= | awk '/\/run\/k3s\/containerd|containerd-shim/ && !/awk/ {print $1}')
for p in $pids; do echo $p; descendants $p; done | xargs -r kill -9 2>/dev/null
set -x
while read -r _ path _; do case "$path" in /run/k3s*|/var/lib/kubelet/pods*|/var/lib/kubelet/plugins*|/run/netns/cni-*) echo "$path";; esac; done < /proc/self/mounts \
    | sort -r | xargs -r -n 1 sh -c 'umount -f "$0" && rm -rf "$0"'
rm -rf /run/k3s
for i in cni0 flannel.1 flannel-v6.1 kube-ipvs0 flannel-wg flannel-wg-v6; do ip link delete $i 2>/dev/null; done
rm -rf /var/lib/cni/
if command -v iptables-save >/dev/null && command -v iptables-restore >/dev/null; then
    iptables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore
fi
true
KILLALL
    $SUDO chmod 755 "${KILLALL_K3S_SH}"
    $SUDO chown root:root "${KILLALL_K3S_SH}"
}

create_uninstall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    $SUDO tee "${UNINSTALL_K3S_SH}" >/dev/null <<UNINSTALL
#!/bin/sh
# ${SYSTEM_NAME}-uninstall.sh (written by the fsm-edge install.sh STAND-IN): removes k3s and ALL its data.
set -x
[ \$(id -u) -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR \$0 \$@
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}
${KILLALL_K3S_SH}
if command -v systemctl; then
    systemctl disable ${SYSTEM_NAME}
    systemctl reset-failed ${SYSTEM_NAME}
    systemctl daemon-reload
fi
rm -f ${FILE_K3S_SERVICE}
rm -f ${FILE_K3S_ENV}
trap 'rm -f ${UNINSTALL_K3S_SH}' EXIT
if ls ${SYSTEMD_DIR}/k3s*.service >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi
for cmd in kubectl crictl ctr; do
    [ -L ${BIN_DIR}/\$cmd ] && rm -f ${BIN_DIR}/\$cmd
done
rm -rf /etc/rancher/k3s /run/k3s /run/flannel \${K3S_DATA_DIR} /var/lib/kubelet
rm -f ${BIN_DIR}/k3s
rm -f ${KILLALL_K3S_SH}
UNINSTALL
    $SUDO chmod 755 "${UNINSTALL_K3S_SH}"
    $SUDO chown root:root "${UNINSTALL_K3S_SH}"
}

systemd_disable() {
    $SUDO systemctl disable ${SYSTEM_NAME} >/dev/null 2>&1 || true
    $SUDO rm -f /etc/systemd/system/${SERVICE_K3S} || true
    $SUDO rm -f /etc/systemd/system/${SERVICE_K3S}.env || true
}

# K3S_*, CONTAINERD_* and proxy variables, as NAME='value' lines (the form `export` prints them in).
create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    $SUDO mkdir -p "${SYSTEMD_DIR}"
    $SUDO touch "${FILE_K3S_ENV}"
    $SUDO chmod 0600 "${FILE_K3S_ENV}"
    { sh -c export | while read -r _ v; do echo "$v"; done | grep -E '^(K3S|CONTAINERD)_' || true
      sh -c export | while read -r _ v; do echo "$v"; done | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' || true
    } | $SUDO tee "${FILE_K3S_ENV}" >/dev/null
}

create_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    $SUDO tee "${FILE_K3S_SERVICE}" >/dev/null <<UNIT
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${SYSTEMD_TYPE}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_K3S_ENV}
KillMode=process
Delegate=yes
User=root
# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN_DIR}/k3s \\
    ${CMD_K3S_EXEC}

UNIT
}

enable_and_start() {
    if ! grep -qs memory /sys/fs/cgroup/cgroup.controllers \
        && ! [ "$(grep -s memory /proc/cgroups | while read -r _ _ _ enabled; do echo $enabled; done)" = 1 ]; then
        info 'Failed to find memory cgroup, you may need to add "cgroup_memory=1 cgroup_enable=memory" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)'
    fi
    [ "${INSTALL_K3S_SKIP_ENABLE}" = true ] && return

    info "systemd: Enabling ${SYSTEM_NAME} unit"
    $SUDO systemctl enable "${FILE_K3S_SERVICE}" >/dev/null
    $SUDO systemctl daemon-reload >/dev/null

    [ "${INSTALL_K3S_SKIP_START}" = true ] && return

    POST_INSTALL_HASHES=$(installed_hashes)
    if [ "${PRE_INSTALL_HASHES}" = "${POST_INSTALL_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    for xt in iptables ip6tables; do
        if $SUDO sh -c "command -v $xt-save && command -v $xt-restore" >/dev/null 2>&1; then
            $SUDO $xt-save 2>/dev/null | grep -v KUBE- | grep -iv flannel | $SUDO $xt-restore || true
        fi
    done
    info "systemd: Starting ${SYSTEM_NAME}"
    $SUDO systemctl restart ${SYSTEM_NAME}
}

# INSTALL_K3S_EXEC is split into words honouring its quotes but with shell punctuation escaped (so `$`, `;`, `*`
# stay literal, as in the real script), then the script's own arguments follow.
escape_punct() { printf '%s' "$1" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'; }
quoted_args() { for a in "$@"; do quote_arg "$a"; done; }
eval set -- $(escape_punct "${INSTALL_K3S_EXEC}") $(quoted_args "$@")

find_supervisor
setup_env "$@"
download_and_verify
selinux_step
create_symlinks
create_killall
create_uninstall
systemd_disable
create_env_file
create_service_file
enable_and_start
