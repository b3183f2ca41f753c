// Checks for the value formats the config uses (hosts, CIDRs, fingerprints, Kubernetes names and labels).
// Each returns undefined when the value is fine, or a message saying what is wrong and what is expected.

import { isIPv4, isIPv6 } from 'node:net';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
// Host names that SSH connects to may carry '_' (common in internal DNS), though RFC 1123 does not allow it.
const HOST_LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i;

/** RFC 1123 host name (letters, digits, hyphens; labels ≤ 63; total ≤ 253), an IPv4 or an IPv6 address. */
export function checkHost(value: string): string | undefined {
  if (value === '') return 'must not be empty: give a host name, IPv4 or IPv6 address';
  if (isIPv4(value) || isIPv6(value)) return undefined;
  if (/^\[.*\]$/.test(value)) return `write IPv6 addresses without brackets: \`${value.slice(1, -1)}\``;
  if (value.includes('@')) return `\`${value}\` contains a user; put the user in \`user:\` and only the host here`;
  if (/^[^:]+:\d+$/.test(value)) return `\`${value}\` contains a port; put the port in \`port:\` and only the host here`;
  if (value.includes('://')) return `\`${value}\` is a URL; give only the host name or address`;
  if (/^[\d.]+$/.test(value)) return `\`${value}\` is not a valid IPv4 address (four numbers 0–255)`;
  if (value.includes(':')) return `\`${value}\` is not a valid IPv6 address`;
  return checkDnsName(value, false, HOST_LABEL);
}

/** A DNS name; `allowWildcard` permits a leading `*.` (certificate SANs). */
export function checkDnsName(value: string, allowWildcard: boolean, label = DNS_LABEL): string | undefined {
  let name = value.endsWith('.') ? value.slice(0, -1) : value;
  if (allowWildcard && name.startsWith('*.')) name = name.slice(2);
  if (name.length === 0 || name.length > 253) return `\`${value}\` is not a valid host name (1–253 characters)`;
  const labels = name.split('.');
  for (const part of labels) {
    if (!label.test(part)) {
      return `\`${value}\` is not a valid host name: each dot-separated part is 1–63 letters, digits or hyphens, not starting or ending with a hyphen`;
    }
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) return `\`${value}\` is not a valid host name or IP address`;
  return undefined;
}

/** A TLS subject alternative name for the k3s API certificate: an IP address or a DNS name (wildcards allowed). */
export function checkSan(value: string): string | undefined {
  if (isIPv4(value) || isIPv6(value)) return undefined;
  if (value.includes('/')) return `\`${value}\` is a network, not an address; a certificate SAN is one IP or DNS name`;
  if (/^[\d.]+$/.test(value)) return `\`${value}\` is not a valid IPv4 address`;
  if (value.includes(':')) return `\`${value}\` is not a valid IPv6 address`;
  return checkDnsName(value, true);
}

function ipv4ToBigInt(ip: string): bigint {
  return ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipv4ToBigInt(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - headParts.length - tailParts.length).fill('0');
  return [...headParts, ...fill, ...tailParts].reduce((acc, h) => (acc << 16n) | BigInt(parseInt(h, 16)), 0n);
}

function bigIntToIPv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => ((n >> s) & 0xffn).toString()).join('.');
}

function bigIntToIPv6(n: bigint): string {
  const parts: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) parts.push(((n >> s) & 0xffffn).toString(16));
  // Shorten the longest run of zero hextets to `::` (RFC 5952).
  let best = { start: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > best.len && j - i > 1) best = { start: i, len: j - i };
    i = j;
  }
  if (best.start < 0) return parts.join(':');
  return `${parts.slice(0, best.start).join(':')}::${parts.slice(best.start + best.len).join(':')}`;
}

export interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

export function parseCidr(value: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(value);
  if (!m) return undefined;
  const [, ip, p] = m as unknown as [string, string, string];
  const prefix = Number(p);
  if (isIPv4(ip) && prefix <= 32) return { family: 4, network: ipv4ToBigInt(ip), prefix };
  if (isIPv6(ip) && prefix <= 128) return { family: 6, network: ipv6ToBigInt(ip), prefix };
  return undefined;
}

/** An IPv4 or IPv6 network in CIDR form, with no host bits set (`10.42.0.0/16`, `fd00:42::/56`). */
export function checkCidr(value: string): string | undefined {
  const c = parseCidr(value);
  if (!c) {
    if (!value.includes('/')) return `\`${value}\` has no prefix length; write a network like \`10.42.0.0/16\``;
    return `\`${value}\` is not a CIDR network: expected an IPv4 address /0–32 or an IPv6 address /0–128`;
  }
  const bits = c.family === 4 ? 32 : 128;
  const hostMask = (1n << BigInt(bits - c.prefix)) - 1n;
  if ((c.network & hostMask) !== 0n) {
    const net = c.network & ~hostMask & ((1n << BigInt(bits)) - 1n);
    const fixed = `${c.family === 4 ? bigIntToIPv4(net) : bigIntToIPv6(net)}/${c.prefix}`;
    return `\`${value}\` has host bits set (did you mean \`${fixed}\`?)`;
  }
  return undefined;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const bits = a.family === 4 ? 32 : 128;
  const prefix = Math.min(a.prefix, b.prefix);
  const shift = BigInt(bits - prefix);
  return a.network >> shift === b.network >> shift;
}

// The last of 43 base64 characters carries only 4 of the 256 bits, so only these 16 letters can end it.
const SHA256_LAST = 'AEIMQUYcgkosw048';

/** An OpenSSH host key fingerprint as `ssh-keygen -lf` prints it: `SHA256:` + 43 base64 characters. */
export function checkFingerprint(value: string): string | undefined {
  const expected =
    'expected `SHA256:` followed by 43 base64 characters, as printed by `ssh-keygen -lf <key>` or `ssh-keyscan <host> | ssh-keygen -lf -`';
  if (/^MD5:/i.test(value) || /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/i.test(value)) {
    return `\`${value}\` is an MD5 fingerprint; ${expected}`;
  }
  if (!value.startsWith('SHA256:')) {
    if (/^sha256:/i.test(value)) return `write the prefix as \`SHA256:\` (upper case); ${expected}`;
    return `\`${value}\` is not an OpenSSH fingerprint; ${expected}`;
  }
  const b64 = value.slice('SHA256:'.length);
  if (/=+$/.test(b64)) return `remove the trailing \`=\` padding: OpenSSH prints fingerprints without it`;
  if (!/^[A-Za-z0-9+/]*$/.test(b64)) return `the fingerprint contains characters that are not base64; ${expected}`;
  if (b64.length !== 43) return `the fingerprint has ${b64.length} base64 characters, not 43; ${expected}`;
  if (!SHA256_LAST.includes(b64[42]!)) return `the fingerprint's last character cannot end a SHA-256 digest; check it was copied whole`;
  return undefined;
}

/** A Kubernetes object name as an RFC 1123 label (the POP name becomes a cluster name on the hub). */
export function checkK8sName(value: string): string | undefined {
  if (value.length === 0) return 'must not be empty';
  if (value.length > 63) return `\`${value}\` is ${value.length} characters; names are at most 63`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(value)) {
    const fixed = value
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '');
    const hint = fixed && fixed !== value ? ` (did you mean \`${fixed}\`?)` : '';
    return `\`${value}\` is not a valid name: lower-case letters, digits and '-', starting and ending with a letter or digit${hint}`;
  }
  return undefined;
}

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** A Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of ≤ 63 characters. */
export function checkLabelKey(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined) {
    if (prefix.length > 253 || !prefix.split('.').every((l) => /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(l))) {
      return `label key \`${key}\`: the prefix before '/' must be a lower-case DNS name like \`example.com\``;
    }
  }
  if (!LABEL_NAME.test(name)) {
    return `label key \`${key}\`: the name must be 1–63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

export function checkLabelValue(value: string): string | undefined {
  if (value === '') return undefined;
  if (!LABEL_NAME.test(value)) {
    return `label value \`${value}\` must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

// The kubelet's NodeRestriction admission refuses self-applied labels in these namespaces, except the ones below.
const RESERVED_LABEL_NAMESPACES = ['kubernetes.io', 'k8s.io'];
const ALLOWED_RESERVED_PREFIXES = ['kubelet.kubernetes.io/', 'node.kubernetes.io/', 'topology.kubernetes.io/'];

/** A node label the kubelet accepts at registration (k3s `--node-label`). */
export function checkNodeLabelKey(key: string): string | undefined {
  const syntax = checkLabelKey(key);
  if (syntax) return syntax;
  const slash = key.lastIndexOf('/');
  if (slash < 0) return undefined;
  const prefix = key.slice(0, slash);
  const reserved = RESERVED_LABEL_NAMESPACES.some((ns) => prefix === ns || prefix.endsWith(`.${ns}`));
  if (reserved && !ALLOWED_RESERVED_PREFIXES.some((p) => key.startsWith(p))) {
    return `node label \`${key}\` is in a namespace the kubelet refuses to set on itself (${prefix}); use your own prefix, e.g. \`edge.flomesh.io/${key.slice(slash + 1)}\``;
  }
  return undefined;
}

export function checkEnvName(value: string): string | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
    return `\`${value}\` is not an environment variable name (letters, digits and '_', not starting with a digit)`;
  }
  return undefined;
}

/** The POP's Kubernetes API URL as the hub reaches it: `https://host[:port]`. */
export function checkApiEndpoint(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `\`${value}\` is not a URL; expected \`https://<host>:6443\``;
  }
  if (url.protocol !== 'https:') return `\`${value}\` must use https (the Kubernetes API serves TLS)`;
  if (url.username || url.password) return 'must not contain credentials';
  if (url.pathname !== '/' || url.search || url.hash)
    return `\`${value}\` must be only scheme, host and port, e.g. \`https://10.99.0.11:6443\``;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return checkHost(host);
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The closest valid name to `value`, if it is close enough to be a likely typo. */
export function closest(value: string, candidates: readonly string[]): string | undefined {
  const v = value.toLowerCase();
  let best: { name: string; d: number } | undefined;
  for (const c of candidates) {
    const cl = c.toLowerCase();
    const d = cl === v ? 0 : cl.startsWith(v) || v.startsWith(cl) ? Math.min(editDistance(v, cl), 2) : editDistance(v, cl);
    if (!best || d < best.d) best = { name: c, d };
  }
  if (!best) return undefined;
  const limit = Math.max(2, Math.floor(Math.max(value.length, best.name.length) / 3));
  return best.d <= limit ? best.name : undefined;
}

/** `host:port`, with an IPv6 address in brackets (`[fd00::1]:22`), as OpenSSH and URLs write it. */
export function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
