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
}, 60_000);
