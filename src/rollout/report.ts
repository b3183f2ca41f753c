// The rollout's reports: `report.json` (the RolloutReport as is) and `report.html`, one self-contained page
// (inline CSS, no script, no external asset) a person can open from a ticket: the waves, each site's result,
// arch, time per phase, bytes, round trips, and for failures the reason and the fix. Every value is escaped.

import path from 'node:path';
import { writeAtomic } from '../state/write-atomic.js';
import type { SiteOutcome, SiteStatus } from './outcome.js';
import type { RolloutReport, WaveReport } from './run.js';

const esc = (s: unknown) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

export function formatBytesShort(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

const LABEL: Record<SiteStatus, string> = {
  ok: 'ok',
  failed: 'failed',
  unhealthy: 'not healthy',
  'not-started': 'not started',
  interrupted: 'interrupted',
  skipped: 'skipped',
};

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
.meta{color:#555;margin:.1rem 0}.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:600}
.verdict.ok{background:#dff3e4;color:#14532d}.verdict.bad{background:#fde2e1;color:#7f1d1d}
table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem}th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .5rem;
text-align:left;vertical-align:top}th{background:#f5f6f8;font-weight:600}td.num{text-align:right;white-space:nowrap}
.st{font-weight:600;white-space:nowrap}.st-ok{color:#15803d}.st-failed,.st-unhealthy{color:#b91c1c}
.st-not-started,.st-skipped{color:#6b7280}.st-interrupted{color:#b45309}.phases{color:#444;font-size:.9em}
.why{font-size:.92em}.why b{color:#7f1d1d}.fix{color:#1e3a8a}.gate{font-size:.9em;color:#555}
.counts span{margin-right:1rem}`;

function siteRow(s: SiteOutcome): string {
  const phases = s.phases
    .filter((p) => p.status !== 'not-run')
    .map(
      (p) =>
        `${esc(p.id)} ${esc(formatDuration(p.durationMs))}${p.status === 'failed' || p.status === 'refused' ? ` (${esc(p.status)})` : ''}`,
    )
    .join(' · ');
  const why = [
    s.note ? `<div>${esc(s.note)}</div>` : '',
    s.reason ? `<div><b>${esc(s.failure ?? 'reason')}${s.failedPhase ? ` in ${esc(s.failedPhase)}` : ''}:</b> ${esc(s.reason)}</div>` : '',
    s.fix && s.status !== 'ok' ? `<div class="fix">fix: ${esc(s.fix)}</div>` : '',
    s.sends ? `<div>sync: ${esc(s.sends)}</div>` : '',
  ].join('');
  return `<tr data-site="${esc(s.site)}" data-status="${esc(s.status)}">
<td>${esc(s.site)}</td><td class="st st-${esc(s.status)}">${esc(LABEL[s.status])}${s.doneEarlier ? ' (earlier run)' : ''}</td>
<td>${esc(s.arch ?? '–')}</td><td class="num">${esc(formatDuration(s.durationMs))}</td><td class="phases">${phases || '–'}</td>
<td class="num">${esc(formatBytesShort(s.bytesSent))}</td><td class="num">${esc(s.roundTrips)}</td><td>${esc(s.registration ?? '–')}</td>
<td class="why">${why || '–'}</td></tr>`;
}

function waveSection(w: WaveReport): string {
  const gate = w.gate === 'not-reached' ? 'gate not reached' : `gate ${w.gate}`;
  const soak = w.soak ? `; soak ${esc(w.soak)}` : '';
  return `<section class="wave" data-wave="${esc(w.name)}">
<h2>${esc(w.name)} <span class="gate">— ${w.sites.length} site(s), tolerates ${esc(w.maxFailures)} failure(s);
${esc(gate)}${soak}</span></h2>
<table><thead><tr><th>Site</th><th>Result</th><th>Arch</th><th>Time</th><th>Time per phase</th><th>Bytes sent</th><th>Round trips</th>
<th>Registration</th><th>Reason and fix</th></tr></thead><tbody>
${w.sites.map(siteRow).join('\n')}
</tbody></table></section>`;
}

export function renderReportHtml(r: RolloutReport): string {
  const verdict = r.ok ? 'all sites ok' : r.outcome === 'stopped' ? `stopped (${r.stoppedBy}): ${r.stopReason}` : 'finished with failures';
  const counts = Object.entries(r.counts)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `<span>${esc(LABEL[s as SiteStatus])}: <b>${n}</b></span>`)
    .join('');
  const resumed = r.resumed ? ', resumed' : '';
  const soak = r.policy.soakSeconds ? `, soak ${esc(r.policy.soakSeconds)}s` : '';
  const logs = r.files?.logs ? `<p class="meta">one log per site in <code>${esc(r.files.logs)}</code></p>\n` : '';
  const shards = shardsMeta(r);
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>fsm-edge rollout ${esc(r.fleet)} ${esc(r.id)}</title><style>${CSS}</style></head>
<body>
<h1>Rollout of fleet ${esc(r.fleet)}${r.dryRun ? ' (dry run)' : ''}</h1>
<p class="meta">bundle ${esc(r.bundle.name ?? '')} <code>${esc(r.bundle.digest)}</code></p>
<p class="meta">started ${esc(r.startedAt)}, finished ${esc(r.finishedAt)} (${esc(formatDuration(r.durationMs))})${resumed};
parallel ${esc(r.policy.parallel)}, failure budget ${esc(r.policy.maxFailures)}${soak}</p>
${logs}${shards}<p><span id="verdict" class="verdict ${r.ok ? 'ok' : 'bad'}">${esc(verdict)}</span></p>
<p class="counts">${counts}</p>
${r.warnings.length ? `<ul class="warnings">${r.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>` : ''}
${r.waves.map(waveSection).join('\n')}
</body></html>
`;
}

/** A shard's report says which share it is; a merged one which shards it holds. */
function shardsMeta(r: RolloutReport): string {
  if (r.shard) return `<p class="meta" id="shard">shard ${esc(r.shard.index)}/${esc(r.shard.count)} of the fleet (by site name)</p>\n`;
  if (!r.shards?.length) return '';
  const items = r.shards
    .map((s) => `${esc(s.index)}/${esc(s.count)} ${esc(s.outcome)}${s.stoppedBy ? ` (${esc(s.stoppedBy)})` : ''}`)
    .join(', ');
  return `<p class="meta" id="shards">merged from ${r.shards.length} shard report(s): ${items}</p>\n`;
}

/** Writes report.json and report.html into `dir`; returns their paths. */
export function writeRolloutReport(dir: string, r: RolloutReport): { json: string; html: string } {
  const json = path.join(dir, 'report.json');
  const html = path.join(dir, 'report.html');
  writeAtomic(json, JSON.stringify(r, null, 2) + '\n', 0o644);
  writeAtomic(html, renderReportHtml(r), 0o644);
  return { json, html };
}
