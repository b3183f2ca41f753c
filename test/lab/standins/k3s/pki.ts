// Cluster certificates with openssl (ECDSA P-256 like k3s), under server/tls: a CA kept across restarts, a
// serving cert re-issued at every start with the current SANs (k3s's dynamiclistener adds tls-san entries), and
// the admin client cert the kubeconfig carries (CN=system:admin, O=system:masters).
// Simplification: one CA signs both serving and client certs (k3s keeps server-ca and client-ca apart);
// both file names are written so paths match.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execSyncCmd } from './exec.js';

export interface Pki {
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  caFile: string;
}

function openssl(args: string[], input?: string): string {
  const r = execSyncCmd('openssl', args, input);
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
  return r.stdout;
}

// Keys come from Node's crypto (native even under qemu); each certificate is ONE openssl call (`req -x509`,
// with `-CA` for leaf certs, OpenSSL 3) because every process start is expensive on emulated arm64 POPs.
function newKey(file: string) {
  const { privateKey } = crypto.generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: { type: 'sec1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  fs.writeFileSync(file, privateKey, { mode: 0o600 });
}

function reqConfig(tls: string, base: string, ext: string[]): string {
  const f = path.join(tls, `.${base}.cnf`);
  fs.writeFileSync(f, ['[req]', 'distinguished_name = dn', 'x509_extensions = ext', 'prompt = no', '[dn]', '[ext]', ...ext, ''].join('\n'));
  return f;
}

function selfSignedCa(tls: string, base: string, cn: string) {
  const key = path.join(tls, `${base}.key`);
  newKey(key);
  const cnf = reqConfig(tls, base, [
    'basicConstraints = critical,CA:TRUE',
    'keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign',
    'subjectKeyIdentifier = hash',
  ]);
  openssl([
    'req',
    '-x509',
    '-new',
    '-config',
    cnf,
    '-key',
    key,
    '-subj',
    `/CN=${cn}`,
    '-days',
    '3650',
    '-sha256',
    '-out',
    path.join(tls, `${base}.crt`),
  ]);
  fs.rmSync(cnf);
}

function sign(tls: string, base: string, subj: string, ext: string[], caCrt: string, caKey: string) {
  const key = path.join(tls, `${base}.key`);
  if (!fs.existsSync(key)) newKey(key);
  const cnf = reqConfig(tls, base, [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature,keyEncipherment',
    ...ext,
  ]);
  openssl([
    'req',
    '-x509',
    '-new',
    '-config',
    cnf,
    '-key',
    key,
    '-CA',
    caCrt,
    '-CAkey',
    caKey,
    '-subj',
    subj,
    '-days',
    '365',
    '-sha256',
    '-out',
    path.join(tls, `${base}.crt`),
  ]);
  fs.rmSync(cnf);
}

const isIp = (s: string) => /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || s.includes(':');

export function nodeAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') out.push(a.address);
  return out;
}

export function ensurePki(dataDir: string, hostname: string, tlsSans: string[]): Pki {
  const tls = path.join(dataDir, 'server', 'tls');
  fs.mkdirSync(tls, { recursive: true, mode: 0o700 });
  const caCrt = path.join(tls, 'server-ca.crt');
  const caKey = path.join(tls, 'server-ca.key');
  if (!fs.existsSync(caCrt) || !fs.existsSync(caKey)) {
    selfSignedCa(tls, 'server-ca', `k3s-server-ca@${Math.floor(Date.now() / 1000)}`);
    fs.copyFileSync(caCrt, path.join(tls, 'client-ca.crt'));
    fs.copyFileSync(caKey, path.join(tls, 'client-ca.key'));
  }
  const dns = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost', hostname];
  const ips = ['127.0.0.1', '::1', '10.43.0.1', ...nodeAddresses()];
  for (const s of tlsSans) (isIp(s) ? ips : dns).push(s);
  const san = [...new Set(dns)]
    .map((d) => `DNS:${d}`)
    .concat([...new Set(ips)].map((i) => `IP:${i}`))
    .join(',');
  sign(tls, 'serving-kube-apiserver', '/CN=kube-apiserver', ['extendedKeyUsage = serverAuth', `subjectAltName = ${san}`], caCrt, caKey);
  if (!fs.existsSync(path.join(tls, 'client-admin.crt'))) {
    sign(tls, 'client-admin', '/O=system:masters/CN=system:admin', ['extendedKeyUsage = clientAuth'], caCrt, caKey);
  }
  const read = (f: string) => fs.readFileSync(path.join(tls, f), 'utf8');
  return {
    caCert: read('server-ca.crt'),
    caKey: read('server-ca.key'),
    servingCert: read('serving-kube-apiserver.crt'),
    servingKey: read('serving-kube-apiserver.key'),
    adminCert: read('client-admin.crt'),
    adminKey: read('client-admin.key'),
    caFile: caCrt,
  };
}
