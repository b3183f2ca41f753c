// ed25519 signatures over bundle.json (node:crypto). The private key is never a command-line value: it is a
// config secret reference (`{env: NAME}` / `{file: PATH}`), read by config's resolveSecret like every secret.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FsmEdgeError } from '../config/errors.js';
import { describeSecretSource, resolveSecret, type SecretRef } from '../config/secret.js';

/** A signing or trusted key that is missing or not an ed25519 key: the operator fixes the input (exit 2). */
export class SigningKeyError extends FsmEdgeError {
  constructor(message: string, fix?: string) {
    super('config', message, { code: 'key', ...(fix === undefined ? {} : { fix }) });
    this.name = 'SigningKeyError';
  }
}

export interface SignatureDoc {
  algorithm: 'ed25519';
  /** `sha256:<hex>` of the raw 32-byte public key: names the signer. */
  keyId: string;
  /** base64 signature over the exact bytes of bundle.json. */
  signature: string;
}

/** The signing key a secret reference names, as a KeyObject; errors name the variable or file, never the key. */
export function loadPrivateKey(ref: SecretRef, env: NodeJS.ProcessEnv = process.env, baseDir: string = process.cwd()): KeyObject {
  const where = describeSecretSource(ref, baseDir);
  const pem = resolveSecret(ref, baseDir, env);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new SigningKeyError(
      `the signing key from ${where} is not a PEM private key`,
      'use the private key `fsm-edge bundle keygen` wrote',
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SigningKeyError(`the signing key from ${where} is ${key.asymmetricKeyType}, not ed25519`);
  return key;
}

export function loadPublicKey(file: string): KeyObject {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SigningKeyError(`trusted key ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new SigningKeyError(`trusted key ${file} is not a PEM public key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new SigningKeyError(`trusted key ${file} is ${key.asymmetricKeyType}, not ed25519`);
  return key;
}

export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const raw = pub.export({ format: 'der', type: 'spki' }).subarray(-32);
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

export function signBytes(data: Buffer, key: KeyObject): SignatureDoc {
  return { algorithm: 'ed25519', keyId: keyId(key), signature: sign(null, data, key).toString('base64') };
}

export function verifyBytes(data: Buffer, sig: SignatureDoc, key: KeyObject): boolean {
  try {
    return sig.algorithm === 'ed25519' && verify(null, data, key, Buffer.from(sig.signature, 'base64'));
  } catch {
    return false;
  }
}

export interface KeygenResult {
  privateKeyFile: string;
  publicKeyFile: string;
  keyId: string;
}

/** Writes a new key pair: private key PKCS#8 PEM with mode 0600, public key SPKI PEM. */
export function generateKeyPair(privateKeyFile: string, publicKeyFile = `${privateKeyFile}.pub`, force = false): KeygenResult {
  for (const f of [privateKeyFile, publicKeyFile])
    if (!force && fs.existsSync(f))
      throw new SigningKeyError(`${f} exists; pass --force to replace it (bundles signed with the old key then fail to verify)`);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  fs.mkdirSync(path.dirname(path.resolve(privateKeyFile)), { recursive: true });
  fs.rmSync(privateKeyFile, { force: true });
  fs.writeFileSync(privateKeyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(publicKeyFile, publicKey.export({ format: 'pem', type: 'spki' }));
  return { privateKeyFile, publicKeyFile, keyId: keyId(publicKey) };
}
