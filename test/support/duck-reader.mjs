// A notebook stand-in, run as a separate process: opens the published DuckDB file READ_ONLY,
// holds one instance open the whole time and also reopens the file on every round, until its
// stdin closes (at most `ms` milliseconds). The last round starts after stdin closed, so it sees
// what was published by then, however slow the machine. Prints one JSON line per round; exits 1
// on the first error.
import { DuckDBInstance } from '@duckdb/node-api';

const [file, ms] = [process.argv[2], Number(process.argv[3] ?? 60_000)];
let stopAsked = false;
process.stdin.on('end', () => (stopAsked = true)).resume();
const held = await DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });
const heldConn = await held.connect();
const count = async (conn) =>
  Number((await conn.runAndReadAll('SELECT count(*) FROM fact_hires')).getRowsJS()[0][0]);
const end = Date.now() + ms;
let rounds = 0;
try {
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  for (;;) {
    const last = stopAsked || Date.now() >= end;
    const fresh = await DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });
    const conn = await fresh.connect();
    const version = Number((await conn.runAndReadAll('SELECT version FROM warehouse_info')).getRowsJS()[0][0]);
    process.stdout.write(`${JSON.stringify({ held: await count(heldConn), fresh: await count(conn), version })}\n`);
    conn.closeSync();
    fresh.closeSync();
    rounds++;
    if (last) break;
    await new Promise((r) => setTimeout(r, 20));
  }
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err) })}\n`);
  process.exit(1);
}
heldConn.closeSync();
held.closeSync();
process.stdout.write(`${JSON.stringify({ done: true, rounds })}\n`);
