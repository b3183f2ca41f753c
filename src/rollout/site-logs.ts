// One log file per site of a rollout (`<report dir>/logs/<site>.log`): every event the engine emitted for the
// site, time-stamped, so an operator reading a failure in report.html can see the whole run of that one POP
// without the interleaved lines of the others. Holds what the terminal shows, nothing more (no secrets there).

import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { SiteEvent } from '../engine/run-sites.js';

/** The lines an event adds to its site's log. */
export function eventLines(ev: SiteEvent): string[] {
  switch (ev.type) {
    case 'connected':
      return [`connected to ${ev.host}`];
    case 'pinned':
      return [`pinned host key ${ev.fingerprint} (${ev.label}) in ${ev.file}`];
    case 'warning':
      return [`warning: ${ev.message}`];
    case 'phase-start':
      return [`start ${ev.id}: ${ev.title}`];
    case 'phase-end': {
      const r = ev.report;
      return [
        `${r.status} ${r.id} (${r.durationMs} ms): ${r.summary}`,
        ...r.changes.map((c) => `    - ${c}`),
        ...r.warnings.map((w) => `    warning: ${w}`),
        ...(r.reason ? [`    reason: ${r.reason}`] : []),
        ...(r.fix ? [`    fix: ${r.fix}`] : []),
        ...(r.error && r.status === 'failed' ? r.error.split('\n').map((l) => `    ${l}`) : []),
      ];
    }
  }
}

export class SiteLogs {
  constructor(readonly dir: string) {}

  path(site: string): string {
    // Site names are Kubernetes names; anything else must not become a path.
    if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(site))
      throw new Error(`internal: site name ${JSON.stringify(site)} is not a safe file name`);
    return path.join(this.dir, `${site}.log`);
  }

  write(site: string, ev: SiteEvent, now = new Date()): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const at = now.toISOString();
    appendFileSync(
      this.path(site),
      eventLines(ev)
        .map((l) => `${at} ${l}\n`)
        .join(''),
      { mode: 0o600 },
    );
  }
}
