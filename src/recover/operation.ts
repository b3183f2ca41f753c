// The recover operation: the install's phases with the restore in front of k3s's first start, journaled as
// operation `restore`. A killed recovery re-runs to the end: each phase re-reads the POP, the restore phases skip
// what the journal says they finished, and the check lets a re-run overwrite only what this same backup began.

import type { AnyPhase } from '../engine/phase.js';
import type { SiteOperation } from '../engine/run-sites.js';
import type { InstallOptions } from '../install/context.js';
import { backupTimerPhase } from '../install/backup-timer.js';
import { factsPhase } from '../install/facts.js';
import { interceptionPhase } from '../install/interception.js';
import { k3sPhase } from '../install/k3s.js';
import { meshPhase } from '../install/mesh.js';
import { installOperation } from '../install/operations.js';
import { preflightPhase } from '../install/preflight.js';
import { recordPhase } from '../install/record.js';
import { syncPhase } from '../install/sync.js';
import { recoverCheckPhase } from './check.js';
import type { RecoverContext, RecoveryInput } from './context.js';
import { reRegisterPhase } from './register.js';
import { etcdRestorePhase, restoreCleanupPhase, restorePhase } from './restore.js';

export const RECOVER_OPERATION = 'restore';

export const RECOVER_PHASES: AnyPhase<RecoverContext>[] = [
  factsPhase,
  recoverCheckPhase,
  preflightPhase,
  syncPhase,
  restorePhase,
  etcdRestorePhase,
  k3sPhase,
  meshPhase,
  interceptionPhase,
  reRegisterPhase,
  restoreCleanupPhase,
  recordPhase,
  // A recovered POP keeps taking its scheduled backups.
  backupTimerPhase,
];

/** `fsm-edge recover` as an engine operation: give it to runSites with one target (SSH or a LocalHost). */
export function recoverOperation(options: InstallOptions, recovery: RecoveryInput): SiteOperation<RecoverContext> {
  const install = installOperation(options);
  return {
    name: RECOVER_OPERATION,
    phases: RECOVER_PHASES,
    needsBundle: true,
    context: (t, shared) => ({ ...install.context(t, shared), recovery }),
    onJournal: (ctx, journal) => {
      ctx.journal = journal;
    },
    onSuccess: (ctx, journal) => {
      if (!ctx.bundle || journal.bundle?.digest === ctx.bundle.digest) return;
      const { serial, createdAt } = ctx.bundle.doc.build;
      journal.bundle = { name: ctx.bundle.doc.name, digest: ctx.bundle.digest, serial, createdAt, installedAt: new Date().toISOString() };
    },
    ...(install.finish ? { finish: install.finish } : {}),
    ...(install.close ? { close: install.close } : {}),
  };
}
