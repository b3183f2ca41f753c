// Checks the wizard runs on an answer the moment it is given, so a wrong one is asked again with the reason:
// a site name already used by another site file, a host that does not answer SSH, a key file that is not a key.

import { formatHostPort } from '../../config/formats.js';
import { readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, resolve } from 'node:path';
import ssh2 from 'ssh2';
import { checkK8sName } from '../../config/formats.js';
import { expandHome } from '../../config/secret.js';
import { nearbyDocuments } from './nearby-documents.js';

/** Site names defined in the YAML files of `dir` (Site documents and a Fleet's inline sites), by file. */
export function siteNamesIn(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const { file, data } of nearbyDocuments([], [dir])) {
    const d = data as { kind?: unknown; metadata?: { name?: unknown }; spec?: { sites?: unknown } };
    if (d.kind === 'Site' && typeof d.metadata?.name === 'string') found.set(d.metadata.name, file);
    if (d.kind === 'Fleet' && Array.isArray(d.spec?.sites)) {
      for (const site of d.spec.sites as Array<{ metadata?: { name?: unknown } }>) {
        if (typeof site?.metadata?.name === 'string') found.set(site.metadata.name, file);
      }
    }
  }
  return found;
}

/**
 * Why `name` cannot be this site's name, or undefined. `ownFile` is the file the wizard writes: a Site of the
 * same name there is this very site being edited, not a clash.
 */
export function siteNameProblem(name: string, dir: string, ownFile: string): string | undefined {
  const format = checkK8sName(name);
  if (format) return format;
  const other = siteNamesIn(dir).get(name);
  if (other && resolve(other) !== resolve(ownFile))
    return `the name \`${name}\` is already used by a site in ${basename(other)}; pick another one (it becomes the Cluster name on the hub)`;
  return undefined;
}

/**
 * Whether something answering SSH listens at host:port: connects and reads the `SSH-` banner. Returns the
 * reason when not (refused, timed out, not SSH), in words an operator can act on.
 */
export function sshBannerProblem(host: string, port: number, timeoutMs = 5000): Promise<string | undefined> {
  return new Promise((done) => {
    const where = formatHostPort(host, port);
    const sock = connect({ host, port });
    let buf = '';
    let settled = false;
    const finish = (problem: string | undefined) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      done(problem);
    };
    sock.setTimeout(timeoutMs, () =>
      finish(`no answer from ${where} within ${timeoutMs / 1000} s: is the address right, the POP on, and port ${port} open?`),
    );
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.length >= 4)
        finish(
          buf.startsWith('SSH-') ? undefined : `${where} answers, but not with SSH (got ${JSON.stringify(buf.slice(0, 20))}): wrong port?`,
        );
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const why: Record<string, string> = {
        ECONNREFUSED: `connection refused: nothing listens on port ${port} (is sshd running, is the port right?)`,
        EHOSTUNREACH: 'host unreachable: no route to it from here',
        ENETUNREACH: 'network unreachable from here',
        ENOTFOUND: `the name ${host} does not resolve (DNS)`,
        EAI_AGAIN: `the name ${host} could not be resolved right now (DNS)`,
        ETIMEDOUT: 'the connection timed out',
      };
      finish(`cannot reach ${where}: ${why[e.code ?? ''] ?? e.message}`);
    });
    sock.on('close', () =>
      finish(buf.startsWith('SSH-') ? undefined : `${where} closed the connection before saying anything: not an SSH server?`),
    );
  });
}

export type KeyFileCheck = { ok: true; encrypted: boolean; type: string } | { ok: false; problem: string };

/** Is `file` a private key ssh can use? Says whether it needs a passphrase (never asks for or reads one). */
export function checkKeyFile(file: string, baseDir: string = process.cwd()): KeyFileCheck {
  const path = resolve(baseDir, expandHome(file));
  let data: Buffer;
  try {
    if (!statSync(path).isFile()) return { ok: false, problem: `${path} is not a file` };
    data = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ok: false,
      problem:
        code === 'ENOENT'
          ? `no such file: ${path}`
          : code === 'EACCES'
            ? `cannot read ${path}: permission denied`
            : `cannot read ${path}: ${code}`,
    };
  }
  if (/^ssh-|^ecdsa-/.test(data.toString('latin1', 0, 20)))
    return { ok: false, problem: `${path} is a public key; give the private key (usually the same name without .pub)` };
  const parsed = ssh2.utils.parseKey(data);
  if (parsed instanceof Error) {
    if (/passphrase|encrypted/i.test(parsed.message)) return { ok: true, encrypted: true, type: 'encrypted' };
    return { ok: false, problem: `${path} is not a private key ssh can use (${parsed.message})` };
  }
  const key = Array.isArray(parsed) ? parsed[0]! : parsed;
  return { ok: true, encrypted: false, type: key.type };
}

/** Checks a passphrase reference decrypts the key; the passphrase itself is never returned or shown. */
export function passphraseProblem(file: string, passphrase: string, baseDir: string = process.cwd()): string | undefined {
  const path = resolve(baseDir, expandHome(file));
  const parsed = ssh2.utils.parseKey(readFileSync(path), passphrase);
  return parsed instanceof Error ? `that passphrase does not unlock ${path}` : undefined;
}
