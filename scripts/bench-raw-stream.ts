// The raw contender of bench:transfer, in a process of its own so that its buffers never count in the controller's
// peak RSS that the benchmark reports for our sync: one ssh2 connection, one exec channel `cat > file`, the file
// piped in. No hashing, no fsync — the ceiling of pure-JS SSH on the link. Prints {"seconds": …} (connect to close).
import { createReadStream, readFileSync } from 'node:fs';
import ssh2 from 'ssh2';

const [host, port, user, identityFile, sourcePath, dest] = process.argv.slice(2);
if (!dest) throw new Error('usage: bench-raw-stream HOST PORT USER IDENTITY_FILE SOURCE DEST');
const t0 = performance.now();
const c = new ssh2.Client();
await new Promise<void>((resolve, reject) => {
  c.once('ready', resolve).once('error', reject);
  c.connect({ host, port: Number(port), username: user, privateKey: readFileSync(identityFile!) });
});
try {
  await new Promise<void>((resolve, reject) => {
    c.exec(`cat > '${dest}'`, (err, ch) => {
      if (err) return reject(err);
      let code: number | undefined;
      ch.on('exit', (x: number) => (code = x));
      ch.on('close', () => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
      ch.resume();
      createReadStream(sourcePath!, { highWaterMark: 256 * 1024 }).pipe(ch);
    });
  });
} finally {
  c.end();
}
process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - t0) / 1000 })}\n`);
