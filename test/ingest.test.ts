import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { challengeLines, chunks, postCsv, postJson } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices();
  app = createApp(s);
});
afterAll(() => s.cleanup());

const count = async (table: string) => (await s.pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;

describe('POST /ingest/{table} with the challenge files', () => {
  test('gives 12 departments, 183 jobs, 1929 hires and 70 rejects naming field and reason', async () => {
    for (const table of ['departments', 'jobs']) {
      for (const body of chunks(await challengeLines(table))) {
        const res = await postCsv(app, `/ingest/${table}`, body);
        expect(res.status).toBe(200);
        expect((await res.json()).rejected).toBe(0);
      }
    }
    let rejected = 0;
    let received = 0;
    for (const body of chunks(await challengeLines('hired_employees'))) {
      const res = await postCsv(app, '/ingest/hired_employees', body);
      expect(res.status).toBe(200);
      const out = await res.json();
      received += out.received;
      rejected += out.rejected;
      expect(out.inserted + out.updated + out.unchanged + out.rejected).toBe(out.received);
      for (const r of out.rejects) {
        expect(r.errors.length).toBeGreaterThan(0);
        for (const e of r.errors) {
          expect(e.field).toMatch(/^(id|name|datetime|department_id|job_id)$/);
          expect(e.message).not.toBe('');
        }
      }
    }
    expect(received).toBe(1999);
    expect(rejected).toBe(70);
    expect(await count('departments')).toBe(12);
    expect(await count('jobs')).toBe(183);
    expect(await count('hired_employees')).toBe(1929);
    const stored = await s.pool.query(
      `SELECT count(*)::int AS n FROM rejects WHERE source = 'ingest' AND table_name = 'hired_employees'`,
    );
    expect(stored.rows[0].n).toBe(70);

    // The same files again change nothing.
    const again = await postCsv(app, '/ingest/departments', chunks(await challengeLines('departments'))[0]!);
    expect(await again.json()).toMatchObject({ received: 12, inserted: 0, updated: 0, unchanged: 12 });
  });
});

describe('batch contract', () => {
  test('JSON array and {"rows": [...]} both work; upserts tell inserted from updated', async () => {
    let res = await postJson(app, '/ingest/departments', [
      { id: 1001, department: 'Alpha' },
      { id: 1002, department: 'Beta' },
    ]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      table: 'departments',
      received: 2,
      inserted: 2,
      updated: 0,
      unchanged: 0,
      rejected: 0,
      rejects: [],
    });
    res = await postJson(app, '/ingest/departments', {
      rows: [
        { id: 1001, department: 'Alpha 2' },
        { id: 1002, department: 'Beta' },
        { id: 1003, department: 'Gamma' },
      ],
    });
    expect(await res.json()).toMatchObject({ received: 3, inserted: 1, updated: 1, unchanged: 1, rejected: 0 });
    const row = await s.pool.query('SELECT department FROM departments WHERE id = 1001');
    expect(row.rows[0].department).toBe('Alpha 2');
  });

  test('the same id twice in one batch: the later row wins', async () => {
    const res = await postJson(app, '/ingest/jobs', [
      { id: 5001, job: 'First' },
      { id: 5002, job: 'Other' },
      { id: 5001, job: 'Second' },
    ]);
    expect(await res.json()).toMatchObject({ received: 3, inserted: 2, updated: 1, rejected: 0 });
    const row = await s.pool.query('SELECT job FROM jobs WHERE id = 5001');
    expect(row.rows[0].job).toBe('Second');
  });

  test('unknown department_id / job_id are rejects found set-based, the rest are written', async () => {
    await postJson(app, '/ingest/departments', [{ id: 7001, department: 'D' }]);
    await postJson(app, '/ingest/jobs', [{ id: 7001, job: 'J' }]);
    const res = await postJson(app, '/ingest/hired_employees', [
      { id: 7001, name: 'Ok', datetime: '2021-01-01T00:00:00Z', department_id: 7001, job_id: 7001 },
      { id: 7002, name: 'Bad dept', datetime: '2021-01-01T00:00:00Z', department_id: 200000, job_id: 7001 },
      { id: 7003, name: 'Bad both', datetime: '2021-01-01T00:00:00Z', department_id: 200001, job_id: 300001 },
      { id: 7004, name: '', datetime: '2021-02-30T00:00:00Z', department_id: 7001, job_id: 7001 },
    ]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      table: 'hired_employees',
      received: 4,
      inserted: 1,
      updated: 0,
      unchanged: 0,
      rejected: 3,
      rejects: [
        { row: 1, errors: [{ field: 'department_id', message: 'unknown department_id 200000' }] },
        {
          row: 2,
          errors: [
            { field: 'department_id', message: 'unknown department_id 200001' },
            { field: 'job_id', message: 'unknown job_id 300001' },
          ],
        },
        {
          row: 3,
          errors: [
            { field: 'name', message: 'is required' },
            { field: 'datetime', message: 'is not a real date: 2021-02-30' },
          ],
        },
      ],
    });
    const stored = await s.pool.query(
      `SELECT position, raw, errors FROM rejects WHERE table_name = 'hired_employees' AND raw LIKE '%Bad dept%'`,
    );
    expect(stored.rows).toHaveLength(1);
    expect(stored.rows[0].position).toBe(1);
    expect(JSON.parse(stored.rows[0].raw)).toMatchObject({ id: 7002, department_id: 200000 });
    expect(stored.rows[0].errors).toEqual([{ field: 'department_id', message: 'unknown department_id 200000' }]);
  });

  test('a batch where every row is bad is still a 200 with every reject', async () => {
    const res = await postJson(app, '/ingest/jobs', [{ id: 0, job: 'x' }, { id: 'abc' }]);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ received: 2, inserted: 0, rejected: 2 });
  });

  test('datetimes without offset are UTC; offsets are honoured', async () => {
    await postJson(app, '/ingest/departments', [{ id: 8001, department: 'D' }]);
    await postJson(app, '/ingest/jobs', [{ id: 8001, job: 'J' }]);
    await postCsv(
      app,
      '/ingest/hired_employees',
      'id,name,datetime,department_id,job_id\r\n8001,A,2021-12-31 23:30:00,8001,8001\r\n8002,"B, Jr.",2022-01-01T01:00:00+02:00,8001,8001\r\n',
    );
    const rows = await s.pool.query(
      `SELECT id, name, to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS utc FROM hired_employees WHERE id IN (8001, 8002) ORDER BY id`,
    );
    expect(rows.rows).toEqual([
      { id: 8001, name: 'A', utc: '2021-12-31 23:30:00' },
      { id: 8002, name: 'B, Jr.', utc: '2021-12-31 23:00:00' },
    ]);
  });

  test('CSV: header skipped, BOM stripped, ragged lines are rejects', async () => {
    const res = await postCsv(app, '/ingest/departments', '\ufeffid,department\n9001,A\n9002\n9003,B,extra\n');
    expect(await res.json()).toMatchObject({
      received: 3,
      inserted: 1,
      rejected: 2,
      rejects: [
        { row: 1, errors: [{ field: null, message: 'expected 2 fields, got 1' }] },
        { row: 2, errors: [{ field: null, message: 'expected 2 fields, got 3' }] },
      ],
    });
  });
});

describe('client errors', () => {
  const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

  test('0 rows → 400', async () => {
    let res = await postJson(app, '/ingest/jobs', []);
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/no rows/);
    res = await postCsv(app, '/ingest/jobs', 'id,job\n');
    expect(res.status).toBe(400);
  });

  test('more than 1000 rows → 413, nothing written', async () => {
    const rows = Array.from({ length: 1001 }, (_, i) => ({ id: 20000 + i, job: `J${i}` }));
    const res = await postJson(app, '/ingest/jobs', rows);
    expect(res.status).toBe(413);
    expect(await errorOf(res)).toMatchObject({ code: 'payload_too_large' });
    expect((await s.pool.query('SELECT count(*)::int AS n FROM jobs WHERE id >= 20000')).rows[0].n).toBe(0);
  });

  test('exactly 1000 rows is fine', async () => {
    const rows = Array.from({ length: 1000 }, (_, i) => ({ id: 30000 + i, job: `J${i}` }));
    const res = await postJson(app, '/ingest/jobs', rows);
    expect(res.status).toBe(200);
    expect((await res.json()).inserted).toBe(1000);
  });

  test('a body over the byte limit → 413 while streaming', async () => {
    const big = 'x'.repeat(s.config.INGEST_MAX_BYTES + 10);
    const res = await app.request('/ingest/jobs', {
      method: 'POST',
      headers: { 'content-type': 'text/csv' },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(big));
          c.close();
        },
      }),
      // @ts-expect-error Node's fetch needs this for a stream body
      duplex: 'half',
    });
    expect(res.status).toBe(413);
  });

  test('unparseable JSON → 400 saying where', async () => {
    const res = await postJson(app, '/ingest/jobs', '[{"id": 1, "job": "a"},\n {"id": 2 "job": "b"}]');
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/line 2, column \d+/);
  });

  test('unparseable CSV → 400', async () => {
    const res = await postCsv(app, '/ingest/jobs', '1,"unterminated\n');
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/not valid CSV/);
  });

  test('a JSON object without rows → 400', async () => {
    const res = await postJson(app, '/ingest/jobs', { id: 1, job: 'x' });
    expect(res.status).toBe(400);
  });

  test('unknown table → 404 listing the known ones', async () => {
    const res = await postJson(app, '/ingest/employees', [{ id: 1 }]);
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({ code: 'unknown_table' });
  });

  test('other content types → 415', async () => {
    const res = await app.request('/ingest/jobs', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '1,a' });
    expect(res.status).toBe(415);
  });

  test('unknown route → 404 in the error shape', async () => {
    const res = await app.request('/nope');
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({ code: 'not_found' });
  });
});

describe('API_KEY', () => {
  let secured: TestServices;
  beforeAll(async () => {
    secured = await createTestServices({ API_KEY: 'k'.repeat(32) });
  });
  afterAll(() => secured.cleanup());

  test('non-GET routes need the bearer key; GET routes do not', async () => {
    const sapp = createApp(secured);
    let res = await postJson(sapp, '/ingest/jobs', [{ id: 1, job: 'x' }]);
    expect(res.status).toBe(401);
    res = await postJson(sapp, '/ingest/jobs', [{ id: 1, job: 'x' }], { authorization: 'Bearer wrong' });
    expect(res.status).toBe(401);
    res = await postJson(sapp, '/ingest/jobs', [{ id: 1, job: 'x' }], { authorization: `Bearer ${'k'.repeat(32)}` });
    expect(res.status).toBe(200);
    expect((await sapp.request('/health')).status).toBe(200);
  });
});

describe('docs', () => {
  test('/openapi.json documents the routes; /docs serves a page', async () => {
    const spec = await (await app.request('/openapi.json')).json();
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/ingest/{table}', '/health']));
    const docs = await app.request('/docs');
    expect(docs.status).toBe(200);
    expect(docs.headers.get('content-type')).toMatch(/text\/html/);
  });
});
