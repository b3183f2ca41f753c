// Server-side apply and field ownership (metadata.managedFields), simplified but with the semantics an
// installer relies on: re-applying the same config is a no-op, fields a manager stops applying are removed,
// fields owned by another manager with a different value are a 409 conflict unless `force`.
// Granularity: leaf fields of maps; lists are atomic (owned as a whole).
import { ApiError } from './errors.js';
import { clone, deepEqual, isObj } from './patch.js';
import type { KubeObject, ManagedFieldsEntry } from './types.js';

type Path = string[];
const UNTRACKED_META = new Set([
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'managedFields',
  'selfLink',
  'generateName',
]);

/** Leaf paths of an object (JSON-encoded path → value). */
export function leaves(obj: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (v: unknown, p: Path) => {
    if (isObj(v) && Object.keys(v).length > 0) {
      for (const [k, x] of Object.entries(v)) {
        if (p.length === 0 && (k === 'apiVersion' || k === 'kind')) continue;
        if (p.length === 1 && p[0] === 'metadata' && UNTRACKED_META.has(k)) continue;
        walk(x, [...p, k]);
      }
    } else if (p.length > 0) out.set(JSON.stringify(p), v);
  };
  walk(obj, []);
  return out;
}

function getPath(obj: unknown, p: Path): unknown {
  let cur = obj;
  for (const k of p) {
    if (!isObj(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, p: Path, v: unknown): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) {
    if (!isObj(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[p[p.length - 1] as string] = clone(v);
}

function deletePath(obj: Record<string, unknown>, p: Path): void {
  const chain: Array<Record<string, unknown>> = [obj];
  let cur: unknown = obj;
  for (const k of p.slice(0, -1)) {
    if (!isObj(cur)) return;
    cur = cur[k];
    if (!isObj(cur)) return;
    chain.push(cur);
  }
  delete (chain[chain.length - 1] as Record<string, unknown>)[p[p.length - 1] as string];
  // drop maps the removal left empty (not the top-level sections)
  for (let i = chain.length - 1; i > 1; i--) {
    if (Object.keys(chain[i] as object).length === 0) delete (chain[i - 1] as Record<string, unknown>)[p[i - 1] as string];
  }
}

export function toFieldsV1(paths: Iterable<string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const enc of paths) {
    let cur = root;
    for (const k of JSON.parse(enc) as Path) {
      const key = `f:${k}`;
      if (!isObj(cur[key])) cur[key] = {};
      cur = cur[key] as Record<string, unknown>;
    }
  }
  return root;
}

export function fromFieldsV1(tree: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (t: unknown, p: Path) => {
    const keys = isObj(t) ? Object.keys(t).filter((k) => k.startsWith('f:')) : [];
    if (keys.length === 0) {
      if (p.length) out.add(JSON.stringify(p));
      return;
    }
    for (const k of keys) walk((t as Record<string, unknown>)[k], [...p, k.slice(2)]);
  };
  walk(tree, []);
  return out;
}

interface Owner {
  manager: string;
  operation: 'Apply' | 'Update';
  subresource?: string;
  apiVersion: string;
  time: string;
  fields: Set<string>;
}

function owners(obj: KubeObject): Owner[] {
  return (obj.metadata.managedFields ?? []).map((e) => ({
    manager: e.manager,
    operation: e.operation,
    ...(e.subresource ? { subresource: e.subresource } : {}),
    apiVersion: e.apiVersion,
    time: e.time,
    fields: fromFieldsV1(e.fieldsV1),
  }));
}

function writeOwners(obj: KubeObject, list: Owner[]): void {
  const entries: ManagedFieldsEntry[] = list
    .filter((o) => o.fields.size > 0)
    .map((o) => ({
      manager: o.manager,
      operation: o.operation,
      apiVersion: o.apiVersion,
      time: o.time,
      fieldsType: 'FieldsV1',
      fieldsV1: toFieldsV1([...o.fields].sort()),
      ...(o.subresource ? { subresource: o.subresource } : {}),
    }));
  if (entries.length) obj.metadata.managedFields = entries;
  else delete obj.metadata.managedFields;
}

function ownerFor(
  list: Owner[],
  manager: string,
  operation: 'Apply' | 'Update',
  subresource: string | undefined,
  apiVersion: string,
): Owner {
  let o = list.find((x) => x.manager === manager && x.operation === operation && x.subresource === subresource);
  if (!o) {
    o = { manager, operation, ...(subresource ? { subresource } : {}), apiVersion, time: '', fields: new Set() };
    list.push(o);
  }
  o.time = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  o.apiVersion = apiVersion;
  return o;
}

/** Record that `manager` changed `next` from `prev` with a non-apply write (update, patch, create). */
export function trackUpdate(prev: KubeObject | undefined, next: KubeObject, manager: string, subresource?: string): void {
  const list = prev ? owners(prev) : [];
  const before = prev ? leaves(prev) : new Map<string, unknown>();
  const after = leaves(next);
  const changed = [...after].filter(([p, v]) => !before.has(p) || !deepEqual(before.get(p), v)).map(([p]) => p);
  const removed = [...before.keys()].filter((p) => !after.has(p));
  for (const o of list) {
    for (const p of changed) o.fields.delete(p);
    for (const p of removed) o.fields.delete(p);
    // a field that became a map (or a map that became a leaf) drops stale ownership below/above it
    for (const p of [...o.fields]) if (!after.has(p)) o.fields.delete(p);
  }
  if (changed.length) {
    const me = ownerFor(list, manager, 'Update', subresource, next.apiVersion);
    for (const p of changed) me.fields.add(p);
  }
  writeOwners(next, list);
}

function dotted(enc: string): string {
  return '.' + (JSON.parse(enc) as Path).join('.');
}

/**
 * Server-side apply `config` onto `live` (undefined = create). Returns the merged object with
 * managedFields updated. Throws 409 with FieldManagerConflict causes on conflicts unless `force`.
 */
export function serverSideApply(
  live: KubeObject | undefined,
  config: KubeObject,
  manager: string,
  force: boolean,
  qualifiedName: string,
  subresource?: string,
): KubeObject {
  const list = live ? owners(live) : [];
  const liveLeaves = live ? leaves(live) : new Map<string, unknown>();
  const applied = leaves(config);
  if (subresource === 'status') for (const p of [...applied.keys()]) if ((JSON.parse(p) as Path)[0] !== 'status') applied.delete(p);
  const conflicts: Array<{ path: string; manager: string }> = [];
  for (const [p, v] of applied) {
    if (!liveLeaves.has(p) || deepEqual(liveLeaves.get(p), v)) continue;
    for (const o of list) {
      if (o.manager === manager && o.operation === 'Apply') continue;
      if (o.fields.has(p)) conflicts.push({ path: p, manager: o.manager });
    }
  }
  if (conflicts.length && !force) {
    const causes = conflicts.map((c) => ({
      reason: 'FieldManagerConflict',
      message: `conflict with "${c.manager}"`,
      field: dotted(c.path),
    }));
    const what = conflicts.map((c) => `conflict with "${c.manager}": ${dotted(c.path)}`).join('\n- ');
    throw new ApiError(
      409,
      'Conflict',
      `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${conflicts.length > 1 ? '\n- ' : ''}${what}`,
      {
        name: config.metadata.name ?? '',
        kind: qualifiedName,
        causes,
      },
    );
  }
  const me = ownerFor(list, manager, 'Apply', subresource, config.apiVersion);
  const result = (
    live
      ? clone(live)
      : {
          apiVersion: config.apiVersion,
          kind: config.kind,
          metadata: { name: config.metadata.name, ...(config.metadata.namespace ? { namespace: config.metadata.namespace } : {}) },
        }
  ) as KubeObject;
  // fields this manager applied before and no longer applies are removed, unless someone else owns them
  for (const p of me.fields) {
    if (applied.has(p)) continue;
    if (list.some((o) => o !== me && o.fields.has(p))) continue;
    deletePath(result as unknown as Record<string, unknown>, JSON.parse(p) as Path);
  }
  for (const [p, v] of applied) setPath(result as unknown as Record<string, unknown>, JSON.parse(p) as Path, v);
  // empty maps in the config (e.g. `spec: {}`) still have to exist in the result
  for (const p of applied.keys())
    if (getPath(result, JSON.parse(p) as Path) === undefined)
      setPath(result as unknown as Record<string, unknown>, JSON.parse(p) as Path, applied.get(p));
  for (const o of list) {
    if (o === me) continue;
    for (const c of conflicts) if (o.manager === c.manager) o.fields.delete(c.path);
  }
  me.fields = new Set(applied.keys());
  writeOwners(result, list);
  return result;
}
