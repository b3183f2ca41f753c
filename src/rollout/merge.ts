// One report from the reports of a sharded rollout (`--shard i/n` runs, e.g. the pods of the Indexed Job that
// `rollout --emit-job` prints): the same fleet and bundle, disjoint sites, waves joined by name (each shard ran
// its own canary and waves over its share). The merged report says which shards it holds and which are missing.

import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { UsageError } from '../config/errors.js';
import { countStatuses, type RolloutReport, type WaveReport } from './run.js';
import { rolloutId } from './state.js';

// What merging relies on; the rest of each report is carried as it is.
const ShardReportSchema = z.looseObject({
  version: z.literal(1),
  fleet: z.string(),
  id: z.string(),
  dryRun: z.boolean(),
  bundle: z.looseObject({ digest: z.string() }),
  startedAt: z.string(),
  finishedAt: z.string(),
  ok: z.boolean(),
  outcome: z.enum(['done', 'stopped']),
  shard: z.object({ index: z.number().int().min(0), count: z.number().int().min(1) }).optional(),
  waves: z.array(z.looseObject({ name: z.string(), sites: z.array(z.looseObject({ site: z.string(), status: z.string() })) })),
  warnings: z.array(z.string()),
});

/** Reads `report.json`, or the `report.json` in a directory. */
export function readShardReport(where: string): RolloutReport {
  const file = existsSync(where) && statSync(where).isDirectory() ? path.join(where, 'report.json') : where;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(
      `${file}: not a readable rollout report (${(e as Error).message.split('\n')[0]})`,
      'give report.json files or their directories',
    );
  }
  const parsed = ShardReportSchema.safeParse(doc);
  if (!parsed.success)
    throw new UsageError(`${file}: not a rollout report (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`);
  return parsed.data as unknown as RolloutReport;
}

function mergeGate(ws: WaveReport[]): WaveReport['gate'] {
  if (ws.some((w) => w.gate === 'failed')) return 'failed';
  return ws.every((w) => w.gate === 'passed') ? 'passed' : 'not-reached';
}

export function mergeReports(reports: readonly RolloutReport[]): RolloutReport {
  if (reports.length === 0) throw new UsageError('no report to merge', 'give the report.json of each shard');
  const first = reports[0]!;
  for (const r of reports) {
    if (r.fleet !== first.fleet || r.bundle.digest !== first.bundle.digest)
      throw new UsageError(
        `report ${r.id} is a rollout of ${r.fleet} with bundle ${r.bundle.digest}, not of ${first.fleet} with ${first.bundle.digest}`,
        'merge only the shard reports of one rollout (one fleet, one bundle)',
      );
    if (r.dryRun !== first.dryRun) throw new UsageError(`report ${r.id} ${r.dryRun ? 'is' : 'is not'} a dry run, unlike ${first.id}`);
    if (!r.shard) throw new UsageError(`report ${r.id} is not a shard's report (no --shard)`, 'merge the reports of --shard i/n runs');
    if (r.shard.count !== first.shard?.count)
      throw new UsageError(`report ${r.id} is shard ${r.shard.index}/${r.shard.count}; the others are of ${first.shard?.count} shards`);
  }
  const count = first.shard!.count;
  const byIndex = new Map<number, RolloutReport>();
  for (const r of reports) {
    if (byIndex.has(r.shard!.index))
      throw new UsageError(`two reports of shard ${r.shard!.index}/${count}: ${byIndex.get(r.shard!.index)!.id} and ${r.id}`);
    byIndex.set(r.shard!.index, r);
  }
  // Shards share nothing, so a site in two reports means the reports are not of one split.
  const owner = new Map<string, number>();
  for (const r of reports)
    for (const w of r.waves)
      for (const s of w.sites) {
        const seen = owner.get(s.site);
        if (seen !== undefined && seen !== r.shard!.index)
          throw new UsageError(
            `site ${s.site} is in shard ${seen} and shard ${r.shard!.index}: these reports are not one rollout's shards`,
          );
        owner.set(s.site, r.shard!.index);
      }

  const sorted = [...byIndex.values()].sort((a, b) => a.shard!.index - b.shard!.index);
  const waveNames: string[] = [];
  for (const r of sorted) for (const w of r.waves) if (!waveNames.includes(w.name)) waveNames.push(w.name);
  const waves: WaveReport[] = waveNames.map((name) => {
    const ws = sorted.flatMap((r) => r.waves.filter((w) => w.name === name));
    const soaks = ws.filter((w) => w.soak);
    return {
      name,
      canary: ws.some((w) => w.canary),
      maxFailures: ws.reduce((n, w) => n + w.maxFailures, 0),
      sites: ws.flatMap((w) => w.sites).sort((a, b) => a.site.localeCompare(b.site)),
      gate: mergeGate(ws),
      ...(soaks.length ? { soak: soaks.some((w) => w.soak === 'failed') ? 'failed' : 'passed' } : {}),
    } as WaveReport;
  });
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  const stopped = sorted.filter((r) => r.outcome === 'stopped');
  const warnings = [
    ...(missing.length
      ? [`no report of shard(s) ${missing.map((i) => `${i}/${count}`).join(', ')}: their sites are not in this report`]
      : []),
    ...sorted.flatMap((r) => r.warnings.map((w) => `shard ${r.shard!.index}/${count}: ${w}`)),
  ];
  const startedAt = sorted.map((r) => r.startedAt).sort()[0]!;
  const finishedAt = sorted
    .map((r) => r.finishedAt)
    .sort()
    .at(-1)!;
  return {
    version: 1,
    fleet: first.fleet,
    id: rolloutId(first.fleet, first.bundle.digest),
    dryRun: first.dryRun,
    resumed: sorted.some((r) => r.resumed),
    bundle: first.bundle,
    startedAt,
    finishedAt,
    durationMs: Date.parse(finishedAt) - Date.parse(startedAt),
    ok: missing.length === 0 && sorted.every((r) => r.ok),
    outcome: stopped.length ? 'stopped' : 'done',
    ...(stopped.length
      ? {
          stoppedBy: stopped[0]!.stoppedBy!,
          stopReason: stopped.map((r) => `shard ${r.shard!.index}/${count}: ${r.stopReason ?? r.stoppedBy}`).join('; '),
        }
      : {}),
    policy: {
      parallel: sorted.reduce((n, r) => n + r.policy.parallel, 0),
      maxFailures: sorted.reduce((n, r) => n + r.policy.maxFailures, 0),
      soakSeconds: first.policy.soakSeconds,
    },
    shards: sorted.map((r) => ({
      index: r.shard!.index,
      count,
      id: r.id,
      outcome: r.outcome,
      ok: r.ok,
      ...(r.stoppedBy ? { stoppedBy: r.stoppedBy } : {}),
    })),
    waves,
    counts: countStatuses(waves),
    warnings,
  };
}
