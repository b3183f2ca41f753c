// `fsm-edge register`: (re-)register an installed POP with the federation hub (issue 6).

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';

export function register(program: Command): void {
  program
    .command('register')
    .description('register an installed POP with the federation hub (an FSM Cluster resource on the hub)')
    .argument('<config...>', 'Site or Fleet files; a Hub document may sit in the same file')
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--dry-run', 'print the Cluster resource that would be applied, change nothing')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(6));
}
