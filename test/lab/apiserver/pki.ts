// LAB STAND-IN: a throwaway PKI for lab API servers (CA, serving cert with SANs, admin client cert), made
// with the openssl CLI — like k3s generates its own at first start. EC P-256 keys: fast to generate.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface LabPki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** Client cert CN=system:admin, O=system:masters (like k3s's client-admin.crt). */
  adminCert: string;
  adminKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Create (or reuse, if complete) a PKI in `dir`. `sans`: IPs and DNS names for the serving cert.
 */
export function createPki(dir: string, sans: string[], opts: { reuse?: boolean } = {}): LabPki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = ['ca.crt', 'ca.key', 'server.crt', 'server.key', 'admin.crt', 'admin.key'];
  const load = (): LabPki => {
    const r = (f: string) => readFileSync(join(dir, f), 'utf8');
    return {
      dir,
      caCert: r('ca.crt'),
      caKey: r('ca.key'),
      serverCert: r('server.crt'),
      serverKey: r('server.key'),
      adminCert: r('admin.crt'),
      adminKey: r('admin.key'),
    };
  };
  const sanFile = join(dir, 'sans');
  const sanLine = [...new Set(sans)].map((s) => (/^[\d.]+$/.test(s) || s.includes(':') ? `IP:${s}` : `DNS:${s}`)).join(',');
  if (
    opts.reuse !== false &&
    files.every((f) => existsSync(join(dir, f))) &&
    existsSync(sanFile) &&
    readFileSync(sanFile, 'utf8') === sanLine
  )
    return load();
  const key = (name: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name], dir);
  key('ca.key');
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      `/CN=lab-apiserver-ca@${Math.floor(Date.now() / 1000)}`,
      '-days',
      '3650',
      '-out',
      'ca.crt',
    ],
    dir,
  );
  const leaf = (name: string, subj: string, ext: string) => {
    key(`${name}.key`);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`], dir);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '3650',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.crt`,
      ],
      dir,
    );
  };
  leaf(
    'server',
    '/CN=kube-apiserver',
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${sanLine}\n`,
  );
  leaf(
    'admin',
    '/O=system:masters/CN=system:admin',
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  writeFileSync(sanFile, sanLine);
  return load();
}

/** An admin kubeconfig (client certificate) like k3s.yaml. */
export function adminKubeconfig(pki: Pick<LabPki, 'caCert' | 'adminCert' | 'adminKey'>, server: string, name = 'default'): string {
  const b = (s: string) => Buffer.from(s).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- cluster:',
    `    certificate-authority-data: ${b(pki.caCert)}`,
    `    server: ${server}`,
    `  name: ${name}`,
    'contexts:',
    '- context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `  name: ${name}`,
    `current-context: ${name}`,
    'preferences: {}',
    'users:',
    `- name: ${name}`,
    '  user:',
    `    client-certificate-data: ${b(pki.adminCert)}`,
    `    client-key-data: ${b(pki.adminKey)}`,
    '',
  ].join('\n');
}
