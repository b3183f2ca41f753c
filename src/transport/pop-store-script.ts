// The POP side of the blob store, as shell text: the "have" query and the stream writer. Both run as root on the
// POP, so they take only hex digests and numbers from their input and refuse anything else.
//
// Store layout (see pop-paths.ts): sha256/<hex> verified blobs, partial/<hex> bytes so far, lock/<hex> one flock
// per blob being written (never deleted: removing a lock file others may have open would let two writers in),
// partial/.writer.<pid> "PID TOKEN" of each live writer, so a run can stop its own writers left over from a
// dropped connection — and only those.

import { PopExit } from './pop-exit.js';
import { STORE_BLOBS, STORE_LOCKS, STORE_PARTIAL } from './pop-paths.js';
import { shq } from './remote-command.js';

const HEX64 = /^[0-9a-f]{64}$/;
const TOKEN = /^[0-9a-f]{8,64}$/;

function checkToken(token: string): string {
  if (!TOKEN.test(token)) throw new Error(`blob-sync run token ${JSON.stringify(token)} is not 8-64 lowercase hex`);
  return token;
}

/**
 * The "have" query. Reads the wanted hex digests on stdin. Output lines: `h HEX SIZE` stored (the controller
 * compares SIZE with the wanted size: a short or empty stored blob counts as missing and is replaced), `p HEX SIZE`
 * a partial nobody is writing, `busy HEX SIZE` a partial whose lock another writer holds, `free KB`.
 * First it stops this run's own writers (`token`) that a dropped connection left behind; other runs' writers are
 * never touched — a dead writer's partial shows up as free because the kernel dropped its lock.
 */
export function haveScript(storeDir: string, token: string): string {
  const s = shq(storeDir);
  return [...storeReady(s), ...haveLines(checkToken(token), false)].join('\n');
}

/** Enters the store, creating its directories the first time (mkdir is a process: on a small POP each one counts). */
function storeReady(s: string): string[] {
  return [
    `{ [ -d ${s}/${STORE_BLOBS} ] && [ -d ${s}/${STORE_PARTIAL} ] && [ -d ${s}/${STORE_LOCKS} ] ||`,
    `  mkdir -p ${s}/${STORE_BLOBS} ${s}/${STORE_PARTIAL} ${s}/${STORE_LOCKS}; } && cd ${s} || exit ${PopExit.storeUnavailable}`,
    `command -v flock >/dev/null 2>&1 ||`,
    `  { echo "flock(1) is not installed on the POP: install util-linux" >&2; exit ${PopExit.lockUnavailable}; }`,
  ];
}

/**
 * The "have" query's lines, run in the store; `untilBlank`: stdin goes on after the digests (a writer that answers
 * "have" first), so a blank line ends them. Such a writer has registered itself already: it never stops itself.
 */
function haveLines(t: string, untilBlank: boolean): string[] {
  return [
    `for f in ${STORE_PARTIAL}/.writer.*; do [ -f "$f" ] || continue; w=; t=; read w t < "$f"`,
    `  case "$w" in ''|*[!0-9]*) rm -f "$f"; continue;; esac`,
    `  [ "$w" = $$ ] && continue`,
    `  if ! kill -0 "$w" 2>/dev/null; then rm -f "$f"; continue; fi`,
    // ours (same run token): the controller has given up on that stream; stop it and its dd before reading sizes
    `  [ "$t" = ${t} ] || continue`,
    `  kill -STOP "$w" 2>/dev/null; pkill -KILL -P "$w" 2>/dev/null; kill -KILL "$w" 2>/dev/null`,
    `  i=0; while kill -0 "$w" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/$w/stat 2>/dev/null)" != Z ] && [ $i -lt 50 ]; do`,
    `    sleep 0.1; i=$((i+1))`,
    `  done`,
    `  rm -f "$f"`,
    `done`,
    `st=; while read h; do ${untilBlank ? `[ -z "$h" ] && break; ` : ''}case "$h" in *[!0-9a-f]*|'') continue;; esac; [ \${#h} = 64 ] || continue`,
    `  if [ -f "${STORE_BLOBS}/$h" ]; then st="$st $h"`,
    `  elif [ -f "${STORE_PARTIAL}/$h" ]; then`,
    `    t=p; flock -n "${STORE_LOCKS}/$h" true || t=busy`,
    `    echo "$t $h $(stat -c %s "${STORE_PARTIAL}/$h")"`,
    `  fi`,
    `done`,
    // the sizes of all stored blobs from one stat(1) (the names are checked hex): a re-run asks for every blob
    `[ -n "$st" ] && (cd ${STORE_BLOBS} && stat -c 'h %n %s' -- $st 2>/dev/null)`,
    // free space in KiB from one stat(1) instead of df | awk: every process costs on a small POP
    `echo "free $(stat -f -c '%a %S' . | { read a b; echo $((a * b / 1024)); })"`,
  ];
}

/** The line a have-first writer prints after its "have" answer, before it reads segment headers. */
export const HAVE_END = '.';

export interface StoreState {
  /** Stored blobs and their sizes on the POP. */
  have: Map<string, number>;
  /** Partials nobody is writing, and their sizes. */
  partial: Map<string, number>;
  /** Partials another writer holds, and their sizes (to notice whether it makes progress). */
  busy: Map<string, number>;
  freeBytes: number | undefined;
}

/** Reads the "have" answer; lines that are not exactly one of the forms above are ignored. */
export function parseHave(stdout: string): StoreState {
  const st: StoreState = { have: new Map(), partial: new Map(), busy: new Map(), freeBytes: undefined };
  for (const line of stdout.split('\n')) {
    const [tag, a, b, extra] = line.trim().split(/\s+/);
    if (extra !== undefined) continue;
    if (tag === 'free' && a && /^\d+$/.test(a) && b === undefined) st.freeBytes = Number(a) * 1024;
    if (!a || !HEX64.test(a) || !b || !/^\d{1,16}$/.test(b)) continue;
    if (tag === 'h') st.have.set(a, Number(b));
    else if (tag === 'p') st.partial.set(a, Number(b));
    else if (tag === 'busy') st.busy.set(a, Number(b));
  }
  return st;
}

/**
 * Read-only "which of these are stored, at what size" (dry runs): stdin the wanted hex digests, output `HEX SIZE`
 * per stored blob. Changes nothing on the POP, not even the store's directories.
 */
export function storedBlobsScript(storeDir: string): string {
  const s = shq(storeDir);
  return (
    `st=; while read h; do case "$h" in *[!0-9a-f]*|'') continue;; esac; [ \${#h} = 64 ] || continue; ` +
    `[ -f ${s}/${STORE_BLOBS}/$h ] && st="$st $h"; done; ` +
    `[ -n "$st" ] && (cd ${s}/${STORE_BLOBS} && stat -c '%n %s' -- $st 2>/dev/null); true`
  );
}

/** The stored blobs of a storedBlobsScript answer; compare each size with the wanted one (a short blob is missing). */
export function parseStoredBlobs(stdout: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const [hex, size, extra] = line.trim().split(/\s+/);
    if (hex && HEX64.test(hex) && size && /^\d{1,16}$/.test(size) && extra === undefined) m.set(hex, Number(size));
  }
  return m;
}

/** A writer that hears nothing for this long stops by itself (its controller is gone); see writerScript. */
export const WRITER_IDLE_S = 120;

/** Segments up to this size are written by one dd (one process; on an emulated or small POP each one counts). */
const ONE_DD_MAX = 1024 * 1024;
/** Blobs under this size are hashed by sha256sum, which starts faster than OpenSSL (see writerScript). */
const SMALL_HASH_MAX = 1024 * 1024;

/**
 * The stream writer. Reads segment headers `HEX OFFSET NBYTES SIZE BLOCK` each followed by NBYTES raw bytes; `end`
 * stops. `read` consumes a pipe byte by byte (POSIX), so headers and `dd`'s raw bytes share stdin safely.
 * Per blob it takes `lock/<hex>` (flock) before touching the partial and keeps it until the blob is stored or
 * dropped, so two writers of one blob can never interleave; a held lock answers `busy HEX` and exits blobBusy.
 * At the end of a blob it hashes the FILE (not the stream it wrote) while its last bytes go to disk, and renames
 * it into the store once both are done; the directory is fsynced once before the writer exits 0 (or busy), so a
 * power cut can lose a rename — the complete partial is verified and stored by the next run — but can never leave
 * a "complete" empty or torn blob. (Hashing each block as it lands, read back from the partial, was measured: with
 * the controller and the POP sharing two cores it made the transfer slower than it made the tail shorter.)
 * With `have`, it first answers the pass's "have" (stdin: the wanted digests, then a blank line; output: the
 * haveScript lines, then HAVE_END) and only then reads segment headers.
 * Output: `a HEX I` block I of the segment landed; `s HEX POS` segment done; `ok HEX` verified and stored;
 * `bad HEX GOT` deleted; `short HEX SIZE`/`skew HEX SIZE` the partial is not where it should be (exits).
 */
export function writerScript(storeDir: string, token: string, idleS = WRITER_IDLE_S, o: { have?: boolean } = {}): string {
  const s = shq(storeDir);
  const idle = Math.max(1, Math.floor(idleS));
  const t = checkToken(token);
  const P = STORE_PARTIAL;
  const fail = `exit ${PopExit.writeFailed}`;
  return [
    ...(o.have ? storeReady(s) : [`cd ${s} || exit ${PopExit.storeUnavailable}`]),
    `D=$PWD; W=${P}/.writer.$$; echo "$$ ${t}" > "$W" || ${fail}`,
    `trap 'rm -f "$W"' EXIT`,
    // A writer whose controller vanished without closing the channel (a link that died silently: sshd may not
    // notice for hours) would hold its blob's lock for as long. It watches itself instead: no segment header and
    // no byte landing in any partial for idleS, and it stops — itself and its dd, nobody else. It works from /
    // with absolute paths, so it never keeps the store's filesystem busy (an unmount waits for no watchdog).
    `( exec </dev/null >/dev/null 2>&1; cd /; while sleep ${Math.min(10, idle)}; do [ -f "$D/$W" ] && kill -0 $$ || exit 0; ` +
      `last=$(stat -c %Y "$D/$W" "$D"/${P}/[0-9a-f]* 2>/dev/null | sort -n | tail -n 1); ` +
      `[ $(( $(date +%s) - \${last:-0} )) -gt ${idle} ] || continue; ` +
      `pkill -KILL -P $$; kill -KILL $$; rm -f "$D/$W"; exit 0; done ) &`,
    // OpenSSL's SHA-256 uses the CPU's SHA extensions (5x coreutils' sha256sum here) but takes 9 ms to start
    // (4x dd): it hashes blobs of 1 MiB and more, sha256sum the small ones. Same digest, either is fine.
    `H=sha256sum; command -v openssl >/dev/null 2>&1 && H='openssl dgst -sha256 -r'; Hs=sha256sum`,
    `command -v sha256sum >/dev/null 2>&1 || Hs=$H`,
    // coreutils sync fsyncs the named file or directory; an old one ignores names and syncs everything
    `fsync() { sync -- "$1" 2>/dev/null || dd if=/dev/null of="$1" oflag=append conv=notrunc,fsync status=none 2>/dev/null || sync; }`,
    // leaving: the renames of this writer's blobs made durable, one fsync for all of them
    `leave() { fsync ${STORE_BLOBS} || exit ${PopExit.storeFailed}; exit $1; }`,
    // have-first: the pass's "have" answer comes from the stream that then carries the bytes (one channel, one
    // sudo less before the first byte), once the writer is set up — its first bytes find it ready
    ...(o.have ? [...haveLines(t, true), `echo ${HAVE_END}`] : []),
    `lh=; lp=; bg=`,
    `while read h off n size B; do`,
    `  [ "$h" = end ] && leave 0`,
    `  case "$h" in *[!0-9a-f]*|'') echo "bad segment header" >&2; ${fail};; esac`,
    `  case "$off.$n.$size.$B" in *[!0-9.]*|.*|*..*|*.) echo "bad segment header" >&2; ${fail};; esac`,
    `  [ \${#h} = 64 ] && [ "$B" -gt 0 ] && [ $((B % 65536)) = 0 ] || { echo "bad segment header" >&2; ${fail}; }`,
    `  p=${P}/$h`,
    `  if [ "$h" != "$lh" ]; then`,
    `    exec 4>&- 4>>"${STORE_LOCKS}/$h" || ${fail}`,
    `    flock -n 4 || { echo "busy $h"; leave ${PopExit.blobBusy}; }`,
    `    lp=`,
    `  fi`,
    `  if [ "$off" != "$lp" ]; then`,
    `    if [ "$off" = 0 ]; then : > "$p" || ${fail}`,
    `    else c=$(stat -c %s "$p" 2>/dev/null || echo 0); [ "$c" = "$off" ] || { echo "skew $h $c"; exit ${PopExit.partialSkew}; }; fi`,
    `  fi`,
    // a header is activity: the watchdog reads the mtime of $W (appending a line changes it without a process)
    `  lh=$h; lp=$((off + n)); echo >> "$W"`,
    `  done1=`,
    `  if [ $n -le ${ONE_DD_MAX} ] && [ $n -le $B ]; then`,
    // a small segment (one block, so no acks are owed before its end): one dd, which also fsyncs a blob it ends
    `    if [ $n -gt 0 ]; then fs=; [ $lp -ge $size ] && fs=conv=fsync`,
    `      dd bs=$n count=1 iflag=fullblock status=none $fs >> "$p" || ${fail}; [ -n "$fs" ] && done1=1`,
    `    fi`,
    `  else`,
    // dd moves 64 KiB at a time (a block of B is K of them), so bytes stream through instead of being held
    // until a whole block is in; fullblock + exact counts never read past the segment
    `    full=$((n / B)); K=$((B / 65536)); i=0`,
    `    while [ $i -lt $full ]; do`,
    `      dd bs=65536 count=$K iflag=fullblock status=none >> "$p" || ${fail}; i=$((i+1)); echo "a $h $i"`,
    // start writing the landed bytes to disk now (one background fsync at a time), so the blob's final fsync
    // has little left to wait for
    `      kill -0 "$bg" 2>/dev/null || { sync -- "$p" 2>/dev/null & bg=$!; }`,
    `    done`,
    `    r=$((n % B)); k=$((r / 65536)); r=$((r % 65536))`,
    `    [ $k -gt 0 ] && { dd bs=65536 count=$k iflag=fullblock status=none >> "$p" || ${fail}; }`,
    `    [ $r -gt 0 ] && { dd bs=$r count=1 iflag=fullblock status=none >> "$p" || ${fail}; }`,
    `  fi`,
    `  if [ $lp -lt $size ]; then echo "s $h $lp"; continue; fi`,
    `  lh=; lp=; echo >> "$W"`,
    // the file is hashed while its last bytes go to disk; it is stored only when both are done
    `  f=; [ -n "$done1" ] || { fsync "$p" & f=$!; }`,
    `  if [ $size -lt ${SMALL_HASH_MAX} ]; then sum=$($Hs < "$p"); else sum=$($H < "$p"); fi || ${fail}; sum=\${sum%% *}`,
    `  fok=0; [ -n "$f" ] && { wait $f; fok=$?; }`,
    `  if [ "$sum" = "$h" ]; then`,
    `    [ $fok = 0 ] && mv -f "$p" ${STORE_BLOBS}/$h || exit ${PopExit.storeFailed}`,
    `    echo "ok $h"`,
    // not the blob: a stream that ended early leaves a short partial (kept, to resume); anything else is garbage
    `  else c=$(stat -c %s "$p") || ${fail}`,
    `    [ "$c" = "$size" ] || { echo "short $h $c"; exit ${PopExit.streamShort}; }`,
    `    rm -f "$p"; echo "bad $h $sum"`,
    `  fi`,
    `  exec 4>&-`,
    `done`,
    // stdin ended without `end`: the controller went away mid-blob (the partial stays for a resume)
    `exit ${PopExit.streamShort}`,
  ].join('\n');
}
