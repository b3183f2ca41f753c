// `bundle verify`: the signature against a trusted public key, then index.json and every blob's size and sha256
// against the signed bundle.json. Stops at, and names, the first bad file.
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { hashFile, sha256Of } from './blob-file.js';
import { archBlobs, readBundleDoc, type BundleDoc } from './format.js';
import { BUNDLE_FILE, INDEX_FILE, OCI_LAYOUT_FILE, SIGNATURE_FILE, blobPath, blobRelPath } from './layout.js';
import { keyId, verifyBytes, type SignatureDoc } from './sign.js';

export class VerifyError extends Error {
  constructor(
    /** The bad file, relative to the bundle directory (`blobs/sha256/ab12…`, `bundle.json.sig`). */
    readonly file: string,
    readonly problem: string,
    readonly dir: string,
  ) {
    super(`bundle ${dir}: ${file}: ${problem}`);
    this.name = 'VerifyError';
  }
}

export interface VerifyResult {
  dir: string;
  name: string;
  signer: string;
  blobs: number;
  bytes: number;
  arches: string[];
}

export interface VerifyOptions {
  /** Public keys the signature may verify against (any one suffices). */
  trustedKeys: KeyObject[];
  /** Only the blobs of these arches (what a POP of that arch receives). Default: all. */
  arches?: string[];
  onProgress?: (done: number, total: number) => void;
}

export async function verifyBundle(dir: string, opts: VerifyOptions): Promise<VerifyResult> {
  const fail = (file: string, problem: string): never => {
    throw new VerifyError(file, problem, dir);
  };
  if (opts.trustedKeys.length === 0) fail(SIGNATURE_FILE, 'no trusted public key given (--trust-key FILE)');
  let docBytes: Buffer;
  try {
    docBytes = fs.readFileSync(path.join(dir, BUNDLE_FILE));
  } catch {
    return fail(BUNDLE_FILE, 'missing — not a bundle directory?');
  }
  let sigText: string;
  try {
    sigText = fs.readFileSync(path.join(dir, SIGNATURE_FILE), 'utf8');
  } catch {
    return fail(SIGNATURE_FILE, 'missing — the bundle is unsigned; rebuild it with --signing-key');
  }
  let sig: SignatureDoc;
  try {
    sig = JSON.parse(sigText) as SignatureDoc;
  } catch {
    return fail(SIGNATURE_FILE, 'not a signature document');
  }
  const trusted = opts.trustedKeys.map((k) => ({ k, id: keyId(k) }));
  const byId = trusted.find((t) => t.id === sig.keyId);
  if (!byId)
    fail(SIGNATURE_FILE, `signed by key ${sig.keyId}, which is not trusted (trusted: ${trusted.map((t) => t.id).join(', ')})`);
  if (!verifyBytes(docBytes, sig, byId!.k))
    fail(BUNDLE_FILE, `does not match its signature (key ${sig.keyId}) — bundle.json was changed after signing`);

  const doc: BundleDoc = readBundleDoc(dir);
  let layout: string;
  try {
    layout = fs.readFileSync(path.join(dir, OCI_LAYOUT_FILE), 'utf8');
  } catch {
    return fail(OCI_LAYOUT_FILE, 'missing');
  }
  if (!/"imageLayoutVersion"\s*:\s*"1\.0\.0"/.test(layout)) fail(OCI_LAYOUT_FILE, 'not an OCI image layout 1.0.0 marker');
  let index: Buffer;
  try {
    index = fs.readFileSync(path.join(dir, INDEX_FILE));
  } catch {
    return fail(INDEX_FILE, 'missing');
  }
  if (index.length !== doc.index.size || sha256Of(index) !== doc.index.digest)
    fail(INDEX_FILE, `sha256 ${sha256Of(index)} (${index.length} bytes) differs from bundle.json (${doc.index.digest}, ${doc.index.size} bytes)`);

  const want = new Map<string, number>();
  const arches = opts.arches ?? Object.keys(doc.arches);
  for (const a of arches) {
    const c = doc.arches[a as keyof BundleDoc['arches']];
    if (!c) fail(BUNDLE_FILE, `has no ${a} content (it holds ${Object.keys(doc.arches).join(', ')})`);
    for (const [d, s] of archBlobs(c!)) want.set(d, s);
  }
  // Small blobs first: a broken manifest shows up before minutes of hashing layers.
  const ordered = [...want].sort((a, b) => a[1] - b[1]);
  const total = ordered.reduce((n, [, s]) => n + s, 0);
  let done = 0;
  for (const [digest, size] of ordered) {
    const rel = blobRelPath(digest);
    let st: fs.Stats;
    try {
      st = fs.statSync(blobPath(dir, digest));
    } catch {
      return fail(rel, 'missing');
    }
    if (st.size !== size) fail(rel, `size ${st.size} bytes, bundle.json says ${size}`);
    const got = await hashFile(blobPath(dir, digest));
    if (got.digest !== digest) fail(rel, `content hashes to ${got.digest} — the file is corrupt`);
    done += size;
    opts.onProgress?.(done, total);
  }
  return { dir, name: doc.name, signer: sig.keyId, blobs: want.size, bytes: total, arches };
}
