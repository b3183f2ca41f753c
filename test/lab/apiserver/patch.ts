// Patch formats kube-apiserver accepts: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
// merge patch (built-in kinds only; lists with a known merge key are merged by that key).
import { ApiError } from './errors.js';

type Json = unknown;
type Obj = Record<string, Json>;

export function isObj(v: Json): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

export function deepEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

function patchError(msg: string): ApiError {
  // kube-apiserver answers a patch that cannot be applied with 422 and the reason in the message
  return new ApiError(422, 'Invalid', msg);
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw patchError(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: Json, parts: string[], path: string): { parent: Obj | Json[]; key: string } {
  let cur: Json = doc;
  for (const p of parts.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(p)];
    else if (isObj(cur)) cur = cur[p];
    else cur = undefined;
    if (cur === undefined)
      throw patchError(`the server rejected our request due to an error in our request: doc is missing path: "${path}": missing value`);
  }
  if (!Array.isArray(cur) && !isObj(cur)) throw patchError(`doc is missing path: "${path}"`);
  return { parent: cur, key: parts[parts.length - 1] ?? '' };
}

function getAt(doc: Json, path: string): Json {
  let cur: Json = doc;
  for (const p of pointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(p)];
    else if (isObj(cur)) cur = cur[p];
    else return undefined;
  }
  return cur;
}

export function applyJsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops))
    throw new ApiError(400, 'BadRequest', 'json: cannot unmarshal object into Go value of type []jsonpatch.operation');
  let root = clone(doc);
  for (const raw of ops) {
    if (!isObj(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string')
      throw new ApiError(400, 'BadRequest', 'invalid JSON patch operation');
    const { op, path } = raw as { op: string; path: string };
    const parts = pointer(path);
    const add = (value: Json, p: string[], pth: string) => {
      if (p.length === 0) {
        root = value;
        return;
      }
      const { parent, key } = parentOf(root, p, pth);
      if (Array.isArray(parent)) {
        const i = key === '-' ? parent.length : Number(key);
        if (!Number.isInteger(i) || i < 0 || i > parent.length) throw patchError(`add operation: index ${key} out of bounds for "${pth}"`);
        parent.splice(i, 0, value);
      } else parent[key] = value;
    };
    const remove = (p: string[], pth: string): Json => {
      const { parent, key } = parentOf(root, p, pth);
      if (Array.isArray(parent)) {
        const i = Number(key);
        if (!(i >= 0 && i < parent.length)) throw patchError(`remove operation does not apply: doc is missing path: "${pth}"`);
        return parent.splice(i, 1)[0];
      }
      if (!(key in parent)) throw patchError(`remove operation does not apply: doc is missing path: "${pth}"`);
      const v = parent[key];
      delete parent[key];
      return v;
    };
    switch (op) {
      case 'add':
        add(clone(raw.value), parts, path);
        break;
      case 'remove':
        remove(parts, path);
        break;
      case 'replace':
        if (getAt(root, path) === undefined)
          throw patchError(`replace operation does not apply: doc is missing key: ${path}: missing value`);
        if (parts.length === 0) root = clone(raw.value);
        else {
          const { parent, key } = parentOf(root, parts, path);
          if (Array.isArray(parent)) parent[Number(key)] = clone(raw.value);
          else parent[key] = clone(raw.value);
        }
        break;
      case 'move':
      case 'copy': {
        const from = String(raw.from ?? '');
        const v = getAt(root, from);
        if (v === undefined) throw patchError(`${op} operation does not apply: doc is missing from path: ${from}`);
        if (op === 'move') remove(pointer(from), from);
        add(clone(v), parts, path);
        break;
      }
      case 'test':
        if (!deepEqual(getAt(root, path), raw.value)) throw patchError(`testing value ${path} failed: test failed`);
        break;
      default:
        throw new ApiError(400, 'BadRequest', `Unexpected kind: ${op}`);
    }
  }
  return root;
}

export function applyMergePatch(target: Json, patch: Json): Json {
  if (!isObj(patch)) return clone(patch);
  const out: Obj = isObj(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

/** patchMergeKey of list fields in the built-in types (k8s.io/api struct tags), by field name. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  conditions: 'type',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  ownerReferences: 'uid',
};
/** Lists of scalars with patchStrategy merge. */
const MERGE_PRIMITIVE = new Set(['finalizers']);

function mergeKeyFor(field: string, items: Json[]): string | undefined {
  if (field === 'ports') {
    // container ports merge on containerPort, service ports on port
    const first = items.find(isObj);
    return first && 'containerPort' in first ? 'containerPort' : 'port';
  }
  return MERGE_KEYS[field];
}

export function applyStrategicMergePatch(target: Json, patch: Json): Json {
  return smp(target, patch, '');
}

function smp(target: Json, patch: Json, field: string): Json {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _ignored, ...rest } = patch;
    return stripDirectives(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: Obj = isObj(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys' || k === '$patch') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const f = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[f]) && Array.isArray(v)) out[f] = (out[f] as Json[]).filter((x) => !v.some((d) => deepEqual(d, x)));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    if (Array.isArray(v)) {
      const cur = Array.isArray(out[k]) ? (out[k] as Json[]) : [];
      const key = mergeKeyFor(k, [...v, ...cur]);
      if (key && v.every(isObj)) out[k] = mergeList(cur, v as Obj[], key, k);
      else if (MERGE_PRIMITIVE.has(k)) out[k] = [...cur, ...v.filter((x) => !cur.some((c) => deepEqual(c, x)))];
      else out[k] = stripDirectives(v);
      continue;
    }
    const merged = smp(out[k], v, k);
    if (merged === undefined) delete out[k];
    else out[k] = merged;
  }
  return out;
}

function mergeList(cur: Json[], patch: Obj[], key: string, field: string): Json[] {
  if (patch.some((p) => p.$patch === 'replace')) return stripDirectives(patch.filter((p) => p.$patch !== 'replace')) as Json[];
  const out = clone(cur);
  for (const item of patch) {
    const i = out.findIndex((c) => isObj(c) && deepEqual(c[key], item[key]));
    if (item.$patch === 'delete') {
      if (i >= 0) out.splice(i, 1);
    } else if (i >= 0) out[i] = smp(out[i], item, field);
    else out.push(stripDirectives(item));
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x);
  return out;
}
