import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHALLENGE_ABOVE_MEAN_2021, CHALLENGE_DIR } from './support/http.js';
import { startTestBucket, type TestBucket } from './support/s3.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

/**
 * Several machines, end to end: the API (`main.ts --api`) and a worker (`main.ts --worker`) as
 * separate processes with separate DATA_DIRs, sharing only PostgreSQL, Redis and a bucket (s3rver
 * started here). Presigned uploads and loads of the challenge files, a refresh, the challenge
 * metrics, a backup and a restore, all through the API's HTTP port.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const KEY = 'e2e-machines-key-0123456789abcdef';
let bucket: TestBucket;
let s: TestServices;
let api: ServerProcess;
let worker: ChildProcess;
let workerDir: string;
const workerLog: string[] = [];

beforeAll(async () => {
  bucket = await startTestBucket();
  s = await createTestServices({}, { embedded: false });
  workerDir = await mkdtemp(path.join(tmpdir(), 'hrtest-worker-'));
  const env = { ...bucket.env('e2e'), API_KEY: KEY, WAREHOUSE_REFRESH_DEBOUNCE_MS: '200' };
  api = await startServerProcess(s, env, ['--api']);
  worker = spawn(process.execPath, ['--import', 'tsx', 'main.ts', '--worker'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: s.config.DATABASE_URL,
      REDIS_URL: s.config.REDIS_URL,
      QUEUE_PREFIX: s.config.QUEUE_PREFIX,
      DATA_DIR: workerDir,
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [worker.stdout!, worker.stderr!]) {
    stream.setEncoding('utf8').on('data', (d: string) => {
      workerLog.push(...d.split('\n').filter(Boolean));
      if (workerLog.length > 50) workerLog.splice(0, workerLog.length - 50);
    });
  }
}, 120_000);
afterAll(async () => {
  await api?.stop();
  if (worker && worker.exitCode === null && worker.signalCode === null) {
    worker.kill('SIGTERM');
    await new Promise((r) => worker.once('exit', r));
  }
  await s?.cleanup();
  if (workerDir) await rm(workerDir, { recursive: true, force: true });
  await bucket?.stop();
});

const auth = { authorization: `Bearer ${KEY}` };
const call = (method: string, url: string, body?: unknown) =>
  fetch(new URL(url, api.base), {
    method,
    headers: { ...auth, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
const why = () => `api:\n${api.logTail()}\nworker:\n${workerLog.join('\n')}`;

/** Lists every file below `dir` (relative), for the "nothing here" checks. */
async function filesIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out;
}

describe.skipIf(EMBEDDED)('API and worker on two machines, sharing PostgreSQL, Redis and a bucket', () => {
  test('presigned uploads and loads, a refresh, the challenge metrics, a backup and a restore', async () => {
    // 1. Each challenge file: POST /uploads, PUT straight to the bucket, POST /uploads/{id}/load.
    const loaded: Record<string, { rowsRead: number; status: string }> = {};
    for (const table of ['departments', 'jobs', 'hired_employees']) {
      const body = new Uint8Array(await readFile(path.join(CHALLENGE_DIR, `${table}.csv`)));
      const created = await call('POST', '/uploads', { table, bytes: body.length });
      expect(created.status, why()).toBe(201);
      const upload = (await created.json()) as { uploadId: string; url: string };
      expect(upload.url).toContain(bucket.endpoint); // the bucket's URL: the bytes do not pass through the API
      expect((await fetch(upload.url, { method: 'PUT', body })).status).toBe(200);
      const res = await call('POST', `/uploads/${upload.uploadId}/load?wait=true`);
      expect(res.status, why()).toBe(200);
      loaded[table] = (await res.json()) as { rowsRead: number; status: string };
    }
    expect(loaded.departments).toMatchObject({ status: 'succeeded', rowsRead: 12 });
    expect(loaded.jobs).toMatchObject({ status: 'succeeded', rowsRead: 183 });
    expect(loaded.hired_employees).toMatchObject({ status: 'succeeded', rowsRead: 1999 });

    // 2. A refresh by the worker; the API fetches the published DuckDB file from the bucket.
    const refresh = await call('POST', '/warehouse/refresh?wait=true');
    expect(refresh.status, why()).toBe(200);
    const { version } = ((await refresh.json()) as { result: { version: number } }).result;

    // 3. The challenge metrics, once the API answers from that version.
    let above: Response | undefined;
    for (let i = 0; i < 300; i++) {
      above = await call('GET', '/analytics/departments-above-mean');
      if (above.status === 200 && Number(above.headers.get('x-warehouse-version')) >= version) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(above!.status, why()).toBe(200);
    expect(((await above!.json()) as { department: string; hired: number }[]).map((r) => [r.department, r.hired])).toEqual(CHALLENGE_ABOVE_MEAN_2021);
    const byQuarter = await call('GET', '/analytics/hires-by-quarter?year=2021');
    expect((await byQuarter.json()) as unknown[]).toHaveLength(933);
    expect(await (await call('GET', '/warehouse')).json()).toMatchObject({ status: 'ready', tables: { dim_department: 12, dim_job: 183, fact_hires: 1929 } });

    // 4. A backup (written by the worker to the bucket), a change, and a restore.
    const backup = await call('POST', '/backups?wait=true');
    expect(backup.status, why()).toBe(200);
    const entries = (await backup.json()) as { id: string; table: string; file: string }[];
    expect(entries.find((e) => e.table === 'hired_employees')).toMatchObject({ rows: 1929 });
    expect((await call('GET', `/backups/${entries[0]!.id}/verify`)).status).toBe(200);
    const sum = async () =>
      (await s.pool.query<{ sum: string }>(`SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM hired_employees t`)).rows[0]!.sum;
    const before = await sum();
    const gone = (await s.pool.query('DELETE FROM hired_employees WHERE id <= 100')).rowCount;
    expect(gone).toBeGreaterThan(0);
    const restore = await call('POST', '/backups/hired_employees/restore', { backup: entries[0]!.id });
    expect(restore.status, why()).toBe(200);
    expect(await restore.json()).toMatchObject({ inserted: gone, deleted: 0 });
    expect(await sum()).toBe(before);

    // Nothing of it is kept in either DATA_DIR but the warehouse's local scratch and copies.
    for (const dir of [s.config.DATA_DIR, workerDir]) {
      const kept = (await filesIn(dir)).filter((f) => !f.startsWith('warehouse'));
      expect(kept, dir).toEqual([]);
    }
  }, 300_000);
});
