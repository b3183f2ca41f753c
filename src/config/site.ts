// `kind: Site` — one POP: how to reach it over SSH, what k3s and FSM look like on it, and how it joins the hub.

import { formatHostPort } from './formats.js';
import { z } from 'zod';
import { checkedString, strictObject } from './fields.js';
import {
  checkApiEndpoint,
  checkCidr,
  checkFingerprint,
  checkHost,
  checkK8sName,
  checkLabelKey,
  checkLabelValue,
  checkNodeLabelKey,
  checkSan,
  cidrsOverlap,
  parseCidr,
} from './formats.js';
import { SecretRefSchema } from './secret.js';

export const API_VERSION = 'edge.flomesh.io/v1alpha1';

export const HostSchema = checkedString(checkHost).meta({ description: 'Host name, IPv4 or IPv6 address' });
export const PortSchema = z.int().min(1).max(65535);
export const FingerprintSchema = checkedString(checkFingerprint).meta({
  description: 'OpenSSH host key fingerprint, `SHA256:` + 43 base64 characters (ssh-keygen -lf)',
  pattern: '^SHA256:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$',
});
export const K8sNameSchema = checkedString(checkK8sName).meta({
  description: 'RFC 1123 label: lower-case letters, digits and -, at most 63 characters',
  pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$',
});

const labelMap = (keyCheck: (k: string) => string | undefined) => z.record(checkedString(keyCheck), checkedString(checkLabelValue));

export const MetadataSchema = strictObject({
  name: K8sNameSchema.meta({ description: 'Site name; becomes the Cluster name on the hub' }),
  labels: labelMap(checkLabelKey).optional().meta({ description: 'Kubernetes-style labels used to select sites' }),
});

/** Fields shared by the POP's own SSH endpoint and each jump host. */
const endpointShape = {
  host: HostSchema,
  port: PortSchema.default(22).meta({ description: 'SSH port' }),
  user: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/, 'expected a login name like `pop` or `root`')
    .max(64)
    .default('root')
    .meta({ description: 'Login user (default root, as k0sctl and k3sup do)' }),
  identityFile: z.string().min(1).optional().meta({ description: 'Private key file (~ allowed); relative to the config file' }),
  agent: z.boolean().optional().meta({ description: 'Use the keys of the running ssh-agent (SSH_AUTH_SOCK)' }),
  passphrase: SecretRefSchema.optional().meta({ description: 'Passphrase of identityFile: {env: NAME} or {file: PATH}' }),
  hostKeys: z
    .array(FingerprintSchema)
    .default([])
    .meta({ description: 'Pinned host key fingerprints; empty means trust on first use with --accept-new-host-key' }),
};

export const JumpHostSchema = strictObject(endpointShape).meta({ description: 'A jump host (like ProxyJump), used in order' });

export const SudoSchema = z.union([z.boolean(), strictObject({ password: SecretRefSchema })]).meta({
  description:
    'true: run privileged commands with passwordless sudo (skipped when user is root); false: the user is root; {password: {env|file}}: sudo with a password',
});

export const SshSchema = strictObject({
  ...endpointShape,
  jumpHosts: z.array(JumpHostSchema).default([]).meta({ description: 'Jump hosts between here and the POP, in order' }),
  sudo: SudoSchema.default(true),
});

export const ARCHES = ['auto', 'amd64', 'arm64', 'arm'] as const;
export const K3S_COMPONENTS = ['traefik', 'servicelb', 'metrics-server', 'local-storage', 'coredns'] as const;

export const K3sSchema = strictObject({
  tlsSans: z
    .array(checkedString(checkSan))
    .default([])
    .meta({ description: 'Extra names/IPs for the API server certificate (k3s --tls-san)' }),
  nodeLabels: labelMap(checkNodeLabelKey).default({}).meta({ description: 'Labels the node registers with (k3s --node-label)' }),
  disable: z
    .array(z.enum(K3S_COMPONENTS))
    .default(['traefik'])
    .meta({ description: 'Packaged k3s components not to deploy (k3s --disable)' }),
  datastore: z.enum(['sqlite', 'etcd']).default('sqlite').meta({ description: 'sqlite (single node) or embedded etcd' }),
  clusterCidr: checkedString(checkCidr).default('10.42.0.0/16').meta({ description: 'Pod network (k3s --cluster-cidr)' }),
  serviceCidr: checkedString(checkCidr).default('10.43.0.0/16').meta({ description: 'Service network (k3s --service-cidr)' }),
});

export const MESH_PROFILES = ['edge-small', 'edge-medium', 'upstream'] as const;

export const MeshSchema = strictObject({
  interception: z
    .enum(['auto', 'ebpf', 'iptables'])
    .default('auto')
    .meta({ description: 'Traffic interception: auto (eBPF when the kernel supports it, else iptables), ebpf or iptables' }),
  ingress: z.boolean().default(true).meta({ description: 'Deploy the FSM ingress (needed to export services to other sites)' }),
  multicluster: z.boolean().default(true).meta({ description: 'Enable FSM multicluster (ServiceExport/Import)' }),
  profile: z
    .enum(MESH_PROFILES)
    .default('edge-small')
    .meta({ description: 'Resource profile: edge-small (≤ 2 GiB boards), edge-medium, upstream (chart defaults)' }),
});

const localityName = checkedString((v) => (v === '' ? 'must not be empty' : checkLabelValue(v)));

export const SiteHubSchema = strictObject({
  ref: K8sNameSchema.meta({ description: 'metadata.name of the Hub document to register with' }),
  region: localityName.default('default'),
  zone: localityName.default('default'),
  group: localityName.default('default'),
  gateway: strictObject({
    host: HostSchema.meta({ description: 'Address other sites reach this POP’s FSM ingress at (Cluster gatewayHost)' }),
    port: PortSchema.default(80).meta({ description: 'Cluster gatewayPort' }),
  }).optional(),
  apiEndpoint: checkedString(checkApiEndpoint)
    .optional()
    .meta({ description: 'URL the hub uses to reach this POP’s Kubernetes API; default https://<ssh.host>:6443' }),
});

export const BackupSchema = strictObject({
  recipients: z
    .array(z.string().regex(/^age1[0-9a-z]{20,}$/, 'an age recipient (age1…, as age-keygen prints it)'))
    .default([])
    .meta({ description: 'age recipients (age1…) every backup of this site is encrypted to' }),
  keep: z.int().min(1).max(365).default(7).meta({ description: 'Scheduled snapshots kept on the POP' }),
  schedule: z
    .string()
    .regex(/^[A-Za-z0-9 *:,./-]{1,64}$/, 'a systemd OnCalendar expression, e.g. daily or *-*-* 02:30:00')
    .default('daily')
    .meta({ description: 'When the POP writes its own snapshot (systemd OnCalendar); "off" for none' }),
  volumes: z
    .array(
      z
        .string()
        .regex(/^\/[A-Za-z0-9._/-]+$/, 'an absolute path without spaces')
        .refine((v) => !v.split('/').includes('..'), 'no ..'),
    )
    .default([])
    .meta({ description: 'Extra directories on the POP to include in each backup (e.g. local-path volumes)' }),
});

export const SiteSpecSchema = strictObject({
  arch: z.enum(ARCHES).default('auto').meta({ description: 'CPU architecture; auto detects it over SSH' }),
  ssh: SshSchema,
  k3s: K3sSchema.prefault({}),
  mesh: MeshSchema.prefault({}),
  hub: SiteHubSchema.optional().meta({ description: 'Federation hub registration; omit for a standalone POP' }),
  backup: BackupSchema.optional().meta({ description: 'Backups: age recipients, scheduled snapshots on the POP, extra volumes' }),
});

export const SiteSchema = strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Site'),
  metadata: MetadataSchema,
  spec: SiteSpecSchema,
})
  .superRefine((site, ctx) => {
    const ssh = site.spec.ssh;
    const endpoints: Array<{ e: typeof ssh | z.infer<typeof JumpHostSchema>; path: (string | number)[] }> = [
      ...ssh.jumpHosts.map((e, i) => ({ e, path: ['spec', 'ssh', 'jumpHosts', i] })),
      { e: ssh, path: ['spec', 'ssh'] },
    ];
    for (const { e, path } of endpoints) {
      if (!e.identityFile && e.agent !== true) {
        ctx.addIssue({ code: 'custom', path, message: 'say how to log in: give `identityFile: PATH` or `agent: true`' });
      }
      if (e.passphrase && !e.identityFile) {
        ctx.addIssue({ code: 'custom', path: [...path, 'passphrase'], message: 'a passphrase needs an `identityFile` to unlock' });
      }
    }
    // A chain that visits the same endpoint twice (or passes through the POP itself) never gets anywhere.
    const seen = new Map<string, number>();
    const chain = endpoints.map(({ e }) => formatHostPort(e.host.toLowerCase(), e.port));
    chain.forEach((key, i) => {
      const first = seen.get(key);
      if (first !== undefined) {
        const isPop = i === endpoints.length - 1;
        const route = chain.slice(0, i + 1).join(' → ');
        ctx.addIssue({
          code: 'custom',
          path: endpoints[i]!.path.concat(['host']),
          message: isPop
            ? `circular jump hosts: jumpHosts[${first}] is the POP itself (${key}); the route ${route} comes back to where it started — remove it`
            : `circular jump hosts: jumpHosts[${i}] (${key}) repeats jumpHosts[${first}]; the route ${route} goes round in a circle`,
        });
      }
      if (first === undefined) seen.set(key, i);
    });
    const k3s = site.spec.k3s;
    const pods = parseCidr(k3s.clusterCidr);
    const services = parseCidr(k3s.serviceCidr);
    if (pods && services && cidrsOverlap(pods, services)) {
      ctx.addIssue({
        code: 'custom',
        path: ['spec', 'k3s', 'serviceCidr'],
        message: `${k3s.serviceCidr} overlaps clusterCidr ${k3s.clusterCidr}; pods and services need separate networks`,
      });
    }
    const gw = site.spec.hub?.gateway?.host;
    if (gw && /^(127\.|0\.0\.0\.0$|::1?$|localhost$)/.test(gw)) {
      ctx.addIssue({
        code: 'custom',
        path: ['spec', 'hub', 'gateway', 'host'],
        message: `\`${gw}\` is a loopback/unspecified address; the hub and other sites must be able to reach the gateway`,
      });
    }
  })
  .meta({ description: 'One POP (point of presence): SSH access, k3s, FSM mesh and hub registration' });

export type Site = z.infer<typeof SiteSchema>;
export type SiteInput = z.input<typeof SiteSchema>;
export type SiteSpec = Site['spec'];
export type SshConfig = SiteSpec['ssh'];
export type JumpHost = z.infer<typeof JumpHostSchema>;
export type SiteHub = NonNullable<SiteSpec['hub']>;
export type Arch = (typeof ARCHES)[number];

/** A partial Site spec, as written under a Fleet's `defaults` (merged under each site's own values). */
export const SiteSpecDefaultsSchema = strictObject({
  arch: SiteSpecSchema.shape.arch.optional(),
  ssh: SshSchema.partial().optional(),
  k3s: K3sSchema.partial().optional(),
  mesh: MeshSchema.partial().optional(),
  hub: SiteHubSchema.partial().optional(),
  backup: BackupSchema.partial().optional(),
}).meta({ description: 'Values every site of the fleet starts from; a site’s own values win (objects merge, lists replace)' });
