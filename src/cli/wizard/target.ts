// `user@host[:port]` as people type it, to and from the Site's ssh fields. IPv6 in brackets when a port follows
// (`pop@[fd00::11]:2222`); a bare IPv6 address takes no port.

import { checkHost } from '../../config/formats.js';

export interface SshTarget {
  user: string;
  host: string;
  port: number;
}

export type ParsedTarget = { ok: true; target: SshTarget } | { ok: false; problem: string };

const USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;

/** Parses `user@host[:port]`; `defaultUser` fills a missing user, `defaultPort` a missing port. */
export function parseSshTarget(text: string, defaults: { user?: string; port?: number } = {}): ParsedTarget {
  const s = text.trim();
  if (s === '') return { ok: false, problem: 'type the POP as user@host or user@host:port, e.g. pop@10.99.0.11' };
  if (/\s/.test(s)) return { ok: false, problem: `\`${s}\` contains a space; type user@host[:port]` };
  if (s.includes('://')) return { ok: false, problem: `\`${s}\` is a URL; type user@host[:port] without a scheme` };
  const at = s.lastIndexOf('@');
  const user = at >= 0 ? s.slice(0, at) : defaults.user;
  const rest = at >= 0 ? s.slice(at + 1) : s;
  if (user === undefined || user === '')
    return { ok: false, problem: `say who logs in: user@${rest || 'host'} (e.g. pop@${rest || '10.99.0.11'})` };
  if (!USER_RE.test(user) || user.length > 64)
    return { ok: false, problem: `\`${user}\` is not a login name (letters, digits, _ . -; e.g. pop or root)` };

  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(rest);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest; // bare IPv6: no port possible
  } else {
    const i = rest.indexOf(':');
    host = i >= 0 ? rest.slice(0, i) : rest;
    portText = i >= 0 ? rest.slice(i + 1) : undefined;
  }
  if (host === '') return { ok: false, problem: `no host after \`${user}@\`; type user@host[:port]` };
  const hostProblem = checkHost(host);
  if (hostProblem) return { ok: false, problem: hostProblem };

  let port = defaults.port ?? 22;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText)) return { ok: false, problem: `port \`${portText}\` is not a number; ports are 1–65535` };
    port = Number(portText);
    if (port < 1 || port > 65535) return { ok: false, problem: `port ${portText} is out of range; ports are 1–65535` };
  }
  return { ok: true, target: { user, host, port } };
}

/** The form the wizard shows as a default: the port only when it is not 22. */
export function formatSshTarget(t: SshTarget): string {
  const host = t.host.includes(':') ? (t.port === 22 ? t.host : `[${t.host}]`) : t.host;
  return `${t.user}@${host}${t.port === 22 ? '' : `:${t.port}`}`;
}
