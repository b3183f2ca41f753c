// Where the hub can come from: Hub documents already written (next to the site file, or --hub), or a context
// of the operator's kubeconfig ($KUBECONFIG or ~/.kube/config), which the wizard turns into a Hub document.

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { nearbyDocuments } from './nearby-documents.js';
import { checkK8sName } from '../../config/formats.js';

export interface HubFileChoice {
  kind: 'file';
  file: string;
  name: string;
  context?: string;
}

export interface ContextChoice {
  kind: 'context';
  kubeconfigFile: string;
  context: string;
  server?: string;
}

/** Hub documents in the given files and in the YAML files of the given directories (each file once). */
export function hubDocuments(files: readonly string[], dirs: readonly string[]): HubFileChoice[] {
  return nearbyDocuments(files, dirs).flatMap(({ file, data }) => {
    const d = data as { kind?: unknown; metadata?: { name?: unknown }; spec?: { context?: unknown } };
    if (d.kind !== 'Hub' || typeof d.metadata?.name !== 'string') return [];
    return [
      { kind: 'file' as const, file, name: d.metadata.name, ...(typeof d.spec?.context === 'string' ? { context: d.spec.context } : {}) },
    ];
  });
}

/** Kubeconfig files as kubectl finds them: every path in $KUBECONFIG, else ~/.kube/config. */
export function kubeconfigFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const list = env.KUBECONFIG ? env.KUBECONFIG.split(delimiter).filter(Boolean) : [join(homedir(), '.kube', 'config')];
  return list.filter((f) => existsSync(f));
}

/** Contexts of the kubeconfig files, with the server each points at. Credentials are not read out. */
export function kubeconfigContexts(files: readonly string[]): ContextChoice[] {
  const out: ContextChoice[] = [];
  for (const file of files) {
    let cfg: {
      contexts?: Array<{ name?: string; context?: { cluster?: string } }>;
      clusters?: Array<{ name?: string; cluster?: { server?: string } }>;
    };
    try {
      cfg = (parse(readFileSync(file, 'utf8')) ?? {}) as typeof cfg;
    } catch {
      continue;
    }
    for (const c of cfg.contexts ?? []) {
      if (!c?.name) continue;
      const server = (cfg.clusters ?? []).find((k) => k?.name === c.context?.cluster)?.cluster?.server;
      out.push({ kind: 'context', kubeconfigFile: resolve(file), context: c.name, ...(server ? { server } : {}) });
    }
  }
  return out;
}

/** A Hub name from a context name: lower-case, `-` for anything else, at most 63 characters. */
export function hubNameFromContext(context: string): string {
  const n = context
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return checkK8sName(n) ? 'hub' : n;
}
