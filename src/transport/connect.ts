// Site config → a connected Host. Secrets (key passphrases, sudo password) are resolved here, at the moment they
// are needed, and only ever travel to the POP on stdin.

import type { Site } from '../config/index.js';
import { resolveConfigPath, resolveSecret } from '../config/index.js';
import { LocalHost } from './local-host.js';
import { SshHost, type SshHostOptions } from './ssh-host.js';
import type { SshEndpoint } from './ssh-connection.js';

export interface ConnectHostOptions extends Omit<SshHostOptions, 'sudo'> {
  /** Run on this machine (the technician is on the POP) instead of over SSH. */
  local?: boolean;
  /** Directory the site file was loaded from (relative identityFile / secret paths). Default: cwd. */
  baseDir?: string;
}

type EndpointConfig = Site['spec']['ssh']['jumpHosts'][number];

function endpoint(ep: EndpointConfig, baseDir: string, env: NodeJS.ProcessEnv): SshEndpoint {
  const out: SshEndpoint = { host: ep.host, port: ep.port ?? 22, user: ep.user, hostKeys: [...(ep.hostKeys ?? [])] };
  if (ep.identityFile) out.identityFile = resolveConfigPath(ep.identityFile, baseDir);
  if (ep.agent) out.agent = true;
  if (ep.passphrase) out.passphrase = resolveSecret(ep.passphrase, baseDir, env);
  return out;
}

/**
 * Connects to the site's POP (checking pinned host keys of every hop). With `acceptNewHostKey`, keys of
 * unpinned hops are accepted and listed in `host.newPins` — record them with `recordHostKeyPins`.
 */
export async function connectHost(site: Site, opts: ConnectHostOptions = {}): Promise<SshHost | LocalHost> {
  const ssh = site.spec.ssh;
  const baseDir = opts.baseDir ?? process.cwd();
  const env = opts.env ?? process.env;
  const sudo = ssh.sudo ?? true;
  const sudoOpt: boolean | { password: string } =
    typeof sudo === 'object' ? { password: resolveSecret(sudo.password, baseDir, env) } : sudo;
  if (opts.local) return new LocalHost({ name: site.metadata.name, sudo: sudoOpt });
  const { local: _l, baseDir: _b, ...rest } = opts;
  return SshHost.connect(
    {
      name: site.metadata.name,
      ...endpoint(ssh, baseDir, env),
      jumpHosts: (ssh.jumpHosts ?? []).map((j) => endpoint(j, baseDir, env)),
    },
    { ...rest, sudo: sudoOpt },
  );
}
