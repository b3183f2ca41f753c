// `k3s server` flags and /etc/rancher/k3s/config.yaml (+ config.yaml.d/*.yaml), as k3s reads them:
// YAML keys are long flag names; lists for repeatable flags; `key+` appends; drop-ins in lexical order, last wins;
// command-line flags override the files (a list on the command line replaces the file's list); K3S_* environment
// variables only fill flags that neither set. A key that is not a k3s server flag is skipped with k3s's warning
// ("Unknown flag --x found in config.yaml, skipping") — that is what k3s does since v1.22.4 (k3s-io/k3s#4509).
// A value of the wrong type is fatal, as urfave/cli makes it.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

type FlagType = 'bool' | 'string' | 'int' | 'list';

/** Long names of `k3s server` flags (v1.3x), with their urfave/cli types. */
export const SERVER_FLAGS: Record<string, FlagType> = {
  config: 'string',
  debug: 'bool',
  v: 'int',
  vmodule: 'string',
  log: 'string',
  alsologtostderr: 'bool',
  'bind-address': 'string',
  'https-listen-port': 'int',
  'supervisor-port': 'int',
  'apiserver-port': 'int',
  'apiserver-bind-address': 'string',
  'advertise-address': 'string',
  'advertise-port': 'int',
  'tls-san': 'list',
  'tls-san-security': 'bool',
  'data-dir': 'string',
  'cluster-cidr': 'list',
  'service-cidr': 'list',
  'service-node-port-range': 'string',
  'cluster-dns': 'list',
  'cluster-domain': 'string',
  'flannel-backend': 'string',
  'flannel-ipv6-masq': 'bool',
  'flannel-external-ip': 'bool',
  'egress-selector-mode': 'string',
  'servicelb-namespace': 'string',
  'write-kubeconfig': 'string',
  'write-kubeconfig-mode': 'string',
  'write-kubeconfig-group': 'string',
  'write-kubeconfig-name': 'string',
  'helm-job-image': 'string',
  token: 'string',
  'token-file': 'string',
  'agent-token': 'string',
  'agent-token-file': 'string',
  server: 'string',
  'cluster-init': 'bool',
  'cluster-reset': 'bool',
  'cluster-reset-restore-path': 'string',
  'kube-apiserver-arg': 'list',
  'etcd-arg': 'list',
  'kube-controller-manager-arg': 'list',
  'kube-scheduler-arg': 'list',
  'kube-cloud-controller-manager-arg': 'list',
  'datastore-endpoint': 'string',
  'datastore-cafile': 'string',
  'datastore-certfile': 'string',
  'datastore-keyfile': 'string',
  'etcd-expose-metrics': 'bool',
  'etcd-disable-snapshots': 'bool',
  'etcd-snapshot-name': 'string',
  'etcd-snapshot-schedule-cron': 'string',
  'etcd-snapshot-retention': 'int',
  'etcd-snapshot-dir': 'string',
  'etcd-snapshot-compress': 'bool',
  'etcd-s3': 'bool',
  'etcd-s3-endpoint': 'string',
  'etcd-s3-endpoint-ca': 'string',
  'etcd-s3-skip-ssl-verify': 'bool',
  'etcd-s3-access-key': 'string',
  'etcd-s3-secret-key': 'string',
  'etcd-s3-session-token': 'string',
  'etcd-s3-bucket': 'string',
  'etcd-s3-bucket-lookup-type': 'string',
  'etcd-s3-region': 'string',
  'etcd-s3-folder': 'string',
  'etcd-s3-proxy': 'string',
  'etcd-s3-config-secret': 'string',
  'etcd-s3-insecure': 'bool',
  'etcd-s3-timeout': 'string',
  'etcd-s3-retention': 'int',
  'default-local-storage-path': 'string',
  disable: 'list',
  'disable-scheduler': 'bool',
  'disable-cloud-controller': 'bool',
  'disable-kube-proxy': 'bool',
  'disable-network-policy': 'bool',
  'disable-helm-controller': 'bool',
  'disable-apiserver': 'bool',
  'disable-controller-manager': 'bool',
  'disable-etcd': 'bool',
  'embedded-registry': 'bool',
  'supervisor-metrics': 'bool',
  'node-name': 'string',
  'with-node-id': 'bool',
  'node-label': 'list',
  'node-taint': 'list',
  'image-credential-provider-bin-dir': 'string',
  'image-credential-provider-config': 'string',
  docker: 'bool',
  'container-runtime-endpoint': 'string',
  'default-runtime': 'string',
  'image-service-endpoint': 'string',
  'disable-default-registry-endpoint': 'bool',
  'nonroot-devices': 'bool',
  'pause-image': 'string',
  snapshotter: 'string',
  'private-registry': 'string',
  'system-default-registry': 'string',
  'airgap-extra-registry': 'list',
  'node-ip': 'list',
  'node-internal-dns': 'list',
  'node-external-ip': 'list',
  'node-external-dns': 'list',
  'resolv-conf': 'string',
  'flannel-iface': 'string',
  'flannel-conf': 'string',
  'flannel-cni-conf': 'string',
  'vpn-auth': 'string',
  'vpn-auth-file': 'string',
  'kubelet-arg': 'list',
  'kube-proxy-arg': 'list',
  'protect-kernel-defaults': 'bool',
  'secrets-encryption': 'bool',
  'secrets-encryption-provider': 'string',
  'enable-pprof': 'bool',
  rootless: 'bool',
  'prefer-bundled-bin': 'bool',
  selinux: 'bool',
  'lb-server-port': 'int',
};

const ALIASES: Record<string, string> = { c: 'config', d: 'data-dir', t: 'token', o: 'write-kubeconfig', s: 'server' };

/** Environment variables k3s binds to server flags. */
const ENV_FLAGS: Record<string, string> = {
  K3S_CONFIG_FILE: 'config',
  K3S_DEBUG: 'debug',
  K3S_TOKEN: 'token',
  K3S_TOKEN_FILE: 'token-file',
  K3S_AGENT_TOKEN: 'agent-token',
  K3S_AGENT_TOKEN_FILE: 'agent-token-file',
  K3S_URL: 'server',
  K3S_KUBECONFIG_OUTPUT: 'write-kubeconfig',
  K3S_KUBECONFIG_MODE: 'write-kubeconfig-mode',
  K3S_KUBECONFIG_GROUP: 'write-kubeconfig-group',
  K3S_DATASTORE_ENDPOINT: 'datastore-endpoint',
  K3S_NODE_NAME: 'node-name',
  K3S_CLUSTER_INIT: 'cluster-init',
  K3S_CLUSTER_RESET: 'cluster-reset',
  K3S_SYSTEM_DEFAULT_REGISTRY: 'system-default-registry',
  K3S_SELINUX: 'selinux',
  K3S_RESOLV_CONF: 'resolv-conf',
  K3S_DATA_DIR: 'data-dir',
};

export type FlagValue = string | boolean | number | string[];

export class FlagError extends Error {}

export interface ParsedServerFlags {
  values: Map<string, FlagValue>;
  /** Warnings to log (unknown keys in config files). */
  warnings: string[];
  configFiles: string[];
}

function coerce(name: string, raw: unknown, from: string): FlagValue {
  const type = SERVER_FLAGS[name]!;
  switch (type) {
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === 'false') return raw === 'true';
      throw new FlagError(`invalid boolean value ${JSON.stringify(String(raw))} for flag -${name} (${from})`);
    case 'int': {
      const n = typeof raw === 'number' ? raw : Number(String(raw));
      if (!Number.isInteger(n))
        throw new FlagError(`invalid value ${JSON.stringify(String(raw))} for flag -${name}: parse error (${from})`);
      return n;
    }
    case 'list':
      if (Array.isArray(raw)) return raw.map((x) => String(x));
      if (raw !== null && typeof raw === 'object')
        throw new FlagError(`invalid value for flag -${name}: expected a list or a string (${from})`);
      return String(raw)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      if (raw !== null && typeof raw === 'object') throw new FlagError(`invalid value for flag -${name}: expected a string (${from})`);
      return String(raw);
  }
}

/** Parses `server` command-line flags (`--a=b`, `--a b`, `--bool`, `-d dir`). */
function parseCli(args: string[]): Map<string, FlagValue> {
  const out = new Map<string, FlagValue>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-')) throw new FlagError(`unexpected argument ${JSON.stringify(a)}`);
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    let name = eq >= 0 ? body.slice(0, eq) : body;
    name = ALIASES[name] ?? name;
    const type = SERVER_FLAGS[name];
    if (!type) throw new FlagError(`flag provided but not defined: -${name}`);
    let raw: string | boolean;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (type === 'bool') raw = true;
    else {
      const next = args[++i];
      if (next === undefined) throw new FlagError(`flag needs an argument: -${name}`);
      raw = next;
    }
    const v = coerce(name, raw, 'command line');
    if (type === 'list') out.set(name, [...((out.get(name) as string[] | undefined) ?? []), ...(v as string[])]);
    else out.set(name, v);
  }
  return out;
}

function readConfigFile(file: string, into: Map<string, FlagValue>, warnings: string[]) {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FlagError(`failed to parse ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new FlagError(`failed to parse ${file}: not a map of flag names to values`);
  for (const [rawKey, raw] of Object.entries(doc as Record<string, unknown>)) {
    const append = rawKey.endsWith('+');
    const name = append ? rawKey.slice(0, -1) : rawKey;
    if (!SERVER_FLAGS[name]) {
      warnings.push(`Unknown flag --${name} found in config.yaml, skipping`);
      continue;
    }
    const v = coerce(name, raw, file);
    if (append && SERVER_FLAGS[name] === 'list') into.set(name, [...((into.get(name) as string[] | undefined) ?? []), ...(v as string[])]);
    else into.set(name, v);
  }
}

/**
 * The effective `k3s server` flags from argv, the config file(s) and K3S_* environment variables.
 * Throws FlagError (k3s exits with it) for undefined command-line flags and badly typed values.
 */
export function parseServerFlags(args: string[], env: NodeJS.ProcessEnv = process.env): ParsedServerFlags {
  const cli = parseCli(args);
  const warnings: string[] = [];
  const configFlag = (cli.get('config') as string | undefined) ?? env.K3S_CONFIG_FILE;
  const configFile = configFlag ?? '/etc/rancher/k3s/config.yaml';
  const fromFiles = new Map<string, FlagValue>();
  const configFiles: string[] = [];
  if (fs.existsSync(configFile)) {
    readConfigFile(configFile, fromFiles, warnings);
    configFiles.push(configFile);
  } else if (configFlag) throw new FlagError(`open ${configFile}: no such file or directory`);
  const dropins = `${configFile}.d`;
  if (fs.existsSync(dropins)) {
    for (const f of fs.readdirSync(dropins).sort()) {
      if (!/\.ya?ml$/.test(f)) continue;
      readConfigFile(path.join(dropins, f), fromFiles, warnings);
      configFiles.push(path.join(dropins, f));
    }
  }
  const values = new Map<string, FlagValue>(fromFiles);
  for (const [k, v] of cli) values.set(k, v);
  for (const [envName, flag] of Object.entries(ENV_FLAGS)) {
    const v = env[envName];
    if (v !== undefined && v !== '' && !values.has(flag)) values.set(flag, coerce(flag, v, `$${envName}`));
  }
  return { values, warnings, configFiles };
}

/** Typed access with k3s's defaults. */
export class ServerFlags {
  constructor(readonly parsed: ParsedServerFlags) {}
  str(name: string, def = ''): string {
    const v = this.parsed.values.get(name);
    return v === undefined ? def : String(v);
  }
  bool(name: string): boolean {
    return this.parsed.values.get(name) === true;
  }
  int(name: string, def: number): number {
    const v = this.parsed.values.get(name);
    return typeof v === 'number' ? v : def;
  }
  list(name: string): string[] {
    const v = this.parsed.values.get(name);
    return Array.isArray(v)
      ? v
          .flatMap((s) => s.split(','))
          .map((s) => s.trim())
          .filter(Boolean)
      : [];
  }
  get dataDir() {
    return this.str('data-dir', '/var/lib/rancher/k3s');
  }
}
