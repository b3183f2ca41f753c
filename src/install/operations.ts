// The install and register operations: their phases, the per-site context, and the site record written after
// each run. Both run through the engine's `runSites`, which `fsm-edge install`, `register` and the wizard call.

import type { AnyPhase } from '../engine/phase.js';
import type { SiteOperation } from '../engine/run-sites.js';
import type { SiteRecord } from '../state/site-record.js';
import type { InstallContext, InstallOptions } from './context.js';
import { backupTimerPhase } from './backup-timer.js';
import { factsPhase } from './facts.js';
import { interceptionPhase } from './interception.js';
import { k3sPhase } from './k3s.js';
import { meshPhase } from './mesh.js';
import { preflightPhase } from './preflight.js';
import { recordPhase, saveSiteRecord } from './record.js';
import { registerPhase } from './register.js';
import { syncPhase } from './sync.js';

export const INSTALL_PHASES: AnyPhase<InstallContext>[] = [
  factsPhase,
  preflightPhase,
  syncPhase,
  k3sPhase,
  meshPhase,
  interceptionPhase,
  registerPhase,
  recordPhase,
  backupTimerPhase,
];

export const REGISTER_PHASES: AnyPhase<InstallContext>[] = [registerPhase, recordPhase];

function operation(
  name: 'install' | 'register',
  phases: AnyPhase<InstallContext>[],
  options: InstallOptions,
): SiteOperation<InstallContext> {
  return {
    name,
    phases,
    needsBundle: name === 'install',
    context: (t, shared) => ({
      site: t.site,
      ...(t.hub ? { hub: t.hub } : {}),
      configDir: t.configDir,
      ...(shared.bundle ? { bundle: shared.bundle } : {}),
      ...(t.hub && t.site.spec.hub ? { hubKube: shared.hubs.get(t.hub, t.configDir) } : {}),
      options,
      metrics: {},
      installed: {},
    }),
    onJournal: (ctx, journal) => {
      ctx.journal = journal;
    },
    onSuccess: (ctx, journal) => {
      // The POP now runs this bundle: later runs refuse an older one (see preflight's downgrade check).
      if (name !== 'install' || !ctx.bundle || journal.bundle?.digest === ctx.bundle.digest) return;
      const { serial, createdAt } = ctx.bundle.doc.build;
      journal.bundle = { name: ctx.bundle.doc.name, digest: ctx.bundle.digest, serial, createdAt, installedAt: new Date().toISOString() };
    },
    finish: (ctx, report, pins): SiteRecord | undefined => saveSiteRecord(ctx, report, [...pins]),
    close: async (ctx) => {
      await ctx.popKube?.close();
    },
  };
}

export const installOperation = (options: InstallOptions) => operation('install', INSTALL_PHASES, options);
export const registerOperation = (options: InstallOptions) => operation('register', REGISTER_PHASES, options);
