// YAML documents in the files next to the site file, read leniently (a broken neighbour is skipped, not fatal):
// the wizard only looks in them for names already used and for Hub documents.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface NearbyDocument {
  file: string;
  data: Record<string, unknown>;
}

/** Every parsable YAML mapping document in `files` and in the `*.yaml`/`*.yml` files of `dirs`, each file once. */
export function nearbyDocuments(files: readonly string[], dirs: readonly string[]): NearbyDocument[] {
  const all = new Set(files.map((f) => resolve(f)));
  for (const d of dirs) {
    try {
      for (const f of readdirSync(d).sort()) if (/\.ya?ml$/.test(f)) all.add(resolve(d, f));
    } catch {
      /* no such directory */
    }
  }
  const out: NearbyDocument[] = [];
  for (const file of all) {
    let text: string;
    try {
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const doc of parseAllDocuments(text)) {
      if (!('toJS' in doc) || doc.errors.length) continue;
      const data = doc.toJS() as unknown;
      if (data && typeof data === 'object' && !Array.isArray(data)) out.push({ file, data: data as Record<string, unknown> });
    }
  }
  return out;
}
