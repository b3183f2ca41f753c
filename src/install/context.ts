// What the install phases share: the Site (and Hub) as configured, the bundle as read and verified on the
// controller, and what earlier phases found or decided. Built by the CLI (or the wizard, or a fleet rollout)
// and handed to `runPhases`.

import type { Site } from '../config/site.js';
import type { Hub } from '../config/hub.js';
import type { ArchContent, BundleDoc } from '../bundle/format.js';
import type { BundleArch } from '../config/recipe.js';
import type { SyncProgress } from '../transport/host.js';
import type { Facts } from './facts.js';
import type { PopKube } from '../kube/pop.js';
import type { HubKube } from '../kube/hub.js';

export interface BundleRef {
  dir: string;
  doc: BundleDoc;
  /** sha256 of bundle.json (what the signature covers): the bundle's identity in journals and records. */
  digest: string;
  /** Set once the signature was checked on the controller against a trusted key. */
  verified?: { keyId: string };
}

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
  /** Public keys (PEM / OpenSSH ed25519) the bundle signature must verify against. */
  trustKeys: string[];
  /** Our own timeout for `k3s` start and readiness gates. */
  k3sStartTimeoutMs: number;
  meshTimeoutMs: number;
  registerTimeoutMs: number;
  onSyncProgress?: (p: SyncProgress) => void;
  /** Where the controller keeps site records and escrowed secrets. */
  stateDir?: string;
}

export interface InstallContext {
  site: Site;
  hub?: Hub;
  /** Directory of the file the Site came from (relative secret/key paths resolve against it). */
  configDir: string;
  /** The bundle being installed (absent for `register`, which needs none). */
  bundle?: BundleRef;
  options: InstallOptions;
  facts?: Facts;
  decisions?: Decisions;
  /** Open connections to the POP's and hub's Kubernetes APIs, created on first use and closed by the caller. */
  popKube?: PopKube;
  hubKube?: HubKube;
  /** What phases measured, for the site record. */
  metrics: Record<string, number>;
  /** Versions found installed on the POP at the end. */
  installed: { k3s?: string; fsm?: string; interception?: string };
  registration?: { state: 'managed' | 'pending' | 'failed'; reason?: string; clusterName?: string };
  hostKey?: string;
}

export const FSM_NAMESPACE_DEFAULT = 'fsm-system';

export function fsmNamespace(ctx: InstallContext): string {
  return ctx.hub?.spec.fsmNamespace ?? FSM_NAMESPACE_DEFAULT;
}

export function bundleOf(ctx: InstallContext): BundleRef {
  if (!ctx.bundle) throw new Error('internal: this operation needs a bundle');
  return ctx.bundle;
}

export function requireDecisions(ctx: InstallContext): Decisions {
  if (!ctx.decisions) throw new Error('internal: preflight has not run');
  return ctx.decisions;
}
