// A minimal Kubernetes client for the stand-in's `k3s kubectl`: kubeconfig client-cert auth over https.
import fs from 'node:fs';
import https from 'node:https';
import YAML from 'yaml';

export interface KubeTarget {
  server: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export function loadKubeconfig(file: string): KubeTarget {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' ? 'permission denied' : code === 'ENOENT' ? 'no such file or directory' : (e as Error).message;
    throw new Error(`error loading config file "${file}": open ${file}: ${why}`);
  }
  const kc = YAML.parse(text) as {
    'current-context'?: string;
    contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
    clusters?: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string } }>;
    users?: Array<{ name: string; user: { 'client-certificate-data'?: string; 'client-key-data'?: string } }>;
  };
  const ctx = kc.contexts?.find((c) => c.name === kc['current-context']) ?? kc.contexts?.[0];
  const cluster = kc.clusters?.find((c) => c.name === ctx?.context.cluster)?.cluster;
  const user = kc.users?.find((u) => u.name === ctx?.context.user)?.user;
  if (!cluster || !user) throw new Error(`invalid configuration: no configuration has been provided in ${file}`);
  const b = (s?: string) => Buffer.from(s ?? '', 'base64');
  return {
    server: cluster.server,
    ca: b(cluster['certificate-authority-data']),
    cert: b(user['client-certificate-data']),
    key: b(user['client-key-data']),
  };
}

export interface KubeResponse {
  status: number;
  body: string;
}

export function kubeRequest(
  t: KubeTarget,
  method: string,
  path: string,
  body?: string,
  contentType = 'application/json',
): Promise<KubeResponse> {
  const url = new URL(path, t.server);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        headers: body !== undefined ? { 'content-type': contentType, accept: 'application/json' } : { accept: 'application/json' },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('context deadline exceeded')));
    req.on('error', (e) => {
      const host = url.host;
      const code = (e as NodeJS.ErrnoException).code;
      reject(
        new Error(
          code === 'ECONNREFUSED'
            ? `The connection to the server ${host} was refused - did you specify the right host or port?`
            : `Unable to connect to the server: ${e.message}`,
        ),
      );
    });
    if (body !== undefined) req.end(body);
    else req.end();
  });
}
