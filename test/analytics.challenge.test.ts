import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { TABLE_NAMES } from '../core/tables.js';
import { startWarehouseWorker } from '../warehouse/processor.js';
import { CHALLENGE_ABOVE_MEAN_2021, ingestChallenge } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';


let s: TestServices;
let app: ReturnType<typeof createApp>;
let stopWorker: () => Promise<void>;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  app = createApp(s);
  stopWorker = await startWarehouseWorker(s);
});
afterAll(async () => {
  await stopWorker();
  await s.cleanup();
});

test('before the first refresh the analytics answer 503 saying how to build the warehouse', async () => {
  const res = await app.request('/analytics/hires-by-quarter');
  expect(res.status).toBe(503);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe('warehouse_not_ready');
  expect(body.error.message).toMatch(/POST \/warehouse\/refresh/);
  const status = await app.request('/warehouse');
  expect(await status.json()).toMatchObject({ status: 'not_built', refreshedAt: null });
});

test('a warehouse built from empty tables answers empty lists', async () => {
  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBe(200);
  const res = await app.request('/analytics/hires-by-quarter');
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual([]);
  expect(await (await app.request('/analytics/departments-above-mean')).json()).toEqual([]);
});

test('the challenge data gives the expected metrics', async () => {
  await ingestChallenge(app, TABLE_NAMES);
  const refresh = await app.request('/warehouse/refresh?wait=true', { method: 'POST' });
  expect(refresh.status).toBe(200);

  const status = (await (await app.request('/warehouse')).json()) as { tables: Record<string, number>; path: string; upToDate: boolean };
  expect(status.tables).toMatchObject({ dim_department: 12, dim_job: 183, fact_hires: 1929 });
  expect(status.path).toMatch(/hr\.duckdb$/);
  expect(status.upToDate).toBe(true);

  const byQuarter = await app.request('/analytics/hires-by-quarter?year=2021');
  expect(byQuarter.status).toBe(200);
  expect(byQuarter.headers.get('x-warehouse-refreshed-at')).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(byQuarter.headers.get('last-modified')).toMatch(/GMT$/);
  const rows = (await byQuarter.json()) as { department: string; job: string; q1: number }[];
  expect(rows).toHaveLength(933);
  const keys = rows.map((r) => [r.department.toLowerCase(), r.department, r.job.toLowerCase(), r.job]);
  const sorted = [...keys].sort((a, b) => {
    for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
    return 0;
  });
  expect(keys).toEqual(sorted);

  const above = await app.request('/analytics/departments-above-mean');
  expect(((await above.json()) as { department: string; hired: number }[]).map((r) => [r.department, r.hired])).toEqual(CHALLENGE_ABOVE_MEAN_2021);
});

test('CSV by ?format=csv or Accept: text/csv, with a header line', async () => {
  const a = await app.request('/analytics/departments-above-mean?year=2021&format=csv');
  expect(a.headers.get('content-type')).toMatch(/^text\/csv/);
  const lines = (await a.text()).trimEnd().split('\r\n');
  expect(lines[0]).toBe('id,department,hired');
  expect(lines[1]).toMatch(/^\d+,Support,216$/);
  expect(lines).toHaveLength(8);

  const b = await app.request('/analytics/hires-by-quarter', { headers: { accept: 'text/csv' } });
  const text = await b.text();
  expect(text.split('\r\n')[0]).toBe('department,job,q1,q2,q3,q4');
  expect(text.trimEnd().split('\r\n')).toHaveLength(934);
});

test('year must be an integer in 1900..2100', async () => {
  for (const bad of ['abc', '2021.5', '1899', '2101', '', '-5']) {
    const res = await app.request(`/analytics/hires-by-quarter?year=${bad}`);
    expect(res.status, bad).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bad_request');
  }
  const empty = await app.request('/analytics/departments-above-mean?year=1900');
  expect(empty.status).toBe(200);
  expect(await empty.json()).toEqual([]);
  expect((await app.request('/analytics/hires-by-quarter?format=xml')).status).toBe(400);
});

test('openapi documents the analytics query parameters', async () => {
  const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, { get?: { parameters?: { name: string }[] } }> };
  expect(doc.paths['/analytics/hires-by-quarter']?.get?.parameters?.map((p) => p.name)).toEqual(['year', 'format']);
  expect(doc.paths['/warehouse']).toBeDefined();
});
