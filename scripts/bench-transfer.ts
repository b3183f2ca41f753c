// npm run bench:transfer — our blob sync against OpenSSH scp and against the raw ssh2 exec stream (`cat > file`,
// the local ceiling of pure-JS SSH, run in a process of its own), side by side on the same lab links:
//   (1) unshaped veth link, 64 MiB;  (2) 2 Mbit/s, 100 ms RTT, 1 % loss each way (userspace wire), 2 MiB;
//   (3) 8 Mbit/s link cut at half way for 15 s, then restored, 4 MiB — scp and our sync with the same keepalive
//       (3 s × 3), so both connections really die; scp is then re-run from the start, as an operator would.
// A 2-core machine shared with other work is noisy: every case runs ROUNDS rounds, the contenders interleaved
// (their order rotates each round), and reports medians with the spread (min–max) — ratios are per round. Before
// each run the host's dirty pages are written back (`sync`, untimed): scp and the raw stream leave theirs to the
// kernel, and the next run's fsyncs would otherwise wait behind them.
// Sized so that a full run holds the lab for under 10 minutes. rsync --partial is measured when the POP has it.
// Prints a table per case and, as the last line, one JSON object with the headline figures.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LinkCounters, PopInfo } from '../test/lab/types.js';
import { popDown, popExec, popUp } from '../test/lab/pop.js';
import { cutLink, linkCounters, restoreLink, shapeLink } from '../test/lab/link.js';
import type { BlobWant, SyncReport } from '../src/transport/host.js';
import { SshHost, type SshHostOptions } from '../src/transport/ssh-host.js';

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STORE = '/var/lib/fsm-edge/store';
const work = mkdtempSync(join(tmpdir(), 'fsm-edge-bench-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stdout.write(`${s}\n`);

/** A random file made outside this process, so its bytes never inflate the controller's RSS figure. */
async function makeFile(name: string, size: number): Promise<BlobWant> {
  const sourcePath = join(work, name);
  if ((await run('sh', ['-c', `head -c ${size} /dev/urandom > '${sourcePath}'`])) !== 0) throw new Error(`cannot write ${sourcePath}`);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(sourcePath, { highWaterMark: MiB })) hash.update(chunk as Buffer);
  return { digest: `sha256:${hash.digest('hex')}`, size, sourcePath };
}

const wire = (a: LinkCounters, b: LinkCounters) => b.toPop - a.toPop + (b.fromPop - a.fromPop);

function target(pop: PopInfo) {
  return {
    name: pop.name,
    host: pop.sshHost,
    port: pop.sshPort,
    user: pop.user,
    identityFile: pop.identityFile,
    hostKeys: [pop.hostKeyFingerprint],
  };
}

interface Run {
  seconds: number;
  wireBytes: number;
  resentBytes: number;
  roundTrips?: number;
  chunkBytes?: number;
  attempts?: number;
  ok: boolean;
}

async function ours(pop: PopInfo, f: BlobWant, opts: SshHostOptions, onHalf?: () => void): Promise<Run> {
  await popExec(pop, `rm -rf ${STORE}`);
  const before = await linkCounters(pop);
  const t0 = performance.now();
  const h = await SshHost.connect(target(pop), opts);
  let fired = false;
  let r: SyncReport;
  try {
    r = await h.syncBlobs([f], {
      storeDir: STORE,
      onProgress: (p) => {
        if (onHalf && !fired && p.sentBytes >= p.totalBytes / 2) {
          fired = true;
          onHalf();
        }
      },
    });
  } finally {
    await h.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = await linkCounters(pop);
  const rt = h.stats().roundTrips;
  return {
    seconds,
    wireBytes: wire(before, after),
    resentBytes: r.resentBytes,
    roundTrips: rt,
    chunkBytes: r.chunkBytes ?? 0,
    attempts: h.stats().connects ?? 1,
    ok: true,
  };
}

/** The ceiling (scripts/bench-raw-stream.ts), timed inside its own process from connect to close. */
async function raw(pop: PopInfo, f: BlobWant): Promise<Run> {
  await popExec(pop, 'rm -f /home/pop/raw.bin');
  const before = await linkCounters(pop);
  const child = [
    '--import',
    'tsx',
    join(import.meta.dirname, 'bench-raw-stream.ts'),
    pop.sshHost,
    String(pop.sshPort),
    pop.user,
    pop.identityFile,
    f.sourcePath,
    '/home/pop/raw.bin',
  ];
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, child, (err, stdout, stderr) =>
      err ? reject(new Error(`raw stream: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
  const { seconds } = JSON.parse(out) as { seconds: number };
  const after = await linkCounters(pop);
  const sum = (await popExec(pop, 'sha256sum /home/pop/raw.bin')).stdout.split(' ')[0];
  return { seconds, wireBytes: wire(before, after), resentBytes: 0, ok: `sha256:${sum}` === f.digest };
}

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve) => execFile(cmd, args, (err) => resolve(err ? ((err as { code?: number }).code ?? 1) : 0)));
}

/** scp (or rsync) until it succeeds; an interrupted copy is simply run again, as an operator would. */
async function baseline(pop: PopInfo, f: BlobWant, tool: 'scp' | 'rsync', sshOpts: string[], onHalf?: () => void): Promise<Run> {
  await popExec(pop, 'rm -f /home/pop/bench.bin /home/pop/.bench.bin.*');
  const before = await linkCounters(pop);
  const t0 = performance.now();
  let attempts = 0;
  let watching = onHalf !== undefined;
  let sentBeforeCut = 0;
  const watcher = (async () => {
    while (watching) {
      const c = await linkCounters(pop);
      if (c.toPop - before.toPop >= f.size / 2) {
        watching = false;
        sentBeforeCut = c.toPop - before.toPop;
        onHalf!();
      }
      await sleep(20);
    }
  })();
  const dest = `pop@${pop.sshHost}:/home/pop/bench.bin`;
  for (;;) {
    attempts++;
    const rc =
      tool === 'scp'
        ? await run('scp', ['-q', ...sshOpts, '-i', pop.identityFile, f.sourcePath, dest])
        : await run('rsync', ['--partial', '-q', '-e', `ssh ${sshOpts.join(' ')} -i ${pop.identityFile}`, f.sourcePath, dest]);
    if (rc === 0) break;
    if (attempts >= 20) throw new Error(`${tool} failed ${attempts} times`);
    await sleep(1000);
  }
  watching = false;
  await watcher;
  const seconds = (performance.now() - t0) / 1000;
  const after = await linkCounters(pop);
  const sum = (await popExec(pop, 'sha256sum /home/pop/bench.bin')).stdout.split(' ')[0];
  const wireBytes = wire(before, after);
  // scp restarts from byte 0: everything that crossed before the failed attempt died was sent again
  const resentBytes = attempts > 1 ? sentBeforeCut : 0;
  return { seconds, wireBytes, resentBytes, attempts, ok: `sha256:${sum}` === f.digest };
}

async function cutFor(pop: PopInfo, ms: number): Promise<void> {
  await cutLink(pop);
  await sleep(ms);
  await restoreLink(pop);
}

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};
const r3 = (x: number) => +x.toFixed(3);
/** Median and min–max of a series, rounded for the summary line. */
const stat = (xs: number[]) => ({ median: r3(median(xs)), min: r3(Math.min(...xs)), max: r3(Math.max(...xs)) });

type Contender = 'ours' | 'scp' | 'raw' | 'rsync';
/** One case: each round runs every contender once, in an order that rotates, so drift in load hits all alike. */
async function rounds(contenders: Contender[], go: (c: Contender) => Promise<Run>): Promise<Record<Contender, Run[]>> {
  const out = Object.fromEntries(contenders.map((c) => [c, [] as Run[]])) as Record<Contender, Run[]>;
  for (let i = 0; i < ROUNDS; i++) {
    const order = contenders.map((_, k) => contenders[(k + i) % contenders.length]!);
    for (const c of order) {
      // untimed: write back what the previous run left dirty. scp and the raw stream never fsync, so without this
      // the next contender's disk writes (ours fsyncs every blob) would queue behind their data
      await run('sync', []);
      out[c].push(await go(c));
    }
  }
  return out;
}

/** scp's time ÷ ours, per round (the runs of one round ran back to back under the same load). */
const ratios = (rs: Record<Contender, Run[]>, vs: Contender) => rs.ours.map((o, i) => rs[vs][i]!.seconds / o.seconds);

function table(name: string, size: number, rs: Record<Contender, Run[]>): void {
  say(`\n(${name}) ${(size / MiB).toFixed(0)} MiB, ${ROUNDS} rounds, medians (min–max)`);
  const scpMed = median(rs.scp.map((r) => r.seconds));
  for (const [c, runs] of Object.entries(rs) as Array<[Contender, Run[]]>) {
    if (!runs.length) continue;
    const secs = stat(runs.map((r) => r.seconds));
    const label = { ours: 'fsm-edge sync', scp: 'scp', raw: 'ssh2 cat > file', rsync: 'rsync --partial' }[c];
    const vsScp =
      c === 'scp' ? '' : `  ours÷${c === 'ours' ? 'scp' : c} per round ${fmtSpread(stat(ratios(rs, c === 'ours' ? 'scp' : c)))}`;
    say(
      `  ${label.padEnd(16)} ${secs.median.toFixed(2).padStart(7)} s (${secs.min.toFixed(2)}–${secs.max.toFixed(2)})  ` +
        `${(size / MiB / secs.median).toFixed(2).padStart(6)} MiB/s  x${(scpMed / secs.median).toFixed(2)} scp  ` +
        `wire/file ${median(runs.map((r) => r.wireBytes / size)).toFixed(3)}  re-sent ${median(runs.map((r) => r.resentBytes))} B` +
        `${runs[0]!.roundTrips !== undefined ? `  round trips ${median(runs.map((r) => r.roundTrips!))}` : ''}` +
        `${runs.some((r) => (r.attempts ?? 1) > 1) ? `  attempts ${runs.map((r) => r.attempts ?? 1).join(',')}` : ''}` +
        `${runs.every((r) => r.ok) ? '' : '  CONTENT MISMATCH'}${c === 'ours' ? vsScp : ''}`,
    );
  }
}
const fmtSpread = (x: { median: number; min: number; max: number }) => `${x.median.toFixed(2)} (${x.min.toFixed(2)}–${x.max.toFixed(2)})`;

async function hasRsync(pop: PopInfo): Promise<boolean> {
  const r = await popExec(pop, 'command -v rsync', { allowFail: true });
  return r.code === 0;
}

async function main(): Promise<void> {
  const ssh = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
  const keep = ['-o', 'ServerAliveInterval=3', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=5'];
  const baseRssMiB = process.memoryUsage().rss / MiB;
  const t0 = Date.now();
  say(`bench:transfer — starting lab POPs (veth amd64, wire amd64); ${ROUNDS} rounds per case`);
  const [veth, thin] = await Promise.all([popUp({ arch: 'amd64' }), popUp({ arch: 'amd64', wire: true })]);
  try {
    const withRsync: Contender[] = (await hasRsync(veth)) ? ['rsync'] : [];

    // (1) unshaped, 64 MiB
    const f1 = await makeFile('unshaped.bin', 64 * MiB);
    const u = await rounds(['scp', 'ours', 'raw', ...withRsync], (c) =>
      c === 'ours' ? ours(veth, f1, {}) : c === 'raw' ? raw(veth, f1) : baseline(veth, f1, c as 'scp' | 'rsync', ssh),
    );
    table('unshaped', f1.size, u);
    // the controller's peak RSS from our sync (the raw stream runs in its own process), before later cases count
    const peakRssMiB = process.resourceUsage().maxRSS / 1024;

    // (2) thin: 2 Mbit/s, 50 ms each way, 1 % loss each way
    await shapeLink(thin, { rateKbit: 2000, delayMs: 50, loss: 0.01 });
    const f2 = await makeFile('thin.bin', 2 * MiB);
    const th = await rounds(['scp', 'ours', 'raw'], (c) =>
      c === 'ours' ? ours(thin, f2, {}) : c === 'raw' ? raw(thin, f2) : baseline(thin, f2, 'scp', ssh),
    );
    await shapeLink(thin, {});
    table('thin: 2 Mbit/s, 100 ms RTT, 1 % loss', f2.size, th);

    // (3) 8 Mbit/s, cut at half way for 15 s
    await shapeLink(veth, { rateKbit: 8000 });
    const f3 = await makeFile('cut.bin', 4 * MiB);
    const oursCut = { keepaliveIntervalMs: 3000, keepaliveCountMax: 3, readyTimeoutMs: 5000, reconnect: { maxDelayMs: 2000 } };
    const cu = await rounds(['scp', 'ours'], async (c) => {
      const cuts: Promise<void>[] = [];
      const r =
        c === 'ours'
          ? await ours(veth, f3, oursCut, () => cuts.push(cutFor(veth, 15_000)))
          : await baseline(veth, f3, 'scp', [...ssh, ...keep], () => cuts.push(cutFor(veth, 15_000)));
      await Promise.all(cuts);
      return r;
    });
    await shapeLink(veth, {});
    table('8 Mbit/s, cut at half way for 15 s', f3.size, cu);

    const chunkBytes = Math.max(...cu.ours.map((r) => r.chunkBytes ?? 0));
    const overChunk = cu.ours.filter((r) => r.resentBytes > (r.chunkBytes ?? 0)).length;
    say(
      `\ncontroller peak RSS: ${peakRssMiB.toFixed(1)} MiB after the unshaped case (our sync + benchmark; ` +
        `${baseRssMiB.toFixed(1)} MiB before the first transfer); cut rounds that re-sent more than one chunk: ${overChunk}; ` +
        `lab held ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    const uR = stat(ratios(u, 'scp'));
    const thR = stat(ratios(th, 'scp'));
    const cuR = stat(ratios(cu, 'scp'));
    const summary = {
      throughputRatioUnshaped: uR.median,
      throughputRatioThin: thR.median,
      throughputRatioCut: cuR.median,
      wireBytesRatio: r3(median(u.ours.map((r) => r.wireBytes / f1.size))),
      wireBytesRatioThin: r3(median(th.ours.map((r) => r.wireBytes / f2.size))),
      scpWireBytesRatio: r3(median(u.scp.map((r) => r.wireBytes / f1.size))),
      resentBytesAfterCut: median(cu.ours.map((r) => r.resentBytes)),
      resentBytesAfterCutMax: Math.max(...cu.ours.map((r) => r.resentBytes)),
      scpResentBytesAfterCut: median(cu.scp.map((r) => r.resentBytes)),
      chunkBytes,
      roundTrips: median(u.ours.map((r) => r.roundTrips!)),
      roundTripsCut: median(cu.ours.map((r) => r.roundTrips!)),
      peakRssMiB: +peakRssMiB.toFixed(1),
      peakRssEndMiB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
      baseRssMiB: +baseRssMiB.toFixed(1),
      rounds: ROUNDS,
      spread: {
        throughputRatioUnshaped: [uR.min, uR.max],
        throughputRatioThin: [thR.min, thR.max],
        throughputRatioCut: [cuR.min, cuR.max],
        ratioToRawUnshaped: stat(ratios(u, 'raw')),
        ratioToRawThin: stat(ratios(th, 'raw')),
        secondsUnshaped: {
          ours: stat(u.ours.map((r) => r.seconds)),
          scp: stat(u.scp.map((r) => r.seconds)),
          raw: stat(u.raw.map((r) => r.seconds)),
        },
        secondsThin: {
          ours: stat(th.ours.map((r) => r.seconds)),
          scp: stat(th.scp.map((r) => r.seconds)),
          raw: stat(th.raw.map((r) => r.seconds)),
        },
        secondsCut: { ours: stat(cu.ours.map((r) => r.seconds)), scp: stat(cu.scp.map((r) => r.seconds)) },
      },
    };
    if (!u.ours.concat(u.scp, u.raw, th.ours, th.scp, th.raw, cu.ours, cu.scp).every((r) => r.ok))
      say('CONTENT MISMATCH in some run (see above)');
    say(JSON.stringify(summary));
  } finally {
    await Promise.all([popDown(veth), popDown(thin)]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:transfer failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
