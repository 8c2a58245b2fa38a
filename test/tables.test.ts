import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { ingestChallenge, postJson } from './support/http.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

const ROOT = path.resolve(import.meta.dirname, '..');

let s: TestServices;
let app: ReturnType<typeof createApp>;

type Row = Record<string, string | number>;
interface Page {
  rows: Row[];
  next: string | null;
}

const get = (url: string, headers: Record<string, string> = {}) => app.request(url, { headers });
const ids = async (sql: string, values: unknown[] = []) => (await s.pool.query<{ id: number }>(sql, values)).rows.map((r) => r.id);

/** Follows `next` from a first URL to the end; every page answers 200 and none is larger than the limit. */
async function chain(first: string, limit: number): Promise<{ rows: Row[]; pages: number }> {
  const rows: Row[] = [];
  let url: string | undefined = first;
  let pages = 0;
  while (url) {
    const res = await get(url);
    expect(res.status).toBe(200);
    const page = (await res.json()) as Page;
    expect(page.rows.length).toBeLessThanOrEqual(limit);
    rows.push(...page.rows);
    pages++;
    const link = res.headers.get('link');
    if (page.next === null) {
      expect(link).toBeNull();
      url = undefined;
    } else {
      // The Link header and the cursor lead to the same place.
      expect(page.rows.at(-1)!.id).toBe(Number(page.next));
      url = /^<([^>]+)>; rel="next"$/.exec(link ?? '')![1]!;
      expect(new URL(url, 'http://x').searchParams.get('after')).toBe(page.next);
    }
  }
  return { rows, pages };
}

beforeAll(async () => {
  s = await createTestServices();
  app = createApp(s);
  await ingestChallenge(app);
  // Names CSV must quote, and date-times with fractions and offsets.
  const extra = await postJson(app, '/ingest/departments', [{ id: 100, department: 'R&D, "Labs"\nEast' }]);
  expect((await extra.json()).rejected).toBe(0);
  const hires = await postJson(app, '/ingest/hired_employees', [
    { id: 5001, name: 'Fraction Six', datetime: '2021-03-31T23:59:59.999999Z', department_id: 2, job_id: 1 },
    { id: 5002, name: 'Half Second', datetime: '2021-06-01T12:00:00.5+02:00', department_id: 2, job_id: 1 },
    { id: 5003, name: 'On From', datetime: '2021-01-01T00:00:00Z', department_id: 2, job_id: 1 },
    { id: 5004, name: 'On To', datetime: '2021-07-01T00:00:00Z', department_id: 2, job_id: 1 },
    { id: 5005, name: 'Just Before To', datetime: '2021-06-30 23:59:59.999999', department_id: 2, job_id: 1 },
  ]);
  expect((await hires.json()).rejected).toBe(0);
});
afterAll(() => s.cleanup());

describe('keyset pages', () => {
  test.each([
    ['departments', 5],
    ['jobs', 20],
    ['hired_employees', 100],
  ])('%s: pages chain to the end with no gaps or repeats', async (table, limit) => {
    const { rows, pages } = await chain(`/${table}?limit=${limit}`, limit);
    const expected = await ids(`SELECT id FROM ${table} ORDER BY id`);
    expect(rows.map((r) => r.id)).toEqual(expected);
    expect(pages).toBe(Math.max(1, Math.ceil(expected.length / limit)));
  });

  test('a page ending exactly at the last row says null, not a cursor to an empty page', async () => {
    const [first, ...rest] = await ids('SELECT id FROM departments ORDER BY id');
    const page = (await (await get(`/departments?after=${first}&limit=${rest.length}`)).json()) as Page;
    expect(page.rows).toHaveLength(rest.length);
    expect(page.next).toBeNull();
  });

  test('default limit is 100; rows are named as the data dictionary names them', async () => {
    const res = await get('/hired_employees');
    const page = (await res.json()) as Page;
    expect(page.rows).toHaveLength(100);
    expect(page.rows[0]).toEqual({ id: 1, name: 'Harold Vogt', datetime: '2021-11-07T02:48:42Z', department_id: 2, job_id: 96 });
    expect(res.headers.get('link')).toBe(`</hired_employees?limit=100&after=${page.next}>; rel="next"`);
    expect(((await (await get('/departments?limit=1')).json()) as Page).rows[0]).toEqual({ id: 1, department: 'Product Management' });
    expect(((await (await get('/jobs?limit=1')).json()) as Page).rows[0]).toEqual({ id: 1, job: 'Marketing Assistant' });
  });

  test('datetime is ISO 8601 UTC with Z, microseconds kept when present', async () => {
    const page = (await (await get('/hired_employees?after=5000&limit=5')).json()) as Page;
    expect(page.rows.map((r) => r.datetime)).toEqual([
      '2021-03-31T23:59:59.999999Z',
      '2021-06-01T10:00:00.5Z',
      '2021-01-01T00:00:00Z',
      '2021-07-01T00:00:00Z',
      '2021-06-30T23:59:59.999999Z',
    ]);
  });
});

describe('filters on hired_employees', () => {
  test.each([
    ['department_id=2', 'department_id = 2'],
    ['job_id=96', 'job_id = 96'],
    ['department_id=2&job_id=1', 'department_id = 2 AND job_id = 1'],
    ['from=2021-01-01&to=2021-07-01', "datetime >= '2021-01-01T00:00:00Z' AND datetime < '2021-07-01T00:00:00Z'"],
    ['from=2021-06-01T14:00:00.5%2B04:00', "datetime >= '2021-06-01T10:00:00.5Z'"],
    ['to=2021-02-01 00:00:00', "datetime < '2021-02-01T00:00:00Z'"],
    // A fraction past microseconds is truncated, as ingest does: this stays in March.
    ['from=2021-03-31T23:59:59.9999999Z&to=2021-04-01', "datetime >= '2021-03-31T23:59:59.999999Z' AND datetime < '2021-04-01Z'"],
    ['department_id=5&from=2021-03-01T00:00:00Z&to=2021-09-01T00:00:00-0300', "department_id = 5 AND datetime >= '2021-03-01T00:00:00Z' AND datetime < '2021-09-01T03:00:00Z'"],
  ])('?%s pages through exactly the rows of WHERE %s', async (query, where) => {
    const expected = await ids(`SELECT id FROM hired_employees WHERE ${where} ORDER BY id`);
    expect(expected.length).toBeGreaterThan(0);
    const { rows } = await chain(`/hired_employees?${query}&limit=37`, 37);
    expect(rows.map((r) => r.id)).toEqual(expected);
  });

  test('from / to are half-open: a hire at from is in, a hire at to is out', async () => {
    const page = (await (await get('/hired_employees?after=5000&from=2021-01-01T00:00:00Z&to=2021-07-01T00:00:00Z')).json()) as Page;
    expect(page.rows.map((r) => r.name)).toEqual(['Fraction Six', 'Half Second', 'On From', 'Just Before To']);
  });

  test('the Link header keeps the filters and the limit', async () => {
    const res = await get('/hired_employees?department_id=2&from=2021-01-01&to=2022-01-01T00:00:00%2B01:00&limit=5');
    const page = (await res.json()) as Page;
    expect(res.headers.get('link')).toBe(
      `</hired_employees?department_id=2&from=2021-01-01T00:00:00Z&to=2022-01-01T00:00:00%2B01:00&limit=5&after=${page.next}>; rel="next"`,
    );
  });
});

describe('bad parameters', () => {
  test.each([
    ['/hired_employees?limit=0', 'limit'],
    ['/hired_employees?limit=1001', 'limit'],
    ['/hired_employees?limit=ten', 'limit'],
    ['/jobs?after=abc', 'after'],
    ['/jobs?after=-1', 'after'],
    ['/jobs?after=2147483648', 'after'],
    ['/hired_employees?department_id=x', 'department_id'],
    ['/hired_employees?job_id=0', 'job_id'],
    ['/hired_employees?from=2021-02-30', 'from'],
    ['/hired_employees?from=yesterday', 'from'],
    ["/hired_employees?format=csv&from=2021-01-01T00:00:00Z'%3B--", 'from'],
    ['/hired_employees?to=2021-01-01T25:00:00Z', 'to'],
    ['/hired_employees?format=xml', 'format'],
    ['/departments/abc', 'id'],
    ['/departments/0', 'id'],
    ['/hired_employees/2147483648', 'id'],
  ])('%s → 400 naming %s', async (url, field) => {
    const res = await get(url);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string; details: { field: string }[] } };
    expect(body.error.code).toBe('bad_request');
    expect(body.error.message.startsWith(`${field}: `)).toBe(true);
    expect(body.error.details[0]!.field).toBe(field);
  });
});

describe('one row by id', () => {
  test('found, and 404 when absent', async () => {
    const res = await get('/departments/100');
    expect(await res.json()).toEqual({ id: 100, department: 'R&D, "Labs"\nEast' });
    expect(await (await get('/hired_employees/5002')).json()).toEqual({
      id: 5002, name: 'Half Second', datetime: '2021-06-01T10:00:00.5Z', department_id: 2, job_id: 1,
    });
    const missing = await get('/jobs/999999');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});

describe('CSV export', () => {
  const csvRows = (text: string) => parse(text, { columns: true, cast: (v, ctx) => (ctx.header ? v : /^\d+$/.test(v) ? Number(v) : v) }) as Row[];

  test.each([
    ['departments', ''],
    ['jobs', 'after=150'],
    ['hired_employees', ''],
    ['hired_employees', 'department_id=2&from=2021-01-01&to=2021-07-01&after=200'],
  ])('%s?%s equals the JSON pages of the same selection', async (table, query) => {
    const res = await get(`/${table}?format=csv&limit=3&${query}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
    const text = await res.text();
    const { rows } = await chain(`/${table}?limit=1000&${query}`, 1000);
    expect(text.split('\n')[0]).toBe(Object.keys(rows[0]!).join(','));
    expect(csvRows(text)).toEqual(rows);
  });

  test('Accept: text/csv asks for it too; ?format=json wins over Accept', async () => {
    const viaAccept = await get('/departments', { accept: 'text/csv' });
    expect(viaAccept.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(await viaAccept.text()).toMatch(/^id,department\n1,Product Management\n/);
    const json = await get('/departments?format=json', { accept: 'text/csv' });
    expect(json.headers.get('content-type')).toMatch(/^application\/json/);
  });

  test('a selection with no rows is the header line alone', async () => {
    expect(await (await get('/hired_employees?format=csv&department_id=99999')).text()).toBe('id,name,datetime,department_id,job_id\n');
  });

  test('HEAD answers the headers without holding a connection', async () => {
    const res = await app.request('/hired_employees?format=csv', { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(s.pool.totalCount - s.pool.idleCount).toBe(0);
  });
});

describe('API key', () => {
  test('with API_KEY set, the table routes need the key; other GETs stay open', async () => {
    const key = 'k'.repeat(24);
    const guarded = createApp({ ...s, config: { ...s.config, API_KEY: key } });
    for (const url of ['/hired_employees', '/departments/1', '/jobs?format=csv']) {
      expect((await guarded.request(url)).status).toBe(401);
      expect((await guarded.request(url, { headers: { authorization: 'Bearer wrong-key-wrong-key' } })).status).toBe(401);
      const ok = await guarded.request(url, { headers: { authorization: `Bearer ${key}` } });
      expect(ok.status).toBe(200);
      await ok.arrayBuffer();
    }
    expect((await guarded.request('/hired_employees', { method: 'HEAD' })).status).toBe(401);
    expect((await guarded.request('/health')).status).toBe(200);
    expect((await guarded.request('/openapi.json')).status).toBe(200);
  });
});

describe('OpenAPI', () => {
  test('documents the table routes with examples of rows and of the Link header', async () => {
    const doc = (await (await get('/openapi.json')).json()) as { paths: Record<string, Record<string, any>>; components: unknown };
    for (const t of ['departments', 'jobs', 'hired_employees']) {
      expect(doc.paths[`/${t}`]?.get).toBeDefined();
      expect(doc.paths[`/${t}/{id}`]?.get).toBeDefined();
    }
    const list = doc.paths['/hired_employees']!.get;
    expect(list.parameters.map((p: { name: string }) => p.name).sort()).toEqual(
      ['after', 'department_id', 'format', 'from', 'job_id', 'limit', 'to'],
    );
    expect(list.responses['200'].headers.Link.schema.example).toMatch(/rel="next"$/);
    expect(list.responses['200'].content['text/csv']).toBeDefined();
    expect(list.security).toEqual([{ bearer: [] }]);
    expect(JSON.stringify(doc.components)).toContain('Harold Vogt');
  });
});

describe('a client that goes away mid-export', () => {
  const BIG = EMBEDDED ? 60_000 : 150_000;

  /** Waits for every pool connection to be idle again and the server's COPY to be gone; the pool's size then. */
  const settled = async (): Promise<number> => {
    for (let i = 0; i < 100 && (s.pool.totalCount !== s.pool.idleCount || s.pool.waitingCount > 0); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(s.pool.waitingCount).toBe(0);
    expect(s.pool.totalCount - s.pool.idleCount).toBe(0);
    const total = s.pool.totalCount;
    if (!EMBEDDED) {
      // The server backend ended its COPY too.
      let running = 1;
      for (let i = 0; i < 100 && running > 0; i++) {
        running = (await s.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY (SELECT%' AND state <> 'idle'`,
        )).rows[0].n;
        if (running > 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(running).toBe(0);
    }
    return total;
  };

  beforeAll(async () => {
    await s.pool.query(
      `INSERT INTO hired_employees SELECT i, 'Bulk ' || i, timestamptz '2022-01-01Z' + i * interval '1 minute', 1 + i % 12, 1 + i % 183
         FROM generate_series(100001, 100000 + $1::int) i`,
      [BIG],
    );
  });

  test('a reader that cancels after the first chunk ends the COPY and drops its connection', async () => {
    await s.pool.query('SELECT 1'); // at least one idle connection to count
    const before = s.pool.totalCount;
    const res = await get('/hired_employees?format=csv');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value!).startsWith('id,name,datetime,department_id,job_id\n')).toBe(true);
    expect(s.pool.totalCount - s.pool.idleCount).toBe(1); // the export holds one
    await reader.cancel();
    expect(await settled()).toBe(before - 1);
    // The pool still serves.
    expect((await get('/departments/1')).status).toBe(200);
  });

  test('an HTTP client that disconnects mid-stream releases the connection', async () => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const got = await new Promise<number>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/hired_employees?format=csv' }, (res) => {
          res.once('data', (chunk: Buffer) => {
            req.destroy();
            resolve(chunk.length);
          });
        });
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
      });
      expect(got).toBeGreaterThan(0);
      await settled();
      expect((await get('/jobs/1')).status).toBe(200);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('the whole export arrives when the client reads it all', async () => {
    const text = await (await get('/hired_employees?format=csv&after=100000')).text();
    expect(text.split('\n').length - 2).toBe(BIG);
    await settled();
  });
});

describe('hr rows', () => {
  let server: ReturnType<typeof serve>;
  let url: string;
  beforeAll(async () => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  const hr = async (...args: string[]) => {
    const p = spawn(process.execPath, ['cli/hr.mjs', ...args, '--url', url], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(p, 'exit')) as [number];
    return { code, stdout, stderr };
  };

  test('--csv streams the filtered export; by default one page as an aligned table', async () => {
    const csv = await hr('rows', 'hired_employees', '--department', '2', '--from', '2021-01-01', '--to', '2021-07-01', '--csv');
    expect(csv.code).toBe(0);
    expect(csv.stdout).toBe(await (await get('/hired_employees?format=csv&department_id=2&from=2021-01-01&to=2021-07-01')).text());

    const page = await hr('rows', 'departments', '--limit', '3');
    expect(page.code).toBe(0);
    expect(page.stdout.split('\n').slice(0, 5)).toEqual([
      'id  department',
      '--  ------------------------',
      ' 1  Product Management',
      ' 2  Sales',
      ' 3  Research and Development',
    ]);
    expect(page.stderr).toMatch(/--after 3/);

    const bad = await hr('rows', 'hired_employees', '--department', 'x');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/department_id/);
  });
});
