// `fsm-edge config …`: check configuration files and print the JSON Schema editors use.

import type { Command } from 'commander';
import { notBuilt } from '../not-built.js';
import { JSON_OPTION_HELP } from '../options.js';

export function register(program: Command): void {
  const config = program
    .command('config')
    .description('validate Site, Fleet, Hub and Recipe files; print their JSON Schema');

  config
    .command('validate')
    .description('check configuration files; every problem is reported as file:line:column with the field path')
    .argument('<file...>', 'YAML files (several documents per file allowed, separated by ---)')
    .option('--json', JSON_OPTION_HELP)
    .action(notBuilt(2));

  config
    .command('schema')
    .description('print the JSON Schema (draft-07) of all document kinds, for yaml-language-server and other editors')
    .option('--out <file>', 'write to a file instead of stdout')
    .action(notBuilt(2));
}
