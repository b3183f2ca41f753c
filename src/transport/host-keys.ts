// Host-key pinning. Every connect (and every reconnect) checks the key the server presents against the
// fingerprints pinned in the Site; there is no "accept any key" path. An unpinned host is refused unless the
// operator explicitly accepts it, and the accepted pin is handed back so it can be written into site.yaml.

import { writeAtomic } from '../state/write-atomic.js';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { parseDocument, isSeq, Scalar, YAMLSeq, type Document } from 'yaml';

/** OpenSSH `SHA256:` fingerprint (unpadded base64 of the SHA-256 of the wire-format public key blob). */
export function fingerprintSha256(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** Key type from the wire blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, …); for messages only. */
export function keyType(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const n = keyBlob.readUInt32BE(0);
  if (n <= 0 || n > 64 || 4 + n > keyBlob.length) return 'unknown';
  return keyBlob.subarray(4, 4 + n).toString('latin1');
}

const FP_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** Normalises a pin as people paste it (trailing `=`, surrounding spaces); undefined when it is not a SHA256 pin. */
export function normalizeFingerprint(pin: string): string | undefined {
  const p = pin.trim().replace(/=+$/, '');
  return FP_RE.test(p) ? p : undefined;
}

/** Which hop of a connection a key belongs to: the POP itself or jump host i (0-based, in ProxyJump order). */
export type HopRef = { kind: 'target' } | { kind: 'jump'; index: number };

export interface HostKeyCheck {
  /** `pop-berlin-1 (pop@10.99.0.11:22)` or `jump host 1 (ops@bastion:22)`. */
  label: string;
  hop: HopRef;
  pins: readonly string[];
  acceptNew: boolean;
}

export type HostKeyVerdict = { ok: true; fingerprint: string; newPin: boolean } | { ok: false; error: HostKeyError };

export class HostKeyError extends Error {
  constructor(
    message: string,
    readonly label: string,
    readonly hop: HopRef,
    readonly presented: string,
    readonly pinned: readonly string[],
  ) {
    super(message);
    this.name = 'HostKeyError';
  }
}

export function pinPath(hop: HopRef): string {
  return hop.kind === 'target' ? 'spec.ssh.hostKeys' : `spec.ssh.jumpHosts[${hop.index}].hostKeys`;
}

/** Decides about one presented key. Pure: the caller refuses the connection on `ok: false`. */
export function checkHostKey(check: HostKeyCheck, keyBlob: Buffer): HostKeyVerdict {
  const fp = fingerprintSha256(keyBlob);
  const type = keyType(keyBlob);
  const pins = check.pins.map((p) => normalizeFingerprint(p) ?? p.trim());
  if (pins.length > 0) {
    if (pins.includes(fp)) return { ok: true, fingerprint: fp, newPin: false };
    const msg =
      `${check.label}: HOST KEY MISMATCH — refusing to connect, nothing was run.\n` +
      `  presented: ${fp} (${type})\n` +
      `  pinned:    ${pins.join(', ')} (${pinPath(check.hop)})\n` +
      `  Either someone is intercepting the connection, or the machine was replaced/reinstalled.\n` +
      `  After a hardware swap: confirm the new key at the POP's console with\n` +
      `    ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\n` +
      `  then replace the pin in ${pinPath(check.hop)} with the fingerprint it prints\n` +
      `  (or delete the old pin and re-run with --accept-new-host-key to record the presented one).`;
    return { ok: false, error: new HostKeyError(msg, check.label, check.hop, fp, pins) };
  }
  if (check.acceptNew) return { ok: true, fingerprint: fp, newPin: true };
  const msg =
    `${check.label}: host key is not pinned — refusing to connect, nothing was run.\n` +
    `  presented: ${fp} (${type})\n` +
    `  Check it at the POP's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then either add it to\n` +
    `  ${pinPath(check.hop)} or re-run with --accept-new-host-key to record it there.`;
  return { ok: false, error: new HostKeyError(msg, check.label, check.hop, fp, []) };
}

export interface NewPin {
  hop: HopRef;
  label: string;
  fingerprint: string;
}

/**
 * Writes accepted pins back into a Site document (YAML text), keeping comments and layout. A Fleet file with
 * inline sites is matched by `metadata.name` when `siteName` is given.
 */
export function addPinsToYaml(text: string, pins: readonly NewPin[], siteName?: string): string {
  const docs = text.includes('\n---') || text.startsWith('---') ? splitDocs(text) : [text];
  let changed = false;
  const out = docs.map((docText) => {
    const doc = parseDocument(docText);
    if (doc.errors.length) throw new Error(`cannot record host-key pin: YAML error: ${doc.errors[0]!.message}`);
    const kind = doc.get('kind');
    const name = doc.getIn(['metadata', 'name']);
    if (kind === 'Fleet' && siteName !== undefined) {
      const at = inlineSiteIndex(doc, siteName);
      if (at === undefined) return docText;
      for (const p of pins) addPin(doc, p, fleetPinBase(doc, at, p));
      changed = true;
      return doc.toString();
    }
    if (kind !== 'Site' || (siteName !== undefined && name !== siteName)) return docText;
    for (const p of pins) addPin(doc, p, ['spec']);
    changed = true;
    return doc.toString();
  });
  if (!changed) throw new Error(`cannot record host-key pin: no Site document${siteName ? ` named ${siteName}` : ''} found`);
  return out.join('');
}

/** Index of the inline site named `name` in a Fleet's spec.sites (sites from files are in their own files). */
function inlineSiteIndex(doc: Document, name: string): number | undefined {
  const sites = doc.getIn(['spec', 'sites']);
  if (!isSeq(sites)) return undefined;
  const i = sites.items.findIndex((_, k) => doc.getIn(['spec', 'sites', k, 'metadata', 'name']) === name);
  return i >= 0 ? i : undefined;
}

/**
 * Where a pin of an inline fleet site goes: its own spec, or — for a jump host the site takes from the fleet's
 * defaults — the defaults, since every site that shares the bastion shares its key.
 */
function fleetPinBase(doc: Document, at: number, p: NewPin): Array<string | number> {
  const own: Array<string | number> = ['spec', 'sites', at, 'spec'];
  if (p.hop.kind === 'jump' && !doc.hasIn([...own, 'ssh', 'jumpHosts']) && doc.hasIn(['spec', 'defaults', 'ssh', 'jumpHosts'])) {
    return ['spec', 'defaults'];
  }
  return own;
}

function addPin(doc: Document, p: NewPin, base: Array<string | number>): void {
  const path = p.hop.kind === 'target' ? [...base, 'ssh', 'hostKeys'] : [...base, 'ssh', 'jumpHosts', p.hop.index, 'hostKeys'];
  if (p.hop.kind === 'jump' && !doc.hasIn([...base, 'ssh', 'jumpHosts', p.hop.index])) {
    throw new Error(`cannot record host-key pin: ${[...base, 'ssh', 'jumpHosts'].join('.')}[${p.hop.index}] does not exist`);
  }
  const existing = doc.getIn(path);
  if (isSeq(existing)) {
    const values = existing.items.map((i) => String((i as { value?: unknown }).value ?? i));
    if (!values.includes(p.fingerprint)) existing.add(quoted(p.fingerprint));
  } else {
    const seq = new YAMLSeq();
    seq.add(quoted(p.fingerprint));
    seq.flow = true;
    doc.setIn(path, seq);
  }
}

function quoted(value: string): Scalar {
  const s = new Scalar(value);
  s.type = Scalar.QUOTE_DOUBLE;
  return s;
}

// Keeps each document's text (and its `---` line) so untouched documents stay byte-identical.
function splitDocs(text: string): string[] {
  return text.split(/^(?=---(?:[ \t].*)?$)/m).filter((p) => p.length > 0);
}

/** Records accepted pins in the site file atomically (temp + rename). */
export async function recordHostKeyPins(file: string, pins: readonly NewPin[], siteName?: string): Promise<void> {
  if (!pins.length) return;
  const text = await readFile(file, 'utf8');
  const next = addPinsToYaml(text, pins, siteName);
  // Keep the site file's own mode: it may be shared (0644) or private (0600).
  writeAtomic(file, next, (await stat(file)).mode & 0o777);
}
