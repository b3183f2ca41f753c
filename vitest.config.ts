import { defineConfig } from 'vitest/config';

// Two projects: `unit` runs anywhere in seconds; `lab` needs root and the POP lab (namespaces, sshd, qemu).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.lab.test.ts', 'node_modules/**'],
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/**/*.lab.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          // 2 cores: lab files share CPU-bound emulated POPs; run them one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
