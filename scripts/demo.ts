// `npm run demo`: the lab end to end — a hub, one amd64 and one arm64 POP (systemd), the signed sample bundle,
// `fsm-edge install` on both, registration with the hub, and the status table. Tears everything down at the
// end unless --keep.
//   npx tsx scripts/demo.ts [--keep] [--amd64-only]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startHarness } from '../test/install/harness.js';
import type { LabArch } from '../test/lab/types.js';

const keep = process.argv.includes('--keep');
const arches: LabArch[] = process.argv.includes('--amd64-only') ? ['amd64'] : ['amd64', 'arm64'];
const say = (l: string) => process.stderr.write(`demo: ${l}\n`);

if (process.getuid?.() !== 0) {
  say('needs root (network namespaces, systemd POPs)');
  process.exit(2);
}

const useDist = fs.existsSync('dist/cli/main.js') && !process.argv.includes('--from-source');
function fsmEdge(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [cmd, argv] = useDist ? [process.execPath, ['bin/fsm-edge.js', ...args]] : ['npx', ['tsx', 'test/cli/fsm-edge.ts', ...args]];
  process.stdout.write(`\n$ fsm-edge ${args.join(' ')}\n`);
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { stdio: 'inherit', env: { ...process.env, ...env } });
    p.on('exit', (code) => resolve(code ?? 1));
  });
}

const t0 = Date.now();
const h = await startHarness({ arches, hub: true, keepDir: keep, log: say });
let failed = false;
try {
  const env = { FSM_EDGE_STATE_DIR: h.stateDir };
  const files = h.pops.map((p) => h.writeSite(p));
  say(`site files: ${files.join(', ')}`);
  // Both POPs at once: the install runs them in parallel (one SSH connection each).
  const code = await fsmEdge(['install', ...files, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile], env);
  if (code !== 0) failed = true;
  await fsmEdge(['status', ...files], env);
  say(`done in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  if (keep) say(`left up (--keep): files and state in ${h.dir}; POPs ${h.pops.map((p) => `${p.name} ${p.sshHost}`).join(', ')}`);
} finally {
  if (!keep) await h.stop();
}
process.exit(failed ? 1 : 0);
