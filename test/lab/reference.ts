// Where the lab finds the verbatim upstream CRDs and chart data it validates against (test/lab/reference/).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REFERENCE_DIR = process.env.FSM_EDGE_REFERENCE_DIR ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'reference');
