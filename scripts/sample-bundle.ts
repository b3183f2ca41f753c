// Builds the lab's sample bundle (airgap/bundles/lab) through `fsm-edge bundle build`, against the lab registry
// and file server, with stand-ins for k3s, install.sh, the FSM chart and every image. Later tests install from it.
//   npx tsx scripts/sample-bundle.ts [--force]
import { buildSampleBundle } from '../test/lab/images/sample-bundle.js';
import { inspectBundle, renderInspect } from '../src/bundle/inspect.js';

const force = process.argv.includes('--force');
const s = await buildSampleBundle({ force, log: (l) => process.stderr.write(`${l}\n`) });
process.stdout.write(renderInspect(inspectBundle(s.dir)) + '\n');
process.stdout.write(`\ntrust key: ${s.publicKeyFile}\n`);
