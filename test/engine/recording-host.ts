// A Host for unit tests that records every call and answers the engine's two remote protocols the way a POP's
// shell would: the batched probe (journal + phase sections, from `files` and `probes`) and change batches
// (`sh -s`: each change "runs" — its script is recorded; a test may make one fail or give it stdout).
// Files written with writeFile or a batch's writeFileScript land in `files`, so a later probe sees them.

import {
  type BlobWant,
  type ExecOptions,
  type ExecResult,
  type Host,
  type HostStats,
  type LockOwner,
  type PopLock,
  PopLockedError,
  type SyncOptions,
  type SyncReport,
  type Tunnel,
} from '../../src/transport/host.js';

export interface RecordedCall {
  kind: 'exec' | 'read' | 'write' | 'sync' | 'lock';
  command?: string;
  stdin?: string;
  path?: string;
  sudo?: boolean;
  timeoutMs?: number;
}

export class RecordingHost implements Host {
  readonly name = 'recording-pop';
  files = new Map<string, Buffer>();
  calls: RecordedCall[] = [];
  /** stdout of each probe section, by phase id. */
  probes: Record<string, string> = {};
  /** Scripts of every change that ran, in order. */
  changes: string[] = [];
  /** Makes the change whose script matches fail with this exit code and stderr. */
  failChange?: { match: RegExp; code: number; stderr: string };
  /** stdout a change prints (by script match). */
  changeOutput: Array<{ match: RegExp; stdout: string }> = [];
  /** What a plain command (not a probe, not a change batch) prints, by command match; otherwise nothing, exit 0. */
  answers: Array<{ match: RegExp; stdout: string; code?: number }> = [];
  synced: BlobWant[][] = [];
  roundTrips = 0;
  /** Who holds the POP lock (another controller, when a test sets it). */
  lockHolder?: LockOwner;

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.roundTrips++;
    const stdin = opts.stdin === undefined ? undefined : Buffer.from(opts.stdin).toString('utf8');
    this.calls.push({
      kind: 'exec',
      command,
      ...(stdin !== undefined ? { stdin } : {}),
      ...(opts.sudo ? { sudo: true } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    });
    const probe = /m='(@@fsm-edge-probe-[0-9a-f]+)'/.exec(command);
    if (probe) return { code: 0, stdout: this.probeOutput(probe[1]!, command), stderr: '' };
    if (command === 'sh -s' && stdin !== undefined) return this.runBatch(stdin);
    const answer = this.answers.find((a) => a.match.test(command));
    return { code: answer?.code ?? 0, stdout: answer?.stdout ?? '', stderr: '' };
  }

  /** The POP lock as the real hosts keep it: one round trip to take, refused while someone else holds it. */
  async lock(owner: LockOwner): Promise<PopLock> {
    this.roundTrips++;
    this.calls.push({ kind: 'lock' });
    if (this.lockHolder) throw new PopLockedError(this.name, this.lockHolder);
    this.lockHolder = owner;
    return {
      owner,
      release: async () => {
        if (this.lockHolder === owner) this.lockHolder = undefined;
      },
    };
  }

  async run(command: string, opts?: ExecOptions): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new Error(`${command} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    this.roundTrips++;
    this.calls.push({ kind: 'read', path });
    return this.files.get(path);
  }

  async writeFile(path: string, data: string | Buffer, opts: { sudo?: boolean } = {}): Promise<void> {
    this.roundTrips++;
    this.calls.push({ kind: 'write', path, ...(opts.sudo ? { sudo: true } : {}) });
    this.files.set(path, Buffer.from(data));
  }

  async syncBlobs(wants: BlobWant[], _opts: SyncOptions): Promise<SyncReport> {
    this.calls.push({ kind: 'sync' });
    this.synced.push(wants);
    const bytes = wants.reduce((n, w) => n + w.size, 0);
    return {
      wanted: wants.length,
      alreadyPresent: 0,
      sentBlobs: wants.length,
      sentBytes: bytes,
      resentBytes: 0,
      resumedBlobs: 0,
      roundTrips: 1,
      seconds: 1,
    };
  }

  async tunnel(): Promise<Tunnel> {
    throw new Error('RecordingHost has no Kubernetes API');
  }

  stats(): HostStats {
    return { roundTrips: this.roundTrips, bytesSent: 0, bytesReceived: 0 };
  }

  async close(): Promise<void> {}

  /** The commands of every exec, in order (probe and batches included). */
  commands(): string[] {
    return this.calls.filter((c) => c.kind === 'exec').map((c) => c.command!);
  }

  private probeOutput(mark: string, script: string): string {
    const ids = [...script.matchAll(/echo "\$m ([a-z][a-z0-9-]*)"/g)].map((m) => m[1]!);
    const out: string[] = [];
    for (const id of ids) {
      out.push(`${mark} ${id}`);
      if (id === 'journal') {
        const path = /cat (\S+) 2>\/dev\/null; echo/.exec(script)?.[1];
        const j = path ? this.files.get(path) : undefined;
        if (j) out.push(j.toString('utf8'));
      } else if (id !== 'end' && this.probes[id]) out.push(this.probes[id]!);
    }
    return `${out.join('\n')}\n`;
  }

  private runBatch(script: string): ExecResult {
    const mark = /echo "(@@fsm-edge-change-[0-9a-f]+) start 0"/.exec(script)?.[1];
    if (!mark) return { code: 2, stdout: '', stderr: 'not a change batch' };
    const bodies = [...script.matchAll(/\( set -e\n([\s\S]*?)\n\) <\/dev\/null/g)].map((m) => m[1]!);
    let stdout = '';
    let stderr = '';
    for (let i = 0; i < bodies.length; i++) {
      const body = bodies[i]!;
      stdout += `${mark} start ${i}\n`;
      stderr += `${mark} start ${i}\n`;
      if (this.failChange?.match.test(body)) {
        stderr += `${this.failChange.stderr}\n`;
        stdout += `${mark} failed ${i} ${this.failChange.code}\n`;
        return { code: 97, stdout, stderr };
      }
      this.changes.push(body);
      this.applyWrites(body);
      for (const o of this.changeOutput) if (o.match.test(body)) stdout += o.stdout.endsWith('\n') ? o.stdout : `${o.stdout}\n`;
    }
    stdout += `${mark} end\n`;
    return { code: 0, stdout, stderr };
  }

  /** A writeFileScript in a change puts its here-document into `files`, as the POP's shell would. */
  private applyWrites(body: string): void {
    const m = /cat > "\$t" <<'(FSM_EDGE_EOF_[0-9a-f]+)'; chmod \d+ "\$t"; mv -f -- "\$t" '([^']+)'; trap - EXIT\n([\s\S]*?)\1(?:\n|$)/.exec(
      body,
    );
    if (m) this.files.set(m[2]!, Buffer.from(m[3]!));
  }
}
