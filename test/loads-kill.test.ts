import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { generate } from '../loads/sample.js';
import { startWorkers } from '../worker/index.js';
import { createTestServices, type TestServices } from './support/services.js';
import { startWorkerProcess as startWorker } from './support/server-process.js';

/**
 * A real worker process is SIGKILLed in the middle of a hired_employees file; a second one must
 * finish the load, and the tables, counters and rejects must equal those of a clean run.
 *
 * Worker processes of their own need a queue and a database they share: Redis and the PostgreSQL
 * server. This suite is not in the embedded project (vitest.config.ts), and it asks for the
 * servers itself, so HR_TEST_EMBEDDED=1 set by hand cannot turn it into a run on in-process jobs.
 */
const ROWS = 100_000;
const SERVERS = { embedded: false };
const SETTINGS = { LOAD_CHUNK_ROWS: '2000', LOAD_LOCK_MS: '1500', LOAD_STALLED_CHECK_MS: '500', LOAD_BACKOFF_MS: '200' };

let s: TestServices;
let clean: TestServices;
const children: ChildProcess[] = [];

function startWorkerProcess(t: TestServices): ChildProcess {
  const child = startWorker(t, SETTINGS);
  children.push(child);
  return child;
}

beforeAll(async () => {
  [s, clean] = await Promise.all([createTestServices(SETTINGS, SERVERS), createTestServices(SETTINGS, SERVERS)]);
  // The same seed writes the same files into each landing folder.
  await Promise.all([s, clean].map((t) => generate({ rows: ROWS, out: path.join(t.config.dirs.landing, 'gen'), badShare: 0.02, seed: 7 })));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all([s?.cleanup(), clean?.cleanup()]);
});

type Load = { id: string; status: string; rowsRead: number; attempts: number; [k: string]: unknown };

async function load(t: TestServices, table: string, wait: boolean): Promise<Load> {
  const res = await createApp(t).request(`/loads${wait ? '?wait=true' : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ table, path: `gen/${table}.csv` }),
  });
  expect(res.status).toBe(wait ? 200 : 202);
  return res.json();
}

const get = async (t: TestServices, id: string): Promise<Load> => (await createApp(t).request(`/loads/${id}`)).json();

async function digest(t: TestServices): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of ['departments', 'jobs', 'hired_employees']) {
    const { rows } = await t.pool.query(`SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) AS d FROM ${table} x`);
    out[table] = rows[0].d;
  }
  const { rows } = await t.pool.query(
    `SELECT count(*) || ':' || md5(string_agg(position || raw || errors::text, '|' ORDER BY position)) AS d FROM rejects WHERE source = 'load'`,
  );
  out.rejects = rows[0].d;
  return out;
}

test('a worker killed mid-file: the load resumes on another worker and ends as a clean run', async () => {
  const first = startWorkerProcess(s);
  await load(s, 'departments', true);
  await load(s, 'jobs', true);
  const queued = await load(s, 'hired_employees', false);

  let seen = queued;
  const deadline = Date.now() + 60_000;
  while (!(seen.status === 'running' && seen.rowsRead >= 15_000)) {
    expect(Date.now()).toBeLessThan(deadline);
    expect(seen.status).not.toBe('succeeded');
    await sleep(10);
    seen = await get(s, queued.id);
  }
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  const atKill = await get(s, queued.id);
  expect(atKill.status).toBe('running');
  expect(atKill.rowsRead).toBeLessThan(ROWS);

  startWorkerProcess(s);
  let done = atKill;
  while (done.status === 'running' || done.status === 'queued') {
    expect(Date.now()).toBeLessThan(deadline);
    await sleep(50);
    done = await get(s, queued.id);
  }

  expect(done).toMatchObject({ status: 'succeeded', rowsRead: ROWS, error: null });
  expect(done.attempts).toBeGreaterThanOrEqual(2);

  // The clean run, in-process, on its own database.
  const w = await startWorkers(clean);
  try {
    await load(clean, 'departments', true);
    await load(clean, 'jobs', true);
    const ref = await load(clean, 'hired_employees', true);
    expect(ref.status).toBe('succeeded');
    for (const k of ['rowsRead', 'inserted', 'updated', 'unchanged', 'rejected']) expect(done[k]).toBe(ref[k]);
    expect(await digest(s)).toEqual(await digest(clean));
  } finally {
    await w.close();
  }
}, 120_000);

test('a worker shutting down mid-file hands the load back without spending an attempt', async () => {
  const t = await createTestServices(SETTINGS, SERVERS);
  try {
    await generate({ rows: 60_000, out: path.join(t.config.dirs.landing, 'gen'), seed: 3 });
    let w = await startWorkers(t);
    await load(t, 'departments', true);
    await load(t, 'jobs', true);
    const queued = await load(t, 'hired_employees', false);
    let seen = queued;
    while (!(seen.status === 'running' && seen.rowsRead >= 4_000)) {
      expect(seen.status).not.toBe('succeeded');
      await sleep(5);
      seen = await get(t, queued.id);
    }
    await w.close();
    const paused = await get(t, queued.id);
    expect(paused).toMatchObject({ status: 'queued', attempts: 1 });
    expect(paused.rowsRead).toBeLessThan(60_000);

    w = await startWorkers(t);
    let done = paused;
    while (done.status !== 'succeeded' && done.status !== 'failed') {
      await sleep(50);
      done = await get(t, queued.id);
    }
    await w.close();
    expect(done).toMatchObject({ status: 'succeeded', rowsRead: 60_000, inserted: 60_000, attempts: 2 });
    const { rows } = await t.pool.query('SELECT count(*) AS n FROM hired_employees');
    expect(rows[0].n).toBe(60_000);
  } finally {
    await t.cleanup();
  }
}, 60_000);
