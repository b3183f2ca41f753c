// Verifying a bundle: bundle.json is read once, its signature checked over exactly those bytes, those bytes parsed
// (schema-checked), then index.json and every blob's size and sha256 checked against that document. Stops at,
// and names, the first bad file. Everything downstream (install, sync, assembly) uses the returned document, never
// another read of bundle.json, so a file swapped on disk after the check changes nothing.
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { hashFile, sha256Of } from './blob-file.js';
import { BundleFormatError, archBlobs, parseBundleDoc, type BundleDoc } from './format.js';
import { BUNDLE_FILE, INDEX_FILE, OCI_LAYOUT_FILE, SIGNATURE_FILE, blobPath, blobRelPath } from './layout.js';
import { keyId, verifyBytes, type SignatureDoc } from './sign.js';

/** bundle.json and its signature are small; anything bigger is not ours (and is not read into memory whole). */
export const MAX_BUNDLE_DOC_BYTES = 16 * 1024 * 1024;
const MAX_SIGNATURE_BYTES = 64 * 1024;

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
  /** Only the blobs of these arches (what a POP of that arch receives). Default: all; `[]`: the document only. */
  arches?: string[];
  /** Called after each blob is hashed, with the payload bytes verified so far and in all. */
  onProgress?: (done: number, total: number) => void;
}

/** A bundle whose document was verified: `doc` is parsed from exactly `bytes`, the bytes the signature covers. */
export interface VerifiedBundle {
  dir: string;
  /** The exact bytes of bundle.json that were verified. */
  bytes: Buffer;
  /** `sha256:<hex>` of `bytes`: the bundle's identity in journals and records. */
  digest: string;
  doc: BundleDoc;
  /** Key id (`sha256:<hex>`) of the trusted key that verified the signature. */
  signer: string;
  /** Distinct blobs checked (those of `arches`). */
  blobs: number;
  /** Their bytes. */
  payloadBytes: number;
  /** The arches whose blobs were checked. */
  arches: string[];
}

/** Reads at most `max` bytes of `file`; a longer file is refused without reading the rest. */
function readSmall(file: string, max: number): Buffer | 'missing' | 'too-big' {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return 'missing';
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return 'missing';
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > max) return 'too-big';
    }
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

export async function readVerifiedBundle(dir: string, opts: VerifyOptions): Promise<VerifiedBundle> {
  const fail = (file: string, problem: string): never => {
    throw new VerifyError(file, problem, dir);
  };
  if (opts.trustedKeys.length === 0) fail(SIGNATURE_FILE, 'no trusted public key given (--trust-key FILE)');
  // The one read of bundle.json: every later step uses these bytes.
  const bytes = readSmall(path.join(dir, BUNDLE_FILE), MAX_BUNDLE_DOC_BYTES);
  if (bytes === 'missing') return fail(BUNDLE_FILE, 'missing — not a bundle directory?');
  if (bytes === 'too-big') return fail(BUNDLE_FILE, `larger than ${MAX_BUNDLE_DOC_BYTES} bytes — not an fsm-edge bundle document`);
  const sigBytes = readSmall(path.join(dir, SIGNATURE_FILE), MAX_SIGNATURE_BYTES);
  if (sigBytes === 'missing') return fail(SIGNATURE_FILE, 'missing — the bundle is unsigned; rebuild it with --signing-key');
  if (sigBytes === 'too-big') return fail(SIGNATURE_FILE, 'not a signature document (too large)');
  let sig: SignatureDoc;
  try {
    sig = JSON.parse(sigBytes.toString('utf8')) as SignatureDoc;
  } catch {
    return fail(SIGNATURE_FILE, 'not a signature document');
  }
  if (typeof sig !== 'object' || sig === null || typeof sig.keyId !== 'string' || typeof sig.signature !== 'string')
    fail(SIGNATURE_FILE, 'not a signature document');
  const trusted = opts.trustedKeys.map((k) => ({ k, id: keyId(k) }));
  const byId = trusted.find((t) => t.id === sig.keyId);
  if (!byId)
    return fail(SIGNATURE_FILE, `signed by key ${sig.keyId}, which is not trusted (trusted: ${trusted.map((t) => t.id).join(', ')})`);
  if (!verifyBytes(bytes, sig, byId.k))
    fail(BUNDLE_FILE, `does not match its signature (key ${sig.keyId}) — bundle.json was changed after signing`);

  let doc: BundleDoc;
  try {
    doc = parseBundleDoc(bytes);
  } catch (e) {
    if (!(e instanceof BundleFormatError)) throw e;
    // The signer's key vouches for the bytes, not for their safety: a document outside the schema is refused.
    return fail(
      BUNDLE_FILE,
      `${e.message.replace(/^bundle\.json: /, '')} (its signature by ${sig.keyId} is valid; the content is refused)`,
    );
  }
  const checked = await verifyBundleContent(dir, doc, opts);
  return { dir, bytes, digest: sha256Of(bytes), doc, signer: sig.keyId, ...checked };
}

/**
 * index.json and the blobs of `opts.arches` (default: all; `[]`: none) against an already verified document —
 * the one readVerifiedBundle returned, never a fresh read of bundle.json. Lets an install verify the document
 * before its first phase and the blobs of the POP's arch once it knows the arch.
 */
export async function verifyBundleContent(
  dir: string,
  doc: BundleDoc,
  opts: Pick<VerifyOptions, 'arches' | 'onProgress'> = {},
): Promise<{ blobs: number; payloadBytes: number; arches: string[] }> {
  const fail = (file: string, problem: string): never => {
    throw new VerifyError(file, problem, dir);
  };
  const layout = readSmall(path.join(dir, OCI_LAYOUT_FILE), 4096);
  if (layout === 'missing') return fail(OCI_LAYOUT_FILE, 'missing');
  if (layout === 'too-big' || !/"imageLayoutVersion"\s*:\s*"1\.0\.0"/.test(layout.toString('utf8')))
    fail(OCI_LAYOUT_FILE, 'not an OCI image layout 1.0.0 marker');
  const index = readSmall(path.join(dir, INDEX_FILE), Math.min(doc.index.size, MAX_BUNDLE_DOC_BYTES));
  if (index === 'missing') return fail(INDEX_FILE, 'missing');
  if (index === 'too-big') return fail(INDEX_FILE, `larger than the ${doc.index.size} bytes bundle.json says`);
  if (index.length !== doc.index.size || sha256Of(index) !== doc.index.digest)
    fail(
      INDEX_FILE,
      `sha256 ${sha256Of(index)} (${index.length} bytes) differs from bundle.json (${doc.index.digest}, ${doc.index.size} bytes)`,
    );

  const want = new Map<string, number>();
  const arches = opts.arches ?? Object.keys(doc.arches);
  for (const a of arches) {
    const c = doc.arches[a as keyof BundleDoc['arches']];
    if (!c) return fail(BUNDLE_FILE, `has no ${a} content (it holds ${Object.keys(doc.arches).join(', ')})`);
    for (const [d, s] of archBlobs(c)) want.set(d, s);
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
    if (!st.isFile()) fail(rel, 'not a regular file');
    if (st.size !== size) fail(rel, `size ${st.size} bytes, bundle.json says ${size}`);
    const got = await hashFile(blobPath(dir, digest));
    if (got.digest !== digest || got.size !== size) fail(rel, `content hashes to ${got.digest} (${got.size} bytes) — the file is corrupt`);
    done += size;
    opts.onProgress?.(done, total);
  }
  return { blobs: want.size, payloadBytes: total, arches };
}

/** `bundle verify`: readVerifiedBundle, reported as a summary. */
export async function verifyBundle(dir: string, opts: VerifyOptions): Promise<VerifyResult> {
  const v = await readVerifiedBundle(dir, opts);
  return { dir, name: v.doc.name, signer: v.signer, blobs: v.blobs, bytes: v.payloadBytes, arches: v.arches };
}
