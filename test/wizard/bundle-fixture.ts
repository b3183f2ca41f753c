// A signed bundle.json with no blobs behind it: enough for the wizard's bundle list (arch, versions, sizes,
// signature), which reads only bundle.json and its signature. Full verification (every blob) is the install's
// sync phase, which would refuse this one — tests that install use a real bundle.
import fs from 'node:fs';
import path from 'node:path';
import { bundleDocStub } from '../bundle/synthetic-bundle.js';
import { generateKeyPair, signBytes, loadPrivateKey } from '../../src/bundle/sign.js';

export interface FixtureBundle {
  dir: string;
  publicKey: string;
}

export function signedBundleDoc(
  dir: string,
  opts: { name: string; arches: string[]; keyFile: string; bytes?: number; fsm?: string },
): void {
  fs.mkdirSync(dir, { recursive: true });
  const doc = bundleDocStub({ name: opts.name, arches: opts.arches as Array<'amd64' | 'arm64' | 'arm'>, bytes: opts.bytes, fsm: opts.fsm });
  const bytes = Buffer.from(JSON.stringify(doc, null, 2));
  fs.writeFileSync(path.join(dir, 'bundle.json'), bytes);
  fs.writeFileSync(path.join(dir, 'bundle.json.sig'), JSON.stringify(signBytes(bytes, loadPrivateKey({ file: opts.keyFile }))));
}

export function keyPairIn(dir: string, name = 'signing.key'): { privateKey: string; publicKey: string; keyId: string } {
  fs.mkdirSync(dir, { recursive: true });
  const r = generateKeyPair(path.join(dir, name), undefined, true);
  return { privateKey: r.privateKeyFile, publicKey: r.publicKeyFile, keyId: r.keyId };
}
