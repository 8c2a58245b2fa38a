import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TABLE_NAMES, TABLES, type TableName } from '../core/tables.js';
import { createTestServices, type TestServices } from './support/services.js';
import { httpRequest, startServerProcess, type ServerProcess } from './support/server-process.js';

/**
 * A seeded, time-bounded fuzz of what clients send, against the real service process on
 * PostgreSQL and Redis: CSV and JSON bodies to POST /ingest and CSV files to POST /loads, made of
 * rows near and past every rule, then cut short, salted with random bytes (invalid UTF-8, NUL),
 * given huge fields or deep nesting; and plain random bytes. Each answer must be a 2xx or 4xx, the
 * process must stay up, and nothing may be half-written: the rows and rejects stored must be
 * exactly those the answer reports (none for a 4xx).
 *
 * FUZZ_SEED=<n> replays a run (the seed is printed), FUZZ_MS sets how long it runs (20 s).
 */
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MS = Number(process.env.FUZZ_MS ?? 20_000);

let t: TestServices;
let server: ServerProcess;

beforeAll(async () => {
  t = await createTestServices({}, { embedded: false });
  server = await startServerProcess(t, { LOG_LEVEL: 'info', WAREHOUSE_REFRESH_DEBOUNCE_MS: '60000' });
  // A few references, so some hires name existing departments and jobs and some do not.
  await t.pool.query(`INSERT INTO departments SELECT i, 'D' || i FROM generate_series(1, 5) i`);
  await t.pool.query(`INSERT INTO jobs SELECT i, 'J' || i FROM generate_series(1, 5) i`);
}, 120_000);
afterAll(async () => {
  if (server && !server.alive()) console.error(`the service process died; its last lines:\n${server.logTail()}`);
  await server?.stop();
  await t?.cleanup();
});

// ---- values near and past the rules -------------------------------------------------------------

const intText = fc.oneof(
  fc.integer({ min: -3, max: 12 }).map(String),
  fc.constantFrom('2147483647', '2147483648', '', ' 3 ', '007', '1.0', '1e3', '0x1', '-0', 'abc', '99999999999999999999'),
);
const weird = fc.constantFrom('\u0000', '\ud800', '\udfff', 'a\u0000b', '\ud83d\ude00', '"', '""', ',', '\n', '\r\n', '\t', ' ', '\\', 'é', '\ufeff', '\u2028');
const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 2, arbitrary: fc.array(weird, { maxLength: 4 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.constantFrom(65_536, 65_537, 70_000).map((n) => 'x'.repeat(n)) },
);
const datetime = fc.oneof(
  fc
    .tuple(
      fc.integer({ min: 1890, max: 2110 }),
      fc.integer({ min: 0, max: 13 }),
      fc.integer({ min: 0, max: 32 }),
      fc.integer({ min: 0, max: 25 }),
      fc.constantFrom('', '.5', '.123456', '.9999999', '.1234567891'),
      fc.constantFrom('', 'Z', '+01:00', '-12:00', '+1530', '+16:00', ' Z'),
      fc.constantFrom('T', ' '),
    )
    .map(([y, mo, d, h, f, z, sep]) => `${y}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}${sep}${String(h).padStart(2, '0')}:59:59${f}${z}`),
  fc.constantFrom('0001-01-01T00:00:00+01:00', '9999-12-31T23:00:00-12:00', '1900-01-01T00:00:00Z', '2100-12-31T23:59:59.999999Z', '2021-02-29T00:00:00Z', ''),
);

/** Values for one table's columns, sometimes one too few or too many. */
const fieldsFor = (table: TableName) =>
  fc
    .tuple(...TABLES[table].columns.map((c) => (c.kind === 'text' ? text : c.kind === 'datetime' ? datetime : intText)))
    .chain((f) => fc.constantFrom(f, f, f, f.slice(1), [...f, 'extra']));

// ---- bodies -------------------------------------------------------------------------------------

const csvField = (v: string, quote: boolean) => (quote || /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

const csvText = (table: TableName, maxRecords: number) =>
  fc
    .tuple(
      fc.array(fc.tuple(fieldsFor(table), fc.boolean()), { maxLength: maxRecords }),
      fc.boolean(),
      fc.constantFrom('\n', '\r\n'),
      fc.boolean(),
    )
    .map(([records, header, eol, bom]) => {
      const lines = records.map(([f, quote]) => f.map((v) => csvField(v, quote)).join(','));
      if (header) lines.unshift(TABLES[table].columns.map((c) => c.name).join(','));
      return (bom ? '\ufeff' : '') + lines.join(eol) + eol;
    });

const jsonValueText = fc.oneof(
  { weight: 30, arbitrary: fc.oneof(intText, text, datetime).map((v) => JSON.stringify(v)) },
  { weight: 10, arbitrary: fc.integer({ min: -5, max: 2 ** 31 + 5 }).map(String) },
  { weight: 5, arbitrary: fc.constantFrom('null', 'true', '1.5', '1e400', '-0', '{}', '[]', '{"a":[1,{"b":null}]}') },
  { weight: 1, arbitrary: fc.integer({ min: 20, max: 40 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
);
const jsonKey = (table: TableName) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...TABLES[table].columns.map((c) => c.name)) },
    { weight: 1, arbitrary: fc.constantFrom('\u0000', '\ud800', '__proto__', 'rows', '', 'ID', 'id ') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  );
const jsonRow = (table: TableName) =>
  fc.oneof(
    { weight: 9, arbitrary: fc.array(fc.tuple(jsonKey(table), jsonValueText), { maxLength: 7 }).map((m) => `{${m.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`) },
    { weight: 1, arbitrary: jsonValueText },
  );
const jsonText = (table: TableName) =>
  fc
    .tuple(fc.array(jsonRow(table), { maxLength: 12 }), fc.boolean(), fc.constantFrom('', ' ', '\n  '))
    .map(([rows, wrapped, ws]) => {
      const array = `[${ws}${rows.join(`,${ws}`)}${ws}]`;
      return wrapped ? `{"rows":${ws}${array}}` : array;
    });

/** Cut short, salted with random bytes, or left alone. */
const mutated = (body: fc.Arbitrary<string>) =>
  fc.tuple(body, fc.constantFrom('none', 'none', 'none', 'none', 'cut', 'bytes', 'both'), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 6 })).map(
    ([b, how, at, bytes]) => {
      let buf = Buffer.from(b);
      if (how === 'cut' || how === 'both') buf = buf.subarray(0, at % (buf.length + 1));
      if (how === 'bytes' || how === 'both') {
        const p = at % (buf.length + 1);
        buf = Buffer.concat([buf.subarray(0, p), Buffer.from(bytes), buf.subarray(p)]);
      }
      return buf;
    },
  );

type Case = { kind: 'ingest' | 'load'; table: TableName; type: string; body: Buffer };

const table = fc.constantFrom(...TABLE_NAMES);
const cases: fc.Arbitrary<Case> = fc.oneof(
  { weight: 4, arbitrary: table.chain((tb) => mutated(csvText(tb, 30)).map((body) => ({ kind: 'ingest' as const, table: tb, type: 'text/csv', body }))) },
  { weight: 4, arbitrary: table.chain((tb) => mutated(jsonText(tb)).map((body) => ({ kind: 'ingest' as const, table: tb, type: 'application/json', body }))) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(table, fc.constantFrom('text/csv', 'application/json'), fc.uint8Array({ maxLength: 3000 }))
      .map(([tb, type, bytes]) => ({ kind: 'ingest' as const, table: tb, type, body: Buffer.from(bytes) })),
  },
  { weight: 1, arbitrary: table.chain((tb) => mutated(csvText(tb, 200)).map((body) => ({ kind: 'load' as const, table: tb, type: 'text/csv', body }))) },
  {
    // Around the row limit: 1000 rows are fine, the 1001st is a 413.
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 998, max: 1003 }), fc.boolean())
      .map(([n, json]) => {
        const ids = Array.from({ length: n }, (_, i) => 100_000 + i);
        const body = json ? JSON.stringify(ids.map((id) => ({ id, job: `J${id}` }))) : ids.map((id) => `${id},J${id}`).join('\n');
        return { kind: 'ingest' as const, table: 'jobs' as const, type: json ? 'application/json' : 'text/csv', body: Buffer.from(body) };
      }),
  },
);

// ---- what was stored ----------------------------------------------------------------------------

async function rowCounts(): Promise<Record<TableName, number>> {
  const { rows } = await t.pool.query(
    `SELECT (SELECT count(*) FROM departments)::int AS departments, (SELECT count(*) FROM jobs)::int AS jobs,
            (SELECT count(*) FROM hired_employees)::int AS hired_employees`,
  );
  return rows[0];
}

async function storedRejects(source: string, sourceId: string | undefined): Promise<number> {
  if (!sourceId) return 0;
  const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM rejects WHERE source = $1 AND source_id = $2`, [source, sourceId]);
  return rows[0].n;
}

let runs = 0;
const seen = new Map<string, number>();

async function check(c: Case): Promise<void> {
  runs++;
  const before = await rowCounts();
  const path = c.kind === 'ingest' ? `/ingest/${c.table}` : `/loads?table=${c.table}&wait=true`;
  const res = await httpRequest(server.base, 'POST', path, { 'content-type': c.type }, c.body);

  expect(server.alive(), 'the service process is alive').toBe(true);
  expect(res.status, res.text.slice(0, 500)).toBeLessThan(500);
  const body = JSON.parse(res.text);
  const key = `${c.kind} ${c.type} ${res.status}${c.kind === 'load' && res.status === 200 ? ` ${body.status}` : ''}`;
  seen.set(key, (seen.get(key) ?? 0) + 1);
  const after = await rowCounts();
  if (c.kind === 'ingest') {
    const requestId = res.headers['x-request-id'] as string | undefined;
    if (res.status === 200) {
      expect(body.inserted + body.updated + body.unchanged + body.rejected).toBe(body.received);
      expect(await storedRejects('ingest', requestId)).toBe(body.rejected);
      expect(after[c.table] - before[c.table]).toBe(body.inserted);
    } else {
      expect([400, 413]).toContain(res.status);
      expect(await storedRejects('ingest', requestId)).toBe(0);
      expect(after).toEqual(before);
    }
    return;
  }
  if (res.status !== 200) {
    // A body the upload refuses (none here is too large): nothing queued, nothing written.
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(after).toEqual(before);
    return;
  }
  if (body.status === 'succeeded') {
    expect(body.inserted + body.updated + body.unchanged + body.rejected).toBe(body.rowsRead);
    expect(await storedRejects('load', body.id)).toBe(body.rejected);
    expect(after[c.table] - before[c.table]).toBe(body.inserted);
  } else {
    // Bad input fails at once with the reason, never as an infrastructure error retried, and
    // never because PostgreSQL refused a value the rules let through.
    expect(body.status, JSON.stringify(body)).toBe('failed');
    expect(body.attempts).toBe(1);
    expect(body.error).not.toMatch(/gave up|refused a value|attempt/);
    expect(after).toEqual(before);
  }
}

test(
  `fuzz: CSV and JSON bodies to /ingest, CSV files to /loads (seed ${SEED}; FUZZ_SEED=${SEED} replays it)`,
  async () => {
    console.log(`hostile fuzz: seed ${SEED}, ${MS} ms (FUZZ_SEED=${SEED} replays it)`);
    try {
      await fc.assert(fc.asyncProperty(cases, check), {
        seed: SEED,
        numRuns: 1_000_000,
        endOnFailure: true,
        plugins: [fc.interruptAfterTimeLimit(MS)],
      });
    } finally {
      console.log(`hostile fuzz: ${runs} runs; answers ${[...seen].sort().map(([k, n]) => `${k}: ${n}`).join(', ')}`);
    }
    expect(runs).toBeGreaterThan(0);
    expect(server.alive()).toBe(true);
    expect((await httpRequest(server.base, 'GET', '/health')).status).toBe(200);
  },
  MS + 180_000,
);
