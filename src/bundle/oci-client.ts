// A pull-only client for the OCI distribution API: Docker Hub style token auth (a 401 with
// `WWW-Authenticate: Bearer realm=…,service=…,scope=…`), registry mirrors tried in order, multi-arch indexes
// resolved to one platform, and blobs streamed to disk with digest verification.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BundleArch, Mirror } from '../config/recipe.js';
import { DigestMismatchError, sha256Of, type Written } from './blob-file.js';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;
const ACCEPT_ANY_MANIFEST = Object.values(MEDIA_TYPES).join(', ');

/** What the client reads into memory, at most: a registry (or a mirror, or a token realm) cannot make it grow. */
export const LIMITS = {
  /** Docker Hub and distribution refuse manifests over 4 MiB too. */
  manifestBytes: 4 * 1024 * 1024,
  tokenBytes: 64 * 1024,
  errorBodyBytes: 64 * 1024,
  redirects: 5,
} as const;

/**
 * Hosts that may receive a registry's credentials (and the tokens bought with them), always over https: the
 * registry's own host, plus known pairs where the token service lives elsewhere.
 */
const CREDENTIAL_HOSTS: Record<string, string[]> = {
  'docker.io': ['registry-1.docker.io', 'auth.docker.io', 'index.docker.io'],
};
export function mayReceiveCredentials(url: URL, registry: string): boolean {
  if (url.protocol !== 'https:') return false;
  const own = new URL(`https://${registry}`).hostname;
  return [own, ...(CREDENTIAL_HOSTS[registry] ?? [])].includes(url.hostname);
}
const isIndexType = (t: string) => t === MEDIA_TYPES.ociIndex || t === MEDIA_TYPES.dockerList;

export interface ImageName {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** Parses `flomesh/pipy:1.5.12`, `docker.io/library/busybox:1.37`, `ghcr.io/x/y@sha256:…` the way Docker does. */
export function parseImageRef(ref: string): ImageName {
  let rest = ref.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  let registry = 'docker.io';
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    rest = rest.slice(slash + 1);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = 'docker.io';
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (!rest || !/^[a-z0-9]+([._\-/][a-z0-9]+)*$/.test(rest)) throw new Error(`image reference ${ref}: bad repository name "${rest}"`);
  if (registry === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  if (!tag && !digest) throw new Error(`image reference ${ref}: no tag or digest — bundles pin every image`);
  return { registry, repository: rest, tag, digest };
}

export function formatImageRef(n: ImageName): string {
  return `${n.registry}/${n.repository}${n.tag ? `:${n.tag}` : ''}${n.digest ? `@${n.digest}` : ''}`;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Platforms acceptable for an architecture, best first (arm: v7, then v6 as k3s' own arm archive does). */
export function platformsFor(arch: BundleArch): Platform[] {
  if (arch === 'arm')
    return [
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
    ];
  return [{ os: 'linux', architecture: arch }];
}
export const platformString = (p: Platform) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

function platformMatches(have: Partial<Platform> | undefined, want: Platform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  if (want.variant) return have.variant === want.variant || (want.variant === 'v7' && !have.variant);
  return !have.variant || (want.architecture === 'arm64' && have.variant === 'v8');
}

export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryError';
  }
}

export class MissingPlatformError extends RegistryError {
  constructor(
    readonly image: string,
    readonly platform: string,
    readonly available: string[],
  ) {
    super(
      `image ${image} has no ${platform} manifest (it has: ${available.join(', ') || 'none'}); ` +
        `pick a tag built for ${platform} or drop the feature/arch that needs it`,
    );
    this.name = 'MissingPlatformError';
  }
}

export interface FetchedManifest {
  mediaType: string;
  digest: string;
  size: number;
  body: Buffer;
}

export interface ResolvedPlatform {
  /** What the tag (or digest) pointed at. */
  resolvedDigest: string;
  resolvedMediaType: string;
  platform: Platform;
  manifest: FetchedManifest;
}

export interface OciClientOptions {
  /** Registry host → mirrors (recipe `spec.mirrors`). */
  mirrors?: Record<string, Mirror>;
  /** Basic credentials for a registry (used for token requests), e.g. from the environment. */
  credentials?: (registry: string) => { username: string; password: string } | undefined;
  userAgent?: string;
  fetchImpl?: typeof fetch;
  /** Extra attempts per endpoint for transient failures (default 3), first backoff in ms (default 500, doubling). */
  retries?: number;
  backoffMs?: number;
}

export interface ClientStats {
  requests: number;
  manifestsFetched: number;
  blobsFetched: number;
  blobBytesFetched: number;
}

interface Endpoint {
  base: string;
  mirror: boolean;
}

export class OciClient {
  readonly stats: ClientStats = { requests: 0, manifestsFetched: 0, blobsFetched: 0, blobBytesFetched: 0 };
  private readonly tokens = new Map<string, string>();
  private readonly manifests = new Map<string, Promise<FetchedManifest>>();
  private readonly fetchImpl: typeof fetch;
  private readonly retries: number;
  private readonly backoffMs: number;

  constructor(private readonly opts: OciClientOptions = {}) {
    this.fetchImpl = opts.fetchImpl ?? fetch;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 500;
  }

  endpointsFor(registry: string): Endpoint[] {
    const m = this.opts.mirrors?.[registry];
    const upstream: Endpoint = {
      base: registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`,
      mirror: false,
    };
    if (!m) return [upstream];
    const mirrors = m.endpoints.map((e) => ({ base: e.replace(/\/+$/, ''), mirror: true }));
    return m.upstream === false ? mirrors : [...mirrors, upstream];
  }

  /**
   * GET /v2/<repo>/<kind>/<reference> from the first endpoint that has it. Transient failures (connection
   * errors, 429, 5xx) are retried on the same endpoint with backoff before moving on to the next one.
   */
  private async get(name: ImageName, suffix: string, accept: string, what: string, extra: Record<string, string> = {}): Promise<Response> {
    const attempts: string[] = [];
    for (const ep of this.endpointsFor(name.registry)) {
      const url = `${ep.base}/v2/${name.repository}/${suffix}`;
      for (let attempt = 0; ; attempt++) {
        let transient: string;
        try {
          // Credentials belong to the host that asks: a mirror never gets the upstream registry's password.
          const credentialsFor = ep.mirror ? new URL(ep.base).host : name.registry;
          const res = await this.authorizedFetch(url, name.repository, accept, credentialsFor, extra);
          if (res.ok) return res;
          transient = `HTTP ${res.status}${await errorDetail(res)}`;
          if (res.status !== 429 && res.status < 500) {
            attempts.push(`${ep.base}: ${transient}`);
            break;
          }
        } catch (e) {
          if (e instanceof RegistryError) throw e;
          transient = `${(e as Error).message}${causeOf(e)}`;
        }
        if (attempt >= this.retries) {
          attempts.push(`${ep.base}: ${transient}${attempt ? ` (after ${attempt + 1} attempts)` : ''}`);
          break;
        }
        await sleep(this.backoffMs * 2 ** attempt);
      }
    }
    const limited = attempts.some((a) => / HTTP 429\b/.test(a));
    throw new RegistryError(
      `${what}: not available from any endpoint — ${attempts.join('; ')}` +
        (limited
          ? `; the registry is rate-limiting: set FSM_EDGE_REGISTRY_${name.registry.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_USER and _PASSWORD to pull authenticated, or configure a mirror`
          : ''),
    );
  }

  private async authorizedFetch(
    url: string,
    repository: string,
    accept: string,
    registry: string,
    extra: Record<string, string> = {},
  ): Promise<Response> {
    const origin = new URL(url).origin;
    const scope = `repository:${repository}:pull`;
    const key = `${origin}|${scope}`;
    const headers: Record<string, string> = { ...extra, Accept: accept, 'User-Agent': this.opts.userAgent ?? 'fsm-edge' };
    const token = this.tokens.get(key);
    if (token) headers.Authorization = token;
    let res = await this.fetchFollowing(url, headers);
    if (res.status !== 401) return res;
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel();
    const auth = await this.answerChallenge(challenge, scope, registry, url);
    this.tokens.set(key, auth);
    headers.Authorization = auth;
    res = await this.fetchFollowing(url, headers);
    return res;
  }

  /**
   * GET with redirects followed here, not by fetch: the Authorization header (a token or Basic credentials) is
   * dropped as soon as a redirect leaves the origin it was meant for (blob downloads redirect to CDNs).
   */
  private async fetchFollowing(url: string, headers: Record<string, string>): Promise<Response> {
    const origin = new URL(url).origin;
    let current = new URL(url);
    const h = { ...headers };
    for (let hop = 0; ; hop++) {
      this.stats.requests++;
      const res = await this.fetchImpl(current, { headers: h, redirect: 'manual' });
      const location = res.headers.get('location');
      if (![301, 302, 303, 307, 308].includes(res.status) || !location) return res;
      await res.body?.cancel();
      if (hop >= LIMITS.redirects) throw new RegistryError(`${url}: more than ${LIMITS.redirects} redirects`);
      current = new URL(location, current);
      if (current.origin !== origin) delete h.Authorization;
    }
  }

  /**
   * Turns a 401 challenge into an Authorization header value. Credentials go only over https to the registry's
   * own host (or a known pair, docker.io → auth.docker.io); a challenge pointing anywhere else gets an anonymous
   * token request when no credentials are configured, and an error when they are (they are never sent there).
   */
  private async answerChallenge(challenge: string, scope: string, registry: string, url: string): Promise<string> {
    const creds = this.opts.credentials?.(registry);
    const basic = creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    const envHint = `FSM_EDGE_REGISTRY_${registry.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_USER/_PASSWORD`;
    const refuse = (to: URL) =>
      new RegistryError(
        `${url}: refusing to send the credentials for ${registry} to ${to.protocol}//${to.host} — they go only over https to ` +
          `${registry}'s own host${CREDENTIAL_HOSTS[registry] ? ` (or ${CREDENTIAL_HOSTS[registry]!.join(', ')})` : ''}; ` +
          `check the registry's address, or unset ${envHint} to pull anonymously`,
      );
    const scheme = challenge.split(/\s+/, 1)[0]?.toLowerCase();
    if (scheme === 'basic') {
      if (!basic) throw new RegistryError(`${url}: the registry wants a username and password (Basic auth) and none is configured`);
      if (!mayReceiveCredentials(new URL(url), registry)) throw refuse(new URL(url));
      return basic;
    }
    if (scheme !== 'bearer')
      throw new RegistryError(`${url}: HTTP 401 without a usable WWW-Authenticate challenge (${challenge || 'none'})`);
    const params: Record<string, string> = {};
    for (const m of challenge.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!] = m[2]!;
    if (!params.realm) throw new RegistryError(`${url}: Bearer challenge without realm (${challenge})`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(params.realm);
    } catch {
      throw new RegistryError(`${url}: Bearer challenge with a realm that is not a URL (${params.realm})`);
    }
    if (tokenUrl.protocol !== 'https:' && tokenUrl.protocol !== 'http:')
      throw new RegistryError(`${url}: token realm ${params.realm} is not http(s)`);
    if (basic && !(mayReceiveCredentials(new URL(url), registry) && mayReceiveCredentials(tokenUrl, registry))) throw refuse(tokenUrl);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', params.scope ?? scope);
    this.stats.requests++;
    // No redirects: a token service that redirects would carry the credentials to wherever it points.
    const res = await this.fetchImpl(tokenUrl, { headers: basic ? { Authorization: basic } : {}, redirect: 'manual' });
    const where = `token request to ${tokenUrl.origin}${tokenUrl.pathname}`;
    if (!res.ok) throw new RegistryError(`${where} failed: HTTP ${res.status}${await errorDetail(res)}`);
    let body: { token?: unknown; access_token?: unknown };
    try {
      body = JSON.parse((await readBounded(res, LIMITS.tokenBytes, `${where}: the response`)).toString('utf8')) as typeof body;
    } catch (e) {
      if (e instanceof RegistryError) throw e;
      throw new RegistryError(`${where}: the response is not JSON`);
    }
    const token = body.token ?? body.access_token;
    if (typeof token !== 'string' || !token || /[\s\0]/.test(token))
      throw new RegistryError(`token response from ${tokenUrl.origin} has no usable token`);
    return `Bearer ${token}`;
  }

  /**
   * A manifest by tag or digest. Asked once per client: resolving an index for several arches costs one GET of
   * the index, which matters where registries count manifest GETs (Docker Hub's anonymous pull limit).
   */
  getManifest(name: ImageName, reference: string, accept = ACCEPT_ANY_MANIFEST): Promise<FetchedManifest> {
    const key = `${name.registry}/${name.repository}|${reference}|${accept}`;
    let p = this.manifests.get(key);
    if (!p) {
      p = this.fetchManifest(name, reference, accept);
      this.manifests.set(key, p);
      p.catch(() => this.manifests.delete(key));
    }
    return p;
  }

  private async fetchManifest(name: ImageName, reference: string, accept: string): Promise<FetchedManifest> {
    const what = `manifest ${formatImageRef({ ...name, tag: undefined, digest: undefined })}:${reference}`;
    const res = await this.get(name, `manifests/${reference}`, accept, what);
    const body = await readBounded(res, LIMITS.manifestBytes, what);
    this.stats.manifestsFetched++;
    const digest = sha256Of(body);
    if (reference.startsWith('sha256:') && digest !== reference)
      throw new RegistryError(`${what}: content has digest ${digest}, not the one asked for`);
    const headerDigest = res.headers.get('docker-content-digest');
    if (headerDigest && !reference.startsWith('sha256:') && headerDigest !== digest)
      throw new RegistryError(`${what}: registry says ${headerDigest} but the content hashes to ${digest}`);
    let mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    try {
      const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: string; manifests?: unknown };
      if (parsed.mediaType) mediaType = parsed.mediaType;
      else if (!Object.values(MEDIA_TYPES).includes(mediaType as never))
        mediaType = parsed.manifests ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
    } catch {
      throw new RegistryError(`${what}: not JSON`);
    }
    return { mediaType, digest, size: body.length, body };
  }

  /**
   * Resolves `reference` (tag or digest) to the manifest for one architecture. `pinned` (from the lock) skips
   * the index: the platform manifest is fetched by digest directly.
   */
  async resolvePlatform(
    name: ImageName,
    reference: string,
    arch: BundleArch,
    configFetcher: (digest: string, size: number) => Promise<Buffer>,
  ): Promise<ResolvedPlatform> {
    const image = formatImageRef({ ...name, digest: undefined });
    const top = await this.getManifest(name, reference);
    const wants = platformsFor(arch);
    if (isIndexType(top.mediaType)) {
      const index = JSON.parse(top.body.toString('utf8')) as {
        manifests?: Array<{ mediaType: string; digest: string; size: number; platform?: Platform }>;
      };
      const entries = (index.manifests ?? []).filter((m) => m.platform && m.platform.os !== 'unknown');
      for (const want of wants) {
        const hit = entries.find((m) => platformMatches(m.platform, want));
        if (hit) {
          const manifest = await this.getManifest(name, hit.digest);
          if (manifest.size !== hit.size)
            throw new RegistryError(`${image}: manifest ${hit.digest} is ${manifest.size} bytes, index says ${hit.size}`);
          return {
            resolvedDigest: top.digest,
            resolvedMediaType: top.mediaType,
            platform: { ...want, variant: hit.platform?.variant },
            manifest,
          };
        }
      }
      throw new MissingPlatformError(
        image,
        platformString(wants[0]!),
        entries.map((m) => platformString(m.platform!)),
      );
    }
    // A single-platform manifest: its config says which platform it is.
    const m = JSON.parse(top.body.toString('utf8')) as { config: { digest: string; size: number } };
    const config = JSON.parse((await configFetcher(m.config.digest, m.config.size)).toString('utf8')) as Partial<Platform>;
    const have: Platform = { os: config.os ?? '?', architecture: config.architecture ?? '?', variant: config.variant };
    const want = wants.find((w) => platformMatches(have, w));
    if (!want) throw new MissingPlatformError(image, platformString(wants[0]!), [platformString(have)]);
    return { resolvedDigest: top.digest, resolvedMediaType: top.mediaType, platform: have, manifest: top };
  }

  /**
   * Streams a blob to `dest`, verifying digest and size; never buffers it. A connection that breaks mid-blob is
   * resumed with an HTTP Range request (the bytes already on disk are re-hashed, not fetched again).
   */
  async fetchBlob(name: ImageName, digest: string, size: number, dest: string, onBytes?: (n: number) => void): Promise<Written> {
    const what = `blob ${digest} of ${formatImageRef({ ...name, digest: undefined })}`;
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const partial = `${dest}.partial-${process.pid}`;
    fs.rmSync(partial, { force: true });
    const count = (n: number) => {
      this.stats.blobBytesFetched += n;
      onBytes?.(n);
    };
    try {
      for (let attempt = 0; ; attempt++) {
        const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
        const res = await this.get(name, `blobs/${digest}`, '*/*', what, have > 0 ? { Range: `bytes=${have}-` } : {});
        if (!res.body) throw new RegistryError(`${what}: empty response`);
        // A server that ignores Range answers 200 with the whole blob: start over.
        const append = have > 0 && res.status === 206;
        const hash = createHash('sha256');
        let got = append ? have : 0;
        if (append) for await (const c of fs.createReadStream(partial, { highWaterMark: 1 << 20 })) hash.update(c as Buffer);
        const tap = new Transform({
          transform(chunk: Buffer, _e, cb) {
            got += chunk.length;
            if (got > size) return cb(new DigestMismatchError(`${what}: size`, `${size} bytes`, 'more than that'));
            hash.update(chunk);
            count(chunk.length);
            cb(null, chunk);
          },
        });
        const out = fs.createWriteStream(partial, { flags: append ? 'a' : 'w' });
        try {
          await pipeline(Readable.fromWeb(res.body as never), tap, out);
        } catch (e) {
          // The next attempt resumes at the partial's size on disk: let the write already under way land first.
          if (!out.closed) await new Promise<void>((r) => out.once('close', () => r()));
          if (e instanceof DigestMismatchError || attempt >= this.retries) throw e;
          await sleep(this.backoffMs * 2 ** attempt);
          continue;
        }
        if (got !== size) {
          if (got < size && attempt < this.retries) continue;
          throw new DigestMismatchError(`${what}: size`, `${size} bytes`, `${got} bytes`);
        }
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== digest) throw new DigestMismatchError(`${what}: sha256`, digest, actual);
        fs.renameSync(partial, dest);
        this.stats.blobsFetched++;
        return { digest, size };
      }
    } catch (e) {
      fs.rmSync(partial, { force: true });
      throw e instanceof DigestMismatchError || e instanceof RegistryError
        ? e
        : new RegistryError(`${what}: ${(e as Error).message}${causeOf(e)}`);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function errorDetail(res: Response): Promise<string> {
  try {
    const text = (await readBounded(res, LIMITS.errorBodyBytes, 'error body')).toString('utf8').trim();
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    const e = parsed.errors?.[0];
    return e ? ` ${String(e.code ?? '').slice(0, 100)} ${String(e.message ?? '').slice(0, 500)}`.trimEnd() : '';
  } catch {
    return '';
  }
}

/**
 * The body of `res`, refused as soon as it passes `limit` bytes: by its Content-Length before anything is read,
 * else while streaming (the rest is never read; the connection is cancelled).
 */
export async function readBounded(res: Response, limit: number, what: string): Promise<Buffer> {
  const tooBig = () => new RegistryError(`${what}: larger than ${limit} bytes — refused (not read into memory)`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel();
    throw tooBig();
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Buffer[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > limit) {
      await reader.cancel();
      throw tooBig();
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks, n);
}

function causeOf(e: unknown): string {
  const c = (e as { cause?: { code?: string; message?: string } }).cause;
  return c ? ` (${c.code ?? c.message ?? ''})` : '';
}
