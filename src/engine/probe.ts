// The run's one batched probe: the journal and every phase's live-state snippet in a single remote command, so
// checking the live state costs no round trip per phase. Each section is introduced by a marker line that no
// snippet can print by accident (the marker carries a per-script nonce).

import { randomBytes } from 'node:crypto';

const MARK = '@@fsm-edge-probe';

export interface ProbeSection {
  id: string;
  script: string;
}

/** The journal (printed verbatim) and each phase's snippet, every one in its own subshell. */
export function probeScript(journalPath: string, sections: ProbeSection[], nonce = randomBytes(6).toString('hex')): string {
  const lines = [`m='${MARK}-${nonce}'`, `echo "$m journal"`, `cat ${journalPath} 2>/dev/null; echo`];
  for (const s of sections) {
    if (!/^[a-z][a-z0-9-]*$/.test(s.id)) throw new Error(`internal: probe section id ${JSON.stringify(s.id)}`);
    // A subshell: a snippet's `exit` or `set -e` cannot end the probe, and its stderr stays out of stdout.
    lines.push(`echo "$m ${s.id}"`, `( ${s.script.trim()}\n) 2>/dev/null`);
  }
  lines.push(`echo "$m end"`, 'true');
  return lines.join('\n');
}

/** Sections by id. A probe that ended early (no end marker) is an error: a partial view is not a view. */
export function parseProbe(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  const first = stdout.indexOf(MARK);
  if (first < 0) throw new Error(`the POP probe printed no sections:\n${stdout.slice(0, 300)}`);
  const nonceMatch = new RegExp(`^${MARK}-([0-9a-f]+) `).exec(stdout.slice(first));
  const marker = `${MARK}-${nonceMatch?.[1] ?? ''} `;
  let current: string | undefined;
  let buf: string[] = [];
  let ended = false;
  for (const line of stdout.slice(first).split('\n')) {
    if (line.startsWith(marker)) {
      if (current !== undefined) out.set(current, buf.join('\n'));
      current = line.slice(marker.length).trim();
      buf = [];
      if (current === 'end') {
        ended = true;
        break;
      }
    } else buf.push(line);
  }
  if (!ended) throw new Error('the POP probe stopped before its end (the link dropped or the shell failed); run again');
  return out;
}
