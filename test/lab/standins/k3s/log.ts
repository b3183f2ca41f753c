// k3s logs with logrus' text format; under systemd this lands in the journal exactly like the real one's lines.
type Level = 'debug' | 'info' | 'warning' | 'error' | 'fatal';

let debugOn = false;
export const setDebug = (on: boolean) => void (debugOn = on);

function line(level: Level, msg: string): string {
  const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return `time="${ts}" level=${level} msg=${JSON.stringify(msg)}\n`;
}

interface Logger {
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
  fatal(m: string): never;
}

export const log: Logger = {
  debug: (m: string) => void (debugOn && process.stderr.write(line('debug', m))),
  info: (m: string) => void process.stderr.write(line('info', m)),
  warn: (m: string) => void process.stderr.write(line('warning', m)),
  error: (m: string) => void process.stderr.write(line('error', m)),
  /** Logs and exits 1, as logrus.Fatal does. */
  fatal(m: string): never {
    process.stderr.write(line('fatal', m));
    process.exit(1);
  },
};
