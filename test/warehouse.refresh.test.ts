import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { requestWarehouseRefresh } from '../warehouse/request.js';
import { layoutOf } from '../warehouse/layout.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { startWarehouseWorker } from '../warehouse/processor.js';
import { duckHires, pgHires, seed } from './support/warehouse.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let stopWorker: () => Promise<void>;
let reader: WarehouseReader;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '150' });
  reader = new WarehouseReader(layoutOf(s.config.dirs.warehouse).duckdb);
  await seed(s.pool, 20);
  stopWorker = await startWarehouseWorker(s);
});
afterAll(async () => {
  reader.close();
  await stopWorker();
  await s.cleanup();
});

async function idle(): Promise<void> {
  for (;;) {
    const c = await s.queues.warehouse.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    if (Object.values(c).every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('POST /warehouse/refresh?wait=true answers when the refresh is done; without wait, 202 with the job id', async () => {
  const app = createApp(s);
  const res = await app.request('/warehouse/refresh?wait=true', { method: 'POST' });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { jobId: string; status: string; result: { build: string } };
  expect(body).toMatchObject({ status: 'completed', result: { build: 'full' } });
  const queued = await app.request('/warehouse/refresh', { method: 'POST' });
  expect(queued.status).toBe(202);
  expect(await queued.json()).toMatchObject({ jobId: expect.any(String) });
  await idle();
});

test('100 simultaneous requests join one waiting job', async () => {
  await s.pool.query(`INSERT INTO hired_employees VALUES (4999, 'Simultaneous', '2021-01-01T00:00:00Z', 1, 1)`);
  const ids = await Promise.all(Array.from({ length: 100 }, () => requestWarehouseRefresh(s, 'simultaneous')));
  expect(new Set(ids).size).toBe(1);
  await idle();
  expect((await duckHires(reader)).map((h) => h.id)).toContain(4999);
});

test('a burst of 100 requests, with changes during the refreshes, causes a few non-overlapping refreshes and misses nothing', async () => {
  const before = (await s.queues.warehouse.getCompleted()).length;
  for (let i = 0; i < 100; i++) {
    await s.pool.query(`INSERT INTO hired_employees VALUES ($1, 'Burst', '2021-01-01T00:00:00Z', 1, 1)`, [5000 + i]);
    await requestWarehouseRefresh(s, 'test burst');
    // Spread over ~1 s so that some requests land while a refresh is running.
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 100));
  }
  await idle();
  const jobs = (await s.queues.warehouse.getCompleted()).slice(0, 100);
  const ran = jobs.length - before;
  expect(ran).toBeGreaterThanOrEqual(1);
  expect(ran).toBeLessThanOrEqual(12);
  expect(await s.queues.warehouse.getFailedCount()).toBe(0);
  // Never two at once: the runs' [start, end] intervals do not overlap.
  const spans = jobs.map((j) => [j.processedOn!, j.finishedOn!] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
  // Nothing missed: the last change is in the warehouse.
  expect((await duckHires(reader)).map((h) => h.id)).toEqual((await pgHires(s.pool)).map((h) => h.id));
});

test('a request that arrives while a refresh is running gets a refresh of its own', async () => {
  await s.pool.query(`INSERT INTO hired_employees VALUES (7000, 'During', '2021-01-01T00:00:00Z', 1, 1)`);
  const first = await requestWarehouseRefresh(s, 'first', { immediate: true });
  for (;;) {
    const job = await s.queues.warehouse.getJob(first);
    if (job && (await job.getState()) !== 'waiting' && (await job.getState()) !== 'delayed') break;
    await new Promise((r) => setTimeout(r, 5));
  }
  await s.pool.query(`INSERT INTO hired_employees VALUES (7001, 'While running', '2021-01-01T00:00:00Z', 1, 1)`);
  await requestWarehouseRefresh(s, 'second');
  await idle();
  expect((await duckHires(reader)).map((h) => h.id)).toContain(7001);
});

test('?wait=1 answers when done, ?wait=0 answers 202 at once, ?wait=yes is a 400 naming wait', async () => {
  const app = createApp(s);
  let res = await app.request('/warehouse/refresh?wait=1', { method: 'POST' });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ status: 'completed', result: expect.any(Object) });
  res = await app.request('/warehouse/refresh?wait=0', { method: 'POST' });
  expect(res.status).toBe(202);
  expect(await res.json()).toEqual({ jobId: expect.any(String) });
  await idle();
  res = await app.request('/warehouse/refresh?wait=yes', { method: 'POST' });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^wait: /);
});
