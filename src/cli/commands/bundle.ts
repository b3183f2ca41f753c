// `fsm-edge bundle …`: build, verify, inspect and compare signed airgap bundles (issue 5).

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';

export function register(program: Command): void {
  const bundle = program
    .command('bundle')
    .description('build, verify, inspect and compare signed airgap bundles')
    .addHelpText(
      'after',
      `
A bundle is built on a connected machine, one per architecture, and carried to POPs that have no internet.
It is content-addressed (every blob named by its sha256) and signed with an ed25519 key.

Examples:
  fsm-edge bundle keygen --out signing.key
  FSM_EDGE_SIGNING_KEY="$(cat signing.key)" fsm-edge bundle build --arch amd64,arm64 --signing-key env:FSM_EDGE_SIGNING_KEY
  fsm-edge bundle verify airgap/bundles/fsm-edge-amd64 --trust-key signing.pub`,
    );

  bundle
    .command('build')
    .description('build a signed airgap bundle per architecture from a recipe and its lock file')
    .option('--recipe <file>', 'Recipe document (kind: Recipe) naming k3s, the FSM chart and features', 'bundle/recipe.yaml')
    .option('--lock <file>', 'lock file pinning every artefact by digest; written when missing', 'bundle/recipe.lock.yaml')
    .option('--out <dir>', 'directory the bundles are written to', 'airgap/bundles')
    .option('--arch <list>', 'comma-separated architectures: amd64, arm64, arm', 'amd64')
    .option('--signing-key <ref>', 'ed25519 private key as env:NAME or file:PATH (never the key itself)')
    .option('--cache <dir>', 'download cache shared between builds', 'airgap/cache')
    .option('--offline', 'use only the cache and the lock file; fail if anything is missing')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(5));

  bundle
    .command('verify')
    .description('check a bundle: signature, manifest and the sha256 of every blob')
    .argument('<dir>', 'bundle directory')
    .option('--trust-key <file>', 'public key the signature must verify against (repeatable)', repeatable, [])
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(5));

  bundle
    .command('inspect')
    .description('show what a bundle contains: k3s, chart, images, features, sizes, signer')
    .argument('<dir>', 'bundle directory')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(5));

  bundle
    .command('diff')
    .description('compare two bundles: what an upgrade would send (only blobs the POP lacks)')
    .argument('<old>', 'bundle directory already on the POPs')
    .argument('<new>', 'bundle directory to roll out')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(5));

  bundle
    .command('keygen')
    .description('create an ed25519 signing key pair for bundles')
    .option('--out <file>', 'private key file, written with mode 0600', 'fsm-edge-signing.key')
    .option('--public <file>', 'public key file (default: <out>.pub)')
    .option('--force', 'overwrite existing key files')
    .option('--json', 'print one JSON document on stdout (paths and fingerprint, never the key)')
    .action(notBuilt(5));
}
