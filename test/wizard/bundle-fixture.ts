// A signed bundle.json with no blobs behind it: enough for the wizard's bundle list (arch, versions, sizes,
// signature), which reads only bundle.json and its signature. Full verification (every blob) is the install's
// sync phase, which would refuse this one — tests that install use a real bundle.
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair, signBytes, loadPrivateKey } from '../../src/bundle/sign.js';

export interface FixtureBundle {
  dir: string;
  publicKey: string;
}

export function signedBundleDoc(dir: string, opts: { name: string; arches: string[]; keyFile: string; bytes?: number; fsm?: string }): void {
  fs.mkdirSync(dir, { recursive: true });
  const content = (bytes: number) => ({ features: ['core'], files: [], images: [], totals: { blobs: 41, bytes } });
  const doc = {
    kind: 'FsmEdgeBundle',
    schemaVersion: 1,
    name: opts.name,
    versions: { k3s: 'v1.31.4+k3s1', fsm: opts.fsm ?? '1.5.1', pipy: '1.5.12', chart: opts.fsm ?? '1.5.1' },
    recipe: {},
    index: { digest: 'sha256:' + '0'.repeat(64), size: 0 },
    arches: Object.fromEntries(opts.arches.map((a) => [a, content(opts.bytes ?? 222_298_112)])),
    totals: { blobs: 41, bytes: opts.bytes ?? 222_298_112 },
  };
  const bytes = Buffer.from(JSON.stringify(doc, null, 2));
  fs.writeFileSync(path.join(dir, 'bundle.json'), bytes);
  fs.writeFileSync(path.join(dir, 'bundle.json.sig'), JSON.stringify(signBytes(bytes, loadPrivateKey({ file: opts.keyFile }))));
}

export function keyPairIn(dir: string, name = 'signing.key'): { privateKey: string; publicKey: string; keyId: string } {
  fs.mkdirSync(dir, { recursive: true });
  const r = generateKeyPair(path.join(dir, name), undefined, true);
  return { privateKey: r.privateKeyFile, publicKey: r.publicKeyFile, keyId: r.keyId };
}
