// LocalHost as a non-root user with a sudo password configured. The stand-in sudo (stubs/sudo, see its README)
// behaves like the real one: under NOPASSWD, `sudo -S` never reads stdin, so a password sent there would become
// the content of whatever the command writes.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LocalHost } from '../../src/transport/local-host.js';

const PASSWORD = 'Pw-l0cal-s3cret-4-sudo';
const root = mkdtempSync(join(tmpdir(), 'fsm-edge-localsudo-'));
const savedPath = process.env.PATH;
const savedMode = process.env.FSM_EDGE_STUB_SUDO;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

async function exercise(dir: string): Promise<{ data: Buffer; blob: Buffer; hex: string }> {
  const h = new LocalHost({ name: 'pop', sudo: { password: PASSWORD }, lockPath: join(dir, 'state', 'lock') });
  const lock = await h.lock({ controller: 'ctl', runId: 'r1', operation: 'install', startedAt: new Date().toISOString() });
  const data = Buffer.from('config: true\n');
  await h.writeFile(join(dir, 'etc', 'config.yaml'), data, { sudo: true });
  const blob = randomBytes(200_000);
  const src = join(root, `src-${Math.random()}`);
  writeFileSync(src, blob);
  const hex = createHash('sha256').update(blob).digest('hex');
  await h.syncBlobs([{ digest: `sha256:${hex}`, size: blob.length, sourcePath: src }], { storeDir: join(dir, 'store') });
  expect(await h.run('cat', { sudo: true, stdin: 'from stdin' })).toBe('from stdin');
  await lock.release();
  return { data, blob, hex };
}

describe('LocalHost sudo with a configured password', () => {
  beforeEach(() => {
    process.env.PATH = `${join(import.meta.dirname, 'stubs')}:${savedPath}`;
    vi.spyOn(process, 'getuid').mockReturnValue(1000);
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    if (savedMode === undefined) delete process.env.FSM_EDGE_STUB_SUDO;
    else process.env.FSM_EDGE_STUB_SUDO = savedMode;
    vi.restoreAllMocks();
  });

  it('under NOPASSWD sends no password: no written file, blob or command input contains it', async () => {
    process.env.FSM_EDGE_STUB_SUDO = 'nopasswd';
    const dir = mkdtempSync(join(root, 'nopasswd-'));
    const { data, blob, hex } = await exercise(dir);
    expect(readFileSync(join(dir, 'etc', 'config.yaml')).equals(data)).toBe(true);
    expect(readFileSync(join(dir, 'store', 'sha256', hex)).equals(blob)).toBe(true);
    const files = filesUnder(dir);
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(files.filter((f) => readFileSync(f).includes(PASSWORD))).toEqual([]);
  });

  it('when sudo needs it, the password reaches sudo and nothing else', async () => {
    process.env.FSM_EDGE_STUB_SUDO = `password:${PASSWORD}`;
    const dir = mkdtempSync(join(root, 'password-'));
    const { data, blob, hex } = await exercise(dir);
    expect(readFileSync(join(dir, 'etc', 'config.yaml')).equals(data)).toBe(true);
    expect(readFileSync(join(dir, 'store', 'sha256', hex)).equals(blob)).toBe(true);
    expect(filesUnder(dir).filter((f) => readFileSync(f).includes(PASSWORD))).toEqual([]);
  });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));
