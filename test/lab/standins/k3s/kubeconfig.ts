// /etc/rancher/k3s/k3s.yaml: rewritten at every start, client-cert auth, server https://127.0.0.1:<port>,
// cluster/user/context named `default` (or write-kubeconfig-name), mode 0600 unless write-kubeconfig-mode.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { execSyncCmd } from './exec.js';
import { log } from './log.js';
import type { Pki } from './pki.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

export function kubeconfigYaml(pki: Pki, server: string, name = 'default'): string {
  return YAML.stringify({
    apiVersion: 'v1',
    clusters: [{ cluster: { 'certificate-authority-data': b64(pki.caCert), server }, name }],
    contexts: [{ context: { cluster: name, user: name }, name }],
    'current-context': name,
    kind: 'Config',
    preferences: {},
    users: [{ name, user: { 'client-certificate-data': b64(pki.adminCert), 'client-key-data': b64(pki.adminKey) } }],
  });
}

export function writeKubeconfig(file: string, pki: Pki, port: number, mode: string, group: string, name: string) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, kubeconfigYaml(pki, `https://127.0.0.1:${port}`, name || 'default'), { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  if (mode) {
    const m = /^[0-7]{1,4}$/.test(mode) ? parseInt(mode, 8) : NaN;
    if (Number.isNaN(m)) log.error(`Failed to set ${file} to mode ${mode}: strconv.ParseInt: parsing "${mode}": invalid syntax`);
    else fs.chmodSync(file, m);
  }
  if (group) {
    const r = execSyncCmd('chgrp', [group, file]);
    if (r.code !== 0) log.error(`Failed to set ${file} to group ${group}: ${r.stderr.trim()}`);
  }
  log.info(`Wrote kubeconfig ${file}`);
}
