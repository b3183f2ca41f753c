// LAB STAND-IN: bundle the lab API server into one ESM file that runs on Node 18 (Debian bookworm's
// nodejs inside POPs) with no node_modules next to it.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));

export interface BuildOptions {
  /** Output file (`…/apiserver.mjs`). */
  outfile: string;
  /** Entry point; default the CLI (`main.ts`). The k3s stand-in passes its own entry that imports index.ts. */
  entry?: string;
  minify?: boolean;
}

export async function buildApiServerBundle(opts: BuildOptions): Promise<{ outfile: string; bytes: number }> {
  const res = await build({
    entryPoints: [opts.entry ?? join(here, 'main.ts')],
    outfile: opts.outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node18',
    minify: opts.minify ?? false,
    sourcemap: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
    // CommonJS dependencies (ajv) call require() for node built-ins; give the ESM bundle a real require
    banner: {
      js: "import { createRequire as __labCreateRequire } from 'node:module'; const require = __labCreateRequire(import.meta.url);",
    },
  });
  const out = Object.entries(res.metafile?.outputs ?? {})[0];
  return { outfile: opts.outfile, bytes: out ? out[1].bytes : 0 };
}

// `tsx test/lab/apiserver/build.ts OUT.mjs`
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const outfile = process.argv[2] ?? 'airgap/lab/apiserver.mjs';
  buildApiServerBundle({ outfile }).then(
    (r) => process.stdout.write(`${r.outfile} (${r.bytes} bytes)\n`),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
