// Re-registration after a recovery: the same `Cluster` (same name, server-side apply: never a second one),
// re-applied once with what the recovered POP is now — its address (a replacement may have a new one) and its CA
// and token read afresh — then Managed again. The install's register phase does the work; this only makes sure it
// does not trust a Managed=True that the hub still shows from before the POP died.

import { definePhase, type AnyPhase, type Phase } from '../engine/phase.js';
import type { InstallContext } from '../install/context.js';
import { registerPhase } from '../install/register.js';
import { RESTORE_PHASE_ID } from './check.js';

interface ClusterLive {
  cluster?: { exists: boolean; managed: boolean; fieldsMatch: boolean };
}

/** Whether the journal shows a registration newer than the restore (this recovery already re-registered). */
export function registeredSinceRestore(ctx: InstallContext): boolean {
  const restored = ctx.journal?.phases[RESTORE_PHASE_ID]?.finishedAt;
  const registered = ctx.journal?.phases[registerPhase.id]?.finishedAt;
  return Boolean(registered && (!restored || registered >= restored));
}

const base = registerPhase as Phase<InstallContext, unknown, ClusterLive>;

export const reRegisterPhase: AnyPhase<InstallContext> = definePhase<InstallContext, unknown, ClusterLive>({
  ...base,
  async check(ctx, prep, env) {
    const live = await base.check(ctx, prep, env);
    // The hub's view predates the recovery: its Cluster must be re-applied (new address, CA, token) and re-joined.
    if (live.cluster?.exists && !registeredSinceRestore(ctx)) live.cluster = { ...live.cluster, fieldsMatch: false };
    return live;
  },
});
