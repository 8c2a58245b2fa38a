/**
 * Writes departments.csv, jobs.csv and hired_employees.csv of generated sample data (loads/sample.ts).
 *
 *   npm run gen -- --rows 1000000 --out data/gen [--bad-share 0.02] [--seed 42]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generate } from '../loads/sample.js';

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
if (isMain) {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '1000' },
      out: { type: 'string', default: 'data/gen' },
      'bad-share': { type: 'string', default: '0' },
      seed: { type: 'string', default: '42' },
    },
  });
  const rows = Number(values.rows);
  const badShare = Number(values['bad-share']);
  if (!Number.isInteger(rows) || rows < 0) throw new Error('--rows must be a non-negative integer');
  if (!(badShare >= 0 && badShare <= 1)) throw new Error('--bad-share must be in 0..1');
  const started = performance.now();
  await generate({ rows, out: values.out, badShare, seed: Number(values.seed) });
  console.log(`wrote ${rows} hired_employees rows to ${values.out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
