// `fsm-edge report merge`: one report.json and report.html from the reports of a sharded rollout (each
// `rollout --shard i/n` run, e.g. each pod of the Job `rollout --emit-job` prints, writes its own).

import path from 'node:path';
import type { Command } from 'commander';
import { mergeReports, readShardReport } from '../../rollout/merge.js';
import { writeRolloutReport } from '../../rollout/report.js';
import { EXIT_FAILED, outputFor } from '../output.js';
import { JSON_OPTION_HELP } from '../options.js';

export function register(program: Command): void {
  const report = program.command('report').description('work with rollout reports (report.json / report.html)');
  report
    .command('merge')
    .description('merge the reports of a sharded rollout (--shard i/n runs) into one report.json and report.html')
    .argument('<report...>', 'report.json files, or the directories holding them (one per shard)')
    .requiredOption('--out <dir>', 'directory to write the merged report.json and report.html into')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
The reports must be shards of one rollout (one fleet, one bundle, one shard count) with no site in two of them.
A missing shard is named in the merged report's warnings and makes it not ok.
Exit code: 0 every site of every shard ok, 1 a site failed, a shard stopped or is missing, 2 bad usage.

Example:
  fsm-edge report merge --out merged /var/lib/fsm-edge/state/rollouts/edge-*-s*of4`,
    )
    .action(function (this: Command, reports: string[], opts: { out: string }) {
      const out = outputFor(this);
      const merged = mergeReports(reports.map(readShardReport));
      const files = writeRolloutReport(path.resolve(opts.out), merged);
      out.result(merged, () => {
        const counts = Object.entries(merged.counts)
          .filter(([, n]) => n > 0)
          .map(([s, n]) => `${n} ${s}`)
          .join(', ');
        const shards = merged.shards?.map((s) => `${s.index}/${s.count} ${s.outcome}`).join(', ');
        out.line(`merged ${merged.shards?.length ?? 0} shard report(s) of ${merged.fleet} (${shards}): ${counts || 'no site'}`);
        for (const w of merged.warnings) out.line(`warning: ${w}`);
        out.line(`report: ${files.html} (and report.json)`);
      });
      if (!merged.ok) out.exitCode = EXIT_FAILED;
    });
}
