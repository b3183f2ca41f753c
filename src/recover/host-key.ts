// A replacement POP answers with a new host key. Connecting to it is a decision the operator makes explicitly:
// without --accept-new-host-key the connection is refused showing the pinned and the presented fingerprints and
// the flag; with it, the second connection accepts exactly the key that was presented to the first (any other
// key is still refused), and that key replaces the old pin in the site file.

import { readFile, stat } from 'node:fs/promises';
import { isSeq, parseDocument, Scalar, YAMLSeq } from 'yaml';
import type { Site } from '../config/site.js';
import { PhaseRefusal } from '../engine/phase.js';
import type { SiteTarget } from '../engine/run-sites.js';
import { writeAtomic } from '../state/write-atomic.js';
import { connectHost } from '../transport/connect.js';
import type { Host } from '../transport/host.js';
import { HostKeyError, type NewPin, recordHostKeyPins } from '../transport/host-keys.js';

export interface RecoveryConnection {
  host: Host;
  /** The site as connected (its pins replaced when the key was re-pinned). */
  site: Site;
  /** Fingerprints that replaced the old pins (a replacement POP), recorded in the site file. */
  repinned?: { old: string[]; presented: string };
  /** Pins recorded for a POP that had none (first contact with --accept-new-host-key). */
  newPins: NewPin[];
}

export interface RecoveryConnectOptions {
  acceptNewHostKey: boolean;
  env?: NodeJS.ProcessEnv;
  onLog?: (line: string) => void;
}

export function changedKeyRefusal(e: HostKeyError): PhaseRefusal {
  return new PhaseRefusal(
    'connect',
    `the POP's host key changed: pinned ${e.pinned.join(', ')}, presented ${e.presented}`,
    `if this is the replacement machine, confirm ${e.presented} at its console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), ` +
      'then run recover again with --accept-new-host-key to re-pin it',
  );
}

function withPins(site: Site, pins: string[]): Site {
  return { ...site, spec: { ...site.spec, ssh: { ...site.spec.ssh, hostKeys: pins } } };
}

export async function connectForRecovery(t: SiteTarget, opts: RecoveryConnectOptions): Promise<RecoveryConnection> {
  const newPins: NewPin[] = [];
  const connect = (site: Site, acceptNew: boolean) =>
    connectHost(site, {
      baseDir: t.configDir,
      acceptNewHostKey: acceptNew,
      onNewHostKey: (p) => newPins.push(p),
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.onLog ? { onLog: opts.onLog } : {}),
    });
  try {
    const host = await connect(t.site, opts.acceptNewHostKey);
    if (newPins.length) await recordHostKeyPins(t.file, newPins, t.site.metadata.name);
    return { host, site: t.site, newPins };
  } catch (e) {
    if (!(e instanceof HostKeyError) || e.hop.kind !== 'target' || e.pinned.length === 0) throw e;
    if (!opts.acceptNewHostKey) throw changedKeyRefusal(e);
    const site = withPins(t.site, [e.presented]);
    // Only the key the operator saw is accepted: a different one on this second connection is refused again.
    const host = await connect(site, false);
    await replaceHostKeyPins(t.file, t.site.metadata.name, e.presented);
    return { host, site, repinned: { old: [...e.pinned], presented: e.presented }, newPins };
  }
}

/** Replaces the POP's pins (spec.ssh.hostKeys) of one Site (or a Fleet's inline site) with one fingerprint. */
export function replacePinsInYaml(text: string, siteName: string, fingerprint: string): string {
  const docs = text.split(/^(?=---(?:[ \t].*)?$)/m).filter((p) => p.length > 0);
  let changed = false;
  const out = docs.map((docText) => {
    const doc = parseDocument(docText);
    if (doc.errors.length) throw new Error(`cannot re-pin the host key: YAML error: ${doc.errors[0]!.message}`);
    let base: Array<string | number> | undefined;
    if (doc.get('kind') === 'Site' && doc.getIn(['metadata', 'name']) === siteName) base = ['spec'];
    else if (doc.get('kind') === 'Fleet') {
      const sites = doc.getIn(['spec', 'sites']);
      const i = isSeq(sites) ? sites.items.findIndex((_, k) => doc.getIn(['spec', 'sites', k, 'metadata', 'name']) === siteName) : -1;
      if (i >= 0) base = ['spec', 'sites', i, 'spec'];
    }
    if (!base) return docText;
    const seq = new YAMLSeq();
    const s = new Scalar(fingerprint);
    s.type = Scalar.QUOTE_DOUBLE;
    seq.add(s);
    seq.flow = true;
    doc.setIn([...base, 'ssh', 'hostKeys'], seq);
    changed = true;
    return doc.toString();
  });
  if (!changed) throw new Error(`cannot re-pin the host key: no Site named ${siteName} in the file`);
  return out.join('');
}

export async function replaceHostKeyPins(file: string, siteName: string, fingerprint: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  writeAtomic(file, replacePinsInYaml(text, siteName, fingerprint), (await stat(file)).mode & 0o777);
}
