// Commands whose work lands in a later issue: they parse their options (so help and usage errors are real)
// and then say plainly that they are not built yet, exiting 1. No fake success.

import type { Command } from 'commander';
import { NotBuiltError } from './output.js';

export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export function notBuilt(issue: number) {
  return function (this: Command): never {
    throw new NotBuiltError(commandPath(this), issue);
  };
}
