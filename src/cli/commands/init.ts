// `fsm-edge init`: the interactive wizard that writes a Site (and Hub) document (issue 7).

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';

export function register(program: Command): void {
  program
    .command('init')
    .description('interactive wizard: describe a POP, test the connection, write site.yaml')
    .option('--out <file>', 'file to write the Site document to', 'site.yaml')
    .option('--hub <file>', 'existing Hub document to register the POP with')
    .option('--force', 'overwrite an existing file')
    .action(notBuilt(7));
}
