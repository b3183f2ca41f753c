// A POP's link to the hub: shape (rate, delay, loss), cut, restore, count bytes. This kernel has no sch_netem,
// so a veth POP gets kernel TBF (rate, both directions) and an iptables `statistic` drop on INPUT (loss: a real
// loss, unlike an OUTPUT drop that TCP sees as a local error); delay needs a POP started with `wire: true`, whose
// link is the userspace wire (test/lab/wire.py) that applies all three. The host forwarder's traffic crosses the
// same link, so shaping applies to what the controller sends too.
import fs from 'node:fs';
import path from 'node:path';
import type { LinkCounters, LinkShape, PopInfo } from './types.js';
import { HUB_NETNS } from './network.js';
import { hubPort, lossChain, popAddress, readPopRecord } from './pop.js';
import { daemonPid, run, signalPid } from './proc.js';

function validate(shape: LinkShape): void {
  const bad = (what: string) => {
    throw new Error(`lab: shapeLink: ${what}`);
  };
  if (shape.rateKbit !== undefined && !(shape.rateKbit > 0)) bad(`rateKbit must be > 0 (got ${shape.rateKbit}); omit it for no limit`);
  if (shape.delayMs !== undefined && !(shape.delayMs >= 0)) bad(`delayMs must be >= 0 (got ${shape.delayMs})`);
  if (shape.loss !== undefined && !(shape.loss >= 0 && shape.loss < 1)) bad(`loss must be in [0, 1) (got ${shape.loss})`);
}

// burst must hold at least one MTU-sized frame; a few ms of traffic at the rate keeps TBF smooth but not bursty
const tbfArgs = (kbit: number) => [
  'tbf',
  'rate',
  `${kbit}kbit`,
  'burst',
  `${Math.max(4096, Math.ceil((kbit * 1000) / 8 / 50))}`,
  'latency',
  '400ms',
];

async function setLoss(netns: string, chain: string, match: string[], loss: number): Promise<void> {
  const ipt = (args: string[], allowFail = false) => run('ip', ['netns', 'exec', netns, 'iptables', '-w', ...args], { allowFail });
  await ipt(['-N', chain], true);
  await ipt(['-F', chain]);
  if ((await ipt(['-C', 'INPUT', ...match, '-j', chain], true)).code !== 0) await ipt(['-I', 'INPUT', ...match, '-j', chain]);
  if (loss > 0) await ipt(['-A', chain, '-m', 'statistic', '--mode', 'random', '--probability', String(loss), '-j', 'DROP']);
}

/**
 * Applies `shape` to the POP's link in both directions, replacing any earlier shape; `{}` removes shaping.
 * Delay requires a POP started with `popUp({ wire: true })`.
 */
export async function shapeLink(pop: PopInfo, shape: LinkShape): Promise<void> {
  validate(shape);
  const rec = readPopRecord(pop);
  const n = rec.index;
  if (rec.wire) {
    const params = { rate_kbit: shape.rateKbit ?? 0, delay_ms: shape.delayMs ?? 0, loss: shape.loss ?? 0 };
    fs.writeFileSync(path.join(rec.dir, 'wire.json'), JSON.stringify(params));
    const pid = daemonPid(`wire-pop${n}`);
    if (pid === undefined) throw new Error(`lab: the wire of ${rec.name} is not running; re-create the POP`);
    signalPid(pid, 'SIGHUP');
    return;
  }
  if (shape.delayMs)
    throw new Error(
      `lab: ${rec.name} has a veth link, which cannot delay on this kernel (no sch_netem); start it with popUp({ wire: true })`,
    );
  for (const [netns, dev] of [
    [HUB_NETNS, hubPort(n)],
    [rec.netns, 'eth0'],
  ] as const) {
    if (shape.rateKbit) await run('tc', ['-n', netns, 'qdisc', 'replace', 'dev', dev, 'root', ...tbfArgs(shape.rateKbit)]);
    else await run('tc', ['-n', netns, 'qdisc', 'del', 'dev', dev, 'root'], { allowFail: true });
  }
  const loss = shape.loss ?? 0;
  await setLoss(rec.netns, lossChain(n), [], loss);
  await setLoss(HUB_NETNS, lossChain(n), ['-s', popAddress(n)], loss);
}

/** Takes the link down (the hub port loses carrier): nothing crosses until `restoreLink`. */
export async function cutLink(pop: PopInfo): Promise<void> {
  await run('ip', ['-n', HUB_NETNS, 'link', 'set', hubPort(readPopRecord(pop).index), 'down']);
}

export async function restoreLink(pop: PopInfo): Promise<void> {
  await run('ip', ['-n', HUB_NETNS, 'link', 'set', hubPort(readPopRecord(pop).index), 'up']);
}

/** Bytes that crossed the POP's link since it was created, counted at its port on the hub bridge. */
export async function linkCounters(pop: PopInfo): Promise<LinkCounters> {
  const dev = hubPort(readPopRecord(pop).index);
  const { stdout } = await run('ip', ['-n', HUB_NETNS, '-s', '-j', 'link', 'show', 'dev', dev]);
  const stats = (JSON.parse(stdout) as { stats64?: { rx: { bytes: number }; tx: { bytes: number } } }[])[0]?.stats64;
  if (!stats) throw new Error(`lab: no counters for ${dev} in ${HUB_NETNS}`);
  // the hub port transmits towards the POP and receives from it
  return { toPop: stats.tx.bytes, fromPop: stats.rx.bytes };
}
