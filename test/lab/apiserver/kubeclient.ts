// A small Kubernetes client driven by a kubeconfig — what the hub's simulated FSM controller uses to really
// connect to a POP's API (client-go in the real controller). Plain node:https so it bundles for Node 18.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { parse as parseYaml } from 'yaml';

export interface KubeconfigTarget {
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
  insecure?: boolean;
  tlsServerName?: string;
}

/** A kubeconfig that cannot be used, with the reason a person can act on. */
export class KubeconfigError extends Error {
  override name = 'KubeconfigError';
}

interface Named<T> {
  name: string;
  [k: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

const b64 = (s: unknown) => Buffer.from(String(s), 'base64').toString('utf8');

export function loadKubeconfig(text: string, context?: string): KubeconfigTarget {
  let doc: Record<string, unknown>;
  try {
    doc = parseYaml(text) as Record<string, unknown>;
  } catch (e) {
    throw new KubeconfigError(`kubeconfig is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object') throw new KubeconfigError('kubeconfig is empty');
  const contexts = (doc.contexts ?? []) as Array<Named<{ cluster?: string; user?: string }>>;
  const clusters = (doc.clusters ?? []) as Array<Named<Record<string, unknown>>>;
  const users = (doc.users ?? []) as Array<Named<Record<string, unknown>>>;
  const ctxName = context ?? (doc['current-context'] as string | undefined);
  if (!ctxName) throw new KubeconfigError('kubeconfig has no current-context');
  const ctx = contexts.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new KubeconfigError(`kubeconfig has no context "${ctxName}"`);
  const cl = clusters.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cl) throw new KubeconfigError(`kubeconfig context "${ctxName}" names cluster "${ctx.cluster}", which is not defined`);
  const us = users.find((u) => u.name === ctx.user)?.user ?? {};
  const server = cl.server as string | undefined;
  if (!server || !/^https?:\/\//.test(server))
    throw new KubeconfigError(`kubeconfig cluster "${ctx.cluster}" has no valid server URL (got ${JSON.stringify(server)})`);
  const t: KubeconfigTarget = { server: server.replace(/\/+$/, '') };
  if (cl['certificate-authority-data']) t.ca = b64(cl['certificate-authority-data']);
  else if (cl['certificate-authority']) t.ca = readFileSync(String(cl['certificate-authority']), 'utf8');
  if (cl['insecure-skip-tls-verify'] === true) t.insecure = true;
  if (cl['tls-server-name']) t.tlsServerName = String(cl['tls-server-name']);
  if (us['client-certificate-data']) t.cert = b64(us['client-certificate-data']);
  else if (us['client-certificate']) t.cert = readFileSync(String(us['client-certificate']), 'utf8');
  if (us['client-key-data']) t.key = b64(us['client-key-data']);
  else if (us['client-key']) t.key = readFileSync(String(us['client-key']), 'utf8');
  if (us.token) t.token = String(us.token);
  else if (us.tokenFile) t.token = readFileSync(String(us.tokenFile), 'utf8').trim();
  if (!t.token && !(t.cert && t.key)) throw new KubeconfigError(`kubeconfig user "${ctx.user}" has no token or client certificate`);
  return t;
}

export interface KubeResponse {
  status: number;
  body: unknown;
}

/** An HTTP error from the remote API, with its Status message. */
export class KubeRequestError extends Error {
  override name = 'KubeRequestError';
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
  }
}

export class KubeClient {
  constructor(
    readonly target: KubeconfigTarget,
    private readonly timeoutMs = 5000,
  ) {}

  static fromKubeconfig(text: string, context?: string, timeoutMs?: number): KubeClient {
    return new KubeClient(loadKubeconfig(text, context), timeoutMs);
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<KubeResponse> {
    const u = new URL(this.target.server + path);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          method,
          hostname: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port || 443,
          path: u.pathname + u.search,
          headers: {
            Accept: 'application/json',
            'User-Agent': 'fsm-controller/v1.5.1 (lab stand-in)',
            ...(payload !== undefined ? { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) } : {}),
            ...(this.target.token ? { Authorization: `Bearer ${this.target.token}` } : {}),
          },
          ...(this.target.ca ? { ca: this.target.ca } : {}),
          ...(this.target.cert ? { cert: this.target.cert } : {}),
          ...(this.target.key ? { key: this.target.key } : {}),
          ...(this.target.tlsServerName ? { servername: this.target.tlsServerName } : {}),
          rejectUnauthorized: !this.target.insecure,
          timeout: this.timeoutMs,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // plain text (healthz) stays text
            }
            const status = res.statusCode ?? 0;
            if (status >= 400) {
              const msg = (parsed as { message?: string })?.message ?? (text.trim() || `HTTP ${status}`);
              reject(new KubeRequestError(status, msg, parsed));
            } else resolve({ status, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(
          Object.assign(new Error(`timed out after ${this.timeoutMs} ms connecting to ${this.target.server}`), { code: 'ETIMEDOUT' }),
        ),
      );
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /**
   * A watch stream (`?watch=1…` in `path`): calls `onEvent` per JSON line until the server ends the stream
   * (resolves), the request fails (rejects, 4xx/5xx as KubeRequestError) or `stop()` is called (resolves).
   * A fresh connection and TLS handshake each time (agent: false), like every request of this client.
   */
  watch(path: string, onEvent: (ev: { type: string; object: Record<string, unknown> }) => void): { done: Promise<void>; stop(): void } {
    const u = new URL(this.target.server + path);
    let stopReq: () => void = () => {};
    let stopped = false;
    const done = new Promise<void>((resolve, reject) => {
      const req = request(
        {
          method: 'GET',
          hostname: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port || 443,
          path: u.pathname + u.search,
          headers: {
            Accept: 'application/json',
            'User-Agent': 'fsm-controller/v1.5.1 (lab stand-in)',
            ...(this.target.token ? { Authorization: `Bearer ${this.target.token}` } : {}),
          },
          ...(this.target.ca ? { ca: this.target.ca } : {}),
          ...(this.target.cert ? { cert: this.target.cert } : {}),
          ...(this.target.key ? { key: this.target.key } : {}),
          ...(this.target.tlsServerName ? { servername: this.target.tlsServerName } : {}),
          rejectUnauthorized: !this.target.insecure,
          timeout: this.timeoutMs,
          agent: false,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          let buf = '';
          // established: a watch is idle most of the time, the connect timeout must not end it
          if (status < 400) req.setTimeout(0);
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            buf += c;
            if (status >= 400) return;
            let i: number;
            while ((i = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, i).trim();
              buf = buf.slice(i + 1);
              if (line) onEvent(JSON.parse(line) as { type: string; object: Record<string, unknown> });
            }
          });
          res.on('end', () => {
            if (status < 400) return resolve();
            let parsed: unknown = buf;
            try {
              parsed = JSON.parse(buf);
            } catch {
              // plain text
            }
            reject(new KubeRequestError(status, (parsed as { message?: string })?.message ?? `HTTP ${status}`, parsed));
          });
          res.on('error', (e) => (stopped ? resolve() : reject(e)));
        },
      );
      stopReq = () => req.destroy();
      req.on('timeout', () =>
        req.destroy(
          Object.assign(new Error(`timed out after ${this.timeoutMs} ms connecting to ${this.target.server}`), { code: 'ETIMEDOUT' }),
        ),
      );
      req.on('error', (e) => (stopped ? resolve() : reject(e)));
      req.end();
    });
    return {
      done,
      stop: () => {
        stopped = true;
        stopReq();
      },
    };
  }

  async put<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
    return (await this.request('PUT', path, body)).body as T;
  }

  async post<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
    return (await this.request('POST', path, body)).body as T;
  }

  async delete<T = Record<string, unknown>>(path: string): Promise<T> {
    return (await this.request('DELETE', path)).body as T;
  }

  async get<T = Record<string, unknown>>(path: string): Promise<T> {
    return (await this.request('GET', path)).body as T;
  }

  async patch<T = Record<string, unknown>>(path: string, body: unknown, type: 'merge' | 'json' = 'merge'): Promise<T> {
    return (await this.request('PATCH', path, body, type === 'merge' ? 'application/merge-patch+json' : 'application/json-patch+json'))
      .body as T;
  }
}
