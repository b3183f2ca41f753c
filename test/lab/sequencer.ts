// The order in which the lab project hands its files to its two workers. A worker takes the next file when its
// last one ends, so: the longest file first (the on-site arm64 recovery is the critical path), and the files that
// run emulated arm64 POPs (qemu-user, CPU-bound) queued between amd64 ones so that two of them rarely run at once
// on the 2 cores. Seconds are each file alone on the CI machine (2026-11-29); a file not listed runs first.
import path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Files of the parallel `lab` project, in the order they start. [file, seconds alone, runs arm64 POPs] */
export const LAB_FILE_ORDER: ReadonlyArray<readonly [string, number, boolean]> = [
  ['test/stick/stick-recover-arm64.lab.test.ts', 515, true],
  // beside it until it ends: amd64 only, ~500 s together
  ['test/recover/recover.lab.test.ts', 157, false],
  ['test/rollout/upgrade.lab.test.ts', 138, false],
  ['test/install/install.lab.test.ts', 123, false],
  ['test/backup/backup.lab.test.ts', 82, false],
  ['test/rollout/rollout.lab.test.ts', 353, true],
  ['test/install/mcs.lab.test.ts', 250, true],
  ['test/install/kill-each-phase.lab.test.ts', 77, false],
  ['test/lab/standins.lab.test.ts', 79, false],
  ['test/transport/sync.lab.test.ts', 86, true],
  ['test/wizard/wizard.lab.test.ts', 85, false],
  ['test/transport/trust.lab.test.ts', 64, false],
  ['test/transport/ssh.lab.test.ts', 56, true],
  ['test/stick/stick.lab.test.ts', 50, false],
  ['test/lab/standins-arm64.lab.test.ts', 45, true],
  ['test/rollout/shards.lab.test.ts', 48, false],
  ['test/install/mesh-recovery.lab.test.ts', 43, false],
  ['test/lab/apiserver.lab.test.ts', 25, false],
  ['test/lab/systemd.lab.test.ts', 12, true],
  ['test/bundle/rss.lab.test.ts', 9, false],
  ['test/lab/pop.lab.test.ts', 6, true],
  ['test/bundle/pop.lab.test.ts', 4, false],
  ['test/bundle/build.lab.test.ts', 4, false],
  ['test/bundle/cli.lab.test.ts', 1, false],
  ['test/lab/registry.lab.test.ts', 1, false],
];

/**
 * Vitest's own order (group order, then project), with the files of the `lab` project re-ordered by
 * LAB_FILE_ORDER in the places they already had; every other project keeps vitest's order.
 */
export class LabSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const root = this.ctx.config.root;
    const rank = (s: TestSpecification) => LAB_FILE_ORDER.findIndex(([f]) => f === path.relative(root, s.moduleId));
    const isLab = (s: TestSpecification) => s.project.name === 'lab';
    const lab = sorted.filter(isLab).sort((a, b) => rank(a) - rank(b)); // not listed (-1) first; stable otherwise
    let next = 0;
    return sorted.map((s) => (isLab(s) ? lab[next++]! : s));
  }
}
