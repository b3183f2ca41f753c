// Which secrets an operation on a site reads, and who receives each: shown by `install --dry-run` so an
// operator sees what a site file (possibly pulled in by a Fleet glob) makes the controller read and send.

import type { Hub } from './hub.js';
import { formatHostPort } from './formats.js';
import { describeSecretSource, type SecretRef } from './secret.js';
import type { Site } from './site.js';

export const CONTROLLER_ONLY = 'used on the controller only';

export interface SecretUse {
  /** Where the reference is written, e.g. `spec.ssh.sudo.password` or `Hub hub-1 spec.kubeconfig`. */
  field: string;
  ref: SecretRef;
  /** `env NAME` or `file /abs/path`. */
  source: string;
  /** The host that receives the secret's value, or `used on the controller only`. */
  sentTo: string;
}

/**
 * Every secret an install of `site` (registering with `hub`, when given and the site names a hub) reads.
 * The key file and its passphrase only unlock the key on the controller (SSH sends a signature, not the key);
 * the sudo password goes to the POP (sudo -S on stdin); the hub kubeconfig's credentials go to the hub's API
 * server. `baseDir` resolves paths the loader did not already make absolute.
 */
export function secretsUsedBy(site: Site, hub?: Hub, baseDir: string = process.cwd()): SecretUse[] {
  const ssh = site.spec.ssh;
  const uses: SecretUse[] = [];
  const add = (field: string, ref: SecretRef, sentTo: string) =>
    uses.push({ field, ref, source: describeSecretSource(ref, baseDir), sentTo });
  const hops = [...ssh.jumpHosts.map((j, i) => ({ e: j, at: `spec.ssh.jumpHosts[${i}]` })), { e: ssh, at: 'spec.ssh' }];
  for (const { e, at } of hops) {
    if (e.identityFile) add(`${at}.identityFile`, { file: e.identityFile }, CONTROLLER_ONLY);
    if (e.passphrase) add(`${at}.passphrase`, e.passphrase, CONTROLLER_ONLY);
  }
  if (typeof ssh.sudo === 'object') {
    const via = ssh.jumpHosts.length
      ? ` (through ${ssh.jumpHosts.map((j) => formatHostPort(j.host, j.port)).join(', ')}, encrypted end to end)`
      : '';
    add('spec.ssh.sudo.password', ssh.sudo.password, `${ssh.user}@${formatHostPort(ssh.host, ssh.port)}${via}`);
  }
  if (hub && site.spec.hub) {
    add(
      `Hub ${hub.metadata.name} spec.kubeconfig`,
      hub.spec.kubeconfig,
      `the API server of Hub ${hub.metadata.name} (the server its kubeconfig names)`,
    );
  }
  return uses;
}

/** One line of a plan: `spec.ssh.sudo.password: file /home/ops/pop.pass → pop@10.0.0.5:22`. */
export function formatSecretUse(use: SecretUse): string {
  return `${use.field}: ${use.source} → ${use.sentTo}`;
}
