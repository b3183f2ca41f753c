// The wizard's answers as the documents `fsm-edge install` reads: a Site (and, when the hub came from a
// kubeconfig context, a Hub) in one YAML file. Fields the wizard does not ask about keep the values of the
// site.yaml it started from. Secrets appear only as {env|file} references.

import { relative, resolve, dirname, isAbsolute } from 'node:path';
import { Document, isMap } from 'yaml';
import { API_VERSION, HubSchema, SiteSchema, type Hub, type Site } from '../../config/index.js';
import type { SecretRef } from '../../config/secret.js';
import type { SshTarget } from './target.js';

export type Login = { identityFile: string; passphrase?: SecretRef } | { agent: true };

export interface HopAnswers extends SshTarget {
  login: Login;
  hostKeys: string[];
}

export interface HubAnswers {
  ref: string;
  region: string;
  zone: string;
  group: string;
  gateway: { host: string; port: number };
  apiEndpoint: string;
}

/** A Hub document the wizard writes next to the Site (the hub was picked from a kubeconfig context). */
export interface NewHub {
  name: string;
  kubeconfigFile: string;
  context: string;
}

export interface WizardAnswers {
  name: string;
  pop: HopAnswers;
  jump?: HopAnswers;
  mesh: { interception: 'auto' | 'ebpf' | 'iptables'; profile: 'edge-small' | 'edge-medium' | 'upstream'; ingress: boolean };
  hub?: HubAnswers;
  newHub?: NewHub;
}

/** Paths are written relative to the site file when they were typed relative (as the loader reads them). */
export function pathForFile(typed: string, siteFile: string, cwd: string = process.cwd()): string {
  if (typed.startsWith('~') || isAbsolute(typed)) return typed;
  const rel = relative(dirname(resolve(cwd, siteFile)), resolve(cwd, typed));
  return rel === '' ? '.' : rel;
}

function endpoint(h: HopAnswers, siteFile: string): Record<string, unknown> {
  const e: Record<string, unknown> = { host: h.host, port: h.port, user: h.user };
  if ('agent' in h.login) e.agent = true;
  else {
    e.identityFile = pathForFile(h.login.identityFile, siteFile);
    if (h.login.passphrase)
      e.passphrase = 'file' in h.login.passphrase ? { file: pathForFile(h.login.passphrase.file, siteFile) } : h.login.passphrase;
  }
  e.hostKeys = [...h.hostKeys];
  return e;
}

/** The Site as plain data: `base` is the spec of the site.yaml the wizard started from (as written). */
export function siteData(a: WizardAnswers, siteFile: string, base?: Record<string, unknown>): Record<string, unknown> {
  const baseSpec = (base?.spec ?? {}) as Record<string, unknown>;
  const baseSsh = (baseSpec.ssh ?? {}) as Record<string, unknown>;
  const baseMeta = (base?.metadata ?? {}) as Record<string, unknown>;
  const ssh: Record<string, unknown> = { ...endpoint(a.pop, siteFile) };
  if (a.jump) ssh.jumpHosts = [endpoint(a.jump, siteFile)];
  if (baseSsh.sudo !== undefined) ssh.sudo = baseSsh.sudo;
  const spec: Record<string, unknown> = { arch: baseSpec.arch ?? 'auto', ssh };
  if (baseSpec.k3s !== undefined) spec.k3s = baseSpec.k3s;
  const baseMesh = (baseSpec.mesh ?? {}) as Record<string, unknown>;
  spec.mesh = { ...baseMesh, interception: a.mesh.interception, ingress: a.mesh.ingress, profile: a.mesh.profile };
  if (a.hub) spec.hub = { ...a.hub, gateway: { ...a.hub.gateway } };
  const metadata: Record<string, unknown> = { name: a.name };
  if (baseMeta.labels !== undefined) metadata.labels = baseMeta.labels;
  return { apiVersion: API_VERSION, kind: 'Site', metadata, spec };
}

export function hubData(h: NewHub, siteFile: string): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: 'Hub',
    metadata: { name: h.name },
    spec: { kubeconfig: { file: pathForFile(h.kubeconfigFile, siteFile) }, context: h.context, fsmNamespace: 'fsm-system' },
  };
}

/** Validates with the same schemas `config validate` and `install` use; returns the first problem per document. */
export function checkDocuments(site: Record<string, unknown>, hub?: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const s = SiteSchema.safeParse(site);
  if (!s.success) problems.push(...s.error.issues.map((i) => `Site ${i.path.join('.')}: ${i.message}`));
  if (hub) {
    const h = HubSchema.safeParse(hub);
    if (!h.success) problems.push(...h.error.issues.map((i) => `Hub ${i.path.join('.')}: ${i.message}`));
  }
  return problems;
}

export function parseSite(site: Record<string, unknown>): Site {
  return SiteSchema.parse(site);
}

export function parseHub(hub: Record<string, unknown>): Hub {
  return HubSchema.parse(hub);
}

/** YAML text: a header saying how to use the file, the Site, then the Hub it registers with (if new). */
export function renderSiteFile(site: Record<string, unknown>, hub: Record<string, unknown> | undefined, header: string[]): string {
  const docs: string[] = [];
  const siteDoc = new Document(site);
  siteDoc.commentBefore = header.map((h) => ` ${h}`).join('\n');
  flowLists(siteDoc);
  docs.push(siteDoc.toString({ lineWidth: 0 }));
  if (hub) {
    const hubDoc = new Document(hub);
    hubDoc.commentBefore = ' The federation hub this POP registers with (written by fsm-edge init).';
    docs.push(hubDoc.toString({ lineWidth: 0 }));
  }
  return docs.join('---\n');
}

// Short lists of scalars (hostKeys, disable) read better on one line, as in the examples.
function flowLists(doc: Document): void {
  const visit = (node: unknown): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const v = pair.value as { items?: unknown[]; flow?: boolean } | null;
        if (
          v &&
          Array.isArray(v.items) &&
          v.items.every((i) => (i as { value?: unknown })?.value !== undefined && typeof (i as { value?: unknown }).value !== 'object')
        )
          v.flow = true;
        visit(pair.value);
      }
    } else if (node && Array.isArray((node as { items?: unknown[] }).items)) {
      for (const i of (node as { items: unknown[] }).items) visit(i);
    }
  };
  visit(doc.contents);
}
