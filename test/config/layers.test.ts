// Layers point down only (issue 10): config is the bottom and imports nothing of fsm-edge outside itself; no
// module outside src/cli imports the CLI (errors carry a kind; only the CLI maps kinds to exit codes).

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve('src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `from` → every src-relative module a file imports (static and dynamic imports, re-exports). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)'(\.[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => relative(SRC, resolve(file, '..', s)));
}

describe('layers', () => {
  it('no module outside src/cli imports from src/cli', () => {
    const upward = tsFiles(SRC)
      .filter((f) => !relative(SRC, f).startsWith('cli/'))
      .flatMap((f) =>
        importsOf(f)
          .filter((m) => m.startsWith('cli/'))
          .map((m) => `${relative(SRC, f)} → ${m}`),
      );
    expect(upward).toEqual([]);
  });

  it('src/config imports only src/config', () => {
    const outside = tsFiles(join(SRC, 'config')).flatMap((f) =>
      importsOf(f)
        .filter((m) => !m.startsWith('config/'))
        .map((m) => `${relative(SRC, f)} → ${m}`),
    );
    expect(outside).toEqual([]);
  });
});
