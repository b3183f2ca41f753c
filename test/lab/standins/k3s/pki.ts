// Cluster certificates with openssl (ECDSA P-256 like k3s), under server/tls: a CA kept across restarts, a
// serving cert re-issued at every start with the current SANs (k3s's dynamiclistener adds tls-san entries), and
// the admin client cert the kubeconfig carries (CN=system:admin, O=system:masters).
// Simplification: one CA signs both serving and client certs (k3s keeps server-ca and client-ca apart);
// both file names are written so paths match.
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

function newKey(file: string) {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file]);
  fs.chmodSync(file, 0o600);
}

function sign(tls: string, base: string, subj: string, ext: string, caCrt: string, caKey: string) {
  const key = path.join(tls, `${base}.key`);
  if (!fs.existsSync(key)) newKey(key);
  const extFile = path.join(tls, `.${base}.ext`);
  fs.writeFileSync(extFile, ext);
  const csr = openssl(['req', '-new', '-key', key, '-subj', subj]);
  openssl(['x509', '-req', '-CA', caCrt, '-CAkey', caKey, '-CAcreateserial', '-days', '365', '-sha256', '-extfile', extFile, '-out', path.join(tls, `${base}.crt`)], csr);
  fs.rmSync(extFile);
}

const isIp = (s: string) => /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || s.includes(':');

export function nodeAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') out.push(a.address);
  return out;
}

export function ensurePki(dataDir: string, hostname: string, tlsSans: string[]): Pki {
  const tls = path.join(dataDir, 'server', 'tls');
  fs.mkdirSync(tls, { recursive: true, mode: 0o700 });
  const caCrt = path.join(tls, 'server-ca.crt');
  const caKey = path.join(tls, 'server-ca.key');
  if (!fs.existsSync(caCrt) || !fs.existsSync(caKey)) {
    newKey(caKey);
    openssl(['req', '-x509', '-new', '-key', caKey, '-subj', `/CN=k3s-server-ca@${Math.floor(Date.now() / 1000)}`, '-days', '3650', '-sha256', '-out', caCrt]);
    fs.copyFileSync(caCrt, path.join(tls, 'client-ca.crt'));
    fs.copyFileSync(caKey, path.join(tls, 'client-ca.key'));
  }
  const dns = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost', hostname];
  const ips = ['127.0.0.1', '::1', '10.43.0.1', ...nodeAddresses()];
  for (const s of tlsSans) (isIp(s) ? ips : dns).push(s);
  const san = [...new Set(dns)].map((d) => `DNS:${d}`).concat([...new Set(ips)].map((i) => `IP:${i}`)).join(',');
  sign(tls, 'serving-kube-apiserver', '/CN=kube-apiserver', `keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`, caCrt, caKey);
  if (!fs.existsSync(path.join(tls, 'client-admin.crt'))) {
    sign(tls, 'client-admin', '/O=system:masters/CN=system:admin', 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n', caCrt, caKey);
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
