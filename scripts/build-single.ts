// Bundles the fsm-edge CLI into one ESM file (dist/fsm-edge.mjs) that the USB stick carries next to a Node.js
// runtime: no node_modules on the POP. Every dependency is inlined; the few run-time file reads of the package are
// replaced at build time (the package version), and ssh2's optional native modules (cpu-features, sshcrypto.node)
// are left out — ssh2 falls back to its pure-JS crypto, as it does when their install scripts were skipped.
//   npx tsx scripts/build-single.ts [--out dist/fsm-edge.mjs]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SINGLE_FILE_DEFAULT = path.join(ROOT, 'dist', 'fsm-edge.mjs');

/** main.ts reads ../../package.json beside itself; in one file there is no such path, so the version is inlined. */
const PACKAGE_JSON_READ = "readFileSync(new URL('../../package.json', import.meta.url), 'utf8')";

function inlinePackageJson(): Plugin {
  const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return {
    name: 'inline-package-json',
    setup(b) {
      b.onLoad({ filter: /src[\\/]cli[\\/]main\.ts$/ }, (args) => {
        const text = fs.readFileSync(args.path, 'utf8');
        // A changed main.ts must fail the build here, not produce a stick whose `--version` throws on the POP.
        if (!text.includes(PACKAGE_JSON_READ))
          throw new Error(`${args.path}: the package.json read to inline was not found; update ${fileURLToPath(import.meta.url)}`);
        return { contents: text.replace(PACKAGE_JSON_READ, JSON.stringify(JSON.stringify({ version }))), loader: 'ts' };
      });
    },
  };
}

export async function buildSingleFile(out = SINGLE_FILE_DEFAULT): Promise<{ file: string; bytes: number }> {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const r = await build({
    // what bin/fsm-edge.js does, from the sources
    stdin: {
      contents: "import { main } from './src/cli/main.ts';\nprocess.exitCode = await main(process.argv);\n",
      resolveDir: ROOT,
      sourcefile: 'fsm-edge-single.ts',
      loader: 'ts',
    },
    outfile: out,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // ssh2's optional native speed-ups: `require` of them is already wrapped in try/catch by ssh2.
    external: ['cpu-features', '*.node'],
    // CommonJS dependencies call require() and read __dirname/__filename (ssh2's Windows pageant path): give the
    // ESM file all three, pointing at the single file itself.
    banner: {
      js: [
        "import { createRequire as __fsmEdgeCreateRequire } from 'node:module';",
        "import { fileURLToPath as __fsmEdgeFileUrl } from 'node:url';",
        'const require = __fsmEdgeCreateRequire(import.meta.url);',
        'const __filename = __fsmEdgeFileUrl(import.meta.url);',
        "const __dirname = __filename.replace(/[\\\\/][^\\\\/]*$/, '');",
      ].join(' '),
    },
    plugins: [inlinePackageJson()],
    legalComments: 'none',
    logLevel: 'warning',
  });
  if (r.errors.length) throw new Error(`esbuild: ${r.errors.map((e) => e.text).join('; ')}`);
  return { file: out, bytes: fs.statSync(out).size };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--out');
  const r = await buildSingleFile(i > 0 ? path.resolve(process.argv[i + 1]!) : undefined);
  process.stdout.write(`${r.file} (${(r.bytes / 1024 / 1024).toFixed(1)} MiB)\n`);
}
