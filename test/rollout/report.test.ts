// The rollout's report.html, rendered by a real browser (Debian's chromium, headless): every site is in the DOM,
// failures carry their reason and fix, text from a POP cannot inject markup, and the page loads nothing else.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RolloutSchema } from '../../src/config/fleet.js';
import { planRollout } from '../../src/rollout/plan.js';
import { writeRolloutReport } from '../../src/rollout/report.js';
import { runRollout } from '../../src/rollout/run.js';
import { dumpDom } from './chromium.js';
import { DIGEST, FakeFleet } from './fake-fleet.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'rollout-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('rollout report.html', () => {
  it('renders in headless Chromium with every site, its result, and the reason and fix of a failure', async () => {
    const names = ['pop1', 'pop2', 'pop3', 'pop4', 'pop5'];
    const fleet = new FakeFleet(names);
    fleet.pop('pop3').fail = 'failed';
    fleet.pop('pop3').failMessage = 'k3s exited: <script>document.title="pwned"</script><img src=x>';
    const targets = fleet.targets();
    const rep = await runRollout({
      fleet: 'edge',
      plan: planRollout(
        targets.map((t) => ({ name: t.site.metadata.name })),
        RolloutSchema.parse({ canary: 1, waves: [2], parallel: 1 }),
      ),
      targets,
      bundle: { name: 'test-bundle', digest: DIGEST },
      operation: fleet.operation,
      facts: fleet.facts,
      runOptions: {},
      stateDir: tmp,
      resume: false,
    });
    const { html, json } = writeRolloutReport(path.join(tmp, 'out'), rep);
    expect(JSON.parse(readFileSync(json, 'utf8'))).toMatchObject({ fleet: 'edge', stoppedBy: 'budget' });

    const source = readFileSync(html, 'utf8');
    // Self-contained: no script, no stylesheet link, no external URL.
    expect(source).not.toMatch(/<(script|link|img|iframe|object|embed)\b|https?:\/\/|\b(src|href)="/i);

    const dom = await dumpDom(html);
    for (const n of names) expect(dom).toMatch(new RegExp(`<tr data-site="${n}" data-status="[a-z-]+">\\s*<td>${n}</td>`));
    expect(dom).toMatch(/<tr data-site="pop1" data-status="ok">/);
    expect(dom).toMatch(/<tr data-site="pop3" data-status="failed">/);
    expect(dom).toMatch(/<tr data-site="pop4" data-status="not-started">/);
    expect(dom).toMatch(/class="fix">fix: fix the cause above, then run the rollout again with --resume/);
    expect(dom).toMatch(/id="verdict" class="verdict bad">stopped \(budget\)/);
    // The POP's error text is shown as text: the browser built no script or img element from it.
    expect(dom).toContain('k3s exited: &lt;script&gt;document.title="pwned"&lt;/script&gt;&lt;img src=x&gt;');
    expect(dom).not.toMatch(/<script|<img/i);
    expect(dom).not.toContain('<title>pwned');
  }, 90_000);
});
