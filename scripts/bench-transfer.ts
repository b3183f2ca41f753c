// npm run bench:transfer — our blob sync against OpenSSH scp (and rsync --partial when both ends have it), side by
// side in one run, on the same lab links:
//   (1) unshaped veth link, 64 MiB;  (2) 2 Mbit/s, 100 ms RTT, 1 % loss each way (userspace wire), 4 MiB;
//   (3) 8 Mbit/s link cut at half way for 15 s, then restored, 8 MiB — both tools with the same keepalive
//       (3 s × 3), so both connections really die; scp is then re-run from the start, as an operator would.
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

/** Runs added up (for the noisy thin link): seconds and bytes are per file, i.e. averaged. */
function total(rs: Run[]): Run {
  const n = rs.length;
  return {
    seconds: rs.reduce((a, r) => a + r.seconds, 0) / n,
    wireBytes: rs.reduce((a, r) => a + r.wireBytes, 0) / n,
    resentBytes: rs.reduce((a, r) => a + r.resentBytes, 0),
    ...(rs[0]!.roundTrips !== undefined ? { roundTrips: rs[0]!.roundTrips } : {}),
    ok: rs.every((r) => r.ok),
  };
}

async function cutFor(pop: PopInfo, ms: number): Promise<void> {
  await cutLink(pop);
  await sleep(ms);
  await restoreLink(pop);
}

const fmtRun = (name: string, r: Run, size: number, scp: Run) =>
  `  ${name.padEnd(16)} ${r.seconds.toFixed(2).padStart(7)} s  ${(size / MiB / r.seconds).toFixed(2).padStart(7)} MiB/s  ` +
  `x${(scp.seconds / r.seconds).toFixed(2).padStart(5)} scp  wire/file ${(r.wireBytes / size).toFixed(3)}  ` +
  `re-sent ${String(r.resentBytes).padStart(9)} B  ${r.roundTrips !== undefined ? `round trips ${r.roundTrips}` : ''}` +
  `${r.attempts && r.attempts > 1 ? `  ${r.attempts} ${r.roundTrips !== undefined ? 'connects' : 'attempts'}` : ''}${r.ok ? '' : '  CONTENT MISMATCH'}`;

async function hasRsync(pop: PopInfo): Promise<boolean> {
  const r = await popExec(pop, 'command -v rsync', { allowFail: true });
  return r.code === 0;
}

async function main(): Promise<void> {
  const ssh = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
  const keep = ['-o', 'ServerAliveInterval=3', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=5'];
  const baseRssMiB = process.memoryUsage().rss / MiB;
  say('bench:transfer — starting lab POPs (veth amd64, wire amd64)');
  const [veth, thin] = await Promise.all([popUp({ arch: 'amd64' }), popUp({ arch: 'amd64', wire: true })]);
  try {
    const rsyncOk = (await hasRsync(veth)) ? true : false;
    const results: Record<string, { ours: Run; scp: Run; rsync?: Run; size: number }> = {};

    // (1) unshaped, 64 MiB: best of 3 alternating runs for each tool
    const f1 = await makeFile('unshaped.bin', 64 * MiB);
    const o1: Run[] = [];
    const s1: Run[] = [];
    for (let i = 0; i < 3; i++) {
      s1.push(await baseline(veth, f1, 'scp', ssh));
      o1.push(await ours(veth, f1, {}));
    }
    const best = (rs: Run[]) => rs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    results.unshaped = { ours: best(o1), scp: best(s1), size: f1.size };
    if (rsyncOk) results.unshaped.rsync = await baseline(veth, f1, 'rsync', ssh);

    // (2) thin: 2 Mbit/s, 50 ms each way, 1 % loss each way
    await shapeLink(thin, { rateKbit: 2000, delayMs: 50, loss: 0.01 });
    const f2 = await makeFile('thin.bin', 4 * MiB);
    // loss makes single runs noisy: two alternating runs each, summed
    const s2: Run[] = [];
    const o2: Run[] = [];
    for (let i = 0; i < 2; i++) {
      s2.push(await baseline(thin, f2, 'scp', ssh));
      o2.push(await ours(thin, f2, {}));
    }
    results.thin = { ours: total(o2), scp: total(s2), size: f2.size };
    await shapeLink(thin, {});

    // (3) 8 Mbit/s, cut at half way for 15 s
    await shapeLink(veth, { rateKbit: 8000 });
    const f3 = await makeFile('cut.bin', 8 * MiB);
    const cuts: Promise<void>[] = [];
    const s3 = await baseline(veth, f3, 'scp', [...ssh, ...keep], () => cuts.push(cutFor(veth, 15_000)));
    await Promise.all(cuts);
    const o3 = await ours(
      veth,
      f3,
      { keepaliveIntervalMs: 3000, keepaliveCountMax: 3, readyTimeoutMs: 5000, reconnect: { maxDelayMs: 2000 } },
      () => cuts.push(cutFor(veth, 15_000)),
    );
    await Promise.all(cuts);
    results.cut = { ours: o3, scp: s3, size: f3.size };
    await shapeLink(veth, {});

    const peakRssMiB = process.resourceUsage().maxRSS / 1024;
    for (const [name, r] of Object.entries(results)) {
      say(
        `\n(${name}) ${(r.size / MiB).toFixed(0)} MiB${name === 'thin' ? ' (mean of 2 runs each)' : name === 'unshaped' ? ' (best of 3 runs each)' : ''}`,
      );
      say(fmtRun('fsm-edge sync', r.ours, r.size, r.scp));
      say(fmtRun('scp', r.scp, r.size, r.scp));
      if (r.rsync) say(fmtRun('rsync --partial', r.rsync, r.size, r.scp));
    }
    if (!rsyncOk) say('\n(rsync is not installed on the lab POPs: rsync --partial not measured)');
    say(
      `\ncontroller peak RSS: ${peakRssMiB.toFixed(1)} MiB (this process: ssh2 client + benchmark; ${baseRssMiB.toFixed(1)} MiB before the first transfer)`,
    );
    const summary = {
      throughputRatioUnshaped: +(results.unshaped!.scp.seconds / results.unshaped!.ours.seconds).toFixed(3),
      throughputRatioThin: +(results.thin!.scp.seconds / results.thin!.ours.seconds).toFixed(3),
      throughputRatioCut: +(results.cut!.scp.seconds / results.cut!.ours.seconds).toFixed(3),
      wireBytesRatio: +(results.unshaped!.ours.wireBytes / results.unshaped!.size).toFixed(4),
      wireBytesRatioThin: +(results.thin!.ours.wireBytes / results.thin!.size).toFixed(4),
      scpWireBytesRatio: +(results.unshaped!.scp.wireBytes / results.unshaped!.size).toFixed(4),
      resentBytesAfterCut: results.cut!.ours.resentBytes,
      scpResentBytesAfterCut: results.cut!.scp.resentBytes,
      chunkBytes: results.cut!.ours.chunkBytes,
      roundTrips: results.unshaped!.ours.roundTrips,
      roundTripsCut: results.cut!.ours.roundTrips,
      peakRssMiB: +peakRssMiB.toFixed(1),
      baseRssMiB: +baseRssMiB.toFixed(1),
    };
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
