import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { CHALLENGE_DIR } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices({ LOAD_CHUNK_ROWS: '500', LOAD_BACKOFF_MS: '100' });
  workers = await startWorkers(s);
  app = createApp(s);
});
afterAll(async () => {
  await workers.close();
  await s.cleanup();
});

async function postCsv(table: string, body: string | Buffer, query = '&wait=true') {
  return app.request(`/loads?table=${table}${query}`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: typeof body === 'string' ? body : new Uint8Array(body) });
}

async function rejectsOf(id: string): Promise<{ line: number; raw: string; errors: { field: string | null; message: string }[] }[]> {
  const res = await app.request(`/loads/${id}/rejects`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/x-ndjson');
  const text = await res.text();
  return text === '' ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l));
}

async function tableDigest(table: string): Promise<string> {
  const { rows } = await s.pool.query(`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') AS d FROM ${table} t`);
  return rows[0].d;
}

describe('the challenge files, one request per file', () => {
  test('1999 read, 1929 written, 70 rejects with line, raw and reasons', async () => {
    for (const t of ['departments', 'jobs']) {
      const res = await postCsv(t, await readFile(path.join(CHALLENGE_DIR, `${t}.csv`)));
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ table: t, status: 'succeeded', rejected: 0 });
    }
    const res = await postCsv('hired_employees', await readFile(path.join(CHALLENGE_DIR, 'hired_employees.csv')));
    expect(res.status).toBe(200);
    const load = await res.json();
    expect(load).toMatchObject({ status: 'succeeded', rowsRead: 1999, inserted: 1929, updated: 0, unchanged: 0, rejected: 70, error: null });
    expect(await tableDigest('hired_employees')).toMatch(/^1929:/);

    const rejects = await rejectsOf(load.id);
    expect(rejects).toHaveLength(70);
    const lines = (await readFile(path.join(CHALLENGE_DIR, 'hired_employees.csv'), 'utf8')).split('\n');
    for (const r of rejects) {
      expect(r.raw).toBe(lines[r.line - 1]);
      expect(r.errors.length).toBeGreaterThan(0);
      expect(r.errors[0]).toHaveProperty('message');
    }
    expect(rejects[0]).toMatchObject({ line: 2, errors: [{ field: 'job_id', message: 'is required' }] });

    const fetched = await (await app.request(`/loads/${load.id}`)).json();
    expect(fetched).toEqual(load);
    const list = await (await app.request('/loads')).json();
    expect(list.loads[0].id).toBe(load.id);
    expect(list.loads).toHaveLength(3);
    const doc = await (await app.request('/openapi.json')).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/loads', '/loads/{id}', '/loads/{id}/rejects']));
  });

  test('loading the same file again changes nothing and says so', async () => {
    const before = await tableDigest('hired_employees');
    await writeFile(path.join(s.config.dirs.landing, 'again.csv'), await readFile(path.join(CHALLENGE_DIR, 'hired_employees.csv')));
    const res = await app.request('/loads?wait=true', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ table: 'hired_employees', path: 'again.csv' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'succeeded', rowsRead: 1999, inserted: 0, updated: 0, unchanged: 1929, rejected: 70 });
    expect(await tableDigest('hired_employees')).toBe(before);
  });
});

describe('one multipart request with the three files', () => {
  let m: TestServices;
  let mWorkers: Workers;
  beforeAll(async () => {
    m = await createTestServices({ LOAD_CHUNK_ROWS: '700' });
    mWorkers = await startWorkers(m);
  });
  afterAll(async () => {
    await mWorkers.close();
    await m.cleanup();
  });

  test('hired_employees runs after its siblings and gives the same figures', async () => {
    const form = new FormData();
    // hired_employees first in the body: the order of the parts must not matter.
    for (const t of ['hired_employees', 'departments', 'jobs']) {
      form.append(t, new Blob([await readFile(path.join(CHALLENGE_DIR, `${t}.csv`))], { type: 'text/csv' }), `${t}.csv`);
    }
    const res = await createApp(m).request('/loads?wait=true', { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const { loads } = await res.json();
    expect(loads).toHaveLength(3);
    const by = Object.fromEntries(loads.map((l: { table: string }) => [l.table, l]));
    expect(by.hired_employees).toMatchObject({ status: 'succeeded', rowsRead: 1999, inserted: 1929, rejected: 70 });
    expect(by.departments).toMatchObject({ status: 'succeeded', rowsRead: 12, inserted: 12 });
    expect(by.jobs).toMatchObject({ status: 'succeeded', rowsRead: 183, inserted: 183 });
    for (const t of ['departments', 'jobs']) expect(by.hired_employees.startedAt >= by[t].finishedAt).toBe(true);
  });

  test('a failed sibling fails hired_employees with a reason instead of leaving it queued', async () => {
    const form = new FormData();
    form.append('departments', new Blob(['1,"unclosed\n2,x\n']), 'd.csv');
    form.append('hired_employees', new Blob(['1,A B,2021-01-01T00:00:00Z,1,1\n']), 'h.csv');
    const { loads } = await (await createApp(m).request('/loads?wait=true', { method: 'POST', body: form })).json();
    const by = Object.fromEntries(loads.map((l: { table: string }) => [l.table, l]));
    expect(by.departments.status).toBe('failed');
    expect(by.departments.error).toMatch(/not valid CSV at line 1/);
    expect(by.hired_employees.status).toBe('failed');
    expect(by.hired_employees.error).toMatch(/departments load .* failed/);
  });
});

describe('CSV details', () => {
  test('header, BOM, CRLF, quoted line breaks, blank lines, ragged lines, repeats and unknown references', async () => {
    // Ids clear of the challenge data loaded above.
    await postCsv('departments', '1001,Sales\n1002,Legal\n');
    await postCsv('jobs', '1001,Clerk\n');
    const csv =
      '\uFEFFid,name,datetime,department_id,job_id\r\n' + // 1 header
      '5010,"Ann\r\nLee",2021-01-01T00:00:00Z,1001,1001\r\n' + // 2-3 quoted CRLF
      '\r\n' + // 4 blank
      '5011,Bob,2021-01-01,1001,1001\r\n' + // 5 bad date
      '5012,Cy,2021-01-01 10:00:00+0200,9999,1001\r\n' + // 6 unknown department
      '5013,"Di, ""D""",2021-02-03T04:05:06.5Z,1002,1001\r\n' + // 7 quoted comma and quotes
      '5014,Ed\r\n' + // 8 too few fields
      '5010,Ann Lee,2021-01-01T00:00:00Z,1001,1001\r\n' + // 9 same id again: wins
      '5015,"multi\nline\nname",2021-03-01T00:00:00Z,7777,8888'; // 10-12 unknown department and job, no final newline
    const load = await (await postCsv('hired_employees', csv)).json();
    expect(load).toMatchObject({ status: 'succeeded', rowsRead: 7, inserted: 2, updated: 1, unchanged: 0, rejected: 4 });
    const rejects = await rejectsOf(load.id);
    expect(rejects.map((r) => r.line)).toEqual([5, 6, 8, 10]);
    expect(rejects[0]).toMatchObject({ raw: '5011,Bob,2021-01-01,1001,1001', errors: [{ field: 'datetime' }] });
    expect(rejects[1]).toMatchObject({ errors: [{ field: 'department_id', message: 'unknown department_id 9999' }] });
    expect(rejects[2]).toMatchObject({ raw: '5014,Ed', errors: [{ field: null, message: 'expected 5 fields, got 2' }] });
    expect(rejects[3]).toMatchObject({
      raw: '5015,"multi\nline\nname",2021-03-01T00:00:00Z,7777,8888',
      errors: [{ field: 'department_id', message: 'unknown department_id 7777' }, { field: 'job_id', message: 'unknown job_id 8888' }],
    });
    const { rows } = await s.pool.query(`SELECT id, name, datetime FROM hired_employees WHERE id IN (5010, 5013) ORDER BY id`);
    expect(rows).toEqual([
      { id: 5010, name: 'Ann Lee', datetime: new Date('2021-01-01T00:00:00Z') },
      { id: 5013, name: 'Di, "D"', datetime: new Date('2021-02-03T04:05:06.500Z') },
    ]);
  });

  test('a file that is not CSV, or not for this table, fails with a reason and is not retried', async () => {
    const binary = await (await postCsv('jobs', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]))).json();
    expect(binary).toMatchObject({ status: 'failed', attempts: 1 });
    expect(binary.error).toMatch(/not CSV text/);
    const wrong = await (await postCsv('departments', '1,a,b,c\n2,a,b,c\n')).json();
    expect(wrong).toMatchObject({ status: 'failed', attempts: 1, rowsRead: 0 });
    expect(wrong.error).toMatch(/no line of the file has the 2 fields of departments/);
    const quote = await (await postCsv('jobs', '1,ok\n\n2,"never closed\n3,x\n')).json();
    expect(quote).toMatchObject({ status: 'failed', attempts: 1 });
    expect(quote.error).toMatch(/not valid CSV at line 3/);
    const empty = await (await postCsv('jobs', '')).json();
    expect(empty).toMatchObject({ status: 'succeeded', rowsRead: 0 });
  });
});

describe('requests the API refuses', () => {
  test('size cap, missing or unknown table, paths outside the landing folder, media types, unknown ids', async () => {
    const small = createApp({ ...s, config: { ...s.config, LOAD_MAX_BYTES: 64 } });
    const big = 'x'.repeat(200);
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    let res = await small.request('/loads?table=jobs', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: chunked, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    expect((await res.json()).error.code).toBe('payload_too_large');
    res = await small.request('/loads?table=jobs', { method: 'POST', headers: { 'content-type': 'text/csv', 'content-length': '200' }, body: big });
    expect(res.status).toBe(413);
    // The cap is per request: two files under it that together exceed it are refused, and removed.
    const two = new FormData();
    two.append('departments', new Blob(['1,' + 'd'.repeat(38) + '\n']), 'd.csv');
    two.append('jobs', new Blob(['1,' + 'j'.repeat(38) + '\n']), 'j.csv');
    const uploads = async () => (await readdir(path.join(s.config.dirs.landing, 'uploads'), { recursive: true })).length;
    const before = await uploads();
    res = await small.request('/loads', { method: 'POST', body: two });
    expect(res.status).toBe(413);
    expect(await uploads()).toBe(before);

    res = await app.request('/loads', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: '1,a\n' });
    expect(res.status).toBe(400);
    res = await app.request('/loads?table=nope', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: '1,a\n' });
    expect(res.status).toBe(404);
    for (const p of ['../x.csv', '/etc/passwd', 'missing.csv']) {
      res = await app.request('/loads', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ table: 'jobs', path: p }) });
      expect(res.status).toBe(400);
    }
    res = await app.request('/loads', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    expect(res.status).toBe(415);
    const form = new FormData();
    form.append('employees', new Blob(['1,a\n']), 'e.csv');
    res = await app.request('/loads', { method: 'POST', body: form });
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toMatch(/does not name a table/);

    expect((await app.request('/loads/00000000-0000-0000-0000-000000000000')).status).toBe(404);
    expect((await app.request('/loads/not-a-uuid/rejects')).status).toBe(404);
  });
});

describe('infrastructure trouble', () => {
  test('a database the worker cannot reach is retried with backoff, then the load fails saying so', async () => {
    const t = await createTestServices({ LOAD_ATTEMPTS: '2', LOAD_BACKOFF_MS: '50' });
    // The API and the bookkeeping reach the database; the worker's load connection does not.
    const w = await startWorkers({ ...t, config: { ...t.config, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' } });
    try {
      const res = await createApp(t).request('/loads?table=jobs&wait=true', {
        method: 'POST',
        headers: { 'content-type': 'text/csv' },
        body: '1,Clerk\n',
      });
      expect(await res.json()).toMatchObject({ status: 'failed', attempts: 2 });
      const load = (await (await createApp(t).request('/loads')).json()).loads[0];
      // Said in general terms: the driver's text (host, port) stays in the worker's log.
      expect(load.error).toBe('gave up after 2 attempts: the database or the queue is unreachable');
    } finally {
      await w.close();
      await t.cleanup();
    }
  });
});

describe('the query and the JSON body, checked from the route declaration', () => {
  const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

  async function finished(id: string) {
    for (;;) {
      const load = (await (await app.request(`/loads/${id}`)).json()) as { status: string };
      if (load.status === 'succeeded' || load.status === 'failed') return load;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test('?wait=1 answers 200 once finished; ?wait=0 answers 202 at once; ?wait=yes is a 400 naming wait and starts nothing', async () => {
    let res = await postCsv('jobs', '2001,Waiter\n', '&wait=1');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ table: 'jobs', status: 'succeeded', inserted: 1 });

    res = await postCsv('jobs', '2002,Runner\n', '&wait=0');
    expect(res.status).toBe(202);
    const started = (await res.json()) as { id: string; table: string };
    expect(started.table).toBe('jobs');
    expect(await finished(started.id)).toMatchObject({ status: 'succeeded', inserted: 1 });

    const count = async () => ((await (await app.request('/loads?limit=1000')).json()) as { loads: unknown[] }).loads.length;
    const before = await count();
    res = await postCsv('jobs', '2003,Never\n', '&wait=yes');
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/^wait: /) });
    res = await app.request('/loads?wait=yes', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ table: 'jobs', path: 'again.csv' }) });
    expect(res.status).toBe(400);
    expect(await count()).toBe(before);
  });

  test('a JSON body is held to {table, path}; a CSV or multipart body is not', async () => {
    const postJson = (body: string) => app.request('/loads', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    let res = await postJson(JSON.stringify({ table: 'employees', path: 'again.csv' }));
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/^table: /);
    res = await postJson(JSON.stringify({ table: 'jobs' }));
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/^path: /);
    res = await postJson('{"table": "jobs",');
    expect(res.status).toBe(400);
    res = await app.request('/loads', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ table: 'jobs', path: 'x'.repeat(s.config.INGEST_MAX_BYTES) }) });
    expect(res.status).toBe(413);

    res = await postCsv('jobs', '2004,Csv\n', '&wait=1');
    expect(res.status).toBe(200);
    const form = new FormData();
    form.append('jobs', new Blob(['2005,Multipart\n']), 'j.csv');
    res = await app.request('/loads?wait=1', { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ loads: [{ table: 'jobs', status: 'succeeded', inserted: 1 }] });
  });

  test('GET /loads: table, status and limit (1..1000, default 50)', async () => {
    const list = async (q: string) => app.request(`/loads${q}`);
    const loads = async (q: string) => ((await (await list(q)).json()) as { loads: { table: string; status: string }[] }).loads;
    expect(await loads('?limit=1')).toHaveLength(1);
    const jobs = await loads('?table=jobs&status=succeeded&limit=1000');
    expect(jobs.length).toBeGreaterThan(1);
    expect(jobs.every((l) => l.table === 'jobs' && l.status === 'succeeded')).toBe(true);
    expect((await loads('')).length).toBeLessThanOrEqual(50);
    for (const [q, field] of [['?limit=0', 'limit'], ['?limit=1001', 'limit'], ['?limit=ten', 'limit'], ['?status=done', 'status']]) {
      const res = await list(q!);
      expect(res.status).toBe(400);
      expect((await errorOf(res)).message).toMatch(new RegExp(`^${field}: `));
    }
    const res = await list('?table=employees');
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({ code: 'unknown_table' });
  });
});
