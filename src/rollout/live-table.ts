// The rollout's live view on a terminal: one line per running site (its phase; during sync a bar with rate and
// ETA), and the counts of the current wave and of the whole rollout, redrawn in place. Fed by the same events as
// the plain printer and the per-site logs (the engine's site events, sync progress, the rollout's events), so
// it decides nothing. Permanent lines (wave starts and ends, a site's result) scroll above the table.
// Redraws are throttled (at most one per `throttleMs`; the last state is always drawn) so hundreds of progress
// events a second cost a few writes. The frame is a pure function of the state: tests assert on it.

import type { SiteEvent } from '../engine/run-sites.js';
import type { SyncProgress } from '../transport/host.js';
import type { SiteOutcome } from './outcome.js';
import type { RolloutEvent } from './run.js';

export interface TableStream {
  write(chunk: string): unknown;
  columns?: number;
}

interface RunningSite {
  site: string;
  phase: string;
  sync?: SyncProgress;
}

interface WaveCounts {
  name: string;
  total: number;
  earlier: number;
  ok: number;
  failed: number;
  notStarted: number;
}

export interface LiveTableOptions {
  stream: TableStream;
  /** Milliseconds between redraws (default 100). */
  throttleMs?: number;
  now?: () => number;
  /** Sets a timer for the trailing redraw (tests pass a fake). */
  setTimer?: (fn: () => void, ms: number) => { unref?(): void };
  /** Sites in the rollout (for the overall count). */
  totalSites?: number;
}

const BAR_WIDTH = 24;

export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `[########----------------]  34%  120.0/350.0 MiB  12.5 MB/s  ETA 18s` */
export function syncBar(p: SyncProgress): string {
  const total = Math.max(p.totalBytes, 1);
  const frac = Math.min(1, Math.max(0, p.sentBytes / total));
  const filled = Math.round(frac * BAR_WIDTH);
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const rate = `${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s`;
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${pct}  ${mib(p.sentBytes)}/${mib(p.totalBytes)}  ${rate}  ETA ${formatEta(p.etaSeconds)}`;
}

const failedStatus = (s: SiteOutcome['status']) => s === 'failed' || s === 'unhealthy';

export class LiveTable {
  private readonly running = new Map<string, RunningSite>();
  private wave: WaveCounts | undefined;
  private readonly overall = { ok: 0, failed: 0, earlier: 0 };
  /** Sites counted as ended (a failed phase-end and the site-end of one site count once). */
  private readonly ended = new Set<string>();
  private drawn = 0;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private timer: { unref?(): void } | undefined;
  private stopped = false;
  private readonly throttleMs: number;
  private readonly now: () => number;
  private readonly setTimer: NonNullable<LiveTableOptions['setTimer']>;

  constructor(private readonly o: LiveTableOptions) {
    this.throttleMs = o.throttleMs ?? 100;
    this.now = o.now ?? Date.now;
    this.setTimer = o.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  }

  /** A rollout event: wave counts change, and its line goes above the table. */
  onRollout(ev: RolloutEvent, line?: string): void {
    if (ev.type === 'wave-start') {
      this.wave = { name: ev.wave.name, total: ev.wave.sites.length, earlier: ev.doneEarlier.length, ok: 0, failed: 0, notStarted: 0 };
      this.overall.earlier += ev.doneEarlier.length;
    } else if (ev.type === 'wave-end' && this.wave?.name === ev.wave.name) {
      this.wave.notStarted = ev.wave.sites.filter((s) => s.status === 'not-started').length;
    } else if (ev.type === 'site-end') {
      this.siteEnded(ev.outcome.site, failedStatus(ev.outcome.status) ? 'failed' : ev.outcome.status === 'ok' ? 'ok' : undefined);
    }
    if (line !== undefined) this.print(line);
    else this.draw();
  }

  /** An engine event of one site: its current phase. */
  onSite(site: string, ev: SiteEvent): void {
    if (ev.type === 'connected') this.running.set(site, { site, phase: 'connected' });
    else if (ev.type === 'phase-start') this.running.set(site, { site, phase: ev.id });
    else if (ev.type === 'phase-end' && (ev.report.status === 'failed' || ev.report.status === 'refused')) {
      // Stopped before or in a phase: the site's run is over (its `site-end` may still follow; counted once).
      if (ev.report.failure !== 'aborted') this.siteEnded(site, 'failed');
      else this.running.delete(site);
    }
    this.draw();
  }

  onSync(site: string, p: SyncProgress): void {
    const r = this.running.get(site) ?? { site, phase: 'sync' };
    r.phase = 'sync';
    r.sync = p;
    this.running.set(site, r);
    this.draw();
  }

  private siteEnded(site: string, result: 'ok' | 'failed' | undefined): void {
    this.running.delete(site);
    if (!result || this.ended.has(site)) return;
    this.ended.add(site);
    this.overall[result]++;
    if (this.wave) this.wave[result]++;
  }

  /** The lines of the table as they are now (no escape sequences). */
  frame(): string[] {
    const lines: string[] = [];
    if (this.wave) {
      const w = this.wave;
      const done = w.ok + w.failed + w.earlier;
      const waiting = Math.max(0, w.total - done - this.running.size - w.notStarted);
      lines.push(
        `${w.name}: ${done}/${w.total} done (${w.ok} ok, ${w.failed} failed${w.earlier ? `, ${w.earlier} earlier` : ''}), ` +
          `${this.running.size} running, ${waiting} waiting${w.notStarted ? `, ${w.notStarted} not started` : ''}`,
      );
    }
    if (this.o.totalSites !== undefined) {
      const o = this.overall;
      lines.push(`rollout: ${o.ok + o.earlier}/${this.o.totalSites} ok, ${o.failed} failed`);
    }
    const width = Math.max(8, ...[...this.running.keys()].map((s) => s.length));
    for (const r of [...this.running.values()].sort((a, b) => a.site.localeCompare(b.site))) {
      const detail = r.phase === 'sync' && r.sync ? `  ${syncBar(r.sync)}` : '';
      lines.push(`  ${r.site.padEnd(width)}  ${r.phase.padEnd(10)}${detail}`);
    }
    const cols = this.o.stream.columns;
    // A line wider than the terminal wraps and breaks the cursor arithmetic of the next redraw.
    return cols && cols > 10 ? lines.map((l) => (l.length >= cols ? `${l.slice(0, cols - 2)}…` : l)) : lines;
  }

  /** A permanent line: the table is erased, the line written, the table drawn again below it. */
  print(line: string): void {
    if (this.stopped) {
      this.o.stream.write(`${line}\n`);
      return;
    }
    this.render(`${line}\n`);
  }

  /** Throttled redraw; the last state is always drawn (a trailing timer). */
  draw(): void {
    if (this.stopped) return;
    const wait = this.lastDraw + this.throttleMs - this.now();
    if (wait <= 0) {
      this.render();
      return;
    }
    if (this.timer) return;
    this.timer = this.setTimer(() => {
      this.timer = undefined;
      if (!this.stopped) this.render();
    }, wait);
    this.timer.unref?.();
  }

  /** Erases the table and stops drawing (before the final summary). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.o.stream.write(`${this.erase()}\x1b[?25h`);
    this.drawn = 0;
  }

  private erase(): string {
    // Back to the first line of the last frame, then clear to the end of the screen.
    return this.drawn ? `\r\x1b[${this.drawn}A\x1b[0J` : '';
  }

  /** One write per redraw (erase, the permanent line if any, the frame): no flicker between the parts. */
  private render(above = ''): void {
    if (this.stopped) return;
    this.lastDraw = this.now();
    const lines = this.frame();
    this.o.stream.write(`${this.erase()}${above}\x1b[?25l${lines.map((l) => `${l}\n`).join('')}`);
    this.drawn = lines.length;
  }
}
