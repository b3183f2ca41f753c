// The command-line side of the stick: `install --local` picks this one machine (a Site without its Hub document
// is fine: registration is left pending), and `bundle export` keeps the stick options to --with-runtime.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { localTargets } from '../../src/cli/commands/install.js';
import { LocalHost } from '../../src/transport/local-host.js';
import { runMain } from '../cli/run-cli.js';

const EXAMPLE_SITE = path.resolve('examples/site.yaml');

describe('install --local targets', () => {
  it('takes the one Site of a file without its Hub document, on a LocalHost', () => {
    // examples/site.yaml registers with hub-eu, whose Hub document sits in another file
    const [t, ...rest] = localTargets([EXAMPLE_SITE], {});
    expect(rest).toEqual([]);
    expect(t!.site.metadata.name).toBe('pop-berlin-1');
    expect(t!.hub).toBeUndefined();
    expect(t!.host).toBeInstanceOf(LocalHost);
    expect(t!.host!.name).toBe('pop-berlin-1 (local)');
  });

  it('keeps a Hub document that is given (its FSM namespace)', () => {
    const [t] = localTargets([EXAMPLE_SITE], { hub: path.resolve('examples/hub.yaml') });
    expect(t!.hub?.metadata.name).toBe('hub-eu');
  });

  it('refuses more than one site: --local installs this machine only', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-cli-'));
    const two = path.join(dir, 'two.yaml');
    const text = fs.readFileSync(EXAMPLE_SITE, 'utf8');
    fs.writeFileSync(two, `${text}\n---\n${text.replace('name: pop-berlin-1', 'name: pop-berlin-2')}`);
    expect(() => localTargets([two], {})).toThrow(/--local installs this one machine/);
    expect(localTargets([two], { site: ['pop-berlin-2'] })[0]!.site.metadata.name).toBe('pop-berlin-2');
  });
});

describe('bundle export options', () => {
  it('refuses stick options without --with-runtime (exit 2)', async () => {
    const r = await runMain(['bundle', 'export', 'x', '--out', 'y.tar', '--backup', 'b.age']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--backup belongs to a stick export/);
  });

  it('refuses a stick from a recipe that pins no Node.js runtime (exit 2)', async () => {
    const key = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'local-cli-')), 'k.pub');
    fs.writeFileSync(key, 'x');
    const r = await runMain([
      'bundle',
      'export',
      'x',
      '--with-runtime',
      '--out',
      'y',
      '--trust-key',
      key,
      '--recipe',
      'examples/recipe.yaml',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pins no Node\.js runtime \(spec\.runtime\.node\)/);
  });
});
