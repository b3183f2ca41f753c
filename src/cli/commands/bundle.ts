// `fsm-edge bundle …`: build, verify, inspect and compare signed airgap bundles (issue 5). The work is in
// src/bundle/; this file maps options to calls and results to output.

import fs from 'node:fs';
import type { Command } from 'commander';
import { BUNDLE_ARCHES, type BundleArch, type Mirror } from '../../config/recipe.js';
import { parseSecretRefArg } from '../../config/secret.js';
import {
  FAT32_MAX_FILE,
  buildBundle,
  diffBundles,
  exportBundle,
  formatBytes,
  generateKeyPair,
  importBundle,
  inspectBundle,
  loadPrivateKey,
  loadPublicKey,
  parseSize,
  renderInspect,
  verifyBundle,
  type BuildEvent,
} from '../../bundle/index.js';
import { loadRecipe } from '../../config/load.js';
import { defaultCliFile, writeStick } from '../../bundle/stick.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { CliError, EXIT_FAILED, UsageError, outputFor, type Output } from '../output.js';

function parseArches(list: string | undefined): BundleArch[] | undefined {
  if (!list) return undefined;
  const arches = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const a of arches)
    if (!(BUNDLE_ARCHES as readonly string[]).includes(a)) throw new UsageError(`--arch ${a}: use ${BUNDLE_ARCHES.join(', ')}`);
  return arches as BundleArch[];
}

function parseMirrors(values: string[]): Record<string, Mirror> | undefined {
  if (!values.length) return undefined;
  const out: Record<string, Mirror> = {};
  for (const v of values) {
    const m = /^([^=\s]+)=(https?:\/\/[^\s]+?)\/?$/.exec(v);
    if (!m) throw new UsageError(`--mirror ${v}: use REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000`);
    (out[m[1]!] ??= { endpoints: [], upstream: false }).endpoints.push(m[2]!);
  }
  return out;
}

/** Progress on stderr: in place on a terminal, a line per 10 % otherwise. Never on stdout. */
function progressReporter(out: Output): (e: BuildEvent) => void {
  const tty = out.io.stderr.isTTY === true;
  let lastDecile = -1;
  return (e) => {
    switch (e.type) {
      case 'file':
        out.note(`${e.state === 'cached' ? 'cached    ' : 'downloaded'} ${e.label} (${formatBytes(e.size)})`);
        break;
      case 'resolved':
        out.note(`resolved ${e.images} image(s) for ${e.arches.join(', ')}`);
        break;
      case 'plan':
        out.note(e.missingBlobs ? `fetching ${e.missingBlobs} blob(s), ${formatBytes(e.missingBytes)}` : 'every blob is in the cache');
        break;
      case 'progress': {
        if (!e.totalBytes) break;
        const pct = Math.min(100, Math.floor((e.bytes / e.totalBytes) * 100));
        if (tty) out.io.stderr.write(`\r  ${pct}% ${formatBytes(e.bytes)} / ${formatBytes(e.totalBytes)}   ${pct === 100 ? '\n' : ''}`);
        else if (Math.floor(pct / 10) > lastDecile) {
          lastDecile = Math.floor(pct / 10);
          out.note(`  ${pct}% ${formatBytes(e.bytes)} / ${formatBytes(e.totalBytes)}`);
        }
        break;
      }
      case 'written':
        out.note(`wrote ${e.dir}: ${e.blobs} blobs, ${formatBytes(e.bytes)}`);
        break;
    }
  };
}

function trustedKeys(files: string[]) {
  if (!files.length)
    throw new UsageError(
      'name the public key the bundle must be signed with: --trust-key FILE',
      'create one with `fsm-edge bundle keygen`',
    );
  return files.map(loadPublicKey);
}

/** The options of `bundle export` (commander's parsed flags). */
interface ExportFlags {
  out: string;
  split?: string;
  withRuntime?: boolean;
  trustKey: string[];
  backup: string[];
  site: string[];
  arch?: string;
  recipe: string;
  cache: string;
  cliFile?: string;
  offline?: boolean;
}

async function exportStick(out: Output, dir: string, o: ExportFlags): Promise<void> {
  if (o.split) throw new UsageError('--split is for a .tar export; a stick holds the bundle as files', 'drop --split');
  if (!o.trustKey.length)
    throw new UsageError('a stick carries the signer’s public key: pass --trust-key FILE', 'the key the bundle was signed for');
  const runtime = loadRecipe(o.recipe).spec.runtime?.node;
  if (!runtime)
    throw new UsageError(
      `${o.recipe} pins no Node.js runtime (spec.runtime.node)`,
      'add `runtime: { node: { version: v20.20.2 } }` under spec (see bundle/recipe.yaml)',
    );
  const cliFile = o.cliFile ?? defaultCliFile();
  if (!cliFile)
    throw new UsageError('no single-file CLI (dist/fsm-edge.mjs) found', 'build it with `npm run build:single`, or pass --cli-file');
  const r = await writeStick({
    bundleDir: dir,
    outDir: o.out,
    trustKeyFiles: o.trustKey,
    runtime,
    recipePath: o.recipe,
    cacheDir: o.cache,
    cliFile,
    backups: o.backup,
    sites: o.site,
    ...(o.arch ? { arches: parseArches(o.arch) } : {}),
    ...(o.offline ? { offline: true } : {}),
    onFile: (label, state, size) => out.note(`${state === 'cached' ? 'cached    ' : 'downloaded'} ${label} (${formatBytes(size)})`),
    onStep: (l) => out.note(l),
  });
  out.result({ ok: true, stick: r }, () => {
    out.ok(
      `stick ${r.dir}: bundle ${r.bundle.name} (${r.arches.join(', ')}), Node.js ${r.runtime.version}, ${r.files} files, ${formatBytes(r.bytes)}`,
    );
    out.line(`  runtimes checked against ${r.runtime.checksums.url} (pinned by ${r.runtime.checksums.pinnedBy})`);
    for (const k of r.trustKeys) out.line(`  trust key ${k.file}: ${k.keyId} — give the technician this key id`);
    out.line(`  on site: sudo ./fsm-edge install --local ${r.sites[0] ?? 'site.yaml'} --bundle bundle --trust-key ${r.trustKeys[0]!.file}`);
  });
}

export function register(program: Command): void {
  const bundle = program
    .command('bundle')
    .description('build, verify, inspect and compare signed airgap bundles')
    .addHelpText(
      'after',
      `
A bundle is built on a connected machine and carried to POPs that have no internet. It holds every
architecture the recipe names (amd64, arm64: k3s + mesh; arm: k3s only), each blob once, as an OCI image
layout (blobs/sha256/…) plus bundle.json, signed with an ed25519 key.

Examples:
  fsm-edge bundle keygen --out signing.key
  FSM_EDGE_SIGNING_KEY="$(cat signing.key)" fsm-edge bundle build --signing-key env:FSM_EDGE_SIGNING_KEY
  fsm-edge bundle verify airgap/bundles/fsm-edge --trust-key signing.key.pub
  fsm-edge bundle export airgap/bundles/fsm-edge --out /media/usb/fsm-edge.tar --split fat32
  fsm-edge bundle export airgap/bundles/fsm-edge --with-runtime --out /media/usb/fsm-edge --trust-key signing.key.pub`,
    );

  bundle
    .command('build')
    .description('build a signed airgap bundle from a recipe and its lock file')
    .option('--recipe <file>', 'Recipe document (kind: Recipe) naming k3s, the FSM chart and features', 'bundle/recipe.yaml')
    .option(
      '--lock <file>',
      'lock file pinning every artefact by digest; written when missing (default: beside the recipe, recipe.lock.yaml)',
    )
    .option('--out <dir>', 'bundle directory (default: airgap/bundles/<recipe name>)')
    .option('--arch <list>', 'comma-separated architectures (default: every one the recipe names)')
    .option('--signing-key <ref>', 'ed25519 private key as env:NAME or file:PATH (never the key itself)')
    .option('--cache <dir>', 'download cache shared between builds', 'airgap/cache')
    .option('--mirror <registry=url>', 'pull REGISTRY through URL instead (repeatable; overrides the recipe)', repeatable, [])
    .option('--frozen', 'fail instead of resolving anything the lock file does not pin')
    .option('--offline', 'use only the cache and the lock file; fail if anything is missing')
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command) {
      const out = outputFor(this);
      const o = this.opts<{
        recipe: string;
        lock?: string;
        out?: string;
        arch?: string;
        signingKey?: string;
        cache: string;
        mirror: string[];
        frozen?: boolean;
        offline?: boolean;
      }>();
      if (!o.signingKey)
        throw new UsageError(
          'a bundle is always signed: pass --signing-key env:NAME or file:PATH',
          'create a key pair with `fsm-edge bundle keygen`',
        );
      const r = await buildBundle({
        recipePath: o.recipe,
        lockPath: o.lock,
        outDir: o.out,
        cacheDir: o.cache,
        arches: parseArches(o.arch),
        signingKey: loadPrivateKey(parseSecretRefArg(o.signingKey!, '--signing-key'), out.io.env),
        mirrors: parseMirrors(o.mirror),
        frozen: o.frozen,
        offline: o.offline,
        onEvent: progressReporter(out),
      });
      out.result(
        {
          ok: true,
          dir: r.dir,
          name: r.doc.name,
          build: r.doc.build,
          versions: r.doc.versions,
          totals: r.doc.totals,
          arches: Object.fromEntries(Object.entries(r.doc.arches).map(([a, c]) => [a, c!.totals])),
          lock: r.lockPath,
          lockWritten: r.lockWritten,
          stats: r.stats,
        },
        () => {
          out.ok(`bundle ${r.doc.name} → ${r.dir}: ${r.doc.totals.blobs} blobs, ${formatBytes(r.doc.totals.bytes)}`);
          out.line(`  built ${r.doc.build.createdAt}, serial ${r.doc.build.serial}`);
          for (const [a, c] of Object.entries(r.doc.arches))
            out.line(`  ${a}: ${formatBytes(c!.totals.bytes)} in ${c!.totals.blobs} blobs (${c!.images.length} images)`);
          out.line(
            `  downloaded ${formatBytes(r.stats.downloadedBytes)} in ${r.stats.requests} request(s); lock ${r.lockPath} ${r.lockWritten ? 'updated' : 'unchanged'}`,
          );
        },
      );
    });

  bundle
    .command('verify')
    .description('check a bundle: signature, index and the size and sha256 of every blob; names the first bad file')
    .argument('<dir>', 'bundle directory')
    .option('--trust-key <file>', 'public key the signature must verify against (repeatable)', repeatable, [])
    .option('--arch <list>', 'only the blobs of these architectures (what a POP of that arch receives)')
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command, dir: string) {
      const out = outputFor(this);
      const o = this.opts<{ trustKey: string[]; arch?: string }>();
      const keys = trustedKeys(o.trustKey);
      const r = await verifyBundle(dir, { trustedKeys: keys, arches: parseArches(o.arch) });
      out.result({ ok: true, ...r }, () =>
        out.ok(`${dir}: signature by ${r.signer}; ${r.blobs} blobs, ${formatBytes(r.bytes)} verified (${r.arches.join(', ')})`),
      );
    });

  bundle
    .command('inspect')
    .description('show what a bundle contains: versions, per-arch files and images with sizes, signer')
    .argument('<dir>', 'bundle directory')
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command, dir: string) {
      const out = outputFor(this);
      const r = inspectBundle(dir);
      out.result(r, () => out.line(renderInspect(r)));
    });

  bundle
    .command('diff')
    .description('compare two bundles: what an upgrade sends to a POP (only blobs it lacks), per arch, in bytes')
    .argument('<old>', 'bundle directory already on the POPs')
    .argument('<new>', 'bundle directory to roll out')
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command, from: string, to: string) {
      const out = outputFor(this);
      const d = diffBundles(from, to);
      out.result(d, () => {
        out.line(
          `${d.from.name} (k3s ${d.from.versions.k3s}, fsm ${d.from.versions.fsm}) → ${d.to.name} (k3s ${d.to.versions.k3s}, fsm ${d.to.versions.fsm})`,
        );
        for (const a of d.arches) {
          out.line(
            `${a.arch}: send ${formatBytes(a.send.bytes)} in ${a.send.blobs} blobs; reuse ${formatBytes(a.reuse.bytes)}; prunable afterwards ${formatBytes(a.drop.bytes)}`,
          );
          for (const i of a.images)
            out.line(
              `  ${i.change.padEnd(8)} ${i.ref}${i.change === 'removed' ? '' : `  ${i.newLayers.length} new layer(s), ${formatBytes(i.sendBytes)}`}`,
            );
          for (const f of a.files) out.line(`  ${f.change.padEnd(8)} ${f.name}${f.change === 'removed' ? '' : `  ${formatBytes(f.size)}`}`);
        }
        if (d.onlyIn.to.length)
          out.line(`only in ${d.to.name}: ${d.onlyIn.to.join(', ')} (POPs of these arches have nothing to upgrade from)`);
        if (d.onlyIn.from.length)
          out.line(`only in ${d.from.name}: ${d.onlyIn.from.join(', ')} (the new bundle cannot upgrade these POPs)`);
      });
    });

  bundle
    .command('keygen')
    .description('create an ed25519 signing key pair for bundles')
    .option('--out <file>', 'private key file, written with mode 0600', 'fsm-edge-signing.key')
    .option('--public <file>', 'public key file (default: <out>.pub)')
    .option('--force', 'overwrite existing key files')
    .option('--json', 'print one JSON document on stdout (paths and fingerprint, never the key)')
    .action(async function (this: Command) {
      const out = outputFor(this);
      const o = this.opts<{ out: string; public?: string; force?: boolean }>();
      const k = generateKeyPair(o.out, o.public, o.force);
      out.result({ ok: true, ...k }, () => {
        out.ok(`private key ${k.privateKeyFile} (mode 0600 — keep it off the POPs), public key ${k.publicKeyFile}`);
        out.line(`key id ${k.keyId}`);
      });
    });

  bundle
    .command('export')
    .description('write a bundle as one .tar (or FAT32 parts), or with --with-runtime as a USB stick that runs without a controller')
    .argument('<dir>', 'bundle directory')
    .requiredOption('--out <path>', 'the .tar to write (parts become <file>.000, …); with --with-runtime the stick directory')
    .option('--split <size>', 'split into parts of at most SIZE bytes (e.g. 650M, 2G, or fat32 = 4 GiB - 1)')
    .option('--with-runtime', 'write a USB stick: the bundle, fsm-edge, a Node.js runtime per arch and a launcher')
    .option(
      '--trust-key <file>',
      'with --with-runtime: the signer’s public key, checked and copied to the stick (repeatable)',
      repeatable,
      [],
    )
    .option('--backup <file>', 'with --with-runtime: a backup to carry (repeatable)', repeatable, [])
    .option('--site <file>', 'with --with-runtime: a Site file to carry (repeatable)', repeatable, [])
    .option('--arch <list>', 'with --with-runtime: the arches to carry (amd64, arm64; default every one of the bundle)')
    .option('--recipe <file>', 'with --with-runtime: the recipe pinning the Node.js runtime (spec.runtime.node)', 'bundle/recipe.yaml')
    .option('--cache <dir>', 'with --with-runtime: download cache shared with bundle builds', 'airgap/cache')
    .option('--cli-file <file>', 'with --with-runtime: the single-file CLI (default: this one, or dist/fsm-edge.mjs)')
    .option('--offline', 'with --with-runtime: use only the cache; fail if a runtime is missing')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
A stick (--with-runtime) lets a technician install or recover a POP with no controller and no network:
  fsm-edge bundle export airgap/bundles/fsm-edge --with-runtime --out /media/usb/fsm-edge \\
    --trust-key signing.pub --site site.yaml --backup pop1.backup.age
  on the POP:  sudo ./fsm-edge install --local sites/site.yaml --bundle bundle --trust-key trust/signing.pub
Build the single-file CLI first: npm run build:single. The Node.js tarballs are checked against the
release's SHASUMS256.txt, pinned in the recipe or in <recipe>.runtime.lock.yaml at the first export.`,
    )
    .action(async function (this: Command, dir: string) {
      const out = outputFor(this);
      const o = this.opts<ExportFlags>();
      if (o.withRuntime) return exportStick(out, dir, o);
      for (const [flag, given] of [
        ['--backup', o.backup.length > 0],
        ['--site', o.site.length > 0],
        ['--trust-key', o.trustKey.length > 0],
        ['--arch', o.arch !== undefined],
        ['--cli-file', o.cliFile !== undefined],
        ['--offline', o.offline === true],
      ] as const)
        if (given) throw new UsageError(`${flag} belongs to a stick export`, 'add --with-runtime');
      let partSize: number | undefined;
      if (o.split) {
        try {
          partSize = o.split.toLowerCase() === 'fat32' ? FAT32_MAX_FILE : parseSize(o.split);
        } catch (e) {
          throw new UsageError(`--split: ${(e as Error).message}`);
        }
      }
      const r = await exportBundle(dir, o.out, { partSize });
      out.result({ ok: true, ...r }, () => {
        for (const f of r.files) out.line(`  ${f.path}  ${formatBytes(f.size)}`);
        out.ok(`exported ${dir} → ${r.files.length} file(s), ${formatBytes(r.bytes)}; checksums in ${r.checksumFile}`);
      });
    });

  bundle
    .command('import')
    .description('unpack an exported .tar (or its parts) and verify it')
    .argument('<file>', 'the exported .tar (its parts <file>.000, … are found by name)')
    .requiredOption('--out <dir>', 'bundle directory to create')
    .option('--trust-key <file>', 'public key the signature must verify against (repeatable)', repeatable, [])
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command, file: string) {
      const out = outputFor(this);
      const o = this.opts<{ out: string; trustKey: string[] }>();
      const keys = trustedKeys(o.trustKey);
      const r = await importBundle(file, o.out);
      try {
        const v = await verifyBundle(r.dir, { trustedKeys: keys });
        out.result({ ok: true, dir: r.dir, parts: r.parts, verified: v }, () =>
          out.ok(`imported ${file} (${r.parts} part(s)) → ${r.dir}; signature by ${v.signer}, ${v.blobs} blobs verified`),
        );
      } catch (e) {
        fs.rmSync(r.dir, { recursive: true, force: true });
        throw new CliError(`${(e as Error).message} — the imported copy was removed`, EXIT_FAILED, 'verify');
      }
    });
}
