// One site, end to end: the library call behind `fsm-edge install`, `fsm-edge register`, the wizard and (later)
// the fleet rollout. Builds the context (bundle read, hub client), runs the phases on a Host, writes the site
// record, closes what it opened. Never prints: progress goes to `onEvent`.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Hub } from '../config/hub.js';
import type { Site } from '../config/site.js';
import { resolveSecret } from '../config/secret.js';
import { readBundleDoc } from '../bundle/format.js';
import { BUNDLE_FILE } from '../bundle/layout.js';
import { HubKube } from '../kube/hub.js';
import type { Host } from '../transport/host.js';
import type { InstallContext, InstallOptions } from './context.js';
import { factsPhase } from './facts.js';
import { preflightPhase } from './preflight.js';
import { syncPhase } from './sync.js';
import { k3sPhase } from './k3s.js';
import { meshPhase } from './mesh.js';
import { interceptionPhase } from './interception.js';
import { registerPhase } from './register.js';
import { recordPhase, saveSiteRecord } from './record.js';
import { runPhases, type InstallPhase, type RunEvent, type RunReport } from '../engine/runner.js';
import type { SiteRecord } from '../state/site-record.js';

export const INSTALL_PHASES: InstallPhase<InstallContext>[] = [
  factsPhase,
  preflightPhase,
  syncPhase,
  k3sPhase,
  meshPhase,
  interceptionPhase,
  registerPhase,
  recordPhase,
];

export const REGISTER_PHASES: InstallPhase<InstallContext>[] = [registerPhase, recordPhase];

export const DEFAULT_OPTIONS: Omit<InstallOptions, 'dryRun' | 'trustKeys'> = {
  k3sStartTimeoutMs: 300_000,
  meshTimeoutMs: 600_000,
  registerTimeoutMs: 180_000,
};

export interface SiteRunRequest {
  site: Site;
  hub?: Hub;
  /** Directory of the Site file (relative secret paths). */
  configDir: string;
  bundleDir?: string;
  options: InstallOptions;
  host: Host;
  /** Pins accepted on this connection, recorded with the site. */
  newHostKeys?: string[];
  onEvent?: (ev: RunEvent) => void;
  signal?: AbortSignal;
}

export interface SiteRunResult {
  report: RunReport;
  record?: SiteRecord;
  ctx: InstallContext;
}

export function openHub(hub: Hub, configDir: string, env: NodeJS.ProcessEnv = process.env): HubKube {
  const text = resolveSecret(hub.spec.kubeconfig, configDir, env);
  return HubKube.fromKubeconfig(text, hub.spec.context);
}

export function readBundle(dir: string): NonNullable<InstallContext['bundle']> {
  const doc = readBundleDoc(dir);
  const digest = 'sha256:' + createHash('sha256').update(readFileSync(path.join(dir, BUNDLE_FILE))).digest('hex');
  return { dir, doc, digest };
}

async function runSite(req: SiteRunRequest, operation: 'install' | 'register', phases: InstallPhase<InstallContext>[]): Promise<SiteRunResult> {
  const ctx: InstallContext = {
    site: req.site,
    ...(req.hub ? { hub: req.hub } : {}),
    configDir: req.configDir,
    ...(req.bundleDir ? { bundle: readBundle(req.bundleDir) } : {}),
    options: req.options,
    metrics: {},
    installed: {},
  };
  if (req.hub && req.site.spec.hub) ctx.hubKube = openHub(req.hub, req.configDir);
  try {
    const report = await runPhases(phases, ctx, req.host, {
      site: req.site.metadata.name,
      operation,
      dryRun: req.options.dryRun,
      ...(ctx.bundle ? { bundleDigest: ctx.bundle.digest } : {}),
      ...(req.onEvent ? { onEvent: req.onEvent } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
    const record = saveSiteRecord(ctx, report, req.newHostKeys ?? []);
    return { report, ...(record ? { record } : {}), ctx };
  } finally {
    await ctx.popKube?.close();
  }
}

export function installSite(req: SiteRunRequest): Promise<SiteRunResult> {
  if (!req.bundleDir) throw new Error('install needs a bundle directory');
  return runSite(req, 'install', INSTALL_PHASES);
}

export function registerSite(req: SiteRunRequest): Promise<SiteRunResult> {
  return runSite(req, 'register', REGISTER_PHASES);
}
