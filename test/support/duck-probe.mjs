// Another process reading the warehouse, on command: one command per stdin line, one JSON answer
// per stdout line.
//   open   opens the file READ_ONLY anew, reads it, closes it
//   hold   opens the file READ_ONLY and keeps that instance open
//   held   reads through the held instance
//   drop   closes the held instance
// A read answers the version, the fact rows and the sum of the aggregate: in a whole version the
// last two agree. An error answers {"error"}.
import { createInterface } from 'node:readline';
import { DuckDBInstance } from '@duckdb/node-api';

const file = process.argv[2];
let held;

async function read(instance) {
  const conn = await instance.connect();
  try {
    const one = async (sql) => Number((await conn.runAndReadAll(sql)).getRowsJS()[0][0]);
    return {
      version: await one('SELECT version FROM warehouse_info'),
      facts: await one('SELECT count(*) FROM fact_hires'),
      aggregated: await one('SELECT coalesce(sum(hires), 0) FROM agg_hires_by_quarter'),
    };
  } finally {
    conn.closeSync();
  }
}

const open = () => DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });

for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    if (line === 'open') {
      const instance = await open();
      try {
        answer = await read(instance);
      } finally {
        instance.closeSync();
      }
    } else if (line === 'hold') {
      held = await open();
      answer = await read(held);
    } else if (line === 'held') {
      answer = await read(held);
    } else if (line === 'drop') {
      held?.closeSync();
      held = undefined;
      answer = { dropped: true };
    } else {
      answer = { error: `unknown command ${line}` };
    }
  } catch (err) {
    answer = { error: String(err?.message ?? err) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
held?.closeSync();
