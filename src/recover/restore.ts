// Restoring what k3s needs before its first start (k3s-airgap notes §4.3/§4.4): the server token (k3s derives the
// key of the datastore's bootstrap data from it), the node password (k3s keeps its hash per node name in the
// datastore), and the datastore — SQLite's db files in place; an etcd snapshot staged for `--cluster-reset`.
// The install's k3s phase generates a token only when the token file is absent, so writing it here, before that
// phase, keeps k3s on the restored cluster's token. Secrets travel only inside the batch on stdin.

import { formatBytes } from '../bundle/inspect.js';
import { popAssembleCommand } from '../bundle/pop.js';
import { inputsDigest } from '../engine/journal.js';
import { definePhase, type PlannedChange, shellChange } from '../engine/phase.js';
import { K3S_BINARY, K3S_CONFIG_PATH, POP_ASSEMBLE_PLAN, POP_STORE_DIR } from '../engine/pop-layout.js';
import { writeFileScript } from '../engine/script-batch.js';
import type { InstallContext } from '../install/context.js';
import { k3sFiles } from '../install/k3s.js';
import { K3S_DB_DIR, POP_RESTORE_DIR, POP_RESTORE_MARKER, POP_RESTORE_SNAPSHOT, restoreFiles } from './backup-entries.js';
import { RESTORE_PHASE_ID, restoreInputs } from './check.js';
import { recoveryOf } from './context.js';
import { wireBytes, writeBytesScript } from './write-bytes.js';

const journaled = (ctx: InstallContext, id: string, inputs: unknown) => ctx.journal?.phases[id]?.inputs === inputsDigest(inputs);

export const restorePhase = definePhase<InstallContext>({
  id: RESTORE_PHASE_ID,
  title: 'restore the token, node password and datastore',
  inputs: (ctx) => restoreInputs(recoveryOf(ctx).backup),
  check: () => undefined,
  plan(ctx) {
    const { backup } = recoveryOf(ctx);
    // Once journaled, k3s may have started on these files: writing them again would throw away what it did since.
    if (journaled(ctx, RESTORE_PHASE_ID, restoreInputs(backup))) return [];
    const files = restoreFiles(backup);
    const changes: PlannedChange[] = [
      shellChange(
        `mark ${POP_RESTORE_MARKER} (a re-run of this recovery may overwrite what it restored)`,
        [
          'set -e',
          `if systemctl is-active --quiet k3s 2>/dev/null; then systemctl stop k3s; fi`,
          `mkdir -p ${POP_RESTORE_DIR} && chmod 700 ${POP_RESTORE_DIR}`,
          writeFileScript(POP_RESTORE_MARKER, `${backup.sha256}\n`, 0o600),
        ].join('\n'),
      ),
    ];
    for (const f of files) {
      const size = f.secret ? '' : ` (${formatBytes(f.data.length)})`;
      changes.push(
        shellChange(
          `restore ${f.path} from ${f.entry}${size}, mode ${f.mode.toString(8)}`,
          writeBytesScript(f.path, f.data, f.mode, f.gzip ? { gzip: true } : {}),
          { timeoutMs: 300_000 },
        ),
      );
    }
    changes.push(
      shellChange(
        `restrict ${K3S_DB_DIR} and /etc/rancher/node to root`,
        `chmod 700 /etc/rancher/node; [ ! -d ${K3S_DB_DIR} ] || chmod 700 ${K3S_DB_DIR}`,
      ),
    );
    return changes;
  },
  describe: (ctx, _p, _l, changes, dryRun) => ({
    summary: changes.length
      ? `${dryRun ? 'would restore' : 'restored'} ${changes.length - 2} files from the backup`
      : `already restored from ${recoveryOf(ctx).backup.file}`,
  }),
  async settle(ctx, _p, _l, _env, applied) {
    const files = restoreFiles(recoveryOf(ctx).backup);
    const bytes = files.reduce((n, f) => n + wireBytes(f.data, f.gzip), 0);
    ctx.metrics.restoreWireBytes = bytes;
    return {
      summary: `restored ${Math.max(0, applied.length - 2)} files (${formatBytes(bytes)} on the wire)`,
      metrics: { restoreWireBytes: bytes },
    };
  },
});

export const ETCD_RESTORE_PHASE_ID = 'restore-etcd';
export const CLUSTER_RESET_DONE = 'restart without --cluster-reset flag now';

/**
 * Embedded etcd: k3s restores a snapshot only through `k3s server --cluster-reset --cluster-reset-restore-path`,
 * with k3s stopped, before it starts normally (docs: backup-restore; k3s-airgap notes §4.1). The binary comes from
 * the bundle through the same assembly the k3s phase runs (it is idempotent), config.yaml is the one the k3s phase
 * writes (same text, so that phase leaves it), and the token is the restored token-file it names.
 */
export const etcdRestorePhase = definePhase<InstallContext>({
  id: ETCD_RESTORE_PHASE_ID,
  title: 'restore the etcd snapshot (k3s --cluster-reset)',
  inputs: (ctx) => restoreInputs(recoveryOf(ctx).backup),
  check: () => undefined,
  plan(ctx) {
    const { backup } = recoveryOf(ctx);
    if (backup.manifest.k3s.datastore !== 'etcd') return [];
    if (journaled(ctx, ETCD_RESTORE_PHASE_ID, restoreInputs(backup))) return [];
    const files = k3sFiles(ctx);
    const timeoutS = Math.round(ctx.options.k3sStartTimeoutMs / 1000);
    return [
      shellChange(`write ${K3S_CONFIG_PATH}`, writeFileScript(K3S_CONFIG_PATH, files.config, 0o600)),
      shellChange(`write the assembly plan ${POP_ASSEMBLE_PLAN}`, writeFileScript(POP_ASSEMBLE_PLAN, files.plan, 0o644)),
      shellChange(
        'assemble the k3s binary from the blob store',
        popAssembleCommand({ scriptDigest: files.scriptDigest }, { planPath: POP_ASSEMBLE_PLAN, storeDir: POP_STORE_DIR }),
        { timeoutMs: 15 * 60_000 },
      ),
      shellChange(
        `k3s server --cluster-reset --cluster-reset-restore-path=${POP_RESTORE_SNAPSHOT}`,
        [
          `if systemctl is-active --quiet k3s 2>/dev/null; then systemctl stop k3s; fi`,
          `rc=0; out=$(timeout ${timeoutS} ${K3S_BINARY} server --cluster-reset --cluster-reset-restore-path=${POP_RESTORE_SNAPSHOT} 2>&1) || rc=$?`,
          `if [ $rc -ne 0 ] || ! printf '%s\\n' "$out" | grep -q '${CLUSTER_RESET_DONE}'; then`,
          `  echo "k3s could not restore the snapshot (exit $rc):" >&2; printf '%s\\n' "$out" | tail -n 15 >&2; exit 1`,
          'fi',
        ].join('\n'),
        {
          timeoutMs: (timeoutS + 15) * 1000,
          fix: 'read the k3s lines above: a "different token" means the backup\'s token does not belong to its snapshot',
        },
      ),
    ];
  },
  describe: (ctx, _p, _l, changes, dryRun) => ({
    summary:
      recoveryOf(ctx).backup.manifest.k3s.datastore !== 'etcd'
        ? 'SQLite datastore: restored in place'
        : changes.length
          ? `${dryRun ? 'would restore' : 'restored'} the etcd snapshot with k3s --cluster-reset`
          : 'etcd snapshot already restored',
  }),
});

/** After everything is up: the staged snapshot and the marker go (the journal now says what was restored). */
export const restoreCleanupPhase = definePhase<InstallContext, undefined, boolean>({
  id: 'restore-cleanup',
  title: 'remove the staged restore files',
  probe: () => `[ -e ${POP_RESTORE_DIR} ] && echo present || true`,
  check: (_ctx, _p, env) => env.probe.includes('present'),
  plan: (_ctx, _p, present) => (present ? [shellChange(`remove ${POP_RESTORE_DIR}`, `rm -rf ${POP_RESTORE_DIR}`)] : []),
  describe: (_ctx, _p, _l, changes) => ({ summary: changes.length ? changes.join(', ') : 'nothing staged' }),
});
