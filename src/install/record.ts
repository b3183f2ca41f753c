// The site record on the controller (bundle digest, versions, modes, pinned host key, timings, bytes sent,
// round trips, registration state) and the escrow of the k3s token into the controller's encrypted state.
// The phase escrows; `saveSiteRecord` writes the record from the run report once the run has ended (also a
// failed one: the record then says where it stopped).

import { change, definePhase } from '../engine/phase.js';
import { K3S_TOKEN_PATH } from '../engine/pop-layout.js';
import type { RunReport } from '../engine/runner.js';
import { stateDir } from '../state/paths.js';
import { SiteSecrets } from '../state/secrets.js';
import { readSiteRecord, type RunSummary, type SiteRecord, writeSiteRecord } from '../state/site-record.js';
import type { InstallContext } from './context.js';

export const TOKEN_SECRET = 'k3s-token';

interface RecordPrep {
  root: string;
  secrets: SiteSecrets;
}

export const recordPhase = definePhase<InstallContext, RecordPrep, { escrowed: boolean }>({
  id: 'record',
  title: 'record the site',
  always: true,
  prepare(ctx) {
    const root = stateDir(ctx.options.stateDir);
    return { root, secrets: new SiteSecrets(root, ctx.site.metadata.name) };
  },
  check: (_ctx, prep) => ({ escrowed: prep.secrets.has(TOKEN_SECRET) }),
  plan(_ctx, prep, live, env) {
    if (live.escrowed) return [];
    return [
      change('escrow the k3s token in the controller’s encrypted state', async () => {
        const token = await env.host.readFile(K3S_TOKEN_PATH, { sudo: true });
        // A POP whose k3s never started has no token yet: the next run escrows it.
        if (token?.length) prep.secrets.put(TOKEN_SECRET, token.toString('utf8').trim());
      }),
    ];
  },
  describe: (ctx, prep, _live, changes) => ({
    summary: `record in ${prep.root}/sites/${ctx.site.metadata.name}${changes.length ? '; k3s token escrowed (encrypted)' : ''}`,
  }),
});

function summarize(r: RunReport, ctx: InstallContext): RunSummary {
  return {
    id: r.runId,
    operation: r.operation,
    ok: r.ok,
    dryRun: r.dryRun,
    startedAt: r.startedAt,
    durationMs: r.durationMs,
    ...(r.failedPhase ? { failedPhase: r.failedPhase } : {}),
    ...(r.error ? { error: r.error.split('\n')[0]!.slice(0, 300) } : {}),
    phases: r.phases.map((p) => ({ id: p.id, status: p.status, durationMs: p.durationMs, summary: p.summary })),
    roundTrips: r.roundTrips,
    bytesSent: ctx.metrics.bytesSent ?? 0,
    ...(ctx.metrics.blobsSent !== undefined ? { blobsSent: ctx.metrics.blobsSent } : {}),
  };
}

/** Writes (or updates) the site record after a run. Dry runs leave it alone. */
export function saveSiteRecord(ctx: InstallContext, report: RunReport, newHostKeys: string[] = []): SiteRecord | undefined {
  if (report.dryRun) return undefined;
  const root = stateDir(ctx.options.stateDir);
  const name = ctx.site.metadata.name;
  const prev = readSiteRecord(root, name);
  const spec = ctx.site.spec;
  const run = summarize(report, ctx);
  const doc = ctx.bundle?.doc;
  const installedAll = report.ok && report.operation === 'install' && ctx.bundle !== undefined;
  const rec: SiteRecord = {
    version: 1,
    site: name,
    updatedAt: new Date().toISOString(),
    host: {
      address: spec.ssh.host,
      port: spec.ssh.port,
      user: spec.ssh.user,
      hostKeys: [...new Set([...spec.ssh.hostKeys, ...newHostKeys])],
    },
    ...((ctx.decisions?.arch ?? prev?.arch) ? { arch: ctx.decisions?.arch ?? prev?.arch } : {}),
    ...(installedAll && doc && ctx.bundle
      ? { bundle: { name: doc.name, digest: ctx.bundle.digest, signer: ctx.bundle.signer } }
      : prev?.bundle
        ? { bundle: prev.bundle }
        : {}),
    versions:
      installedAll && doc
        ? { k3s: doc.versions.k3s, fsm: doc.versions.fsm, pipy: doc.versions.pipy, chart: doc.versions.chart }
        : {
            ...prev?.versions,
            ...(ctx.installed.k3s ? { k3s: ctx.installed.k3s } : {}),
            ...(ctx.installed.fsm ? { fsm: ctx.installed.fsm } : {}),
          },
    modes: {
      ...((ctx.installed.interception ?? prev?.modes.interception)
        ? { interception: ctx.installed.interception ?? prev?.modes.interception }
        : {}),
      ...(ctx.decisions?.interceptionReason ? { interceptionReason: ctx.decisions.interceptionReason } : {}),
      datastore: spec.k3s.datastore,
      profile: spec.mesh.profile,
      ingress: spec.mesh.ingress,
      multicluster: spec.mesh.multicluster,
    },
    registration: ctx.registration
      ? {
          state: ctx.registration.state,
          ...(ctx.registration.reason ? { reason: ctx.registration.reason } : {}),
          ...(ctx.registration.clusterName ? { cluster: ctx.registration.clusterName } : {}),
          ...(ctx.hubKube ? { hub: ctx.hubKube.server } : {}),
          at: new Date().toISOString(),
        }
      : spec.hub
        ? (prev?.registration ?? { state: 'pending', reason: 'the install has not reached registration yet' })
        : { state: 'none' },
    escrowed: new SiteSecrets(root, name).has(TOKEN_SECRET) ? [TOKEN_SECRET] : [],
    lastRun: run,
    ...(report.ok ? { lastSuccess: run } : prev?.lastSuccess ? { lastSuccess: prev.lastSuccess } : {}),
    history: [
      ...(prev?.history ?? []),
      {
        id: run.id,
        operation: run.operation,
        ok: run.ok,
        startedAt: run.startedAt,
        durationMs: run.durationMs,
        ...(run.failedPhase ? { failedPhase: run.failedPhase } : {}),
      },
    ],
  };
  writeSiteRecord(root, rec);
  return rec;
}
