#!/usr/bin/env -S npx tsx
// The POP lab from the command line (root only). Library: test/lab/lab.ts.
//   npx tsx scripts/lab.ts up [--amd64 N] [--arm64 N] [--systemd] [--wire] [--hub] [--no-registry] [--no-fileserver]
//   npx tsx scripts/lab.ts down | status | cache | bench
// `up` prints one JSON document: pops (PopInfo[]), registry, fileServer, hub. Progress goes to stderr.
import { minimist } from 'zx';
import { labCache, labDown, labStatus, labUp, popDown } from '../test/lab/lab.js';

const USAGE = `usage: lab.ts up [--amd64 N] [--arm64 N] [--systemd] [--wire] [--hub] [--no-registry] [--no-fileserver]
       lab.ts down      remove every POP, namespace, forwarder, daemon, cgroup and binfmt entry the lab made
       lab.ts status    what is up (JSON)
       lab.ts cache     build or verify the cached POP root filesystems (minutes when cold)
       lab.ts bench     time a warm up + down of 3 amd64 + 1 arm64 POPs, plain and systemd (touches only its own POPs)`;

const argv = minimist(process.argv.slice(2), {
  boolean: ['systemd', 'wire', 'hub', 'registry', 'fileserver', 'help'],
  string: ['amd64', 'arm64'],
  default: { registry: true, fileserver: true },
  alias: { h: 'help' },
});
const say = (line: string) => process.stderr.write(`${line}\n`);

function count(flag: 'amd64' | 'arm64', fallback: number): number {
  const v = argv[flag] as string | undefined;
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 100) {
    say(`lab: --${flag} wants a whole number of POPs (0-100), got "${v}"\n${USAGE}`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<number> {
  const [cmd, ...rest] = argv._ as string[];
  if (argv.help) return (say(USAGE), 0);
  if (rest.length) return (say(`lab: unexpected arguments: ${rest.join(' ')}\n${USAGE}`), 2);
  if (cmd !== 'status' && process.getuid?.() !== 0) return (say('lab: needs root (namespaces, mounts, binfmt)'), 2);
  switch (cmd) {
    case 'up': {
      const t0 = Date.now();
      const lab = await labUp({
        amd64: count('amd64', 1),
        arm64: count('arm64', 0),
        systemd: argv.systemd as boolean,
        wire: argv.wire as boolean,
        hub: argv.hub as boolean,
        registry: argv.registry as boolean,
        fileServer: argv.fileserver as boolean,
      });
      const { handles: _h, ...doc } = lab;
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
      say(
        `lab: up in ${((Date.now() - t0) / 1000).toFixed(1)} s — ${lab.pops.length} POP(s); \`npx tsx scripts/lab.ts down\` removes it all`,
      );
      return 0;
    }
    case 'down': {
      const t0 = Date.now();
      await labDown();
      say(`lab: down in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return 0;
    }
    case 'status':
      process.stdout.write(`${JSON.stringify(labStatus(), null, 2)}\n`);
      return 0;
    case 'cache': {
      const reports = await labCache(say);
      for (const r of reports) say(`lab cache: ${r.arch} ${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'ok'}: ${r.path}`);
      return 0;
    }
    case 'bench': {
      const rows = [];
      for (const systemd of [false, true]) {
        const t0 = Date.now();
        const lab = await labUp({ amd64: 3, arm64: 1, systemd });
        const t1 = Date.now();
        await Promise.all(lab.pops.map((p) => popDown(p)));
        const t2 = Date.now();
        rows.push({
          pops: '3 amd64 + 1 arm64',
          systemd,
          upSeconds: (t1 - t0) / 1000,
          downSeconds: (t2 - t1) / 1000,
          totalSeconds: (t2 - t0) / 1000,
        });
      }
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return 0;
    }
    default:
      say(cmd ? `lab: unknown command "${cmd}"\n${USAGE}` : USAGE);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    say(e instanceof Error ? e.message : String(e));
    process.exit(1);
  },
);
