// The object store behind the lab API server: one write path (validation, defaulting, admission,
// resourceVersion, managedFields) shared by HTTP requests and in-process simulated controllers.
import { randomBytes, randomUUID } from 'node:crypto';
import { serverSideApply, trackUpdate } from './apply.js';
import { prepareBuiltin, statusResetOnCreate, validateMeta } from './builtins.js';
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  forbidden,
  invalid,
  notFound,
  unsupportedMediaType,
  type StatusCause,
} from './errors.js';
import { applyJsonPatch, applyMergePatch, applyStrategicMergePatch, clone, deepEqual, isObj } from './patch.js';
import { apiVersionOf, BUILTIN_RESOURCES, resourcesFromCrd, splitApiVersion } from './resources.js';
import { compileCrdSchema, completeFromSchema, type CompiledSchema } from './schema.js';
import { fieldMatcher, labelMatcher } from './selectors.js';
import type { Controller, KubeObject, ListOptions, PatchType, ResourceType, Store, UserInfo, WatchEvent, WriteOptions } from './types.js';

/** Internal: apply computes managedFields itself. */
type WO = WriteOptions & { skipTracking?: boolean };

export const CONTROLLER_USER: UserInfo = { username: 'system:lab-controller', groups: ['system:masters', 'system:authenticated'] };

interface Listener {
  group: string | '*';
  kind: string | '*';
  match: (o: KubeObject) => boolean;
  cb: (ev: WatchEvent) => void;
}

export interface StoreSnapshot {
  resourceVersion: number;
  objects: KubeObject[];
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function objKey(group: string, kind: string, namespace: string | undefined, name: string): string {
  return `${group}|${kind}|${namespace ?? ''}|${name}`;
}

/** Everything but metadata and status: what bumps metadata.generation. */
function specPart(o: KubeObject): unknown {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o;
  return rest;
}

export class ObjectStore implements Store {
  private objects = new Map<string, KubeObject>();
  private rv = 0;
  private resources: ResourceType[] = [...BUILTIN_RESOURCES];
  private schemas = new Map<string, CompiledSchema | undefined>();
  private listeners = new Set<Listener>();
  /** Recent events, so a watch from a list's resourceVersion replays what happened in between (like etcd's window). */
  private history: Array<{ rv: number; type: WatchEvent['type']; r: ResourceType; obj: KubeObject }> = [];
  private static readonly HISTORY = 5000;
  /** Admission checks of simulated controllers. */
  admission: Controller[] = [];
  /** Called after every persisted change (the server debounces a save). */
  onChange: () => void = () => {};

  get resourceVersion(): string {
    return String(this.rv);
  }

  allResources(): ResourceType[] {
    return this.resources;
  }

  resourceFor(apiVersion: string, kind: string): ResourceType | undefined {
    const { group, version } = splitApiVersion(apiVersion);
    return this.resources.find((r) => r.group === group && r.version === version && r.kind === kind);
  }

  resourceByPlural(group: string, version: string, plural: string): ResourceType | undefined {
    return this.resources.find((r) => r.group === group && r.version === version && r.plural === plural);
  }

  private require(apiVersion: string, kind: string): ResourceType {
    const r = this.resourceFor(apiVersion, kind);
    if (!r)
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (no kind "${kind}" is registered for version "${apiVersion}")`,
      );
    return r;
  }

  private ns(r: ResourceType, namespace: string | undefined): string | undefined {
    if (!r.namespaced) return undefined;
    if (!namespace) throw badRequest(`the namespace of the object (${r.kind}) is required`);
    return namespace;
  }

  /** Objects are stored version-less (conversion strategy None): reads present the requested version. */
  private present(r: ResourceType, o: KubeObject): KubeObject {
    const c = clone(o);
    c.apiVersion = apiVersionOf(r);
    return c;
  }

  get(apiVersion: string, kind: string, name: string, namespace?: string): KubeObject | undefined {
    const r = this.require(apiVersion, kind);
    const o = this.objects.get(objKey(r.group, r.kind, this.ns(r, namespace), name));
    return o ? this.present(r, o) : undefined;
  }

  getOrThrow(r: ResourceType, name: string, namespace?: string): KubeObject {
    const o = this.objects.get(objKey(r.group, r.kind, r.namespaced ? namespace : undefined, name));
    if (!o) throw notFound(r.plural, r.group, name);
    return this.present(r, o);
  }

  list(apiVersion: string, kind: string, opts: ListOptions = {}): KubeObject[] {
    const r = this.require(apiVersion, kind);
    const lm = labelMatcher(opts.labelSelector);
    const fm = fieldMatcher(opts.fieldSelector);
    const out: KubeObject[] = [];
    for (const o of this.objects.values()) {
      if (o.kind !== r.kind || splitApiVersion(o.apiVersion).group !== r.group) continue;
      if (r.namespaced && opts.namespace && o.metadata.namespace !== opts.namespace) continue;
      if (!lm(o) || !fm(o)) continue;
      out.push(this.present(r, o));
    }
    return out.sort((a, b) =>
      `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`),
    );
  }

  private schemaFor(r: ResourceType): CompiledSchema | undefined {
    if (!r.custom) return undefined;
    const k = `${r.group}/${r.version}/${r.kind}`;
    if (!this.schemas.has(k)) {
      const crd = [...this.objects.values()].find(
        (o) =>
          o.kind === 'CustomResourceDefinition' &&
          (o.spec as { group: string; names: { kind: string } }).group === r.group &&
          (o.spec as { names: { kind: string } }).names.kind === r.kind,
      );
      const v = (
        crd?.spec as { versions: Array<{ name: string; schema?: { openAPIV3Schema?: Record<string, unknown> } }> } | undefined
      )?.versions.find((x) => x.name === r.version);
      this.schemas.set(k, v?.schema?.openAPIV3Schema ? compileCrdSchema(v.schema.openAPIV3Schema) : undefined);
    }
    return this.schemas.get(k);
  }

  /** Minimal valid `spec` (and other required top-level fields) of a custom resource, from its CRD schema. */
  skeleton(apiVersion: string, kind: string, partial: Record<string, unknown> = {}): Record<string, unknown> {
    const r = this.require(apiVersion, kind);
    const crd = [...this.objects.values()].find(
      (o) => o.kind === 'CustomResourceDefinition' && o.metadata.name === `${r.plural}.${r.group}`,
    );
    const v = (
      crd?.spec as { versions: Array<{ name: string; schema?: { openAPIV3Schema?: Record<string, unknown> } }> } | undefined
    )?.versions.find((x) => x.name === r.version);
    const schema = v?.schema?.openAPIV3Schema;
    return schema ? (completeFromSchema(partial, schema) as Record<string, unknown>) : { ...partial };
  }

  private rebuildResources(): void {
    const crds = [...this.objects.values()].filter((o) => o.kind === 'CustomResourceDefinition');
    this.resources = [...BUILTIN_RESOURCES, ...crds.flatMap((c) => resourcesFromCrd(c))];
    this.schemas.clear();
  }

  /** Validation + defaulting common to create and update. Mutates `obj`. */
  private validate(r: ResourceType, obj: KubeObject, old: KubeObject | undefined, opts: WriteOptions): void {
    const causes: StatusCause[] = validateMeta(r, obj);
    if (r.custom) {
      const schema = this.schemaFor(r);
      if (schema) {
        const { dropped, causes: c } = schema.check(obj as unknown as Record<string, unknown>);
        if (dropped.length && opts.fieldValidation === 'Strict')
          throw badRequest(`strict decoding error: ${dropped.map((d) => `unknown field "${d}"`).join(', ')}`);
        if (dropped.length && opts.fieldValidation !== 'Ignore') opts.warnings?.push(...dropped.map((d) => `unknown field "${d}"`));
        causes.push(...c);
      }
    } else causes.push(...prepareBuiltin(r, obj, old));
    if (causes.length) throw invalid(r.kind, r.group, obj.metadata.name ?? '', causes);
  }

  private admit(op: 'CREATE' | 'UPDATE' | 'DELETE', obj: KubeObject, old: KubeObject | undefined, opts: WriteOptions): void {
    for (const c of this.admission) c.admit?.(op, obj, old, opts.user ?? CONTROLLER_USER);
  }

  private emit(type: WatchEvent['type'], r: ResourceType, o: KubeObject): void {
    this.history.push({ rv: Number(o.metadata.resourceVersion), type, r, obj: clone(o) });
    if (this.history.length > ObjectStore.HISTORY) this.history.splice(0, this.history.length - ObjectStore.HISTORY);
    for (const l of [...this.listeners]) {
      if ((l.group !== '*' && l.group !== r.group) || (l.kind !== '*' && l.kind !== r.kind)) continue;
      if (!l.match(o)) continue;
      try {
        l.cb({ type, object: this.present(r, o) });
      } catch {
        // a failing listener must not break the write that triggered it
      }
    }
  }

  create(input: KubeObject, opts: WO = {}): KubeObject {
    const r = this.require(input.apiVersion, input.kind);
    const obj = clone(input);
    obj.metadata = isObj(obj.metadata) ? obj.metadata : {};
    const namespace = this.ns(r, obj.metadata.namespace);
    if (r.namespaced) {
      obj.metadata.namespace = namespace;
      const nsObj = this.objects.get(objKey('', 'Namespace', undefined, namespace as string));
      if (!nsObj) throw notFound('namespaces', '', namespace as string);
      if (nsObj.metadata.deletionTimestamp)
        throw forbidden(
          `${r.plural}${r.group ? '.' + r.group : ''} "${obj.metadata.name ?? obj.metadata.generateName}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`,
        );
    } else delete obj.metadata.namespace;
    if (!obj.metadata.name && obj.metadata.generateName)
      obj.metadata.name = obj.metadata.generateName + randomBytes(4).toString('hex').slice(0, 5);
    const reset = statusResetOnCreate(r);
    if (reset === null) delete obj.status;
    else if (reset !== undefined) obj.status = clone(reset);
    for (const k of [
      'uid',
      'resourceVersion',
      'creationTimestamp',
      'deletionTimestamp',
      'generation',
      'managedFields',
      'selfLink',
    ] as const)
      delete obj.metadata[k];
    this.validate(r, obj, undefined, opts);
    const key = objKey(r.group, r.kind, namespace, obj.metadata.name as string);
    if (this.objects.has(key)) throw alreadyExists(r.plural, r.group, obj.metadata.name as string);
    this.admit('CREATE', obj, undefined, opts);
    if (r.kind === 'CustomResourceDefinition') this.establishCrd(obj);
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = now();
    obj.metadata.generation = 1;
    if (!opts.skipTracking) trackUpdate(undefined, obj, opts.fieldManager ?? managerOf(opts));
    if (opts.dryRun) return this.present(r, { ...obj, metadata: { ...obj.metadata, resourceVersion: this.resourceVersion } });
    obj.metadata.resourceVersion = String(++this.rv);
    obj.apiVersion = apiVersionOf(r);
    this.objects.set(key, obj);
    if (r.kind === 'CustomResourceDefinition') this.rebuildResources();
    this.emit('ADDED', r, obj);
    this.onChange();
    return this.present(r, obj);
  }

  private establishCrd(obj: KubeObject): void {
    const spec = obj.spec as { names: Record<string, unknown> };
    obj.status = {
      conditions: [
        { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found', lastTransitionTime: now() },
        {
          type: 'Established',
          status: 'True',
          reason: 'InitialNamesAccepted',
          message: 'the initial names have been accepted',
          lastTransitionTime: now(),
        },
      ],
      acceptedNames: spec.names,
      storedVersions: (obj.spec as { versions: Array<{ name: string; storage?: boolean }> }).versions
        .filter((v) => v.storage)
        .map((v) => v.name),
    };
  }

  update(input: KubeObject, opts: WriteOptions = {}): KubeObject {
    const r = this.require(input.apiVersion, input.kind);
    const name = input.metadata?.name;
    if (!name)
      throw invalid(r.kind, r.group, '', [
        { reason: 'FieldValueRequired', message: 'Required value: name is required', field: 'metadata.name' },
      ]);
    const old = this.getOrThrow(r, name, this.ns(r, input.metadata.namespace));
    const rvWanted = input.metadata.resourceVersion;
    if (rvWanted && rvWanted !== old.metadata.resourceVersion) throw conflict(r.plural, r.group, name);
    if (input.metadata.uid && input.metadata.uid !== old.metadata.uid)
      throw conflict(
        r.plural,
        r.group,
        name,
        `Precondition failed: UID in precondition: ${input.metadata.uid}, UID in object meta: ${old.metadata.uid}`,
      );
    return this.commitUpdate(r, old, clone(input), opts);
  }

  updateStatus(obj: KubeObject, opts: WriteOptions = {}): KubeObject {
    return this.update(obj, { ...opts, subresource: 'status' });
  }

  private commitUpdate(r: ResourceType, old: KubeObject, next: KubeObject, opts: WO): KubeObject {
    let obj: KubeObject;
    if (opts.subresource === 'status') {
      obj = clone(old);
      if (next.status === undefined) delete obj.status;
      else obj.status = next.status;
    } else {
      obj = next;
      obj.metadata = isObj(obj.metadata) ? obj.metadata : {};
      if (r.subresources.includes('status')) {
        if (old.status === undefined) delete obj.status;
        else obj.status = clone(old.status);
      }
    }
    // identity and server-owned metadata cannot be changed by a write
    const kept = [
      'name',
      'namespace',
      'uid',
      'creationTimestamp',
      'generation',
      'deletionTimestamp',
      ...(opts.skipTracking ? [] : ['managedFields']),
    ] as const;
    for (const k of kept) {
      if (old.metadata[k] === undefined) delete obj.metadata[k];
      else obj.metadata[k] = clone(old.metadata[k]) as never;
    }
    obj.apiVersion = apiVersionOf(r);
    obj.kind = r.kind;
    this.validate(r, obj, old, opts);
    if (r.kind === 'CustomResourceDefinition' && opts.subresource !== 'status') this.establishCrd(obj);
    // like kube-apiserver: a write that changes nothing but managedFields timestamps is a no-op; a change of
    // ownership alone (a second manager applying the same values) is recorded
    const sameAsOld = (a: KubeObject, b: KubeObject) => {
      const strip = (o: KubeObject) => ({
        ...o,
        metadata: {
          ...o.metadata,
          resourceVersion: undefined,
          managedFields: (o.metadata.managedFields ?? []).map((m) => ({ ...m, time: undefined })),
        },
      });
      return deepEqual(JSON.parse(JSON.stringify(strip(a))), JSON.parse(JSON.stringify(strip(b))));
    };
    if (!opts.skipTracking) trackUpdate(old, obj, opts.fieldManager ?? managerOf(opts), opts.subresource);
    if (sameAsOld(obj, old)) return old; // a no-op write does not bump resourceVersion
    this.admit('UPDATE', obj, old, opts);
    if (!deepEqual(specPart(obj), specPart(old))) obj.metadata.generation = (old.metadata.generation ?? 1) + 1;
    if (opts.dryRun) return this.present(r, obj);
    if (obj.metadata.deletionTimestamp && !(obj.metadata.finalizers ?? []).length) return this.remove(r, obj);
    obj.metadata.resourceVersion = String(++this.rv);
    this.objects.set(objKey(r.group, r.kind, obj.metadata.namespace, obj.metadata.name as string), obj);
    if (r.kind === 'CustomResourceDefinition') this.rebuildResources();
    this.emit('MODIFIED', r, obj);
    this.onChange();
    return this.present(r, obj);
  }

  patch(
    apiVersion: string,
    kind: string,
    name: string,
    namespace: string | undefined,
    patch: unknown,
    type: PatchType,
    opts: WriteOptions = {},
  ): KubeObject {
    const r = this.require(apiVersion, kind);
    const ns = this.ns(r, namespace);
    if (type === 'apply') {
      if (!isObj(patch)) throw badRequest('error decoding YAML: the apply configuration must be an object');
      const cfg = patch as KubeObject;
      if (!cfg.apiVersion || !cfg.kind) throw badRequest("Object 'Kind' is missing in apply configuration");
      if (cfg.metadata?.name && cfg.metadata.name !== name)
        throw badRequest(`the name of the object (${cfg.metadata.name}) does not match the name on the URL (${name})`);
      return this.apply(
        { ...cfg, metadata: { ...(cfg.metadata ?? {}), name, ...(ns ? { namespace: ns } : {}) } },
        { ...opts, fieldManager: opts.fieldManager ?? '' },
      );
    }
    if (type === 'strategic' && r.custom)
      throw unsupportedMediaType('application/strategic-merge-patch+json', [
        'application/json-patch+json',
        'application/merge-patch+json',
        'application/apply-patch+yaml',
      ]);
    const old = this.getOrThrow(r, name, ns);
    const base = clone(old);
    let next: unknown;
    if (type === 'json') next = applyJsonPatch(base, patch);
    else if (type === 'merge') next = applyMergePatch(base, patch);
    else next = applyStrategicMergePatch(base, patch);
    if (!isObj(next)) throw badRequest('the patch produced something that is not an object');
    const obj = next as KubeObject;
    // a resourceVersion in the patch is a precondition (optimistic concurrency for patches)
    const patchedRv = obj.metadata?.resourceVersion;
    if (patchedRv && patchedRv !== old.metadata.resourceVersion) throw conflict(r.plural, r.group, name);
    if (obj.metadata?.name !== undefined && obj.metadata.name !== name)
      throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    return this.commitUpdate(r, old, obj, opts);
  }

  apply(config: KubeObject, opts: WriteOptions & { fieldManager: string }): KubeObject {
    if (!opts.fieldManager) throw badRequest('PATCH, field manager is required for apply requests');
    const r = this.require(config.apiVersion, config.kind);
    const name = config.metadata?.name;
    if (!name) throw badRequest('metadata.name is required for apply');
    const ns = this.ns(r, config.metadata.namespace);
    const live = this.objects.has(objKey(r.group, r.kind, ns, name)) ? this.getOrThrow(r, name, ns) : undefined;
    const qn = r.group ? `${r.plural}.${r.group}` : r.plural;
    const rvWanted = config.metadata.resourceVersion;
    if (live && rvWanted && rvWanted !== live.metadata.resourceVersion) throw conflict(r.plural, r.group, name);
    const merged = serverSideApply(
      live,
      { ...config, metadata: { ...config.metadata, namespace: ns } },
      opts.fieldManager,
      opts.force === true,
      qn,
      opts.subresource,
    );
    if (!live) {
      if (opts.subresource === 'status') throw notFound(r.plural, r.group, name);
      const mf = merged.metadata.managedFields;
      const created = this.create(merged, { ...opts, skipTracking: true });
      // create() clears client-provided managedFields; keep the apply ownership just computed
      if (mf && !opts.dryRun) return this.setManagedFields(r, created, mf);
      return created;
    }
    return this.commitUpdate(r, live, merged, { ...opts, skipTracking: true });
  }

  private setManagedFields(r: ResourceType, o: KubeObject, mf: KubeObject['metadata']['managedFields']): KubeObject {
    const stored = this.objects.get(objKey(r.group, r.kind, o.metadata.namespace, o.metadata.name as string));
    if (!stored) return o;
    if (mf) stored.metadata.managedFields = mf;
    return this.present(r, stored);
  }

  delete(apiVersion: string, kind: string, name: string, namespace?: string, opts: WriteOptions = {}): KubeObject {
    const r = this.require(apiVersion, kind);
    const old = this.getOrThrow(r, name, this.ns(r, namespace));
    this.admit('DELETE', old, old, opts);
    if (opts.dryRun) return old;
    const finalizers = old.metadata.finalizers ?? [];
    if (finalizers.length || r.kind === 'Namespace') {
      if (old.metadata.deletionTimestamp) return old;
      const obj = clone(old);
      obj.metadata.deletionTimestamp = now();
      if (r.kind === 'Namespace') obj.status = { ...(isObj(obj.status) ? obj.status : {}), phase: 'Terminating' };
      obj.metadata.resourceVersion = String(++this.rv);
      this.objects.set(objKey(r.group, r.kind, obj.metadata.namespace, name), obj);
      this.emit('MODIFIED', r, obj);
      this.onChange();
      return this.present(r, obj);
    }
    return this.remove(r, old);
  }

  /** Physically remove (finalizers done). Namespaces: the namespace controller calls this when emptied. */
  remove(r: ResourceType, obj: KubeObject): KubeObject {
    const key = objKey(r.group, r.kind, obj.metadata.namespace, obj.metadata.name as string);
    const stored = this.objects.get(key);
    if (!stored) return obj;
    this.objects.delete(key);
    stored.metadata.resourceVersion = String(++this.rv);
    if (r.kind === 'CustomResourceDefinition') {
      const spec = obj.spec as { group: string; names: { kind: string } };
      for (const [k, o] of [...this.objects])
        if (o.kind === spec.names.kind && splitApiVersion(o.apiVersion).group === spec.group) this.objects.delete(k);
      this.rebuildResources();
    }
    this.emit('DELETED', r, stored);
    this.onChange();
    return this.present(r, stored);
  }

  /** Every object in a namespace (for namespace termination). */
  inNamespace(namespace: string): Array<{ r: ResourceType; obj: KubeObject }> {
    const out: Array<{ r: ResourceType; obj: KubeObject }> = [];
    for (const o of this.objects.values()) {
      if (o.metadata.namespace !== namespace) continue;
      const r = this.resources.find((x) => x.kind === o.kind && x.group === splitApiVersion(o.apiVersion).group);
      if (r) out.push({ r, obj: clone(o) });
    }
    return out;
  }

  /** Every object (for the garbage collector). */
  all(): Array<{ r: ResourceType; obj: KubeObject }> {
    const out: Array<{ r: ResourceType; obj: KubeObject }> = [];
    for (const o of this.objects.values()) {
      const r = this.resources.find((x) => x.kind === o.kind && x.group === splitApiVersion(o.apiVersion).group);
      if (r) out.push({ r, obj: clone(o) });
    }
    return out;
  }

  watch(
    apiVersion: string | '*',
    kind: string | '*',
    cb: (ev: WatchEvent) => void,
    opts: ListOptions & { sinceResourceVersion?: string } = {},
  ): () => void {
    const group = apiVersion === '*' ? '*' : splitApiVersion(apiVersion).group;
    const lm = labelMatcher(opts.labelSelector);
    const fm = fieldMatcher(opts.fieldSelector);
    const l: Listener = { group, kind, cb, match: (o) => (!opts.namespace || o.metadata.namespace === opts.namespace) && lm(o) && fm(o) };
    if (opts.sinceResourceVersion !== undefined && opts.sinceResourceVersion !== '0') {
      const since = Number(opts.sinceResourceVersion);
      const oldest = this.history[0]?.rv ?? this.rv + 1;
      if (!Number.isFinite(since) || (since < oldest - 1 && since < this.rv))
        throw new ApiError(410, 'Expired', `too old resource version: ${opts.sinceResourceVersion} (${oldest - 1})`);
      for (const h of this.history) {
        if (h.rv <= since) continue;
        if ((group !== '*' && group !== h.r.group) || (kind !== '*' && kind !== h.r.kind) || !l.match(h.obj)) continue;
        cb({ type: h.type, object: this.present(h.r, h.obj) });
      }
    }
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  snapshot(): StoreSnapshot {
    return { resourceVersion: this.rv, objects: [...this.objects.values()] };
  }

  restore(s: StoreSnapshot): void {
    this.objects.clear();
    for (const o of s.objects) {
      const group = splitApiVersion(o.apiVersion).group;
      this.objects.set(objKey(group, o.kind, o.metadata.namespace, o.metadata.name as string), o);
    }
    this.rv = s.resourceVersion;
    this.rebuildResources();
  }
}

function managerOf(opts: WriteOptions): string {
  return opts.user ? opts.user.username : 'lab-controller';
}
