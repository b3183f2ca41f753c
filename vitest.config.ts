import os from 'node:os';
import { defineConfig } from 'vitest/config';
import { LabSequencer } from './test/lab/sequencer.js';

// Lab files that act on the whole lab (`lab.ts down`, the hub network from nothing) or time their own traffic
// against an idle link: they run alone, after the others (and leave the lab down).
const LAB_ALONE = ['test/lab/lab-cli.lab.test.ts', 'test/lab/hub-network.lab.test.ts', 'test/lab/link.lab.test.ts'];

// Projects: `unit` runs anywhere in seconds; `lab-alone` and `lab` need root and the POP lab (namespaces, sshd,
// qemu). Groups run one after another in `groupOrder`: unit, then lab two files at a time (each file has its own
// POPs, hub port and state dirs; the order is test/lab/sequencer.ts), then lab-alone one file at a time.
// One lab file: `npx vitest run --project 'lab*' test/x.lab.test.ts`.
export default defineConfig({
  test: {
    sequence: { sequencer: LabSequencer },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.lab.test.ts', 'node_modules/**'],
          // vitest's default leaves one core idle: on the 2-core machine that is one file at a time (measured
          // there: 270 s with one worker, 166 s with two)
          maxWorkers: Math.max(2, os.availableParallelism() - 1),
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'lab-alone',
          include: LAB_ALONE,
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/**/*.lab.test.ts'],
          exclude: [...LAB_ALONE, 'node_modules/**'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          // 2 cores: two lab files at a time; arm64 files (emulated, CPU-bound) are interleaved with amd64 ones
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
