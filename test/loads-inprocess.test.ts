import { mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { generate } from '../loads/sample.js';
import type { Services } from '../jobs/index.js';
import { createQueues } from '../jobs/index.js';
import { startWorkers } from '../worker/index.js';
import { createTestServices } from './support/services.js';

/**
 * In-process jobs live in the process's memory: a restart loses them. The loads a stopped
 * process left unfinished must be queued again when the next one starts, and go on from their
 * checkpoints, instead of being failed by the sweep.
 */
type Load = { id: string; status: string; rowsRead: number; attempts: number };

test('a load left unfinished by a stopped process resumes when the next one starts', async () => {
  const t = await createTestServices({ LOAD_CHUNK_ROWS: '2000' }, { embedded: true });
  const restarted: Services = { ...t, queues: createQueues(t.config, t.log) };
  try {
    await generate({ rows: 60_000, out: path.join(t.config.dirs.landing, 'gen'), seed: 5 });
    const app = createApp(t);
    const post = async (table: string, wait: boolean): Promise<Load> =>
      (await app.request(`/loads${wait ? '?wait=true' : ''}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ table, path: `gen/${table}.csv` }),
      })).json();
    const get = async (id: string): Promise<Load> => (await app.request(`/loads/${id}`)).json();

    // The first process: stops (SIGTERM-like) while the hires file is half loaded.
    const first = await startWorkers(t);
    expect(await post('departments', true)).toMatchObject({ status: 'succeeded' });
    expect(await post('jobs', true)).toMatchObject({ status: 'succeeded' });
    const queued = await post('hired_employees', false);
    let seen = queued;
    while (!(seen.status === 'running' && seen.rowsRead >= 4_000)) {
      expect(seen.status).not.toBe('succeeded');
      await sleep(5);
      seen = await get(queued.id);
    }
    await first.close();
    await t.queues.close(); // the process is gone, and its queued jobs with it
    const stopped = await get(queued.id);
    expect(stopped).toMatchObject({ status: 'queued', attempts: 1 });
    expect(stopped.rowsRead).toBeLessThan(60_000);

    // The next process, with empty queues, finds the load in PostgreSQL and finishes it.
    const next = await startWorkers(restarted);
    try {
      let done = stopped;
      const deadline = Date.now() + 30_000;
      while (done.status !== 'succeeded' && done.status !== 'failed') {
        expect(Date.now()).toBeLessThan(deadline);
        await sleep(50);
        done = await get(queued.id);
      }
      expect(done).toMatchObject({ status: 'succeeded', rowsRead: 60_000, attempts: 2, error: null });
      const { rows } = await t.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM hired_employees');
      expect(rows[0]!.n).toBe(60_000);
    } finally {
      await next.close();
    }
  } finally {
    await restarted.queues.close();
    await t.cleanup();
  }
}, 180_000);

test('an inbox file in processing/ when the process stopped resumes at the next start and ends in done/', async () => {
  const t = await createTestServices({ LOAD_CHUNK_ROWS: '2000', LANDING_SCAN_CRON: '', LANDING_SETTLE_MS: '200' }, { embedded: true });
  const restarted: Services = { ...t, queues: createQueues(t.config, t.log) };
  try {
    const landing = t.config.dirs.landing;
    await generate({ rows: 60_000, out: path.join(landing, 'gen'), seed: 9 });
    await mkdir(path.join(landing, 'inbox'), { recursive: true });
    for (const f of ['departments.csv', 'jobs.csv', 'hired_employees.csv']) await rename(path.join(landing, 'gen', f), path.join(landing, 'inbox', f));
    const app = createApp(t);
    const hires = async () =>
      (await t.pool.query<{ id: string; status: string; rows_read: number; attempts: number }>(
        `SELECT id, status, rows_read, attempts FROM loads WHERE source = 'inbox' AND source_name = 'hired_employees.csv'`,
      )).rows[0];

    const first = await startWorkers(t);
    let seen = await hires();
    while (!(seen?.status === 'running' && seen.rows_read >= 4_000)) {
      expect(seen?.status).not.toBe('succeeded');
      if (!seen) await app.request('/landing/scan', { method: 'POST' });
      await sleep(seen ? 5 : 300);
      seen = await hires();
    }
    await first.close();
    await t.queues.close(); // the process is gone, and its queued jobs with it
    expect((await readdir(path.join(landing, 'processing'))).some((f) => f.endsWith('.hired_employees.csv'))).toBe(true);

    const next = await startWorkers(restarted);
    try {
      const deadline = Date.now() + 60_000;
      while ((await readdir(path.join(landing, 'processing'))).length > 0) {
        expect(Date.now(), 'a file stayed in processing/').toBeLessThan(deadline);
        await sleep(100);
      }
      expect(await hires()).toMatchObject({ status: 'succeeded', rows_read: 60_000, attempts: 2 });
      const day = new Date().toISOString().slice(0, 10);
      expect(await readdir(path.join(landing, 'done', day))).toEqual(expect.arrayContaining(['departments.csv', 'jobs.csv', 'hired_employees.csv']));
    } finally {
      await next.close();
    }
  } finally {
    await restarted.queues.close();
    await t.cleanup();
  }
}, 150_000);
