import { openAsBlob } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { CHALLENGE_ABOVE_MEAN_2021, CHALLENGE_DIR } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

// Loads write with session_replication_role = replica; the warehouse's change capture must still
// see every row they write, or the analytics would silently miss loaded data.
let s: TestServices;
let workers: Workers;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  workers = await startWorkers(s);
});
afterAll(async () => {
  await workers.close();
  await s.cleanup();
});

test('files loaded through /loads reach the warehouse and give the challenge metrics', async () => {
  const app = createApp(s);
  const form = new FormData();
  for (const t of ['departments', 'jobs', 'hired_employees']) {
    form.append(t, await openAsBlob(path.join(CHALLENGE_DIR, `${t}.csv`)), `${t}.csv`);
  }
  const res = await app.request('/loads?wait=true', { method: 'POST', body: form });
  expect(res.status).toBe(200);
  const { loads } = (await res.json()) as { loads: { table: string; status: string; inserted: number }[] };
  expect(loads.map((l) => [l.table, l.status, l.inserted])).toEqual([
    ['departments', 'succeeded', 12],
    ['jobs', 'succeeded', 183],
    ['hired_employees', 'succeeded', 1929],
  ]);

  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBe(200);
  const status = (await (await app.request('/warehouse')).json()) as { tables: Record<string, number> };
  expect(status.tables).toMatchObject({ dim_department: 12, dim_job: 183, fact_hires: 1929 });
  const above = (await (await app.request('/analytics/departments-above-mean?year=2021')).json()) as { department: string; hired: number }[];
  expect(above.map((r) => [r.department, r.hired])).toEqual(CHALLENGE_ABOVE_MEAN_2021);
  const hbq = (await (await app.request('/analytics/hires-by-quarter?year=2021')).json()) as unknown[];
  expect(hbq).toHaveLength(933);
});
