// Checks the import graph of src/: no cycles, and layers only point down:
//   config → bundle, transport, kube, state → engine → operations (install, rollout, backup, recover, upgrade) → cli
// A module may import its own layer or any lower one. Operations may build on install (a rollout runs installs),
// never the other way. Prints every violation with the import that makes it; exits 1 when there is any.
// Usage: npx tsx scripts/check-layers.ts

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'src');

const LAYERS: Record<string, number> = {
  config: 0,
  bundle: 1,
  transport: 1,
  kube: 1,
  state: 1,
  engine: 2,
  install: 3,
  rollout: 4,
  backup: 4,
  recover: 4,
  upgrade: 4,
  cli: 5,
};

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

const rel = (f: string) => path.relative(SRC, f);
const layerOf = (f: string) => rel(f).split(path.sep)[0]!;

/** Static and dynamic imports of relative modules (type-only imports count: they couple the layers too). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
    const spec = (m[1] ?? m[2])!;
    out.push(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

const all = files(SRC);
const graph = new Map(all.map((f) => [f, importsOf(f).filter((t) => fs.existsSync(t))]));
const problems: string[] = [];

for (const [from, tos] of graph) {
  const lf = layerOf(from);
  if (!(lf in LAYERS)) {
    problems.push(`${rel(from)}: folder src/${lf} has no layer (add it to scripts/check-layers.ts)`);
    continue;
  }
  for (const to of tos) {
    const lt = layerOf(to);
    if (LAYERS[lt]! > LAYERS[lf]!)
      problems.push(`${rel(from)} imports ${rel(to)}: ${lf} (layer ${LAYERS[lf]}) may not depend on ${lt} (layer ${LAYERS[lt]})`);
  }
}

// Cycles: Tarjan's strongly connected components; any component of more than one module is a cycle.
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
function strong(v: string): void {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
  }
  if (low.get(v) === idx.get(v)) {
    const comp: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1) problems.push(`import cycle: ${comp.map(rel).sort().join(' → ')}`);
  }
}
for (const f of all) if (!idx.has(f)) strong(f);

if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`check-layers: ${problems.length} problem(s) in ${all.length} modules`);
  process.exit(1);
}
console.log(`check-layers: ${all.length} modules, no cycle, every import points down`);
