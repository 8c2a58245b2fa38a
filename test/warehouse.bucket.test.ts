import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { loadConfig, type Config } from '../core/config.js';
import { TABLE_NAMES } from '../core/tables.js';
import { closeStorageFor, storageFor, type Storage } from '../storage/index.js';
import { startWarehouseWorker } from '../warehouse/processor.js';
import { CHALLENGE_ABOVE_MEAN_2021, ingestChallenge, postJson } from './support/http.js';
import { startTestBucket, type TestBucket } from './support/s3.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

/**
 * The warehouse with STORAGE_URL on a bucket (s3rver on 127.0.0.1): the refresh uploads the
 * Parquet files, their manifest and the published DuckDB file; an API whose DATA_DIR holds
 * nothing (another machine) answers the analytics from the version it fetched, and follows a newer
 * one; a worker with an empty DATA_DIR fetches the Parquet files instead of exporting again.
 */

let bucket: TestBucket;
let s: TestServices;
let store: Storage;
let stopWorker: () => Promise<void>;
let app: ReturnType<typeof createApp>;
const others: { dir: string; config: Config }[] = [];

/** The same database, queues and bucket, another DATA_DIR: as on another machine. */
async function elsewhere(): Promise<{ config: Config; app: ReturnType<typeof createApp>; services: TestServices }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'hrtest-other-'));
  const config = loadConfig({
    DATABASE_URL: s.config.DATABASE_URL!,
    REDIS_URL: s.config.REDIS_URL!,
    QUEUE_PREFIX: s.config.QUEUE_PREFIX,
    LOG_LEVEL: 'silent',
    DATA_DIR: dir,
    ...bucket.env('suite-warehouse'),
  });
  others.push({ dir, config });
  const services = { ...s, config };
  return { config, app: createApp(services), services };
}

beforeAll(async () => {
  bucket = await startTestBucket();
  s = await createTestServices({ ...bucket.env('suite-warehouse'), WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  store = await storageFor(s.config);
  app = createApp(s);
  stopWorker = await startWarehouseWorker(s);
}, 60_000);
afterAll(async () => {
  await stopWorker?.();
  for (const o of others) {
    await closeStorageFor(o.config);
    await rm(o.dir, { recursive: true, force: true });
  }
  if (s) await closeStorageFor(s.config);
  await s?.cleanup();
  await bucket?.stop();
});

async function keys(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

async function refresh(on = app): Promise<{ version: number; exported: { kind: string }[] }> {
  const res = await on.request('/warehouse/refresh?wait=true', { method: 'POST' });
  expect(res.status, await res.clone().text()).toBe(200);
  return ((await res.json()) as { result: { version: number; exported: { kind: string }[] } }).result;
}

/** Asks until the answer comes from version `at least` (the API fetches in the background). */
async function analyticsAt(on: ReturnType<typeof createApp>, url: string, atLeast: number): Promise<Response> {
  for (let i = 0; ; i++) {
    const res = await on.request(url);
    if (res.status === 200 && Number(res.headers.get('x-warehouse-version')) >= atLeast) return res;
    if (i > 600) throw new Error(`no answer from version ${atLeast}: ${res.status} ${await res.text()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(EMBEDDED)('the warehouse in a bucket', () => {
  test('the refresh uploads Parquet, manifest and DuckDB file; an API on another DATA_DIR answers the challenge metrics and follows a newer version', async () => {
    await ingestChallenge(app, TABLE_NAMES);
    const first = await refresh();

    const manifest = JSON.parse(
      Buffer.concat(await (await store.get('warehouse/parquet/manifest.json')).toArray()).toString('utf8'),
    ) as { tables: Record<string, { base: { glob: string; rows: number } | null; deltas: { path: string; rows: number }[] }> };
    const parquet = await keys('warehouse/parquet/');
    // Every file the manifest names (with rows) is in the bucket beside it.
    for (const t of TABLE_NAMES) {
      const { base, deltas } = manifest.tables[t]!;
      if (base && base.rows > 0) {
        const prefix = `warehouse/parquet/${base.glob.split('*')[0]}`;
        expect(parquet.some((k) => k.startsWith(prefix) && k.endsWith('.parquet')), `${t} base: ${prefix} in ${parquet.join(' ')}`).toBe(true);
      }
      for (const d of deltas) if (d.rows > 0) expect(parquet).toContain(`warehouse/parquet/${d.path}`);
    }
    expect(Object.values(manifest.tables).reduce((n, e) => n + (e.base?.rows ?? 0) + e.deltas.reduce((m, d) => m + d.rows, 0), 0)).toBeGreaterThanOrEqual(12 + 183 + 1929);
    // Ingests also ask for refreshes: the newest version is this one, and the bucket keeps two at most.
    const duckdb = await keys('warehouse/duckdb/');
    expect(duckdb.length).toBeLessThanOrEqual(2);
    expect(duckdb.at(-1)).toBe(`warehouse/duckdb/hr-${String(first.version).padStart(10, '0')}.duckdb`);
    const { rows } = await s.pool.query('SELECT max(version)::int AS version FROM warehouse_published');
    expect(rows).toEqual([{ version: first.version }]);

    const api = await elsewhere();
    const above = await analyticsAt(api.app, '/analytics/departments-above-mean', first.version);
    expect(((await above.json()) as { department: string; hired: number }[]).map((r) => [r.department, r.hired])).toEqual(CHALLENGE_ABOVE_MEAN_2021);
    const byQuarter = await analyticsAt(api.app, '/analytics/hires-by-quarter?year=2021', first.version);
    expect((await byQuarter.json()) as unknown[]).toHaveLength(933);
    expect(await (await api.app.request('/warehouse')).json()).toMatchObject({ status: 'ready', tables: { dim_department: 12, fact_hires: 1929 } });

    // A change and a refresh: the API moves to the new version on its own.
    const ins = await postJson(app, '/ingest/hired_employees', [{ id: 99999, name: 'New hire', datetime: '2021-02-01T00:00:00Z', department_id: 1, job_id: 1 }]);
    expect(ins.status).toBe(200);
    const second = await refresh();
    expect(second.version).toBeGreaterThan(first.version);
    const after = await analyticsAt(api.app, '/analytics/hires-by-quarter?year=2021', second.version);
    expect(after.status).toBe(200);
    expect(await (await api.app.request('/warehouse')).json()).toMatchObject({ version: second.version, tables: { fact_hires: 1930 } });
    expect((await keys('warehouse/duckdb/')).length).toBeLessThanOrEqual(2);
  });

  test('a worker on an empty DATA_DIR fetches the Parquet files from the bucket and exports only the change', async () => {
    const worker = await elsewhere();
    await s.pool.query(`UPDATE hired_employees SET name = 'Renamed' WHERE id = 99999`);
    const r = await refresh(worker.app);
    expect(r.exported.map((e) => e.kind)).toEqual(['delta']);
    const api = await elsewhere();
    await analyticsAt(api.app, '/analytics/departments-above-mean', r.version);
    expect(await (await api.app.request('/warehouse')).json()).toMatchObject({ version: r.version, tables: { fact_hires: 1930 } });
  });
});
