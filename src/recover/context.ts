// What the recovery phases share: the install's context (the same phases bring k3s and FSM up) plus the opened
// backup and the operator's explicit choices.

import type { InstallContext } from '../install/context.js';
import type { RecoveryBackup } from './backup-entries.js';

export interface RecoveryInput {
  backup: RecoveryBackup;
  /** The operator named both sites: restore a backup taken of another site under this site's name. */
  allowOtherSite: boolean;
}

export interface RecoverContext extends InstallContext {
  recovery: RecoveryInput;
  /** Bytes of restored files carried in change batches (the datastore, the secrets). */
  restoreWireBytes?: number;
}

export function recoveryOf(ctx: InstallContext): RecoveryInput {
  const r = (ctx as Partial<RecoverContext>).recovery;
  if (!r) throw new Error('internal: not a recovery context');
  return r;
}
