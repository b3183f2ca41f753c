// `fsm-edge status`: what is installed on POPs and whether it is healthy (issue 6).

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';

export function register(program: Command): void {
  program
    .command('status')
    .description('show what is installed on POPs: bundle, k3s, FSM, interception mode, hub registration')
    .argument('<config...>', 'Site or Fleet files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(6));
}
