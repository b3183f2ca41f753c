// `fsm-edge status`: what is installed on POPs and whether they are registered (issue 6). Reads the controller's
// site records; the registration state is refreshed from the hub when it answers (a registration left pending
// is often completed by the hub's controller after the install returned).

import type { Command } from 'commander';
import { CLUSTER_GROUP, CLUSTER_VERSION, type ClusterResource } from '../../kube/hub.js';
import { isNotFound, withTimeout } from '../../kube/poll.js';
import type { SiteTarget } from '../../engine/run-sites.js';
import { HubClients } from '../../engine/shared-run.js';
import { stateDir } from '../../state/paths.js';
import { type PopView, REFRESH_TIMEOUT_MS, refreshFromPops } from '../../rollout/refresh.js';
import { lastRollouts } from '../../rollout/state.js';
import { listSiteRecords, readSiteRecord, type SiteRecord } from '../../state/site-record.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { EXIT_FAILED, outputFor, UsageError } from '../output.js';
import { selectTargets } from './install.js';

type SiteSelection = SiteTarget;

export interface SiteStatus {
  name: string;
  arch: string | null;
  installed: boolean;
  versions: { k3s: string | null; fsm: string | null; pipy: string | null };
  interception: string | null;
  bundle: string | null;
  registration: { state: 'managed' | 'pending' | 'failed' | 'none' | 'unknown'; reason?: string; cluster?: string };
  lastRun: { ok: boolean; operation: string; at: string; failedPhase?: string; error?: string } | null;
  host: string;
  /** The last rollout the site took part in (listing from the records only). */
  lastRollout?: { id: string; status: string; at: string };
  /** What the POP itself said (`--refresh`): its journal, or why it did not answer. */
  pop?: PopView;
}

async function hubState(
  hubs: HubClients,
  sel: SiteSelection,
  rec: SiteRecord | undefined,
): Promise<SiteStatus['registration'] | undefined> {
  if (!sel.hub || !sel.site.spec.hub || !rec) return undefined;
  const name = sel.site.metadata.name;
  try {
    const hub = hubs.get(sel.hub, sel.configDir);
    const c = (await withTimeout(
      hub.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: 'clusters', name }),
      8000,
      'hub',
    )) as ClusterResource;
    const m = c.status?.conditions?.find((x) => x.type === 'Managed');
    if (m?.status === 'True') return { state: 'managed', cluster: name };
    if (m?.status === 'False') return { state: 'failed', reason: `${m.reason ?? ''} ${m.message ?? ''}`.trim(), cluster: name };
    return { state: 'pending', reason: 'the hub has not joined the cluster yet', cluster: name };
  } catch (e) {
    if (isNotFound(e)) return { state: 'pending', reason: 'no Cluster on the hub yet; run `fsm-edge register`' };
    return undefined; // hub unreachable: keep what the record says
  }
}

export function siteStatus(sel: SiteSelection, rec: SiteRecord | undefined, live?: SiteStatus['registration']): SiteStatus {
  return {
    name: sel.site.metadata.name,
    arch: rec?.arch ?? null,
    installed: Boolean(rec?.bundle),
    versions: { k3s: rec?.versions.k3s ?? null, fsm: rec?.versions.fsm ?? null, pipy: rec?.versions.pipy ?? null },
    interception: rec?.modes.interception ?? null,
    bundle: rec?.bundle ? `${rec.bundle.name} ${rec.bundle.digest.slice(0, 19)}` : null,
    registration:
      live ??
      (rec
        ? {
            state: rec.registration.state,
            ...(rec.registration.reason ? { reason: rec.registration.reason } : {}),
            ...(rec.registration.cluster ? { cluster: rec.registration.cluster } : {}),
          }
        : { state: 'unknown', reason: 'never installed from this controller' }),
    lastRun: rec?.lastRun
      ? {
          ok: rec.lastRun.ok,
          operation: rec.lastRun.operation,
          at: rec.lastRun.startedAt,
          ...(rec.lastRun.failedPhase ? { failedPhase: rec.lastRun.failedPhase } : {}),
          ...(rec.lastRun.error ? { error: rec.lastRun.error } : {}),
        }
      : null,
    host: `${sel.site.spec.ssh.user}@${sel.site.spec.ssh.host}:${sel.site.spec.ssh.port}`,
  };
}

/** A site known only from its record (`fsm-edge status` without config files). */
export function recordStatus(rec: SiteRecord, rollout?: SiteStatus['lastRollout']): SiteStatus {
  const site = { metadata: { name: rec.site }, spec: { ssh: { user: rec.host.user, host: rec.host.address, port: rec.host.port } } };
  return { ...siteStatus({ site } as SiteSelection, rec), ...(rollout ? { lastRollout: rollout } : {}) };
}

/** The POP column of `--refresh`: what its journal says, or that it did not answer and why. */
export function popCell(p: PopView): string {
  if (!p.reachable) return `unreachable (${p.error ?? 'no answer'})`;
  const run = p.lastRun
    ? `${p.lastRun.operation} ${p.lastRun.outcome}${p.lastRun.failedPhase ? ` in ${p.lastRun.failedPhase}` : ''}`
    : 'no run';
  return `${p.bundle ? p.bundle.name : 'no bundle'}, ${run}${p.warning ? ' (journal unreadable)' : ''}`;
}

export function renderStatusTable(rows: SiteStatus[]): string {
  const rollouts = rows.some((r) => r.lastRollout);
  const pops = rows.some((r) => r.pop);
  const head = [
    'SITE',
    'ARCH',
    'K3S',
    'FSM',
    'INTERCEPTION',
    'REGISTRATION',
    ...(rollouts ? ['LAST ROLLOUT'] : []),
    ...(pops ? ['POP (JOURNAL)'] : []),
    'LAST RUN',
  ];
  const body = rows.map((r) => [
    r.name,
    r.arch ?? '-',
    r.versions.k3s ?? '-',
    r.versions.fsm ?? '-',
    r.interception ?? '-',
    r.registration.state + (r.registration.state !== 'managed' && r.registration.reason ? ` (${r.registration.reason})` : ''),
    ...(rollouts ? [r.lastRollout ? `${r.lastRollout.id} ${r.lastRollout.status}` : '-'] : []),
    ...(pops ? [r.pop ? popCell(r.pop) : '-'] : []),
    r.lastRun
      ? `${r.lastRun.operation} ${r.lastRun.ok ? 'ok' : `failed${r.lastRun.failedPhase ? ` in ${r.lastRun.failedPhase}` : ''}`} ${r.lastRun.at.replace('T', ' ').slice(0, 19)}`
      : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function register(program: Command): void {
  program
    .command('status')
    .description('show what is installed on POPs: bundle, k3s, FSM, interception mode, hub registration')
    .argument('[config...]', 'Site or Fleet files; none: every site this controller has a record for')
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--refresh', 'ask the POPs: read each one’s journal (pinned host keys only) and rebuild the records from it')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
--refresh reads every POP's journal over SSH (16 at a time, ${REFRESH_TIMEOUT_MS / 1000}s each at most), rewrites this controller's
record of each POP that answered (the journal is the truth; the records are a cache) and marks the others
unreachable; exit code 1 when a POP did not answer. It needs the Site or Fleet files (the records hold no
credentials).`,
    )
    .action(async function (
      this: Command,
      files: string[],
      opts: { hub?: string; site: string[]; refresh?: boolean; acceptNewHostKey?: boolean },
    ) {
      const out = outputFor(this);
      const root = stateDir(undefined, out.io.env);
      if (opts.refresh && opts.acceptNewHostKey)
        throw new UsageError(
          '--refresh reads POPs with pinned host keys only: a status never accepts a new key',
          'pin the key in spec.ssh.hostKeys (an install with --accept-new-host-key records it), then refresh',
        );
      if (files.length === 0 && opts.refresh)
        throw new UsageError(
          '--refresh needs the Site or Fleet files: the records hold no SSH credentials',
          'fsm-edge status fleet.yaml --refresh',
        );
      if (files.length === 0) {
        const rollouts = lastRollouts(root);
        const known = listSiteRecords(root)
          .filter((rec) => !opts.site.length || opts.site.includes(rec.site))
          .map((rec) => recordStatus(rec, rollouts.get(rec.site)));
        out.result({ ok: true, stateDir: root, sites: known }, () =>
          out.line(known.length ? renderStatusTable(known) : `no site records in ${root}: install or roll out a site first`),
        );
        return;
      }
      const sites = selectTargets(files, opts);
      const hubs = new HubClients(out.io.env);
      const pops = opts.refresh ? new Map((await refreshFromPops(sites, { root, env: out.io.env })).map((v) => [v.site, v])) : undefined;
      const rows = await Promise.all(
        sites.map(async (sel) => {
          const rec = readSiteRecord(root, sel.site.metadata.name);
          const pop = pops?.get(sel.site.metadata.name);
          return { ...siteStatus(sel, rec, await hubState(hubs, sel, rec)), ...(pop ? { pop } : {}) };
        }),
      );
      const unreachable = rows.filter((r) => r.pop && !r.pop.reachable).length;
      out.result({ ok: unreachable === 0, stateDir: root, sites: rows }, () => out.line(renderStatusTable(rows)));
      if (unreachable) out.exitCode = EXIT_FAILED;
    });
}
