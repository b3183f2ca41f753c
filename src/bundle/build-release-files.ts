// The release files of a bundle: k3s's install.sh, checksums, binary and (by recipe) its image list or airgap
// archive, the FSM chart, and the POP-side script — each pinned in the lock by URL and verified by digest.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BundleArch, RecipeSpec } from '../config/recipe.js';
import { copyBlob, hasBlob, hashFile } from './blob-file.js';
import type { BundleFile, FileRole } from './format.js';
import { K3S_IMAGE_LIST, POP_ASSEMBLE_SCRIPT, blobPath, k3sAirgapArchiveName, k3sBinaryName, k3sChecksumName } from './layout.js';
import { expandUrl, parseImageList, parseSha256Sums } from './release-files.js';
import { formatImageRef, parseImageRef } from './oci-client.js';
import { BuildError, type BuildContext } from './build-context.js';

export interface PinnedReleaseFiles {
  perArch: Map<BundleArch, BundleFile[]>;
  /** The k3s system images to carry as images (systemImages: registry), minus the recipe's skipImages. */
  k3sImageRefs: string[];
  /** Every URL this build pinned: the lock keeps these. */
  usedUrls: Set<string>;
  /** URL of a file of this k3s release. */
  relUrl: (name: string) => string;
}

type LocalFile = BundleFile & { path: string };

export async function pinReleaseFiles(ctx: BuildContext): Promise<PinnedReleaseFiles> {
  const { spec, lock, lockPath, frozen } = ctx;
  const version = spec.k3s.version;
  const relUrl = (name: string) => `${expandUrl(spec.k3s.releaseUrl, { version }).replace(/\/+$/, '')}/${name}`;
  const usedUrls = new Set<string>();
  const pinned = async (
    role: FileRole,
    name: string,
    url: string,
    expect: { digest?: string; source?: string } = {},
  ): Promise<LocalFile> => {
    usedUrls.add(url);
    const locked = lock.files[url];
    if (locked && expect.digest && locked.digest !== expect.digest)
      throw new BuildError(
        `${name} (${url}): the lock file pins ${locked.digest} but ${expect.source} says ${expect.digest}; the release changed — check it, then delete the lock entry`,
      );
    if (!locked && !expect.digest && frozen)
      throw new BuildError(`${name} (${url}) is not pinned in ${lockPath}; run the build without --frozen/--offline to resolve it`);
    const f = await ctx.files.get(url, name, locked ? { ...locked, source: 'the lock file' } : expect);
    lock.files[url] = { digest: f.digest, size: f.size };
    ctx.emit({ type: 'file', label: name, state: f.downloaded ? 'downloaded' : 'cached', size: f.size });
    return { role, name, digest: f.digest, size: f.size, url, path: f.path };
  };

  const anyMesh = ctx.arches.some((a) => (spec.arches[a]?.features.length ?? 0) > 0);
  const shared: LocalFile[] = [];
  shared.push(
    await pinned(
      'k3s-install-script',
      'install.sh',
      expandUrl(spec.k3s.installScript.url, { version }),
      sha(spec.k3s.installScript.sha256, 'the recipe'),
    ),
  );
  let k3sImageRefs: string[] = [];
  if (spec.k3s.systemImages === 'registry') {
    const list = await pinned('k3s-image-list', K3S_IMAGE_LIST, relUrl(K3S_IMAGE_LIST));
    shared.push(list);
    const skip = new Set(spec.k3s.skipImages.map((r) => formatImageRef(parseImageRef(r))));
    k3sImageRefs = parseImageList(fs.readFileSync(list.path, 'utf8')).filter((r) => !skip.has(formatImageRef(parseImageRef(r))));
  }
  if (anyMesh) {
    const chartUrl = expandUrl(spec.fsm.chart.url, { version: spec.fsm.version });
    shared.push(
      await pinned('fsm-chart', path.posix.basename(new URL(chartUrl).pathname), chartUrl, sha(spec.fsm.chart.sha256, 'the recipe')),
    );
  }
  shared.push(await popScript(ctx.opts.popDir ?? defaultPopDir(), ctx.cache));

  const perArch = new Map<BundleArch, BundleFile[]>();
  for (const arch of ctx.arches) {
    const sumsName = k3sChecksumName(arch);
    const sumsFile = await pinned('k3s-checksums', sumsName, relUrl(sumsName));
    const sums = parseSha256Sums(fs.readFileSync(sumsFile.path, 'utf8'));
    const fromSums = (n: string) => {
      const d = sums.get(n);
      if (!d) throw new BuildError(`${sumsName} (${sumsFile.url}) has no line for ${n}; is ${version} a complete k3s release?`);
      return { digest: d, source: sumsName };
    };
    const list: BundleFile[] = [strip(sumsFile)];
    const bin = k3sBinaryName(arch);
    list.push(strip(await pinned('k3s-binary', bin, relUrl(bin), fromSums(bin))));
    if (spec.k3s.systemImages === 'archive') {
      const a = k3sAirgapArchiveName(arch, spec.k3s.archiveFormat);
      list.push(strip(await pinned('k3s-airgap-images', a, relUrl(a), fromSums(a))));
    }
    for (const f of shared) if (f.role !== 'fsm-chart' || (spec.arches[arch]?.features.length ?? 0) > 0) list.push(strip(f));
    perArch.set(arch, list);
  }
  return { perArch, k3sImageRefs, usedUrls, relUrl };
}

/** The release URLs an arch needs, built or not this time (the lock keeps their pins). */
export function archUrls(spec: RecipeSpec, arch: BundleArch, relUrl: (n: string) => string): string[] {
  const out = [relUrl(k3sChecksumName(arch)), relUrl(k3sBinaryName(arch))];
  if (spec.k3s.systemImages === 'archive') out.push(relUrl(k3sAirgapArchiveName(arch, spec.k3s.archiveFormat)));
  return out;
}

const sha = (hex: string | undefined, source: string) => (hex ? { digest: `sha256:${hex}`, source } : {});
const strip = ({ path: _p, ...f }: LocalFile): BundleFile => f;

/** The POP-side script ships inside every bundle, content-addressed like everything else. */
async function popScript(popDir: string, cache: string): Promise<LocalFile> {
  const src = path.join(popDir, POP_ASSEMBLE_SCRIPT);
  const { digest, size } = await hashFile(src);
  const dest = blobPath(cache, digest);
  if (!hasBlob(dest, size)) copyBlob(src, dest);
  return { role: 'pop-script', name: POP_ASSEMBLE_SCRIPT, digest, size, url: '', path: dest };
}

/** bundle/pop of this repository, found from this module whether it runs from src/ or dist/. */
export function defaultPopDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'bundle', 'pop');
    if (fs.existsSync(path.join(candidate, POP_ASSEMBLE_SCRIPT))) return candidate;
    dir = path.dirname(dir);
  }
  throw new BuildError(`bundle/pop/${POP_ASSEMBLE_SCRIPT} not found near ${fileURLToPath(import.meta.url)}`);
}
