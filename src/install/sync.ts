// The bundle's blobs for this POP's arch, into the POP's content-addressed store through the transport's
// resumable sync. Every blob of the arch is verified on the controller (once per run, however many sites share
// the arch) before a byte is sent; each blob is verified again on the POP (sha256) before it enters the store.

import { formatBytes } from '../bundle/inspect.js';
import { hexOf } from '../bundle/layout.js';
import { wantedBlobs } from '../bundle/pop.js';
import { VerifyError } from '../bundle/verify.js';
import { change, definePhase, type PhaseResult, PhaseRefusal } from '../engine/phase.js';
import { POP_STORE_DIR } from '../engine/pop-layout.js';
import type { BlobWant, SyncProgress, SyncReport } from '../transport/host.js';
import { bundleOf, decisionsOf, type InstallContext } from './context.js';

export function formatRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(bytesPerSecond < 1e7 ? 2 : 1)} MB/s`;
}

export function blobWants(ctx: InstallContext): BlobWant[] {
  return wantedBlobs(bundleOf(ctx).dir, bundleOf(ctx).doc, decisionsOf(ctx).arch);
}

/** `<hex> <size>` per stored blob. `ls -ln` works alike on coreutils and BusyBox and reads no blob. */
export const STORE_PROBE = `ls -ln ${POP_STORE_DIR}/sha256 2>/dev/null | awk 'NF>=9 && $1 ~ /^-/ {print $9, $5}'`;

/** Stored blobs and their sizes, from the probe. */
export function parseStoreListing(out: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    const r = /^([a-f0-9]{64}) (\d+)$/.exec(line.trim());
    if (r) m.set(r[1]!, Number(r[2]));
  }
  return m;
}

interface SyncLive {
  wants: BlobWant[];
  /** Absent from the store, or stored with the wrong size (a short or empty blob is sent again). */
  missing: BlobWant[];
  result?: SyncReport;
}

function describeSync(live: SyncLive, changes: readonly string[], dryRun: boolean): PhaseResult {
  const total = live.wants.reduce((n, w) => n + w.size, 0);
  if (!changes.length) return { summary: `all ${live.wants.length} blobs already on the POP (${formatBytes(total)}), 0 sent` };
  const bytes = live.missing.reduce((n, w) => n + w.size, 0);
  return {
    summary: `${dryRun ? 'would send' : 'sent'} ${live.missing.length} of ${live.wants.length} blobs, ${formatBytes(bytes)} of ${formatBytes(total)}`,
  };
}

export const syncPhase = definePhase<InstallContext, undefined, SyncLive>({
  id: 'sync',
  title: 'send the bundle',
  // As cheap as its own check (a section of the probe), and later phases rely on every blob being there.
  always: true,
  probe: () => STORE_PROBE,
  async check(ctx, _prep, env) {
    const d = decisionsOf(ctx);
    try {
      await bundleOf(ctx).verifyArch(d.arch);
    } catch (e) {
      if (e instanceof VerifyError) {
        throw new PhaseRefusal(
          'sync',
          `the bundle failed verification: ${e.file}: ${e.problem}`,
          'use an intact bundle from its builder (rebuild or copy it again), and trust only its signer’s key',
        );
      }
      throw e;
    }
    const stored = parseStoreListing(env.probe);
    const wants = blobWants(ctx);
    return { wants, missing: wants.filter((w) => stored.get(hexOf(w.digest)) !== w.size) };
  },
  plan(ctx, _prep, live, env) {
    if (live.missing.length === 0) return [];
    const bytes = live.missing.reduce((n, w) => n + w.size, 0);
    return [
      change(`send ${live.missing.length} of ${live.wants.length} blobs (${formatBytes(bytes)}) to ${POP_STORE_DIR}`, async () => {
        live.result = await env.host.syncBlobs(live.wants, {
          storeDir: POP_STORE_DIR,
          signal: env.signal,
          ...(ctx.options.maxRate ? { maxRate: ctx.options.maxRate } : {}),
          ...(ctx.options.streams ? { streams: ctx.options.streams } : {}),
          ...(ctx.options.onSyncProgress
            ? { onProgress: (p: SyncProgress) => ctx.options.onSyncProgress!(ctx.site.metadata.name, p) }
            : {}),
        });
      }),
    ];
  },
  describe: (_ctx, _prep, live, changes, dryRun) => describeSync(live, changes, dryRun),
  async settle(ctx, _prep, live, _env, applied) {
    const r = live.result;
    if (!r) return describeSync(live, applied, false);
    const rate = r.seconds > 0 ? r.sentBytes / r.seconds : 0;
    ctx.metrics.blobsSent = (ctx.metrics.blobsSent ?? 0) + r.sentBlobs;
    ctx.metrics.bytesSent = (ctx.metrics.bytesSent ?? 0) + r.sentBytes;
    ctx.metrics.syncSeconds = r.seconds;
    return {
      summary:
        r.sentBlobs === 0
          ? `all ${r.wanted} blobs already on the POP, 0 sent`
          : `sent ${r.sentBlobs} of ${r.wanted} blobs, ${formatBytes(r.sentBytes)}, ${formatRate(rate)}${r.resumedBlobs ? `, ${r.resumedBlobs} resumed` : ''}`,
      metrics: {
        blobsWanted: r.wanted,
        blobsSent: r.sentBlobs,
        bytesSent: r.sentBytes,
        resentBytes: r.resentBytes,
        syncRoundTrips: r.roundTrips,
      },
    };
  },
});
