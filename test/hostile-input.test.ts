import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestServices, type TestServices } from './support/services.js';
import { WORST_INGEST_BODIES } from './support/hostile-bodies.js';
import { httpRequest, startServerProcess, type HttpAnswer, type ServerProcess } from './support/server-process.js';

/**
 * Issue 11's catalogue of what a careless or hostile client could do, against the real service
 * process (API and workers in one, `npm start`) on PostgreSQL and Redis: memory and blocking,
 * half-done writes, values the rest of the system could not handle. What a client sees, what is
 * stored, and that the process is alive and its peak RSS under the bound README states.
 *
 * Needs the servers (a process of its own shares them), so it is not in the embedded project.
 */

/** README, "Limits and safety": the service process's peak RSS under the worst inputs below, all at once. */
const PEAK_RSS_BOUND_MB = 800;

let t: TestServices;
let server: ServerProcess;

beforeAll(async () => {
  t = await createTestServices({}, { embedded: false });
  server = await startServerProcess(t, { WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  await post('/ingest/departments', 'application/json', JSON.stringify([{ id: 1, department: 'D' }]));
  await post('/ingest/jobs', 'application/json', JSON.stringify([{ id: 1, job: 'J' }]));
}, 120_000);
afterAll(async () => {
  if (server && !server.alive()) console.error(`the service process died; its last lines:\n${server.logTail()}`);
  await server?.stop();
  await t?.cleanup();
});

interface Answer {
  status: number;
  body: any;
  requestId: string | null;
}

async function post(path: string, type?: string, body?: string | Uint8Array): Promise<Answer> {
  let res: HttpAnswer;
  try {
    res = await httpRequest(server.base, 'POST', path, type ? { 'content-type': type } : {}, body);
  } catch (err) {
    // What the client saw instead of an answer (a cut connection), so a failure names it.
    return { status: -1, body: `${(err as Error).message}`, requestId: null };
  }
  const text = res.text;
  const requestId = res.headers['x-request-id'];
  return {
    status: res.status,
    body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text,
    requestId: typeof requestId === 'string' ? requestId : null,
  };
}

const get = async (path: string) => JSON.parse((await httpRequest(server.base, 'GET', path)).text);

async function count(sql: string, params: unknown[] = []): Promise<number> {
  return (await t.pool.query(sql, params)).rows[0].n as number;
}

async function finished(loadId: string): Promise<{ status: string; rowsRead: number; inserted: number; rejected: number; error: string | null }> {
  for (const until = Date.now() + 240_000; Date.now() < until; ) {
    const load = await get(`/loads/${loadId}`);
    if (load.status === 'succeeded' || load.status === 'failed') return load;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`load ${loadId} did not finish`);
}

async function rejectLines(loadId: string): Promise<{ line: number; raw: string; truncated?: boolean; errors: { field: string | null; message: string }[] }[]> {
  const { text } = await httpRequest(server.base, 'GET', `/loads/${loadId}/rejects`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('memory and blocking', () => {
  test(
    'the worst bodies and a file of 1 MB rejected lines, all at once: the right answers, the process alive, peak RSS under the bound',
    async () => {
      // 100 lines of 1 MB, each a reject (a field past FIELD_MAX_BYTES): their raw text is kept cut to 4 KiB.
      const line = (i: number) => `${1000 + i},${'x'.repeat(1_000_000)}\n`;
      const file = Buffer.from(Array.from({ length: 100 }, (_, i) => line(i)).join(''));
      const load = post('/loads?table=jobs', 'text/csv', file);
      const health: number[] = [];
      let polling = true;
      const poll = (async () => {
        while (polling) {
          health.push(await httpRequest(server.base, 'GET', '/health').then((r) => r.status, () => -1));
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const answers = await Promise.all(
        WORST_INGEST_BODIES.flatMap((b) =>
          Array.from({ length: 4 }, () => post('/ingest/jobs', b.type, b.make()).then((a) => [b, a] as const)),
        ),
      );
      const loaded = await load;
      polling = false;
      await poll;
      for (const [b, a] of answers) expect({ body: b.name, status: a.status, error: a.status < 0 ? a.body : undefined }).toEqual({ body: b.name, status: b.status });
      expect(loaded.status).toBe(202);
      const done = await finished(loaded.body.id);
      expect(done).toMatchObject({ status: 'succeeded', rowsRead: 100, inserted: 0, rejected: 100 });
      const rejects = await rejectLines(loaded.body.id);
      expect(rejects).toHaveLength(100);
      for (const r of rejects) {
        expect(r.truncated).toBe(true);
        expect(Buffer.byteLength(r.raw)).toBe(4096);
        expect(r.errors).toEqual([{ field: 'job', message: 'is 1000000 bytes long; at most 65536 are allowed' }]);
      }
      expect(health.every((s) => s === 200)).toBe(true);
      expect(server.alive()).toBe(true);
      const peak = server.peakRssMb();
      console.log(`hostile input: the service process's peak RSS was ${peak.toFixed(0)} MB (bound ${PEAK_RSS_BOUND_MB} MB)`);
      expect(peak).toBeLessThan(PEAK_RSS_BOUND_MB);
    },
    300_000,
  );

  test('the 1001st row answers 413 at once, JSON or CSV, before the rest of the body is parsed', async () => {
    const csv = await post('/ingest/jobs', 'text/csv', 'a\n'.repeat(2_000_000));
    expect(csv.status).toBe(413);
    expect(csv.body.error.message).toMatch(/more than 1000 rows/);
    const json = await post('/ingest/jobs', 'application/json', JSON.stringify({ rows: Array.from({ length: 5000 }, (_, i) => ({ id: i + 1, job: 'x' })) }));
    expect(json.status).toBe(413);
    // Exactly 1000 data rows after a header is fine.
    const ok = await post('/ingest/jobs', 'text/csv', 'id,job\n' + Array.from({ length: 1000 }, (_, i) => `${50_000 + i},J`).join('\n'));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ received: 1000, inserted: 1000 });
  });

  test('JSON nested 5,000 deep is a 400 saying so; a reject shows the text as sent', async () => {
    const deep = await post('/ingest/jobs', 'application/json', '['.repeat(5000) + ']'.repeat(5000));
    expect(deep.status).toBe(400);
    expect(deep.body.error.message).toMatch(/nested deeper than 32 levels/);
    const row = '{"id": 7,   "job": {"a": [[[[[[[[[[1]]]]]]]]]]}}';
    const nested = await post('/ingest/jobs', 'application/json', `[${row}]`);
    expect(nested.status).toBe(200);
    expect(nested.body.rejects).toEqual([{ row: 0, errors: [{ field: 'job', message: 'must be a string' }] }]);
    const stored = await t.pool.query(`SELECT raw FROM rejects WHERE source_id = $1`, [nested.requestId]);
    expect(stored.rows).toEqual([{ raw: row }]);
  });

  test('a field past FIELD_MAX_BYTES, a record of too many fields, bytes that are not UTF-8: each one reject, the rest written', async () => {
    const body = Buffer.concat([
      Buffer.from(`60001,${'y'.repeat(70_000)}\n60002,ok\n${','.repeat(100_000)}\n60003,`),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('\n60004,"quoted\nline"\n'),
    ]);
    const a = await post('/ingest/jobs', 'text/csv', body);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ received: 5, inserted: 2, rejected: 3 });
    expect(a.body.rejects).toEqual([
      { row: 0, errors: [{ field: 'job', message: 'is 70000 bytes long; at most 65536 are allowed' }] },
      { row: 2, errors: [{ field: null, message: 'expected 2 fields, got 100001' }] },
      { row: 3, errors: [{ field: null, message: 'is not valid UTF-8 text' }] },
    ]);
    const stored = await t.pool.query(`SELECT position, octet_length(raw) AS bytes, raw_truncated FROM rejects WHERE source_id = $1 ORDER BY position`, [a.requestId]);
    expect(stored.rows).toEqual([
      { position: 0, bytes: 4096, raw_truncated: true },
      { position: 2, bytes: 4096, raw_truncated: true },
      { position: 3, bytes: 13, raw_truncated: false }, // "60003,", then U+FFFD for each byte that is not UTF-8
    ]);
  });
});

describe('half-done writes', () => {
  test('a NUL byte in a rejected CSV field: 200, the valid rows and the rejects both stored, the NUL made visible', async () => {
    const a = await post('/ingest/jobs', 'text/csv', '70001,fine\n70002,"bad\u0000field"\n70003,also fine\n');
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ received: 3, inserted: 2, rejected: 1 });
    expect(a.body.rejects).toEqual([{ row: 1, errors: [{ field: 'job', message: 'must not contain the NUL character' }] }]);
    const stored = await t.pool.query(`SELECT position, raw FROM rejects WHERE source_id = $1`, [a.requestId]);
    expect(stored.rows).toEqual([{ position: 1, raw: '70002,"bad\u2400field"' }]);
  });

  test('JSON keys "\\u0000" and "\\ud800": 200, one reject each, stored, nothing else refused', async () => {
    const a = await post(
      '/ingest/jobs',
      'application/json',
      '[{"id": 70010, "job": "a", "\\u0000": 1}, {"id": 70011, "job": "b", "\\ud800": 2}, {"id": 70012, "job": "c"}]',
    );
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ inserted: 1, rejected: 2 });
    expect(a.body.rejects.map((r: { errors: { field: string }[] }) => r.errors[0]!.field)).toEqual(['\u2400', '\ufffd']);
    expect(await count(`SELECT count(*)::int AS n FROM rejects WHERE source_id = $1`, [a.requestId])).toBe(2);
  });

  test('a batch is written whole or not at all: when its rejects cannot be stored, its valid rows are not either', async () => {
    // A fault injected where no rule could catch it: the rejects table refuses one reject.
    await t.pool.query(`CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.raw LIKE '%boom%' THEN RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$`);
    await t.pool.query(`CREATE TRIGGER refuse_boom BEFORE INSERT ON rejects FOR EACH ROW EXECUTE FUNCTION refuse_boom()`);
    try {
      const body = '70020,ok\n70021,ok too\nboom,bad id\n';
      const a = await post('/ingest/jobs', 'text/csv', body);
      expect(a.status).toBe(500);
      expect(await count(`SELECT count(*)::int AS n FROM jobs WHERE id IN (70020, 70021)`)).toBe(0);
      await t.pool.query('DROP TRIGGER refuse_boom ON rejects');
      const again = await post('/ingest/jobs', 'text/csv', body);
      expect(again.body).toMatchObject({ inserted: 2, rejected: 1 });
    } finally {
      await t.pool.query('DROP TRIGGER IF EXISTS refuse_boom ON rejects');
      await t.pool.query('DROP FUNCTION IF EXISTS refuse_boom()');
    }
  });

  test('a long line naming a department that does not exist: one reject, its raw text cut at the cap', async () => {
    const name = 'n'.repeat(60_000);
    const a = await post('/loads?table=hired_employees&wait=true', 'text/csv', `85001,${name},2021-01-01T00:00:00Z,999,1\r\n85002,Ok,2019-01-01T00:00:00Z,1,1\r\n`);
    expect(a.body).toMatchObject({ status: 'succeeded', rowsRead: 2, inserted: 1, rejected: 1 });
    const [r] = await rejectLines(a.body.id);
    expect(r).toMatchObject({ line: 1, truncated: true, errors: [{ field: 'department_id', message: 'unknown department_id 999' }] });
    expect(r!.raw).toBe(`85001,${name}`.slice(0, 4096));
  });

  test('a NUL byte after the first 64 KiB of a load file rejects that line; the load succeeds', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `${80_000 + i},Job number ${i}`);
    lines[4000] = `${80_000 + 4000},Bad\u0000job`;
    const text = lines.join('\n') + '\n';
    expect(text.indexOf('\u0000')).toBeGreaterThan(64 * 1024);
    const a = await post('/loads?table=jobs&wait=true', 'text/csv', text);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ status: 'succeeded', rowsRead: 5000, inserted: 4999, rejected: 1 });
    expect(await rejectLines(a.body.id)).toEqual([
      { line: 4001, raw: '84000,Bad\u2400job', errors: [{ field: 'job', message: 'must not contain the NUL character' }] },
    ]);
    // Near the start of a file too: a trace of NUL or non-UTF-8 bytes is bad lines, not a binary file.
    const early = await post('/loads?table=jobs&wait=true', 'text/csv', Buffer.concat([Buffer.from('86001,A\u0000\n86002,'), Buffer.from([0xff]), Buffer.from('\n86003,ok\n')]));
    expect(early.body).toMatchObject({ status: 'succeeded', rowsRead: 3, inserted: 1, rejected: 2 });
    const binary = await post('/loads?table=jobs&wait=true', 'text/csv', Buffer.from('1,a\u0000\u0000\u0000\u0000\n'));
    expect(binary.body).toMatchObject({ status: 'failed', error: expect.stringMatching(/not CSV text/) });
  });
});

describe('values the rules accept, the rest of the system handles', () => {
  test('1 BC and year 10000 in UTC are rejects; the warehouse refreshes after them', async () => {
    const a = await post(
      '/ingest/hired_employees',
      'text/csv',
      '90001,Early,0001-01-01T00:00:00+01:00,1,1\n90002,Late,9999-12-31T23:00:00-12:00,1,1\n90003,Fine,2021-05-01T00:00:00Z,1,1\n',
    );
    expect(a.body).toMatchObject({ inserted: 1, rejected: 2 });
    for (const r of a.body.rejects) expect(r.errors).toEqual([{ field: 'datetime', message: 'must lie in the years 1900..2100 (UTC)' }]);
    const refresh = await post('/warehouse/refresh?wait=true');
    expect(refresh.status).toBe(200);
    expect(refresh.body).toMatchObject({ status: 'completed' });
  });

  test('2021-03-31T23:59:59.9999999Z stays in March: stored truncated, counted in Q1', async () => {
    const a = await post('/ingest/hired_employees', 'application/json', JSON.stringify([{ id: 90010, name: 'Last µs of Q1', datetime: '2021-03-31T23:59:59.9999999Z', department_id: 1, job_id: 1 }]));
    expect(a.body).toMatchObject({ inserted: 1 });
    const { rows } = await t.pool.query(`SELECT to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at FROM hired_employees WHERE id = 90010`);
    expect(rows[0].at).toBe('2021-03-31 23:59:59.999999');
    expect((await post('/warehouse/refresh?wait=true')).status).toBe(200);
    const q = await get('/analytics/hires-by-quarter?year=2021');
    expect(q).toEqual([{ department: 'D', job: 'J', q1: 1, q2: 1, q3: 0, q4: 0 }]);
  });

  test('a lone surrogate in a name is a reject, never stored as U+FFFD', async () => {
    const a = await post('/ingest/hired_employees', 'application/json', '[{"id": 90020, "name": "Ann\\udc00e", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1}]');
    expect(a.body.rejects).toEqual([{ row: 0, errors: [{ field: 'name', message: 'must be valid Unicode text (it holds a lone surrogate)' }] }]);
    expect(await count(`SELECT count(*)::int AS n FROM hired_employees WHERE id = 90020`)).toBe(0);
  });

  test('after all of it the process is alive and healthy', async () => {
    expect(server.alive()).toBe(true);
    expect((await httpRequest(server.base, 'GET', '/health')).status).toBe(200);
  });
});
