// Every path fsm-edge reads or writes on a POP, in one place. The few that the bundle format itself fixes (what
// assemble.sh may write: the k3s binary, install.sh, image archives, charts, and the blob store) are defined
// next to that script's rules in bundle/layout.ts and re-exported here; transport takes its paths as arguments.

import {
  POP_INSTALL_SCRIPT,
  POP_K3S_BINARY,
  POP_K3S_IMAGES_DIR,
  POP_STATE_DIR,
  POP_STATIC_CHARTS_DIR,
  POP_STORE_DIR,
} from '../bundle/layout.js';
import { POP_LOCK_PATH, popLockPaths } from '../transport/pop-paths.js';

/** fsm-edge's own state on the POP: journal, lock, blob store, assembly plan. */
export { POP_INSTALL_SCRIPT, POP_STATE_DIR, POP_STORE_DIR };

export const POP_JOURNAL = `${POP_STATE_DIR}/journal.json`;
/** flock(1) target held for the whole run by one channel; the holder is described next to it (`.owner`). */
export const POP_LOCK = POP_LOCK_PATH;
export const POP_LOCK_OWNER = popLockPaths().owner;
/** What assemble.sh makes from the store (k3s binary, install.sh, image archives, chart), as last planned. */
export const POP_ASSEMBLE_PLAN = `${POP_STATE_DIR}/assemble.plan`;

/** k3s, where install.sh and k3s itself put things. */
export const K3S_BINARY = POP_K3S_BINARY;
export const K3S_ETC_DIR = '/etc/rancher/k3s';
export const K3S_CONFIG_PATH = `${K3S_ETC_DIR}/config.yaml`;
export const K3S_REGISTRIES_PATH = `${K3S_ETC_DIR}/registries.yaml`;
/** The server token (generated on the POP, 0600; never crosses the link except into the encrypted escrow). */
export const K3S_TOKEN_PATH = `${K3S_ETC_DIR}/cluster-token`;
export const K3S_KUBECONFIG_PATH = `${K3S_ETC_DIR}/k3s.yaml`;
export const K3S_SYSTEMD_UNIT = '/etc/systemd/system/k3s.service';
export const K3S_DATA_DIR = '/var/lib/rancher/k3s';
export const K3S_IMAGES_DIR = POP_K3S_IMAGES_DIR;
export const K3S_STATIC_CHARTS_DIR = POP_STATIC_CHARTS_DIR;
export const K3S_MANIFESTS_DIR = `${K3S_DATA_DIR}/server/manifests`;
/** Stable CNI bin dir (k3s PR #10868); xnet's chained CNI plugin is installed next to k3s's own plugins. */
export const K3S_CNI_BIN_DIR = `${K3S_DATA_DIR}/data/cni`;
export const K3S_CNI_NETD_DIR = `${K3S_DATA_DIR}/agent/etc/cni/net.d`;

/** The HelmChart manifest the mesh phase writes for k3s's deploy controller. */
export const FSM_MANIFEST_PATH = `${K3S_MANIFESTS_DIR}/fsm-edge-fsm.yaml`;

/**
 * What an upgrade keeps of the version it replaces, to go back to when the new one never works: the k3s binary
 * (and its version), the FSM HelmChart manifest and the chart archive it names. Taken before the new ones are
 * assembled; a half-done upgrade never overwrites it (see the k3s phase's keep step).
 */
export const POP_PREVIOUS_DIR = `${POP_STATE_DIR}/previous`;
export const POP_PREVIOUS_K3S = `${POP_PREVIOUS_DIR}/k3s`;
export const POP_PREVIOUS_K3S_VERSION = `${POP_PREVIOUS_DIR}/k3s.version`;
export const POP_PREVIOUS_FSM_MANIFEST = `${POP_PREVIOUS_DIR}/fsm-edge-fsm.yaml`;
export const POP_PREVIOUS_CHARTS_DIR = `${POP_PREVIOUS_DIR}/charts`;
