// Before anything changes: is this backup for this site, this POP and this bundle, and is the POP's k3s really
// gone (or left half-restored by a recovery of this same backup)? Every refusal names what differs and the way on.

import { definePhase, PhaseRefusal } from '../engine/phase.js';
import { inputsDigest } from '../engine/journal.js';
import { bundleOf, type InstallContext } from '../install/context.js';
import { K3S_DB_DIR, POP_RESTORE_MARKER, type RecoveryBackup, restoreFiles } from './backup-entries.js';
import { recoveryOf } from './context.js';

export const RESTORE_PHASE_ID = 'restore';

/** What the restore phase's journal entry depends on: this backup file. */
export const restoreInputs = (b: RecoveryBackup) => ({ backup: b.sha256, datastore: b.manifest.k3s.datastore });

/** `v1.37.1+k3s1` → [1, 37, 1, 1]. */
function versionKey(v: string): number[] {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)] : [];
}

export function olderVersion(a: string, b: string): boolean {
  const x = versionKey(a);
  const y = versionKey(b);
  if (!x.length || !y.length) return false;
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! < y[i]!;
  return false;
}

/** Pure: the refusals that depend only on the backup, the site and the bundle (no POP needed). */
export function backupRefusal(ctx: InstallContext): PhaseRefusal | undefined {
  const { backup, allowOtherSite } = recoveryOf(ctx);
  const m = backup.manifest;
  const site = ctx.site.metadata.name;
  if (m.site !== site && !allowOtherSite) {
    return new PhaseRefusal(
      'recover-check',
      `backup ${backup.file} is of site "${m.site}", not "${site}"`,
      `recover site "${m.site}" from it, or pass --allow-other-site to restore site "${m.site}"'s data as "${site}"`,
    );
  }
  if (m.k3s.datastore !== ctx.site.spec.k3s.datastore) {
    return new PhaseRefusal(
      'recover-check',
      `backup ${backup.file} holds a ${m.k3s.datastore} datastore, but site "${site}" says spec.k3s.datastore: ${ctx.site.spec.k3s.datastore}`,
      `set spec.k3s.datastore: ${m.k3s.datastore} in the site file (k3s restores a datastore only into the same kind)`,
    );
  }
  const k3s = bundleOf(ctx).doc.versions.k3s;
  if (olderVersion(k3s, m.k3s.version)) {
    return new PhaseRefusal(
      'recover-check',
      `the bundle has k3s ${k3s}, older than the k3s ${m.k3s.version} that wrote this backup (k3s does not downgrade a datastore)`,
      `recover with a bundle of k3s ${m.k3s.version} or newer`,
    );
  }
  // Every entry recovery needs is there and well-formed (a refusal names the entry).
  try {
    restoreFiles(backup);
  } catch (e) {
    if (e instanceof PhaseRefusal) return e;
    throw e;
  }
  return undefined;
}

export const RECOVER_CHECK_PROBE = `
if [ -d ${K3S_DB_DIR} ] && [ -n "$(ls -A ${K3S_DB_DIR} 2>/dev/null)" ]; then echo datastore=1; else echo datastore=0; fi
echo "marker=$(cat ${POP_RESTORE_MARKER} 2>/dev/null)"
echo "active=$(systemctl is-active k3s 2>/dev/null)"
`;

export interface RecoverCheckLive {
  datastore: boolean;
  marker: string;
  active: boolean;
  /** The journal says this backup was already restored here. */
  restored: boolean;
}

export function parseRecoverCheck(out: string): Omit<RecoverCheckLive, 'restored'> {
  const kv = new Map(
    out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  return { datastore: kv.get('datastore') === '1', marker: kv.get('marker') ?? '', active: kv.get('active') === 'active' };
}

export const recoverCheckPhase = definePhase<InstallContext, undefined, RecoverCheckLive>({
  id: 'recover-check',
  title: 'check the backup against the site and the POP',
  always: true,
  probe: () => RECOVER_CHECK_PROBE,
  async check(ctx, _prep, env) {
    const refusal = backupRefusal(ctx);
    if (refusal) throw refusal;
    const { backup } = recoveryOf(ctx);
    const live = parseRecoverCheck(env.probe);
    const restored = ctx.journal?.phases[RESTORE_PHASE_ID]?.inputs === inputsDigest(restoreInputs(backup));
    if (live.datastore && !restored && live.marker !== backup.sha256) {
      throw new PhaseRefusal(
        'recover-check',
        `the POP already has a k3s datastore in ${K3S_DB_DIR}${live.active ? ' and k3s is running' : ''}; recovery restores only onto a POP whose k3s or its data is gone`,
        'if this datastore is the broken one, remove it first (k3s-uninstall.sh on the POP), then run recover again; if k3s works, do not recover',
      );
    }
    return { ...live, restored };
  },
  plan: () => [],
  describe(ctx, _prep, live) {
    const m = recoveryOf(ctx).backup.manifest;
    const arch = ctx.facts?.arch;
    return {
      summary:
        `backup of ${m.site} from ${m.createdAt} (k3s ${m.k3s.version}, ${m.k3s.datastore}, ${m.k3s.arch})` +
        (arch && arch !== m.k3s.arch ? ` onto a ${arch} POP` : '') +
        (live.restored ? '; already restored here' : live.marker ? '; a recovery of it was interrupted here' : ''),
      ...(m.site !== ctx.site.metadata.name
        ? { warnings: [`restoring site "${m.site}"'s backup as site "${ctx.site.metadata.name}"`] }
        : {}),
    };
  },
});
