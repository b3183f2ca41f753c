import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, keyId, loadPrivateKey, loadPublicKey, signBytes, verifyBytes } from '../../src/bundle/sign.js';
import { parseSecretRefArg } from '../../src/config/secret.js';

const parseSecretRef = (s: string) => parseSecretRefArg(s, '--signing-key');

describe('bundle signing keys', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sign-'));

  it('keygen writes a 0600 private key and a public key; env and file refs load it', () => {
    const k = generateKeyPair(path.join(dir, 'k.key'));
    expect(fs.statSync(k.privateKeyFile).mode & 0o777).toBe(0o600);
    expect(() => generateKeyPair(path.join(dir, 'k.key'))).toThrow(/exists; pass --force/);
    const fromFile = loadPrivateKey(parseSecretRef(`file:${k.privateKeyFile}`));
    const fromEnv = loadPrivateKey(parseSecretRef('env:KEY'), { KEY: fs.readFileSync(k.privateKeyFile, 'utf8') });
    const pub = loadPublicKey(k.publicKeyFile);
    expect(keyId(fromFile)).toBe(k.keyId);
    expect(keyId(fromEnv)).toBe(keyId(pub));
    const sig = signBytes(Buffer.from('doc'), fromEnv);
    expect(verifyBytes(Buffer.from('doc'), sig, pub)).toBe(true);
    expect(verifyBytes(Buffer.from('doc!'), sig, pub)).toBe(false);
  });

  it('refuses key material on the command line and explains missing env', () => {
    expect(() => parseSecretRef('-----BEGIN PRIVATE KEY-----')).toThrow(/env:NAME or file:PATH/);
    expect(() => loadPrivateKey({ env: 'NOPE' }, {})).toThrow(/environment variable NOPE is not set/);
    fs.writeFileSync(path.join(dir, 'junk'), 'junk');
    expect(() => loadPrivateKey({ file: path.join(dir, 'junk') })).toThrow(/not a PEM private key/);
  });
});
