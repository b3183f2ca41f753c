// Release files (k3s binary, install.sh, checksum files, image list, airgap archive, chart): downloaded into the
// cache's blob store, verified against the release's sha256sum file, the recipe or the lock.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { BundleArch } from '../config/recipe.js';
import { DigestMismatchError, hasBlob, writeVerified } from './blob-file.js';
import { blobPath } from './layout.js';

export class ReleaseFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReleaseFileError';
  }
}

export interface FetchedFile {
  digest: string;
  size: number;
  /** In the cache's blob store. */
  path: string;
  downloaded: boolean;
}

export interface Expectation {
  digest?: string;
  size?: number;
  /** Where the expected digest comes from, for the error message: `sha256sum-arm64.txt`, `the lock file`. */
  source?: string;
}

export interface ReleaseFilesOptions {
  cache: string;
  fetchImpl?: typeof fetch;
  /** Never touch the network: everything must already be in the cache and pinned. */
  offline?: boolean;
  onBytes?: (label: string, n: number, total: number | undefined) => void;
  retries?: number;
  backoffMs?: number;
}

export class ReleaseFiles {
  readonly stats = { requests: 0, filesFetched: 0, bytesFetched: 0 };
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: ReleaseFilesOptions) {
    this.fetchImpl = opts.fetchImpl ?? fetch;
  }

  /** The file at `url`, from the cache when its pinned digest is there, else downloaded and verified. */
  async get(url: string, label: string, expect: Expectation = {}): Promise<FetchedFile> {
    if (expect.digest) {
      const cached = blobPath(this.opts.cache, expect.digest);
      // A checksum file pins the digest but not the size: the cached file's own size is the size (a lock entry
      // from another mirror URL does not apply).
      if (hasBlob(cached, expect.size))
        return { digest: expect.digest, size: expect.size ?? fs.statSync(cached).size, path: cached, downloaded: false };
    }
    if (this.opts.offline)
      throw new ReleaseFileError(`${label}: not in the cache and --offline is set (${url}); build once with network access`);
    const what = `${label} from ${url}${expect.source ? ` (checked against ${expect.source})` : ''}`;
    let w: { digest: string; size: number } | undefined;
    let tmp = '';
    // Transient failures (connection errors, 429, 5xx, a body cut short) are retried with backoff.
    for (let attempt = 0; !w; attempt++) {
      let transient: string | undefined;
      this.stats.requests++;
      tmp = path.join(this.opts.cache, 'blobs', 'sha256', `.download-${process.pid}-${this.stats.requests}`);
      try {
        const res = await this.fetchImpl(url, { redirect: 'follow', headers: { 'User-Agent': 'fsm-edge' } });
        if (!res.ok || !res.body) {
          await res.body?.cancel();
          if (res.status !== 429 && res.status < 500)
            throw new ReleaseFileError(`${label}: download from ${url} failed: HTTP ${res.status}`);
          transient = `HTTP ${res.status}`;
        } else {
          const total = Number(res.headers.get('content-length') ?? '') || undefined;
          w = await writeVerified(
            Readable.fromWeb(res.body as never),
            tmp,
            what,
            { digest: expect.digest, size: expect.size ?? total },
            (n) => {
              this.stats.bytesFetched += n;
              this.opts.onBytes?.(label, n, total);
            },
          );
          break;
        }
      } catch (e) {
        // A wrong digest is final; a short body (size below Content-Length or the lock's size) is worth a retry.
        if (e instanceof ReleaseFileError || (e instanceof DigestMismatchError && !e.what.endsWith(': size'))) throw e;
        const cause = (e as { cause?: { code?: string } }).cause?.code;
        transient = `${(e as Error).message}${cause ? ` (${cause})` : ''}`;
      }
      if (attempt >= (this.opts.retries ?? 3))
        throw new ReleaseFileError(`${label}: download from ${url} failed after ${attempt + 1} attempts: ${transient}`);
      await new Promise((r) => setTimeout(r, (this.opts.backoffMs ?? 500) * 2 ** attempt));
    }
    const dest = blobPath(this.opts.cache, w.digest);
    fs.renameSync(tmp, dest);
    this.stats.filesFetched++;
    return { digest: w.digest, size: w.size, path: dest, downloaded: true };
  }
}

/** `sha256sum` output (`<hex>  <name>` or `<hex> *<name>`) → name → `sha256:<hex>`. */
export function parseSha256Sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([a-f0-9]{64})\s+\*?(\S.*?)\s*$/.exec(line.trim());
    if (m) out.set(m[2]!.replace(/^.*\//, ''), `sha256:${m[1]}`);
  }
  return out;
}

/** `k3s-images.txt`: one image reference a line; blank lines and comments ignored. */
export function parseImageList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

/** Fills `{version}` (URL-encoded, so `+` becomes `%2B` as GitHub wants) and `{arch}`. */
export function expandUrl(template: string, vars: { version?: string; arch?: BundleArch }): string {
  return template.replaceAll('{version}', encodeURIComponent(vars.version ?? '')).replaceAll('{arch}', vars.arch ?? '');
}
