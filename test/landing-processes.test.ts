import type { ChildProcess } from 'node:child_process';
import { appendFile, copyFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { generate } from '../loads/sample.js';
import { createTestServices, type TestServices } from './support/services.js';
import { startWorkerProcess as startWorker } from './support/server-process.js';

/**
 * The landing inbox with real worker processes (`main.ts --worker`) sharing PostgreSQL, Redis and
 * DATA_DIR; this process only asks for scans through the API (no workers of its own). Worker
 * processes need the servers, so this suite is not in the embedded project.
 */
const CHALLENGE = path.resolve(import.meta.dirname, 'fixtures/challenge');
const SERVERS = { embedded: false };
const SETTINGS = {
  LANDING_SCAN_CRON: '',
  LANDING_SETTLE_MS: '1500',
  LOAD_CONCURRENCY: '2',
  LOAD_CHUNK_ROWS: '2000',
  LOAD_LOCK_MS: '1500',
  LOAD_STALLED_CHECK_MS: '500',
  LOAD_BACKOFF_MS: '200',
};
const children: ChildProcess[] = [];
const suites: TestServices[] = [];

function startWorkerProcess(t: TestServices): ChildProcess {
  const child = startWorker(t, SETTINGS);
  children.push(child);
  return child;
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(suites.map((s) => s.cleanup()));
});

async function setup() {
  const t = await createTestServices(SETTINGS, SERVERS);
  suites.push(t);
  const app = createApp(t);
  const dir = (sub: string) => path.join(t.config.dirs.landing, sub);
  await mkdir(dir('inbox'), { recursive: true });
  const files = (sub: string) => readdir(dir(sub)).catch(() => [] as string[]);
  /** A burst of scans at once, without waiting: the workers run them side by side. */
  const scanBurst = async (n: number) => {
    const codes = await Promise.all(Array.from({ length: n }, async () => (await app.request('/landing/scan', { method: 'POST' })).status));
    expect(codes.every((c) => c === 202)).toBe(true);
  };
  const count = async (table: string) => (await t.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
  const inboxLoads = async () =>
    (await t.pool.query<{ id: string; source_name: string; status: string; attempts: number; rows_read: number }>(
      `SELECT id, source_name, status, attempts, rows_read FROM loads WHERE source = 'inbox' ORDER BY source_name`,
    )).rows;
  return { t, app, dir, files, scanBurst, count, inboxLoads };
}

test('two workers scanning together take each file exactly once; the challenge files, one written in two halves, end in done/', async () => {
  const { app, dir, files, scanBurst, count, inboxLoads } = await setup();
  startWorkerProcess(suites[0]!);
  startWorkerProcess(suites[0]!);

  await copyFile(path.join(CHALLENGE, 'departments.csv'), path.join(dir('inbox'), 'departments.csv'));
  await copyFile(path.join(CHALLENGE, 'jobs.csv'), path.join(dir('inbox'), 'jobs.csv'));
  const hires = await readFile(path.join(CHALLENGE, 'hired_employees.csv'));
  const half = hires.indexOf(0x0a, hires.length >> 1) + 1;
  const hiresFile = path.join(dir('inbox'), 'hired_employees_2021.csv');
  await writeFile(hiresFile, hires.subarray(0, half));
  // More files, so that the scans running side by side have something to race for.
  for (let n = 1; n <= 12; n++) await writeFile(path.join(dir('inbox'), `departments_extra_${n}.csv`), `${100 + n},Extra ${n}\n`);

  const first = await app.request('/landing/scan?wait=true', { method: 'POST' });
  expect(first.status).toBe(200);
  expect(((await first.json()) as { started: string[] }).started).toEqual([]);
  await appendFile(hiresFile, hires.subarray(half));

  const deadline = Date.now() + 90_000;
  while ((await files('inbox')).length > 0 || (await files('processing')).length > 0) {
    expect(Date.now(), 'the inbox was not emptied in time').toBeLessThan(deadline);
    await scanBurst(4);
    await sleep(400);
  }

  expect([await count('departments'), await count('jobs'), await count('hired_employees')]).toEqual([12 + 12, 183, 1929]);
  const loads = await inboxLoads();
  // Each file exactly once, though scans ran at once on both workers.
  expect(loads.map((l) => l.source_name)).toEqual(
    ['departments.csv', ...Array.from({ length: 12 }, (_, i) => `departments_extra_${i + 1}.csv`), 'hired_employees_2021.csv', 'jobs.csv'].sort(),
  );
  expect(loads.every((l) => l.status === 'succeeded')).toBe(true);
  expect(loads.find((l) => l.source_name === 'hired_employees_2021.csv')!.rows_read).toBe(1999);

  const day = new Date().toISOString().slice(0, 10);
  const done = await files(`done/${day}`);
  expect(done).toEqual(expect.arrayContaining(['departments.csv', 'jobs.csv', 'hired_employees_2021.csv', 'hired_employees_2021.csv.rejects.ndjson']));
  expect(done).toHaveLength(16);
  const rejects = (await readFile(path.join(dir(`done/${day}`), 'hired_employees_2021.csv.rejects.ndjson'), 'utf8')).trimEnd().split('\n');
  expect(rejects).toHaveLength(70);
}, 150_000);

test('a worker killed mid-file: another resumes the load and nothing is left in processing/', async () => {
  const { t, dir, files, scanBurst, inboxLoads } = await setup();
  const ROWS = 100_000;
  await generate({ rows: ROWS, out: dir('gen'), badShare: 0.01, seed: 11 });
  // Complete files appear by a rename, the convention the inbox honours.
  for (const f of ['departments.csv', 'jobs.csv', 'hired_employees.csv']) await rename(path.join(dir('gen'), f), path.join(dir('inbox'), f));

  const first = startWorkerProcess(t);
  const deadline = Date.now() + 120_000;
  let hires: Awaited<ReturnType<typeof inboxLoads>>[number] | undefined;
  for (;;) {
    expect(Date.now(), 'the hires load did not get going').toBeLessThan(deadline);
    hires = (await inboxLoads()).find((l) => l.source_name === 'hired_employees.csv');
    if (hires?.status === 'running' && hires.rows_read >= 10_000) break;
    expect(hires?.status).not.toBe('succeeded');
    if (!hires) await scanBurst(1);
    await sleep(hires ? 10 : 500);
  }
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  expect((await files('processing')).some((f) => f.endsWith('.hired_employees.csv'))).toBe(true);

  startWorkerProcess(t);
  while ((await files('processing')).length > 0) {
    expect(Date.now(), 'a file stayed in processing/').toBeLessThan(deadline);
    await scanBurst(1);
    await sleep(500);
  }
  const loads = await inboxLoads();
  expect(loads.map((l) => [l.source_name, l.status])).toEqual([
    ['departments.csv', 'succeeded'],
    ['hired_employees.csv', 'succeeded'],
    ['jobs.csv', 'succeeded'],
  ]);
  const resumed = loads.find((l) => l.source_name === 'hired_employees.csv')!;
  expect(resumed.rows_read).toBe(ROWS);
  expect(resumed.attempts).toBeGreaterThanOrEqual(2);
  const day = new Date().toISOString().slice(0, 10);
  expect(await files(`done/${day}`)).toEqual(expect.arrayContaining(['hired_employees.csv', 'hired_employees.csv.rejects.ndjson']));
  expect(await files('inbox')).toEqual([]);
}, 180_000);
