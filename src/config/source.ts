// Reading a config file into YAML documents, with positions: every problem found later (by zod or by the
// fleet checks) is mapped back to `file:line:column` through the YAML AST kept here.

import { readFileSync } from 'node:fs';
import {
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  type Document,
  type Node,
  type Pair,
  type YAMLMap,
} from 'yaml';
import type { Diagnostic } from './errors.js';
import { closest } from './formats.js';
import { API_VERSION } from './site.js';

export const KIND_NAMES = ['Site', 'Fleet', 'Hub', 'Recipe'] as const;
export type KindName = (typeof KIND_NAMES)[number];

export type PathSegment = string | number;

export interface SourceDoc {
  file: string;
  /** 0-based index among the file's documents (empty documents included, as an editor counts them). */
  index: number;
  yaml: Document.Parsed;
  /** The document as plain data (YAML 1.2 core schema). */
  data: Record<string, unknown>;
  kind: KindName;
  lineCounter: LineCounter;
}

export interface SourceFile {
  file: string;
  docs: SourceDoc[];
  diagnostics: Diagnostic[];
}

export interface Located {
  line: number;
  column: number;
  /** True when the whole path exists in the document; false when a parent was the nearest match. */
  exact: boolean;
  /** How many path segments were found. */
  depth: number;
}

function at(file: string, lc: LineCounter, offset: number, path: string, message: string, document?: number): Diagnostic {
  const { line, col } = lc.linePos(offset);
  return { file, line, column: col, path, message, ...(document !== undefined ? { document } : {}) };
}

function positionOfByte(buf: Buffer, index: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < index; i++) {
    if (buf[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: index - lineStart + 1 };
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the bytes there are not valid UTF-8. */
function utf8SequenceLength(buf: Buffer, i: number): number {
  const b = buf[i]!;
  const cont = (k: number) => i + k < buf.length && (buf[i + k]! & 0xc0) === 0x80;
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const b1 = buf[i + 1] ?? 0;
    if ((b === 0xe0 && b1 < 0xa0) || (b === 0xed && b1 > 0x9f)) return 0; // overlong / surrogate
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const b1 = buf[i + 1] ?? 0;
    if ((b === 0xf0 && b1 < 0x90) || (b === 0xf4 && b1 > 0x8f)) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/** The first byte that makes this not a UTF-8 text file (invalid UTF-8, NUL or another control byte), or -1. */
function firstNonTextByte(buf: Buffer): number {
  for (let i = 0; i < buf.length; ) {
    const b = buf[i]!;
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return i;
    if (b === 0x7f) return i;
    const n = utf8SequenceLength(buf, i);
    if (n === 0) return i;
    i += n;
  }
  return -1;
}

export function typeName(value: unknown): string {
  if (value === null) return 'null (empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `string \`${value.length > 40 ? value.slice(0, 40) + '…' : value}\``;
  return `${typeof value} \`${String(value)}\``;
}

/** Reads and parses a config file; `diagnostics` holds every problem found before schema validation. */
export function readConfigSource(path: string): SourceFile {
  const file = path;
  const whole = (message: string): SourceFile => ({ file, docs: [], diagnostics: [{ file, line: 1, column: 1, path: '', message }] });
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return whole('cannot read the file: no such file');
    if (code === 'EISDIR') return whole('is a directory; give a YAML file');
    if (code === 'EACCES') return whole('cannot read the file: permission denied');
    return whole(`cannot read the file: ${code ?? String(err)}`);
  }
  const bad = firstNonTextByte(buf);
  if (bad >= 0) {
    const pos = positionOfByte(buf, bad);
    const byte = `0x${buf[bad]!.toString(16).padStart(2, '0')}`;
    return {
      file,
      docs: [],
      diagnostics: [{ file, ...pos, path: '', message: `not a YAML text file: binary byte ${byte} at offset ${bad}; expected UTF-8 YAML` }],
    };
  }
  const text = buf.toString('utf8').replace(/^\uFEFF/, '');
  const lineCounter = new LineCounter();
  // merge: `<<: *anchor` is how people share blocks in YAML (e.g. one ssh block for many sites).
  const parsed = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true, merge: true });
  const yamlDocs: Document.Parsed[] = Array.isArray(parsed) ? parsed : [];
  const diagnostics: Diagnostic[] = [];
  const docs: SourceDoc[] = [];
  const kinds = KIND_NAMES.join(', ');

  yamlDocs.forEach((doc, index) => {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length) {
      for (const e of problems) {
        const message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
        diagnostics.push(at(file, lineCounter, e.pos[0], '', `YAML syntax: ${message}`, index));
      }
      return;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return; // empty document
    const start = doc.contents.range?.[0] ?? 0;
    if (!isMap(doc.contents)) {
      diagnostics.push(
        at(
          file,
          lineCounter,
          start,
          '',
          `expected a mapping with apiVersion, kind, metadata and spec; got ${isSeq(doc.contents) ? 'a list' : 'a single value'}`,
          index,
        ),
      );
      return;
    }
    let data: unknown;
    try {
      data = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      diagnostics.push(at(file, lineCounter, start, '', `YAML: ${(err as Error).message}`, index));
      return;
    }
    const record = data as Record<string, unknown>;
    const apiVersion = record.apiVersion;
    if (apiVersion === undefined) {
      diagnostics.push(at(file, lineCounter, start, 'apiVersion', `required field missing: add \`apiVersion: ${API_VERSION}\``, index));
      return;
    }
    if (apiVersion !== API_VERSION) {
      const off = locate(doc, lineCounter, ['apiVersion']);
      const hint =
        typeof apiVersion === 'string' && apiVersion.startsWith('edge.flomesh.io/') ? ' (this fsm-edge reads only that version)' : '';
      diagnostics.push({
        file,
        ...off,
        path: 'apiVersion',
        message: `unsupported apiVersion ${typeName(apiVersion)}: expected \`${API_VERSION}\`${hint}`,
        document: index,
      });
      return;
    }
    const kind = record.kind;
    if (kind === undefined) {
      diagnostics.push(at(file, lineCounter, start, 'kind', `required field missing: add \`kind:\` (one of ${kinds})`, index));
      return;
    }
    if (typeof kind !== 'string' || !(KIND_NAMES as readonly string[]).includes(kind)) {
      const off = locate(doc, lineCounter, ['kind']);
      const near = typeof kind === 'string' ? closest(kind, KIND_NAMES) : undefined;
      diagnostics.push({
        file,
        ...off,
        path: 'kind',
        message: `unknown kind ${typeName(kind)}: expected one of ${kinds}${near ? ` (did you mean \`${near}\`?)` : ''}`,
        document: index,
      });
      return;
    }
    docs.push({ file, index, yaml: doc, data: record, kind: kind as KindName, lineCounter });
  });

  if (!docs.length && !diagnostics.length) {
    diagnostics.push({
      file,
      line: 1,
      column: 1,
      path: '',
      message: `empty file: expected a YAML document with \`apiVersion: ${API_VERSION}\` and \`kind:\` (one of ${kinds})`,
    });
  }
  return { file, docs, diagnostics };
}

function keyOf(node: unknown): unknown {
  return isScalar(node) ? node.value : node;
}

/** The pair for `key` in a map, looking through `<<: *anchor` merge keys to where the value is written. */
function findPair(doc: Document.Parsed, map: YAMLMap, key: string, depth = 0): Pair | undefined {
  const own = map.items.find((p) => isPair(p) && String(keyOf(p.key)) === key);
  if (own || depth > 10) return own;
  for (const p of map.items) {
    const k = keyOf(p.key);
    if (k !== '<<' && !(typeof k === 'symbol' && k.description === '<<')) continue;
    const sources = isSeq(p.value) ? p.value.items : [p.value];
    for (const src of sources) {
      const target = isAlias(src) ? src.resolve(doc) : src;
      if (isMap(target)) {
        const found = findPair(doc, target, key, depth + 1);
        if (found) return found;
      }
    }
  }
  return undefined;
}

/**
 * Where `path` is in the document. Finds the deepest existing node; with `atKey` the last segment's key
 * (for unknown keys), otherwise its value. A missing field points at its parent's key.
 */
export function locate(doc: Document.Parsed, lc: LineCounter, path: readonly PathSegment[], atKey = false): Located {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  let depth = 0;
  let parentKey: number | undefined;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = findPair(doc, node, String(seg));
      if (!pair) break;
      const keyRange = (pair.key as Node | null)?.range;
      const valueRange = (pair.value as Node | null)?.range;
      const last = depth === path.length - 1;
      offset =
        (last && atKey) || !valueRange || (pair.value as Node & { value?: unknown })?.value === null
          ? (keyRange?.[0] ?? offset)
          : valueRange[0];
      parentKey = keyRange?.[0];
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item?.range) break;
      offset = item.range[0];
      node = item;
    } else {
      break;
    }
    depth++;
  }
  // A missing field is reported at the key of the mapping that should hold it (`ssh:`), not at its first child.
  if (depth < path.length && parentKey !== undefined) offset = parentKey;
  const { line, col } = lc.linePos(offset);
  return { line, column: col, exact: depth === path.length, depth };
}

/** `spec.ssh.jumpHosts[0].host` */
export function formatPath(path: readonly PathSegment[]): string {
  return path.reduce<string>((acc, seg) => {
    if (typeof seg === 'number') return `${acc}[${seg}]`;
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) return `${acc}[${JSON.stringify(seg)}]`;
    return acc ? `${acc}.${seg}` : seg;
  }, '');
}
