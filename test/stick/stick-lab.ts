// What the stick lab tests share: a stick exported through the CLI (runtimes from the lab's nodejs.org stand-in,
// pinned in a copy of the lab recipe), and copying it into a POP the way a technician copies it off the stick.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { buildSingleFile } from '../../scripts/build-single.js';
import { runCli } from '../cli/run-cli.js';
import type { Harness } from '../install/harness.js';
import { popExec } from '../lab/pop.js';
import type { PopInfo } from '../lab/types.js';
import type { LabNodeRelease } from './lab-node-runtime.js';

export interface StickExport {
  dir: string;
  /** `bundle export --json`'s `stick`. */
  result: {
    runtime: { checksums: { pinnedBy: string } };
    runtimes: Array<{ arch: string; nodeDigest: string }>;
    backups: string[];
    sites: string[];
    trustKeys: Array<{ file: string; keyId: string }>;
  };
}

export async function exportStick(
  h: Harness,
  node: LabNodeRelease,
  releaseUrl: string,
  o: { site: string; backups?: string[]; arch?: string; name?: string },
): Promise<StickExport> {
  const recipe = YAML.parse(fs.readFileSync(h.bundle.recipePath, 'utf8'));
  // pinned like k3s: the version, and the digest of the release's SHASUMS256.txt
  recipe.spec.runtime = { node: { version: node.version, releaseUrl: `${releaseUrl}/{version}`, checksumsSha256: node.checksumsSha256 } };
  const recipePath = path.join(h.dir, 'stick-recipe.yaml');
  fs.writeFileSync(recipePath, YAML.stringify(recipe));
  const cliFile = (await buildSingleFile(path.join(h.dir, 'fsm-edge.mjs'))).file;
  const dir = path.join(h.dir, o.name ?? 'stick');
  const args = ['bundle', 'export', h.bundle.dir, '--with-runtime', '--out', dir, '--trust-key', h.bundle.publicKeyFile];
  args.push('--site', o.site, '--recipe', recipePath, '--cache', path.resolve('airgap/cache'), '--cli-file', cliFile, '--json');
  for (const b of o.backups ?? []) args.push('--backup', b);
  if (o.arch) args.push('--arch', o.arch);
  const r = runCli(args, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  if (r.code !== 0) throw new Error(`bundle export --with-runtime failed (${r.code}): ${r.stderr}`);
  return { dir, result: JSON.parse(r.stdout).stick };
}

/** Copies a directory into the POP (a tar stream through nsenter, as a technician's `cp -a` off the stick). */
export async function copyIntoPop(pop: PopInfo, dir: string, dest: string): Promise<void> {
  const tar = execFileSync('tar', ['-cf', '-', '-C', dir, '.'], { maxBuffer: 2 * 1024 ** 3 });
  await popExec(pop, `mkdir -p ${dest} && tar -xf - -C ${dest} --no-same-owner`, { input: tar, timeoutMs: 600_000 });
}

/** Whether the POP can open a TCP connection to the hub's address (false while its link is cut). */
export async function reachesHub(pop: PopInfo, port: number): Promise<boolean> {
  const r = await popExec(pop, `timeout 3 sh -c "exec 3<>/dev/tcp/10.99.0.1/${port}" 2>/dev/null && echo open || echo closed`, {
    allowFail: true,
  });
  return r.stdout.trim() === 'open';
}
