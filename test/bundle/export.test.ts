// export/import of a bundle: the round trip keeps it verifiable, and import takes only a bundle's own plain files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, describe, expect, it } from 'vitest';
import { exportBundle, importBundle } from '../../src/bundle/export.js';
import { readVerifiedBundle } from '../../src/bundle/verify.js';
import { writeSyntheticBundle } from './synthetic-bundle.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-export-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('bundle import', () => {
  it('round-trips a bundle that still verifies', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'b'));
    await exportBundle(b.dir, path.join(tmp, 'b.tar'));
    const r = await importBundle(path.join(tmp, 'b.tar'), path.join(tmp, 'b-imported'));
    const v = await readVerifiedBundle(r.dir, { trustedKeys: [b.publicKey] });
    expect(v.doc).toEqual(b.doc);
  });

  it('refuses an archive with a symlink or a path outside the bundle, leaving nothing behind', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'evil'));
    const hex = b.doc.arches.amd64!.files[0]!.digest.slice(7);
    fs.rmSync(path.join(b.dir, 'blobs', 'sha256', hex));
    fs.symlinkSync('../../index.json', path.join(b.dir, 'blobs', 'sha256', hex));
    fs.writeFileSync(path.join(b.dir, 'extra.sh'), 'echo hi\n');
    const out = path.join(tmp, 'evil.tar');
    await tar.c({ cwd: b.dir, file: out, portable: true }, [
      'oci-layout',
      'index.json',
      'bundle.json',
      'bundle.json.sig',
      'blobs',
      'extra.sh',
    ]);
    await expect(importBundle(out, path.join(tmp, 'evil-imported'))).rejects.toThrow(
      /holds entries a bundle never has: .*(SymbolicLink|extra\.sh)/,
    );
    expect(fs.existsSync(path.join(tmp, 'evil-imported'))).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('importing'))).toEqual([]);
  });
});
