// Shared fixtures for the recover unit tests: a site, a bundle document, an install context with a recovery, a
// backup built in memory through the contract's shapes, and a decoder for the files a change batch writes.

import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { BundleDoc } from '../../src/bundle/format.js';
import { loadSites } from '../../src/config/index.js';
import { DEFAULT_TIMEOUTS } from '../../src/install/context.js';
import { parseFacts } from '../../src/install/facts.js';
import type { RecoveryBackup, RecoveryManifest } from '../../src/recover/backup-entries.js';
import type { RecoverContext } from '../../src/recover/context.js';
import { B64_EOF_PREFIX } from '../../src/recover/write-bytes.js';

export const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-recover-'));
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
export const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export const FACTS_OK = `machine=x86_64\nkernel=6.1.0\nos_id=debian\nos_version=12\nos_pretty=Debian 12\nhostname=pop1\ninit=systemd\ncpus=2\nmem_kb=4000000\ndisk_free_kb=20000000\ndefault_route=eth0\ncgroup2=1\nbtf=1\nbpffs=/sys/fs/bpf\nbpf_syscall=1\niptables=1`;

export function bundleDoc(k3s = 'v1.37.1+k3s1'): BundleDoc {
  const file = (role: string, name: string, n: number, size: number) => ({ role, name, digest: digest(n), size, url: '' });
  return {
    kind: 'FsmEdgeBundle',
    schemaVersion: 1,
    name: 'test',
    versions: { k3s, fsm: '1.5.1', pipy: '1.5.12', chart: '1.5.1' },
    build: { serial: 3, createdAt: '2026-11-01T00:00:00Z' },
    recipe: {},
    index: { digest: digest(99), size: 10 },
    arches: {
      amd64: {
        features: ['core'],
        files: [file('k3s-binary', 'k3s', 1, 1000), file('pop-script', 'assemble.sh', 2, 200), file('fsm-chart', 'fsm-1.5.1.tgz', 3, 300)],
        images: [],
        totals: { blobs: 3, bytes: 1500 },
      },
    },
    totals: { blobs: 3, bytes: 1500 },
  } as unknown as BundleDoc;
}

export const TOKEN_PASSWORD = '5e3a1c0ffee0ddba11f00dfeed5e3a1c0ffee0ddba11f00d';
export const TOKEN = `K10${'ab'.repeat(32)}::server:${TOKEN_PASSWORD}`;
export const NODE_PASSWORD = 'c0c0a5c0c0a5c0c0a5c0c0a5c0c0a5c0\n';

export function memoryBackup(
  o: { site?: string; datastore?: 'sqlite' | 'etcd'; version?: string; drop?: string[]; token?: string } = {},
): RecoveryBackup {
  const datastore = o.datastore ?? 'sqlite';
  const entries: Record<string, Buffer> = {
    'k3s/token': Buffer.from(`${o.token ?? TOKEN}\n`),
    'k3s/node-password': Buffer.from(NODE_PASSWORD),
    'k3s/config.yaml': Buffer.from('node-name: pop1\n'),
    ...(datastore === 'etcd'
      ? { 'datastore/etcd-snapshot': Buffer.from('{"snapshot":"etcd"}'.repeat(50)) }
      : { 'datastore/sqlite/state.db': Buffer.from('SQLite format 3\0'.repeat(200)) }),
  };
  for (const d of o.drop ?? []) delete entries[d];
  const manifest: RecoveryManifest = {
    site: o.site ?? 'pop1',
    createdAt: '2026-11-29T10:00:00Z',
    k3s: { version: o.version ?? 'v1.37.1+k3s1', datastore, nodeName: o.site ?? 'pop1', arch: 'amd64' },
    entries: Object.entries(entries).map(([p, b]) => ({ path: p, size: b.length, sha256: sha(b), mode: 0o600 })),
  };
  return {
    manifest,
    entry: (p) => {
      const b = entries[p];
      if (!b) throw new Error(`no entry ${p}`);
      return b;
    },
    paths: Object.keys(entries),
    sha256: sha(JSON.stringify(manifest)),
    file: `${manifest.site}-20261129T100000Z.fsm-edge-backup.age`,
  };
}

export function recoverContext(
  backup: RecoveryBackup,
  o: { datastore?: 'sqlite' | 'etcd'; allowOtherSite?: boolean; k3s?: string } = {},
): RecoverContext {
  const file = path.join(tmp, `site-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 127.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n` +
      (o.datastore ? `  k3s: { datastore: ${o.datastore} }\n` : ''),
  );
  const site = loadSites([file]).sites[0]!;
  const d = bundleDoc(o.k3s);
  return {
    site,
    configDir: tmp,
    bundle: { dir: path.join(tmp, 'bundle'), doc: d, digest: digest(7), signer: 'test-key', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, dryRun: false, stateDir: path.join(tmp, `state-${Math.random().toString(16).slice(2)}`) },
    facts: parseFacts(FACTS_OK),
    decisions: { arch: 'amd64', content: d.arches.amd64!, interception: 'ebpf', interceptionReason: 'eBPF (auto)' },
    metrics: {},
    installed: {},
    recovery: { backup, allowOtherSite: o.allowOtherSite === true },
  };
}

/** Files the batch scripts wrote with writeBytesScript: path → bytes and mode, decoded as the POP's shell would. */
export function writtenFiles(scripts: readonly string[]): Map<string, { data: Buffer; mode: number }> {
  const out = new Map<string, { data: Buffer; mode: number }>();
  const re = new RegExp(
    `base64 -d (?:> "\\$t" )?<<'(${B64_EOF_PREFIX}[0-9a-f]+)'( \\| gzip -dc > "\\$t")?; chmod (\\d+) "\\$t"; mv -f -- "\\$t" '([^']+)'; trap - EXIT\\n([\\s\\S]*?)\\1(?:\\n|$)`,
    'g',
  );
  for (const s of scripts) {
    for (const m of s.matchAll(re)) {
      const raw = Buffer.from(m[5]!.replace(/\n/g, ''), 'base64');
      out.set(m[4]!, { data: m[2] ? gunzipSync(raw) : raw, mode: parseInt(m[3]!, 8) });
    }
  }
  return out;
}

/** A workload created after install whose object UIDs a recovery must bring back. */
export const WORKLOAD = `apiVersion: v1
kind: ConfigMap
metadata: { name: shop-config, namespace: default }
data: { greeting: hello }
---
apiVersion: v1
kind: Secret
metadata: { name: shop-secret, namespace: default }
stringData: { apiKey: not-a-real-key }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: shop, namespace: default }
spec:
  replicas: 1
  selector: { matchLabels: { app: shop } }
  template:
    metadata: { labels: { app: shop } }
    spec: { containers: [{ name: shop, image: flomesh/pipy:1.5.12, imagePullPolicy: IfNotPresent }] }
`;
