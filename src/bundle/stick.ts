// A USB stick for a site without a controller (`fsm-edge bundle export --with-runtime`): the signed bundle, the
// chosen backups and site files, fsm-edge as one JS file, a Node.js runtime per arch, a POSIX sh launcher that
// picks the runtime for `uname -m`, the trust key, a README for the technician and a SHA256SUMS of all of it.
//
//   fsm-edge            launcher (sh)             runtime/x64/bin/node, runtime/arm64/bin/node (+ LICENSE)
//   fsm-edge.mjs        the CLI, one file         bundle/            the signed bundle (the chosen arches' blobs)
//   trust/<key>.pub     the bundle signer's key   backups/, sites/   what --backup and --site named
//   README.txt          what to type on site      SHA256SUMS         every file above (damaged-copy check)
//
// Before anything is written the bundle is verified against the trust key (the arches the stick carries) and each
// runtime against its release's SHASUMS256.txt (pinned). The stick is written into a staging directory beside
// the target and renamed into place, so a half-written stick never looks complete.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BundleArch, NodeRuntime, NodeRuntimeArch } from '../config/recipe.js';
import { hashFile } from './blob-file.js';
import { archBlobs, readBundleDoc } from './format.js';
import { BUNDLE_FILE, INDEX_FILE, OCI_LAYOUT_FILE, SIGNATURE_FILE } from './layout.js';
import { keyId, loadPublicKey } from './sign.js';
import { STICK_LAUNCHER } from './stick-launcher.js';
import { extractNodeRuntime, fetchNodeRuntimes, type FetchRuntimesResult } from './stick-runtime.js';
import { verifyBundle } from './verify.js';

export const STICK_LAUNCHER_FILE = 'fsm-edge';
export const STICK_CLI_FILE = 'fsm-edge.mjs';
export const STICK_SUMS_FILE = 'SHA256SUMS';
export const STICK_BUNDLE_DIR = 'bundle';

/** The Node.js name of a bundle arch (arm, 32-bit, has no runtime on the stick). */
export const RUNTIME_ARCH_OF: Partial<Record<BundleArch, NodeRuntimeArch>> = { amd64: 'x64', arm64: 'arm64' };

export class StickError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StickError';
  }
}

export interface StickOptions {
  bundleDir: string;
  outDir: string;
  /** Public keys of the bundle's signer: the bundle must verify against one; all are copied to `trust/`. */
  trustKeyFiles: string[];
  runtime: NodeRuntime;
  recipePath: string;
  cacheDir: string;
  /** The single-file CLI (`npm run build:single` → dist/fsm-edge.mjs). */
  cliFile: string;
  /** Bundle arches the stick carries (default: every arch of the bundle that has a runtime). */
  arches?: BundleArch[];
  backups?: string[];
  sites?: string[];
  offline?: boolean;
  fetchImpl?: typeof fetch;
  onFile?: (label: string, state: 'cached' | 'downloaded', size: number) => void;
  onStep?: (line: string) => void;
}

export interface StickResult {
  dir: string;
  arches: BundleArch[];
  runtimes: Array<{ arch: NodeRuntimeArch; tarball: string; tarballDigest: string; nodeDigest: string }>;
  runtime: Pick<FetchRuntimesResult, 'version' | 'checksums' | 'lockPath' | 'lockWritten'>;
  bundle: { name: string; signer: string; blobs: number; bytes: number };
  backups: string[];
  sites: string[];
  trustKeys: Array<{ file: string; keyId: string }>;
  files: number;
  bytes: number;
}

/** The single-file CLI next to this module: itself when running from it, else dist/fsm-edge.mjs of the package. */
export function defaultCliFile(): string | undefined {
  const self = fileURLToPath(import.meta.url);
  if (path.basename(self) === STICK_CLI_FILE) return self;
  let dir = path.dirname(self);
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'dist', STICK_CLI_FILE);
    if (fs.existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return undefined;
}

/** A file name the stick may carry as given: no directories, no dot files, nothing a shell would trip on. */
function stickName(file: string, what: string): string {
  const name = path.basename(file);
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$/.test(name))
    throw new StickError(`${what} ${file}: its name ${JSON.stringify(name)} is not a plain file name (letters, digits, . _ + -)`);
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new StickError(`${what} ${file}: not a file`);
  return name;
}

function uniqueNames(files: string[], what: string): Array<[string, string]> {
  const seen = new Map<string, string>();
  for (const f of files) {
    const n = stickName(f, what);
    if (seen.has(n)) throw new StickError(`${what}s ${seen.get(n)} and ${f} have the same name ${n}; rename one`);
    seen.set(n, f);
  }
  return [...seen].map(([n, f]) => [f, n]);
}

/** Every regular file under `dir`, as stick paths with forward slashes, sorted. */
function listFiles(dir: string, prefix = ''): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) return listFiles(path.join(dir, e.name), rel);
      return e.isFile() ? [rel] : [];
    })
    .sort();
}

export async function writeStick(o: StickOptions): Promise<StickResult> {
  const step = o.onStep ?? (() => {});
  const out = path.resolve(o.outDir);
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0)
    throw new StickError(`${out} exists and is not empty; name a new directory (it may sit on the mounted stick)`);
  if (!o.trustKeyFiles.length)
    throw new StickError('name the bundle signer’s public key (--trust-key): the technician needs it on the stick');
  const trustKeys = uniqueNames(o.trustKeyFiles, 'trust key').map(([f, n]) => ({ file: f, name: n, key: loadPublicKey(f) }));
  const backups = uniqueNames(o.backups ?? [], 'backup');
  const sites = uniqueNames(o.sites ?? [], 'site file');
  if (!fs.existsSync(o.cliFile))
    throw new StickError(`the single-file CLI ${o.cliFile} is missing; build it with \`npm run build:single\` (or pass --cli-file)`);

  const doc = readBundleDoc(o.bundleDir);
  const inBundle = Object.keys(doc.arches) as BundleArch[];
  const arches = o.arches ?? inBundle.filter((a) => RUNTIME_ARCH_OF[a]);
  for (const a of arches) {
    if (!doc.arches[a]) throw new StickError(`bundle ${o.bundleDir} has no ${a} (it has ${inBundle.join(', ')})`);
    if (!RUNTIME_ARCH_OF[a]) throw new StickError(`${a}: Node.js publishes no Linux build the stick could run there (x64 and arm64 only)`);
  }
  if (!arches.length) throw new StickError(`bundle ${o.bundleDir} has no amd64 or arm64 content; a stick needs one of them`);

  step(`verifying bundle ${doc.name} (${arches.join(', ')}) against ${trustKeys.map((k) => k.name).join(', ')}`);
  const verified = await verifyBundle(o.bundleDir, { trustedKeys: trustKeys.map((k) => k.key), arches });

  const runtimeArches = arches.map((a) => RUNTIME_ARCH_OF[a]!);
  const rt = await fetchNodeRuntimes({
    runtime: o.runtime,
    recipePath: o.recipePath,
    cacheDir: o.cacheDir,
    arches: runtimeArches,
    ...(o.offline ? { offline: true } : {}),
    ...(o.fetchImpl ? { fetchImpl: o.fetchImpl } : {}),
    ...(o.onFile ? { onFile: o.onFile } : {}),
  });

  fs.mkdirSync(path.dirname(out), { recursive: true });
  const staging = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.writing-`));
  try {
    step(`copying the bundle (${verified.blobs} blobs)`);
    const bdir = path.join(staging, STICK_BUNDLE_DIR);
    fs.mkdirSync(path.join(bdir, 'blobs', 'sha256'), { recursive: true });
    for (const f of [OCI_LAYOUT_FILE, INDEX_FILE, BUNDLE_FILE, SIGNATURE_FILE])
      if (fs.existsSync(path.join(o.bundleDir, f))) fs.copyFileSync(path.join(o.bundleDir, f), path.join(bdir, f));
    const blobs = new Set<string>();
    for (const a of arches) for (const d of archBlobs(doc.arches[a]!).keys()) blobs.add(d.slice('sha256:'.length));
    for (const b of blobs) fs.copyFileSync(path.join(o.bundleDir, 'blobs', 'sha256', b), path.join(bdir, 'blobs', 'sha256', b));
    // The copy is what the technician installs from: verify it, not only the source.
    await verifyBundle(bdir, { trustedKeys: trustKeys.map((k) => k.key), arches });

    const runtimes: StickResult['runtimes'] = [];
    for (const t of rt.tarballs) {
      step(`unpacking ${t.name}`);
      const r = await extractNodeRuntime(t, rt.version, path.join(staging, 'runtime', t.arch));
      runtimes.push({ arch: t.arch, tarball: t.name, tarballDigest: t.digest, nodeDigest: r.digest });
    }
    fs.copyFileSync(o.cliFile, path.join(staging, STICK_CLI_FILE));
    fs.writeFileSync(path.join(staging, STICK_LAUNCHER_FILE), STICK_LAUNCHER, { mode: 0o755 });
    fs.chmodSync(path.join(staging, STICK_LAUNCHER_FILE), 0o755);
    fs.mkdirSync(path.join(staging, 'trust'));
    for (const k of trustKeys) fs.copyFileSync(k.file, path.join(staging, 'trust', k.name));
    for (const [dir, list] of [
      ['backups', backups],
      ['sites', sites],
    ] as const) {
      if (!list.length) continue;
      fs.mkdirSync(path.join(staging, dir));
      for (const [f, n] of list) fs.copyFileSync(f, path.join(staging, dir, n));
    }
    const result: StickResult = {
      dir: out,
      arches,
      runtimes,
      runtime: { version: rt.version, checksums: rt.checksums, lockPath: rt.lockPath, lockWritten: rt.lockWritten },
      bundle: { name: doc.name, signer: verified.signer, blobs: verified.blobs, bytes: verified.bytes },
      backups: backups.map(([, n]) => `backups/${n}`),
      sites: sites.map(([, n]) => `sites/${n}`),
      trustKeys: trustKeys.map((k) => ({ file: `trust/${k.name}`, keyId: keyId(k.key) })),
      files: 0,
      bytes: 0,
    };
    fs.writeFileSync(path.join(staging, 'README.txt'), stickReadme(result));

    step('writing SHA256SUMS');
    const all = listFiles(staging);
    const lines: string[] = [];
    for (const f of all) {
      const h = await hashFile(path.join(staging, f));
      lines.push(`${h.digest.slice('sha256:'.length)}  ${f}\n`);
      result.files++;
      result.bytes += h.size;
    }
    fs.writeFileSync(path.join(staging, STICK_SUMS_FILE), lines.join(''));
    fs.chmodSync(staging, 0o755); // mkdtemp made it 0700: the technician's own user must be able to enter it
    if (fs.existsSync(out)) fs.rmdirSync(out); // empty (checked above)
    fs.renameSync(staging, out);
    return result;
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  }
}

/** What the technician reads on site: the exact commands for this stick's files. */
export function stickReadme(r: StickResult): string {
  const key = r.trustKeys[0]!.file;
  const site = r.sites[0] ?? 'sites/site.yaml';
  const backup = r.backups[0] ?? 'backups/<the backup file>';
  return `fsm-edge on a USB stick — installing or recovering a POP on site, without a controller
=======================================================================================

This stick carries: the signed bundle ${r.bundle.name} (${r.arches.join(', ')}), fsm-edge, and Node.js
${r.runtime.version} for ${r.runtimes.map((x) => x.arch).join(' and ')}. Nothing needs the network.

1. Plug the stick into the POP and mount it, e.g.:  sudo mount /dev/sdb1 /mnt && cd /mnt
2. Check the signer. The operator gave you a key id; it must be this one:
${r.trustKeys.map((k) => `     ${k.file}  ${k.keyId}`).join('\n')}
   fsm-edge refuses a bundle whose signature does not verify against that key.

Install a brand-new POP (${site} describes it):

   sudo ./fsm-edge install --local ${site} --bundle ${STICK_BUNDLE_DIR} --trust-key ${key}

${
  r.backups.length
    ? `Recover a POP from a backup (a dead disk, a replacement box). The backup opens with its recovery
passphrase: put it in a file on the POP's RAM disk (type it, Enter, then Ctrl-D), recover, remove the file:

   sudo sh -c 'umask 077; cat > /run/fsm-edge-passphrase'
   sudo ./fsm-edge recover --local ${site} --backup ${backup} --passphrase-file /run/fsm-edge-passphrase --bundle ${STICK_BUNDLE_DIR} --trust-key ${key}
   sudo rm /run/fsm-edge-passphrase

(or --identity FILE with an age key file instead of the passphrase)

`
    : ''
}The POP's registration with the hub is left pending (exit code 0, "registration pending"). When the site's
link works again, the operator runs from the controller:  fsm-edge register site.yaml

If ./fsm-edge says "Permission denied" (a stick mounted noexec), run it as:  sudo sh ./fsm-edge …
Exit codes: 0 done, 1 the operation failed (the message names the step and what to do), 2 bad usage or
configuration, 3 the stick cannot run here (wrong machine type, a missing or damaged runtime: copy the
stick again). Re-running a command after a failure continues where it stopped.

The launcher checks the runtime and fsm-edge.mjs against SHA256SUMS (a damaged copy); the bundle's
signature is what proves where it came from.
`;
}
