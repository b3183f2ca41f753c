// Runs one `bundle build` + `bundle verify` in its own process and prints its peak RSS, so a test can check
// that memory stays flat however big the layers are.
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import { buildBundle } from '../../src/bundle/build.js';
import { verifyBundle } from '../../src/bundle/verify.js';

const [recipePath, cacheDir, outDir] = process.argv.slice(2);
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const r = await buildBundle({ recipePath: recipePath!, cacheDir, outDir, signingKey: privateKey });
await verifyBundle(r.dir, { trustedKeys: [publicKey] });
// VmHWM is the peak resident set of this process image. (getrusage's maxRSS would also count the parent's pages
// this process held between fork and exec, i.e. the test runner's size.)
const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
process.stdout.write(JSON.stringify({ maxRssKiB: Number(hwm![1]), bytes: r.doc.totals.bytes, downloaded: r.stats.downloadedBytes }) + '\n');
