// `fsm-edge install`: put k3s and FSM on POPs from a bundle, over SSH or locally (issue 6).

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';

export function register(program: Command): void {
  program
    .command('install')
    .description('install k3s and FSM on POPs from a verified airgap bundle and register them with the hub')
    .argument('<config...>', 'Site or Fleet files (site.yaml, fleet.yaml); a Hub document may sit in the same file')
    .requiredOption('--bundle <dir>', 'airgap bundle directory for the POP architecture')
    .option('--trust-key <file>', 'public key the bundle signature must verify against (repeatable)', repeatable, [])
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--dry-run', 'connect and check, then print what would change without changing anything')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--max-rate <rate>', 'cap the upload rate per POP, e.g. 512k, 2M (bytes per second)')
    .option('--parallel <n>', 'POPs installed at the same time', '4')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
Every step is idempotent: running install again continues where it stopped and re-sends only missing blobs.

Examples:
  fsm-edge install site.yaml --bundle airgap/bundles/fsm-edge-arm64 --trust-key signing.pub --dry-run
  fsm-edge install fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --max-rate 1M --json`,
    )
    .action(notBuilt(6));
}
