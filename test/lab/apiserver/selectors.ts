// Label and field selectors as kube-apiserver parses them.
import { badRequest } from './errors.js';
import type { KubeObject } from './types.js';

type Req = { key: string; op: 'eq' | 'ne' | 'in' | 'notin' | 'exists' | 'notexists'; values: string[] };

function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((x) => x.trim()).filter(Boolean);
}

export function parseLabelSelector(sel: string): Req[] {
  return splitTop(sel).map((term) => {
    let m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m)
      return {
        key: m[1] as string,
        op: m[2] as 'in' | 'notin',
        values: (m[3] as string)
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
      };
    m = /^([^\s!=]+)\s*(==|=|!=)\s*([^\s]*)$/.exec(term);
    if (m) return { key: m[1] as string, op: m[2] === '!=' ? 'ne' : 'eq', values: [m[3] as string] };
    m = /^!\s*([^\s!=]+)$/.exec(term);
    if (m) return { key: m[1] as string, op: 'notexists', values: [] };
    m = /^([^\s!=()]+)$/.exec(term);
    if (m) return { key: m[1] as string, op: 'exists', values: [] };
    throw badRequest(`unable to parse requirement: found '${term}', expected: in, notin, =, ==, !=, gt, lt`);
  });
}

function matches(reqs: Req[], get: (k: string) => string | undefined): boolean {
  return reqs.every((r) => {
    const v = get(r.key);
    switch (r.op) {
      case 'eq':
        return v === r.values[0];
      case 'ne':
        return v !== r.values[0];
      case 'in':
        return v !== undefined && r.values.includes(v);
      case 'notin':
        return v === undefined || !r.values.includes(v);
      case 'exists':
        return v !== undefined;
      case 'notexists':
        return v === undefined;
    }
  });
}

export function labelMatcher(sel: string | undefined): (o: KubeObject) => boolean {
  if (!sel) return () => true;
  const reqs = parseLabelSelector(sel);
  return (o) => matches(reqs, (k) => o.metadata.labels?.[k]);
}

export function fieldMatcher(sel: string | undefined): (o: KubeObject) => boolean {
  if (!sel) return () => true;
  const reqs = parseLabelSelector(sel);
  for (const r of reqs)
    if (r.op !== 'eq' && r.op !== 'ne') throw badRequest(`invalid field selector: "${sel}": only =, == and != are supported`);
  return (o) =>
    matches(reqs, (path) => {
      let cur: unknown = o;
      for (const p of path.split('.')) {
        if (!cur || typeof cur !== 'object') return undefined;
        cur = (cur as Record<string, unknown>)[p];
      }
      return cur === undefined || cur === null ? '' : String(cur);
    });
}
