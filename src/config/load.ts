// The loader API the rest of fsm-edge calls: read files, validate every document, expand fleets, and throw a
// ConfigError listing every problem as file:line:column when anything is wrong.

import { dirname, join, resolve } from 'node:path';
import { globSync } from 'tinyglobby';
import type { z } from 'zod';
import { ConfigError, type Diagnostic } from './errors.js';
import { KIND_SCHEMAS, type ConfigDocument, type Recipe } from './documents.js';
import type { Fleet } from './fleet.js';
import type { Hub } from './hub.js';
import { closest } from './formats.js';
import { describeIssues } from './issues.js';
import { resolveConfigPath } from './secret.js';
import { API_VERSION, SiteSchema, type Site } from './site.js';
import { formatPath, locate, readConfigSource, type KindName, type PathSegment, type SourceDoc } from './source.js';

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
  /** 0-based index of the document in its file. */
  document: number;
}

const sources = new WeakMap<object, SourceLocation>();
// Where each loaded document's fields were written (a fleet site's may come from the fleet's defaults).
const origins = new WeakMap<object, { own: Origin; defaults?: Origin }>();

/** Where a loaded document (Site, Hub, Fleet, Recipe) was written; for messages that point at the config. */
export function sourceOf(doc: object): SourceLocation | undefined {
  return sources.get(doc);
}

export interface LoadedDocument {
  kind: KindName;
  /** The validated document with defaults applied. */
  value: ConfigDocument;
  source: SourceLocation;
}

export interface CheckResult {
  documents: LoadedDocument[];
  diagnostics: Diagnostic[];
}

/** A place in a YAML document that a value came from: `base` is the path of the (site) document inside it. */
interface Origin {
  doc: SourceDoc;
  base: PathSegment[];
}

function diagnosticsFor(
  error: z.ZodError,
  data: unknown,
  place: (path: PathSegment[], atKey: boolean) => Diagnostic & { message: string },
): Diagnostic[] {
  return describeIssues(error.issues, data).map((p) => ({ ...place(p.path, p.atKey), message: p.message }));
}

function placeIn(origin: Origin, path: PathSegment[], atKey: boolean): Diagnostic & { exact: boolean; depth: number } {
  const full = [...origin.base, ...path];
  const loc = locate(origin.doc.yaml, origin.doc.lineCounter, full, atKey);
  return {
    file: origin.doc.file,
    line: loc.line,
    column: loc.column,
    path: formatPath(full),
    message: '',
    document: origin.doc.index,
    exact: loc.exact,
    depth: loc.depth,
  };
}

function stripPlace(d: Diagnostic & { exact?: boolean; depth?: number }): Diagnostic {
  const { exact: _e, depth: _d, ...rest } = d;
  return rest;
}

/** The place of `path`: in the document itself, else in the fleet defaults it came from, else its nearest parent. */
function placeField(o: { own: Origin; defaults?: Origin }, path: PathSegment[], atKey: boolean): Diagnostic {
  const own = placeIn(o.own, path, atKey);
  if (own.exact || !o.defaults || path[0] !== 'spec') return stripPlace(own);
  const fromDefaults = placeIn(o.defaults, path.slice(1), atKey);
  return stripPlace(fromDefaults.exact ? fromDefaults : own);
}

/**
 * Where a field of a loaded document (Site, Hub, Fleet, Recipe) is written, for messages that send the operator
 * to the config: `fieldLocation(site, ['spec', 'ssh', 'hostKeys'])` → `{file, line, column, path, …}`.
 * For a fleet's site, a field taken from the fleet's defaults points there.
 */
export function fieldLocation(doc: object, path: PathSegment[]): Diagnostic | undefined {
  const o = origins.get(doc);
  return o ? placeField(o, path, false) : undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Paths inside config are relative to the file they are written in; make them absolute before merging. */
function absolutizeSecretRef(ref: unknown, baseDir: string): void {
  if (isPlainObject(ref) && typeof ref.file === 'string' && ref.file !== '') ref.file = resolveConfigPath(ref.file, baseDir);
}

function absolutizeEndpoint(e: unknown, baseDir: string): void {
  if (!isPlainObject(e)) return;
  if (typeof e.identityFile === 'string' && e.identityFile !== '') e.identityFile = resolveConfigPath(e.identityFile, baseDir);
  absolutizeSecretRef(e.passphrase, baseDir);
}

function absolutizeSiteSpec(spec: unknown, baseDir: string): void {
  if (!isPlainObject(spec) || !isPlainObject(spec.ssh)) return;
  const ssh = spec.ssh;
  absolutizeEndpoint(ssh, baseDir);
  if (Array.isArray(ssh.jumpHosts)) for (const j of ssh.jumpHosts) absolutizeEndpoint(j, baseDir);
  if (isPlainObject(ssh.sudo)) absolutizeSecretRef(ssh.sudo.password, baseDir);
}

function absolutize(kind: KindName, data: Record<string, unknown>, baseDir: string): void {
  if (kind === 'Site') absolutizeSiteSpec(data.spec, baseDir);
  if (kind === 'Hub' && isPlainObject(data.spec)) absolutizeSecretRef(data.spec.kubeconfig, baseDir);
  if (kind === 'Fleet' && isPlainObject(data.spec)) absolutizeSiteSpec(data.spec.defaults, baseDir);
}

function validateDoc(doc: SourceDoc): { value?: ConfigDocument; diagnostics: Diagnostic[] } {
  const data = structuredClone(doc.data);
  absolutize(doc.kind, data, dirname(resolve(doc.file)));
  const schema = KIND_SCHEMAS[doc.kind] as z.ZodType<ConfigDocument>;
  const result = schema.safeParse(data);
  if (result.success) return { value: result.data, diagnostics: [] };
  const origin: Origin = { doc, base: [] };
  return { diagnostics: diagnosticsFor(result.error, data, (path, atKey) => stripPlace(placeIn(origin, path, atKey))) };
}

function locationOf(doc: SourceDoc, base: PathSegment[] = []): SourceLocation {
  const loc = locate(doc.yaml, doc.lineCounter, base);
  return { file: doc.file, line: loc.line, column: loc.column, document: doc.index };
}

/**
 * Reads one file and validates every document in it (several may share a file, separated by `---`).
 * Never throws: problems come back as diagnostics. Fleet documents are checked as written; their sites
 * are expanded and checked by `loadFleet` / `checkConfigFiles`.
 */
export function checkConfigFile(path: string): CheckResult {
  const src = readConfigSource(path);
  const documents: LoadedDocument[] = [];
  const diagnostics = [...src.diagnostics];
  for (const doc of src.docs) {
    const { value, diagnostics: d } = validateDoc(doc);
    diagnostics.push(...d);
    if (value) {
      const source = locationOf(doc);
      sources.set(value, source);
      origins.set(value, { own: { doc, base: [] } });
      documents.push({ kind: doc.kind, value, source });
    }
  }
  return { documents, diagnostics: dedupe(diagnostics) };
}

/** Drops repeats (a bad default shows up once per site) and orders by file, then position. */
function dedupe(diagnostics: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  const fileOrder = new Map<string, number>();
  for (const d of diagnostics) if (!fileOrder.has(d.file)) fileOrder.set(d.file, fileOrder.size);
  const sorted = [...diagnostics].sort((a, b) => fileOrder.get(a.file)! - fileOrder.get(b.file)! || a.line - b.line || a.column - b.column);
  return sorted.filter((d) => {
    const key = `${d.file}:${d.line}:${d.column}:${d.path}:${d.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function fail(what: string, diagnostics: Diagnostic[]): never {
  const files = [...new Set(diagnostics.map((d) => d.file))];
  throw new ConfigError(
    `${what}: ${diagnostics.length} problem${diagnostics.length === 1 ? '' : 's'} in ${files.join(', ')}`,
    diagnostics,
    'fix the fields above; `fsm-edge config schema` prints the full schema',
  );
}

/** All documents of a file, validated; throws ConfigError (exit 2) listing every problem. */
export function loadConfigFile(path: string): LoadedDocument[] {
  const { documents, diagnostics } = checkConfigFile(path);
  if (diagnostics.length) fail(`invalid configuration ${path}`, diagnostics);
  return documents;
}

function loadSingle<K extends KindName>(path: string, kind: K): LoadedDocument {
  const docs = loadConfigFile(path);
  const matching = docs.filter((d) => d.kind === kind);
  if (matching.length === 1) return matching[0]!;
  const found = docs.map((d) => d.kind).join(', ') || 'no documents';
  const message =
    matching.length === 0
      ? `expected a ${kind} document, found ${found}`
      : `expected one ${kind} document, found ${matching.length}${kind === 'Site' ? '; list several sites in a Fleet' : ''}`;
  fail(`invalid configuration ${path}`, [
    { file: path, line: matching[1]?.source.line ?? 1, column: matching[1]?.source.column ?? 1, path: '', message },
  ]);
}

/** The one Site document in `path` (other kinds, e.g. its Hub, may share the file). */
export function loadSite(path: string): Site {
  return loadSingle(path, 'Site').value as Site;
}

/** The one Hub document in `path`. */
export function loadHub(path: string): Hub {
  return loadSingle(path, 'Hub').value as Hub;
}

/** The one Recipe document in `path`. */
export function loadRecipe(path: string): Recipe {
  return loadSingle(path, 'Recipe').value as Recipe;
}

/** Objects merge key by key; lists, scalars and secret references are replaced whole by the site's value. */
export function mergeDefaults(defaults: unknown, own: unknown): unknown {
  if (!isPlainObject(defaults) || !isPlainObject(own)) return own === undefined ? structuredClone(defaults) : own;
  const isSecretRef = (v: Record<string, unknown>) => 'env' in v || 'file' in v;
  if (isSecretRef(defaults) || isSecretRef(own)) return own;
  const out: Record<string, unknown> = structuredClone(defaults);
  for (const [k, v] of Object.entries(own)) out[k] = k in out ? mergeDefaults(out[k], v) : v;
  return out;
}

export interface LoadedFleet {
  fleet: Fleet;
  /** Every site, defaults merged in, validated, in the order the fleet lists them. */
  sites: Site[];
}

interface SiteCandidate {
  origin: Origin;
  data: Record<string, unknown>;
}

function endpointKey(site: Site): string {
  const hop = (e: { host: string; port: number }) => `${e.host.toLowerCase()}:${e.port}`;
  return [...site.spec.ssh.jumpHosts.map(hop), hop(site.spec.ssh)].join(' → ');
}

/** Expands and checks a Fleet document: globs, defaults, every site, duplicate names and endpoints. */
// Works on the document as written (not the validated Fleet), so a mistake in one place of the fleet does
// not hide the problems of its sites.
function expandFleet(fleetDoc: SourceDoc): { sites: Site[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const fleetDir = dirname(resolve(fleetDoc.file));
  const spec = isPlainObject(fleetDoc.data.spec) ? fleetDoc.data.spec : {};
  const entries = Array.isArray(spec.sites) ? spec.sites : [];
  const defaults = structuredClone(isPlainObject(spec.defaults) ? spec.defaults : {});
  absolutizeSiteSpec(defaults, fleetDir);
  const defaultsOrigin: Origin = { doc: fleetDoc, base: ['spec', 'defaults'] };

  const candidates: SiteCandidate[] = [];
  entries.forEach((entry: unknown, i) => {
    if (!isPlainObject(entry)) return; // reported by the Fleet schema
    if ('file' in entry) {
      if (typeof entry.file !== 'string' || entry.file === '') return;
      // Matched files are named relative to the fleet file's directory as the user gave it (f/fleet.yaml → f/sites/a.yaml).
      const matches = globSync(entry.file, { cwd: fleetDir, onlyFiles: true, expandDirectories: false })
        .map((f) => join(dirname(fleetDoc.file), f))
        .filter((f) => resolve(f) !== resolve(fleetDoc.file))
        .sort();
      if (!matches.length) {
        const place = placeIn({ doc: fleetDoc, base: [] }, ['spec', 'sites', i, 'file'], false);
        diagnostics.push({ ...stripPlace(place), message: `\`${entry.file}\` matches no files (looked in ${fleetDir})` });
        return;
      }
      for (const f of matches) {
        const src = readConfigSource(f);
        diagnostics.push(...src.diagnostics);
        for (const doc of src.docs) {
          if (doc.kind !== 'Site') {
            const loc = locate(doc.yaml, doc.lineCounter, ['kind']);
            diagnostics.push({
              file: doc.file,
              line: loc.line,
              column: loc.column,
              path: 'kind',
              document: doc.index,
              message: `expected a Site document (matched by \`${entry.file}\` in ${fleetDoc.file}), found ${doc.kind}`,
            });
            continue;
          }
          const data = structuredClone(doc.data);
          absolutizeSiteSpec(data.spec, dirname(f));
          candidates.push({ origin: { doc, base: [] }, data });
        }
      }
    } else {
      const data = structuredClone(entry);
      absolutizeSiteSpec(data.spec, fleetDir);
      candidates.push({ origin: { doc: fleetDoc, base: ['spec', 'sites', i] }, data });
    }
  });

  const sites: Site[] = [];
  const byName = new Map<string, SourceLocation>();
  const byEndpoint = new Map<string, { name: string; at: SourceLocation }>();
  for (const { origin, data } of candidates) {
    const merged = { ...data, apiVersion: API_VERSION, kind: 'Site', spec: mergeDefaults(defaults, data.spec ?? {}) };
    const result = SiteSchema.safeParse(merged);
    if (!result.success) {
      diagnostics.push(
        ...diagnosticsFor(result.error, merged, (path, atKey) => placeField({ own: origin, defaults: defaultsOrigin }, path, atKey)),
      );
      continue;
    }
    const site = result.data;
    const at = locationOf(origin.doc, origin.base);
    sources.set(site, at);
    origins.set(site, { own: origin, defaults: defaultsOrigin });
    const nameAt = placeIn(origin, ['metadata', 'name'], false);
    const first = byName.get(site.metadata.name);
    if (first) {
      diagnostics.push({
        ...stripPlace(nameAt),
        message: `duplicate site name \`${site.metadata.name}\`; first defined at ${first.file}:${first.line}:${first.column}`,
      });
      continue;
    }
    byName.set(site.metadata.name, { ...at, line: nameAt.line, column: nameAt.column });
    const key = endpointKey(site);
    const same = byEndpoint.get(key);
    if (same) {
      const hostAt = placeIn(origin, ['spec', 'ssh', 'host'], false);
      diagnostics.push({
        ...stripPlace(hostAt),
        message: `site \`${site.metadata.name}\` has the same SSH endpoint (${key}) as site \`${same.name}\` at ${same.at.file}:${same.at.line}:${same.at.column}`,
      });
      continue;
    }
    byEndpoint.set(key, { name: site.metadata.name, at });
    sites.push(site);
  }
  return { sites, diagnostics };
}

/** The Fleet in `path` with its sites expanded (`{file: glob}` relative to the Fleet file) and defaults merged. */
export function loadFleet(path: string): LoadedFleet {
  const { documents, diagnostics, sites } = checkConfigFilesDeep([path]);
  if (diagnostics.length) fail(`invalid fleet ${path}`, diagnostics);
  const fleets = documents.filter((d) => d.kind === 'Fleet');
  if (fleets.length !== 1 || documents.some((d) => d.kind === 'Site')) {
    const message = `expected one Fleet document (and no Site documents beside it), found ${documents.map((d) => d.kind).join(', ')}`;
    fail(`invalid fleet ${path}`, [{ file: path, line: 1, column: 1, path: 'kind', message }]);
  }
  return { fleet: fleets[0]!.value as Fleet, sites };
}

/**
 * Sites whose `spec.hub.ref` names none of `hubs`, with the closest Hub name. Only meaningful when the Hub
 * documents are all known (`config validate` runs it when Hub documents are among its files).
 */
export function checkHubRefs(sites: readonly Site[], hubs: readonly Hub[]): Diagnostic[] {
  const names = hubs.map((h) => h.metadata.name);
  const out: Diagnostic[] = [];
  for (const site of sites) {
    const ref = site.spec.hub?.ref;
    if (!ref || names.includes(ref)) continue;
    const at = fieldLocation(site, ['spec', 'hub', 'ref']);
    if (!at) continue;
    const near = closest(ref, names);
    out.push({
      ...at,
      message: `no Hub named \`${ref}\` among the files given (Hubs: ${names.join(', ')})${near ? ` (did you mean \`${near}\`?)` : ''}`,
    });
  }
  return out;
}

export interface InstallConfig {
  sites: Site[];
  hubs: Hub[];
  fleets: Fleet[];
}

/**
 * What `install`, `register` and `status` take: any mix of Site, Fleet and Hub files. Fleets are expanded;
 * a site name appearing twice across the files is an error. Recipe documents are ignored.
 */
export function loadSites(paths: readonly string[]): InstallConfig {
  const { documents, diagnostics, sites } = checkConfigFilesDeep(paths);
  if (diagnostics.length) fail('invalid configuration', diagnostics);
  return {
    sites,
    hubs: documents.filter((d) => d.kind === 'Hub').map((d) => d.value as Hub),
    fleets: documents.filter((d) => d.kind === 'Fleet').map((d) => d.value as Fleet),
  };
}

export interface DeepCheckResult extends CheckResult {
  /** Every site: Site documents and the expanded sites of every Fleet. */
  sites: Site[];
  /** The given paths with a problem in them or in the site files their fleets pull in. */
  failedInputs: string[];
}

/** Checks files as `config validate` does: every document, and every Fleet expanded with its site files. */
export function checkConfigFilesDeep(paths: readonly string[]): DeepCheckResult {
  const documents: LoadedDocument[] = [];
  const diagnostics: Diagnostic[] = [];
  const sites: Site[] = [];
  const failedInputs: string[] = [];
  for (const path of paths) {
    const before = diagnostics.length;
    const src = readConfigSource(path);
    diagnostics.push(...src.diagnostics);
    for (const doc of src.docs) {
      const { value, diagnostics: d } = validateDoc(doc);
      diagnostics.push(...d);
      if (doc.kind === 'Fleet') {
        const expanded = expandFleet(doc);
        diagnostics.push(...expanded.diagnostics);
        sites.push(...expanded.sites);
      }
      if (!value) continue;
      const source = locationOf(doc);
      sources.set(value, source);
      origins.set(value, { own: { doc, base: [] } });
      documents.push({ kind: doc.kind, value, source });
      if (doc.kind === 'Site') sites.push(value as Site);
    }
    if (diagnostics.length > before) failedInputs.push(path);
  }
  // The same site document reached twice (a Site file given next to the Fleet that globs it) counts once.
  const unique: Site[] = [];
  const seen = new Map<string, SourceLocation>();
  for (const site of sites) {
    const at = sourceOf(site)!;
    const first = seen.get(site.metadata.name);
    if (!first) {
      const nameAt = fieldLocation(site, ['metadata', 'name']);
      seen.set(site.metadata.name, { ...at, ...(nameAt ? { line: nameAt.line, column: nameAt.column } : {}) });
      unique.push(site);
    } else if (resolve(first.file) !== resolve(at.file) || first.document !== at.document) {
      const nameAt = fieldLocation(site, ['metadata', 'name']) ?? { ...at, path: '' };
      diagnostics.push({
        file: at.file,
        line: nameAt.line,
        column: nameAt.column,
        path: 'metadata.name',
        document: at.document,
        message: `duplicate site name \`${site.metadata.name}\`; first defined at ${first.file}:${first.line}:${first.column}`,
      });
      if (!failedInputs.includes(at.file)) failedInputs.push(at.file);
    }
  }
  return { documents, diagnostics: dedupe(diagnostics), sites: unique, failedInputs };
}
