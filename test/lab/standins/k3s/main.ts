// ENTRY of the k3s STAND-IN (fsm-edge lab only; never shipped, never imported by src/).
// One bundled file per architecture; like a foreign ELF, it refuses to run on another machine architecture.
// Multi-call like k3s: `k3s server|kubectl|crictl|ctr|etcd-snapshot`, or invoked as kubectl/crictl/ctr.
import os from 'node:os';
import path from 'node:path';
import { BUILT_ARCH, K3S_VERSION, K3S_COMMIT, GO_VERSION } from './build-info.js';

const MACHINE_ARCH: Record<string, string> = {
  x86_64: 'amd64',
  amd64: 'amd64',
  aarch64: 'arm64',
  arm64: 'arm64',
  armv7l: 'arm',
  armv6l: 'arm',
  armhf: 'arm',
};

async function main(): Promise<number> {
  const self = process.argv[1] ?? 'k3s';
  const machine = typeof os.machine === 'function' ? os.machine() : process.arch;
  if ((MACHINE_ARCH[machine] ?? machine) !== BUILT_ARCH) {
    process.stderr.write(`${self}: cannot execute binary file: Exec format error\n`);
    return 126;
  }
  const invokedAs = path.basename(self);
  let args = process.argv.slice(2);
  let cmd: string | undefined;
  if (invokedAs === 'kubectl' || invokedAs === 'crictl' || invokedAs === 'ctr') cmd = invokedAs;
  else {
    // global flags before the command
    while (args[0]?.startsWith('-') && !['--version', '-v', '--help', '-h'].includes(args[0])) args = args.slice(1);
    cmd = args.shift();
  }
  switch (cmd) {
    case '--version':
    case '-v':
    case 'version':
      process.stdout.write(`k3s version ${K3S_VERSION} (${K3S_COMMIT})\ngo version ${GO_VERSION}\n`);
      return 0;
    case 'server': {
      const { runServer } = await import('./server.js');
      await runServer(args);
      return -1; // keeps running
    }
    case 'kubectl': {
      const { runKubectl } = await import('./kubectl.js');
      return runKubectl(args);
    }
    case 'crictl': {
      const { runCrictl } = await import('./crictl.js');
      return runCrictl(args);
    }
    case 'ctr': {
      const { runCtr } = await import('./crictl.js');
      return runCtr(args);
    }
    case 'etcd-snapshot': {
      const { runEtcdSnapshot } = await import('./etcd-snapshot.js');
      return runEtcdSnapshot(args);
    }
    case 'agent':
    case 'token':
    case 'certificate':
    case 'secrets-encrypt':
    case 'check-config':
    case 'completion':
      process.stderr.write(`k3s STAND-IN: "${cmd}" is not simulated in the fsm-edge lab\n`);
      return 1;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(
        `NAME:\n   k3s - Kubernetes, but small and simple (fsm-edge lab STAND-IN)\n\nUSAGE:\n   k3s [global options] command [command options]\n\nVERSION:\n   ${K3S_VERSION} (${K3S_COMMIT})\n\nCOMMANDS:\n   server         Run management server\n   kubectl        Run kubectl\n   crictl         Run crictl\n   ctr            Run ctr\n   etcd-snapshot  Manage etcd snapshots\n`,
      );
      return cmd === undefined ? 0 : 0;
    default:
      process.stderr.write(`Incorrect Usage: No help topic for '${cmd}'\n`);
      return 1;
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`time="${new Date().toISOString()}" level=fatal msg=${JSON.stringify((e as Error).stack ?? String(e))}\n`);
    process.exit(1);
  },
);
