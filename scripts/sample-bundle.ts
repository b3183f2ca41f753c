// Builds the lab's sample bundle (airgap/bundles/lab) through `fsm-edge bundle build`, against the lab registry
// and file server, with stand-ins for k3s, install.sh, the FSM chart and every image. Later tests install from it.
// With --upgrades, also the bundles upgrade tests roll out over it (airgap/bundles/lab-v2, lab-v3: a newer k3s,
// a newer chart, two changed image layers; lab-v3's k3s never becomes ready).
//   npx tsx scripts/sample-bundle.ts [--force] [--upgrades]
import { buildSampleBundle } from '../test/lab/images/sample-bundle.js';
import { buildUpgradeBundles } from '../test/lab/images/upgrade-bundles.js';
import { inspectBundle, renderInspect } from '../src/bundle/inspect.js';

const force = process.argv.includes('--force');
const log = (l: string) => process.stderr.write(`${l}\n`);
const s = await buildSampleBundle({ force, log });
process.stdout.write(renderInspect(inspectBundle(s.dir)) + '\n');
if (process.argv.includes('--upgrades')) {
  const u = await buildUpgradeBundles({ log });
  for (const b of [u.v2, u.v3]) process.stdout.write(`\n${renderInspect(inspectBundle(b.dir))}\n`);
}
process.stdout.write(`\ntrust key: ${s.publicKeyFile}\n`);
