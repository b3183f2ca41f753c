// The bundle's blobs for this POP's arch, into the POP's content-addressed store through the transport's
// resumable sync. The signature (and every blob of this arch) is verified on the controller before a single
// byte is sent; each blob is verified again on the POP (sha256) before it enters the store.

import { verifyBundle, VerifyError } from '../bundle/verify.js';
import { loadPublicKey } from '../bundle/sign.js';
import { hexOf, POP_STORE_DIR } from '../bundle/layout.js';
import { wantedBlobs } from '../bundle/pop.js';
import type { BlobWant, Host } from '../transport/host.js';
import { PhaseRefusal, type Changes } from '../engine/phase.js';
import { requireDecisions, type InstallContext, bundleOf } from './context.js';
import type { InstallPhase, StepOutcome } from '../engine/runner.js';
import { formatBytes } from '../bundle/inspect.js';

export function formatRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(bytesPerSecond < 1e7 ? 2 : 1)} MB/s`;
}

export function blobWants(ctx: InstallContext): BlobWant[] {
  return wantedBlobs(bundleOf(ctx).dir, bundleOf(ctx).doc, requireDecisions(ctx).arch);
}

/** Signature and digests, on the controller. A bad bundle is a refusal: nothing has been sent. */
export async function verifyOnController(ctx: InstallContext): Promise<void> {
  if (bundleOf(ctx).verified) return;
  const d = requireDecisions(ctx);
  if (ctx.options.trustKeys.length === 0) {
    throw new PhaseRefusal('sync', 'no trusted public key was given, so the bundle signature cannot be checked', 'pass the bundle signer’s public key with --trust-key FILE');
  }
  try {
    const keys = ctx.options.trustKeys.map((f) => loadPublicKey(f));
    const r = await verifyBundle(bundleOf(ctx).dir, { trustedKeys: keys, arches: [d.arch] });
    bundleOf(ctx).verified = { keyId: r.signer };
  } catch (e) {
    if (e instanceof VerifyError) {
      throw new PhaseRefusal('sync', `the bundle failed verification: ${e.file}: ${e.problem}`, 'use an intact bundle from its builder (rebuild or copy it again), and trust only its signer’s key');
    }
    throw e;
  }
}

/** Which wanted blobs the POP's store already holds — read-only (for dry runs). */
async function presentOnPop(host: Host, wants: BlobWant[]): Promise<Set<string>> {
  const script = `while read h; do [ -f ${POP_STORE_DIR}/sha256/$h ] && echo "$h"; done; true`;
  const out = await host.run(script, { sudo: true, stdin: wants.map((w) => hexOf(w.digest)).join('\n') + '\n' });
  return new Set(out.split('\n').map((l) => l.trim()).filter(Boolean));
}

export const syncPhase: InstallPhase<InstallContext> = {
  id: 'sync',
  title: 'send the bundle',
  // As cheap as its own check: one "have" round trip when everything is there.
  always: true,
  async apply(ctx: InstallContext, host: Host, changes: Changes): Promise<StepOutcome> {
    await verifyOnController(ctx);
    const wants = blobWants(ctx);
    const total = wants.reduce((n, w) => n + w.size, 0);
    if (changes.dryRun) {
      const have = await presentOnPop(host, wants);
      const missing = wants.filter((w) => !have.has(hexOf(w.digest)));
      const bytes = missing.reduce((n, w) => n + w.size, 0);
      if (missing.length) await changes.change(`send ${missing.length} of ${wants.length} blobs (${formatBytes(bytes)}) to ${POP_STORE_DIR}`, async () => {});
      return { summary: `would send ${missing.length} of ${wants.length} blobs, ${formatBytes(bytes)} of ${formatBytes(total)}`, changes: [] };
    }
    const r = (await changes.change(`send missing blobs of ${wants.length} (${formatBytes(total)})`, () =>
      host.syncBlobs(wants, {
        storeDir: POP_STORE_DIR,
        ...(ctx.options.maxRate ? { maxRate: ctx.options.maxRate } : {}),
        ...(ctx.options.streams ? { streams: ctx.options.streams } : {}),
        ...(ctx.options.onSyncProgress ? { onProgress: ctx.options.onSyncProgress } : {}),
      }),
    ))!;
    const rate = r.seconds > 0 ? r.sentBytes / r.seconds : 0;
    ctx.metrics.blobsSent = (ctx.metrics.blobsSent ?? 0) + r.sentBlobs;
    ctx.metrics.bytesSent = (ctx.metrics.bytesSent ?? 0) + r.sentBytes;
    ctx.metrics.syncSeconds = r.seconds;
    const summary =
      r.sentBlobs === 0
        ? `all ${r.wanted} blobs already on the POP (${formatBytes(total)}), 0 sent`
        : `sent ${r.sentBlobs} of ${r.wanted} blobs, ${formatBytes(r.sentBytes)}, ${formatRate(rate)}${r.resumedBlobs ? `, ${r.resumedBlobs} resumed` : ''}`;
    return {
      summary,
      changes: r.sentBlobs ? [`sent ${r.sentBlobs} blobs (${formatBytes(r.sentBytes)})`] : [],
      metrics: { blobsWanted: r.wanted, blobsSent: r.sentBlobs, bytesSent: r.sentBytes, resentBytes: r.resentBytes, syncRoundTrips: r.roundTrips },
    };
  },
};
