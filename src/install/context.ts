// What the install phases share. Given at the start (never optional afterwards): the Site and its Hub, the
// verified bundle, the options, and the run-wide resources (one hub client per Hub, one verification per
// bundle arch). Found by phases as they go: `facts` (facts phase), `decisions` (preflight) — read them through
// `factsOf`/`decisionsOf`, which say which phase should have run.

import type { ArchContent } from '../bundle/format.js';
import type { Hub } from '../config/hub.js';
import type { BundleArch } from '../config/recipe.js';
import type { Site } from '../config/site.js';
import type { Journal } from '../engine/journal.js';
import { K3S_KUBECONFIG_PATH } from '../engine/pop-layout.js';
import type { VerifiedBundleRef } from '../engine/shared-run.js';
import type { HubKube } from '../kube/hub.js';
import { PopKube } from '../kube/pop.js';
import type { Host, SyncProgress } from '../transport/host.js';
import type { Facts } from './host-facts.js';

export type { VerifiedBundleRef };

export interface Decisions {
  arch: BundleArch;
  content: ArchContent;
  interception: 'ebpf' | 'iptables';
  /** Why this interception mode (one line for the operator). */
  interceptionReason: string;
  hubReachable?: boolean;
}

export interface InstallOptions {
  dryRun: boolean;
  maxRate?: number;
  streams?: number;
  /** Our own timeout for `k3s` start and readiness gates. */
  k3sStartTimeoutMs: number;
  meshTimeoutMs: number;
  registerTimeoutMs: number;
  /** Sync progress, tagged with the site (a run syncs several POPs at once). */
  onSyncProgress?: (site: string, p: SyncProgress) => void;
  /** Where the controller keeps site records and escrowed secrets. */
  stateDir?: string;
  /** Install a bundle older than the one the POP's journal last installed. */
  allowDowngrade?: boolean;
}

export const DEFAULT_TIMEOUTS: Pick<InstallOptions, 'k3sStartTimeoutMs' | 'meshTimeoutMs' | 'registerTimeoutMs'> = {
  k3sStartTimeoutMs: 300_000,
  meshTimeoutMs: 600_000,
  registerTimeoutMs: 180_000,
};

export interface InstallContext {
  site: Site;
  hub?: Hub;
  /** Directory of the file the Site came from (relative secret/key paths resolve against it). */
  configDir: string;
  /** The verified bundle (absent for `register`, which needs none). */
  bundle?: VerifiedBundleRef;
  /** The hub's API client, shared by every site of the run that registers with this hub. */
  hubKube?: HubKube;
  options: InstallOptions;
  /** The POP's journal as read at the start of this run. */
  journal?: Journal;
  facts?: Facts;
  decisions?: Decisions;
  /** The POP's Kubernetes API, opened on first use by `popKubeOf` and closed by the operation. */
  popKube?: PopKube;
  /** What phases measured, for the site record. */
  metrics: Record<string, number>;
  /** Versions found installed on the POP at the end. */
  installed: { k3s?: string; fsm?: string; interception?: string };
  registration?: { state: 'managed' | 'pending' | 'failed'; reason?: string; clusterName?: string };
}

export const FSM_NAMESPACE_DEFAULT = 'fsm-system';

export function fsmNamespace(ctx: InstallContext): string {
  return ctx.hub?.spec.fsmNamespace ?? FSM_NAMESPACE_DEFAULT;
}

export function bundleOf(ctx: InstallContext): VerifiedBundleRef {
  if (!ctx.bundle) throw new Error('internal: this operation needs a bundle');
  return ctx.bundle;
}

export function factsOf(ctx: InstallContext): Facts {
  if (!ctx.facts) throw new Error('internal: the facts phase has not run');
  return ctx.facts;
}

export function decisionsOf(ctx: InstallContext): Decisions {
  if (!ctx.decisions) throw new Error('internal: preflight has not run');
  return ctx.decisions;
}

/** The POP's API through the SSH tunnel, opened once per run. */
export async function popKubeOf(ctx: InstallContext, host: Host): Promise<PopKube> {
  ctx.popKube ??= await PopKube.open(host, K3S_KUBECONFIG_PATH);
  return ctx.popKube;
}
