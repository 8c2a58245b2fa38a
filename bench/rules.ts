/**
 * How fast is the data dictionary? Parses N generated hired_employees CSV lines with csv-parse,
 * once alone and once feeding every record through RowBatch (all field rules), and prints both
 * rates and the share of time the rules add. `npm run bench:rules -- --rows 1000000`
 */
import { parse } from 'csv-parse';
import { Readable } from 'node:stream';
import { CSV_OPTIONS } from '../core/csv-dialect.js';
import { RowBatch, TABLES } from '../core/tables.js';
import { arg, fmt, rng } from './support.js';

const rows = arg('rows', 1_000_000);
const rand = rng(42);
const lines: string[] = [];
for (let i = 1; i <= rows; i++) {
  const d = new Date(Date.UTC(2021, 0, 1) + Math.floor(rand() * 365 * 86400) * 1000).toISOString().slice(0, 19) + 'Z';
  lines.push(`${i},Name ${i},${d},${1 + Math.floor(rand() * 12)},${1 + Math.floor(rand() * 183)}`);
}
const text = lines.join('\n') + '\n';

async function run(validate: boolean): Promise<{ seconds: number; valid: number; heapMb: number }> {
  const batch = new RowBatch(TABLES.hired_employees);
  let valid = 0;
  const started = performance.now();
  const parser = Readable.from([text]).pipe(parse(CSV_OPTIONS));
  let line = 0;
  for await (const rec of parser as AsyncIterable<{ record: string[] }>) {
    line++;
    if (validate && batch.addFields(rec.record, line) === null) valid++;
    if (batch.length >= 10_000) batch.clear();
  }
  return { seconds: (performance.now() - started) / 1000, valid, heapMb: process.memoryUsage().heapUsed / 2 ** 20 };
}

// Rules alone, without the parser: the records as csv-parse hands them over.
function rulesOnly(): number {
  const records = lines.map((l) => l.split(','));
  const batch = new RowBatch(TABLES.hired_employees);
  const started = performance.now();
  for (let i = 0; i < records.length; i++) {
    batch.addFields(records[i]!, i);
    if (batch.length >= 10_000) batch.clear();
  }
  return (performance.now() - started) / 1000;
}

await run(true); // warm-up
const parseOnly = await run(false);
const withRules = await run(true);
const rulesSeconds = rulesOnly();
console.log(`rows: ${fmt(rows)}`);
console.log(`csv-parse alone:          ${fmt(rows / parseOnly.seconds)} rows/s`);
console.log(`csv-parse + data rules:   ${fmt(rows / withRules.seconds)} rows/s (${withRules.valid === rows ? 'all valid' : `${withRules.valid} valid`})`);
console.log(`data rules alone:         ${fmt(rows / rulesSeconds)} rows/s`);
console.log(`rules add ${(((withRules.seconds - parseOnly.seconds) / parseOnly.seconds) * 100).toFixed(0)}% to parsing`);
