// Which of the bundles under airgap/bundles/ can go to this POP: it has content for the POP's arch and its
// signature over bundle.json verifies against a trusted key. Blob hashes are checked later, by the install's
// sync phase, before anything is sent — here only what is cheap enough to show in a list.

import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { BUNDLE_FILE, SIGNATURE_FILE } from '../../bundle/layout.js';
import { parseBundleDoc, type BundleDoc } from '../../bundle/format.js';
import { formatBytes } from '../../bundle/inspect.js';
import { keyId, loadPublicKey, verifyBytes, type SignatureDoc } from '../../bundle/sign.js';

export interface BundleChoice {
  dir: string;
  name: string;
  versions?: BundleDoc['versions'];
  /** Bytes and blobs of this POP's arch: what a first install sends (a re-run sends only what is missing). */
  bytes: number;
  blobs: number;
  signer?: string;
  /** Why it cannot be used for this POP; undefined when it can. */
  unusable?: string;
}

export interface TrustedKey {
  file: string;
  id: string;
  key: KeyObject;
}

export function loadTrustedKeys(files: readonly string[]): TrustedKey[] {
  return files.map((file) => {
    const key = loadPublicKey(file);
    return { file, id: keyId(key), key };
  });
}

/** Public keys lying where `bundle keygen` writes them by default, offered as the default trust key. */
export function trustKeyCandidates(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    let names: string[];
    try {
      names = readdirSync(d)
        .filter((f) => f.endsWith('.pub'))
        .sort();
    } catch {
      continue;
    }
    for (const f of names) {
      const file = join(d, f);
      try {
        loadPublicKey(file);
        out.push(file);
      } catch {
        /* an ssh .pub or something else: not a bundle signing key */
      }
    }
  }
  return out;
}

export function bundleChoices(bundlesDir: string, arch: string, trusted: readonly TrustedKey[]): BundleChoice[] {
  let dirs: string[];
  try {
    dirs = readdirSync(bundlesDir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => join(bundlesDir, d.name))
      .sort();
  } catch {
    return [];
  }
  const out: BundleChoice[] = [];
  for (const dir of dirs) {
    if (!existsSync(join(dir, BUNDLE_FILE))) continue;
    // One read: the bytes whose signature is checked below are the bytes parsed here.
    let bytes: Buffer;
    let doc: BundleDoc;
    try {
      bytes = readFileSync(join(dir, BUNDLE_FILE));
      doc = parseBundleDoc(bytes, join(dir, BUNDLE_FILE));
    } catch (e) {
      out.push({ dir, name: dir, bytes: 0, blobs: 0, unusable: (e as Error).message });
      continue;
    }
    const content = doc.arches[arch as keyof BundleDoc['arches']];
    const c: BundleChoice = {
      dir,
      name: doc.name,
      versions: doc.versions,
      bytes: content?.totals.bytes ?? 0,
      blobs: content?.totals.blobs ?? 0,
    };
    let sig: SignatureDoc | undefined;
    try {
      sig = JSON.parse(readFileSync(join(dir, SIGNATURE_FILE), 'utf8')) as SignatureDoc;
      c.signer = sig.keyId;
    } catch {
      sig = undefined;
    }
    if (!content) c.unusable = `no ${arch} content (it holds ${Object.keys(doc.arches).join(', ') || 'nothing'})`;
    else if (!sig) c.unusable = 'unsigned (no bundle.json.sig)';
    else {
      const key = trusted.find((t) => t.id === sig!.keyId);
      if (!key) c.unusable = `signed by ${short(sig.keyId)}, which is not a trusted key`;
      else if (!verifyBytes(bytes, sig, key.key)) c.unusable = 'bundle.json does not match its signature (changed after signing)';
    }
    out.push(c);
  }
  return out;
}

export function short(id: string): string {
  return id.replace(/^sha256:/, 'sha256:').slice(0, 19) + '…';
}

export function describeBundle(c: BundleChoice): string {
  const v = c.versions ? `k3s ${c.versions.k3s}, fsm ${c.versions.fsm}, pipy ${c.versions.pipy}` : '';
  const size = c.blobs ? `${formatBytes(c.bytes)} in ${c.blobs} blobs to send` : '';
  return [c.name, [v, size].filter(Boolean).join('; ')].filter(Boolean).join(' — ');
}
