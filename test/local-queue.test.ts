import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError } from 'bullmq';
import { afterEach, describe, expect, test } from 'vitest';
import { loadConfig } from '../core/config.js';
import { AppError } from '../core/errors.js';
import type { LocalJob } from '../jobs/local-job.js';
import { LocalQueue } from '../jobs/local-queue.js';
import { createLogger } from '../core/log.js';
import { createQueues, errorFromFailure, unrecoverable, waitForJob, type JobQueue, type Queues } from '../jobs/index.js';
import { requestWarehouseRefresh } from '../warehouse/request.js';

/**
 * The in-process queue is the queue when REDIS_URL is unset, so these run it for real: the
 * behaviours of BullMQ the service relies on, one by one.
 */
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((q) => q.close()));
});

function queue(): LocalQueue {
  const q = new LocalQueue('test');
  open.push(q);
  return q;
}

const CONFIG = loadConfig({ DATABASE_URL: 'postgres://unused/none' });

function localQueues(): Queues {
  const queues = createQueues(CONFIG, createLogger('silent'));
  open.push(queues);
  return queues;
}

function local(q: JobQueue): LocalQueue {
  if (!(q instanceof LocalQueue)) throw new Error('expected an in-process queue');
  return q;
}

/** A promise with its resolve, to hold a processor until the test lets it go. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('warehouse refresh requests', () => {
  test('coalesce into one waiting job; a request during the run gets the next one; immediate promotes', async () => {
    const queues = localQueues();
    const release = gate();
    const runs: string[] = [];
    local(queues.warehouse).process(
      async (job: LocalJob<{ reason: string }>) => {
        // What warehouse/processor.ts does first.
        await job.removeDeduplicationKey();
        runs.push(job.data.reason);
        await release.promise;
      },
      { concurrency: 1 },
    );

    const ids = await Promise.all(Array.from({ length: 100 }, (_, i) => requestWarehouseRefresh({ config: { ...CONFIG, WAREHOUSE_REFRESH_DEBOUNCE_MS: 200 }, queues }, `burst ${i}`)));
    expect(new Set(ids).size).toBe(1);
    const first = (await queues.warehouse.getJob(ids[0]!))!;
    expect(await first.getState()).toBe('delayed'); // debouncing

    // A user asking joins the same job and makes it run now.
    expect(await requestWarehouseRefresh({ config: { ...CONFIG, WAREHOUSE_REFRESH_DEBOUNCE_MS: 200 }, queues }, 'api', { immediate: true })).toBe(ids[0]);
    await until(async () => (await first.getState()) === 'active');
    expect(runs).toEqual(['burst 0']);

    // Running, it has let go of the deduplication id: the next request is a job of its own.
    const second = await requestWarehouseRefresh({ config: { ...CONFIG, WAREHOUSE_REFRESH_DEBOUNCE_MS: 200 }, queues }, 'while running');
    expect(second).not.toBe(ids[0]);
    expect(await requestWarehouseRefresh({ config: { ...CONFIG, WAREHOUSE_REFRESH_DEBOUNCE_MS: 200 }, queues }, 'joins the second')).toBe(second);

    release.open();
    expect(await waitForJob(queues.warehouse, second, 5_000)).toMatchObject({ state: 'completed', timedOut: false });
    expect(runs).toEqual(['burst 0', 'while running']);
    expect(await queues.warehouse.getCompletedCount()).toBe(2);
  });
});

describe('attempts', () => {
  test('a failing job is retried after its exponential backoff, the failed event seeing the retry coming', async () => {
    const q = queue();
    const starts: number[] = [];
    const seen: string[] = [];
    const worker = q.process(
      async () => {
        starts.push(Date.now());
        if (starts.length < 3) throw new Error(`attempt ${starts.length} broke`);
        return { ok: true, at: new Date(0) };
      },
      { concurrency: 1 },
    );
    worker.on('failed', (job, err) => seen.push(`${job.state}: ${err.message}`));
    const job = await q.add('flaky', {}, { attempts: 3, backoff: { type: 'exponential', delay: 60 } });

    expect(await waitForJob(q, job.id, 5_000)).toMatchObject({ state: 'completed', result: { ok: true, at: '1970-01-01T00:00:00.000Z' } });
    expect(job.attemptsMade).toBe(3);
    expect(seen).toEqual(['delayed: attempt 1 broke', 'delayed: attempt 2 broke']);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(55); // 60 ms
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(115); // 120 ms
  });

  test('the last attempt fails the job for good with its reason; fixed backoff', async () => {
    const q = queue();
    let runs = 0;
    q.process(
      async () => {
        runs += 1;
        throw new Error('still broken');
      },
      { concurrency: 1 },
    );
    const job = await q.add('broken', {}, { attempts: 2, backoff: 20 });
    expect(await waitForJob(q, job.id, 5_000)).toEqual({ state: 'failed', timedOut: false, error: 'still broken' });
    expect(runs).toBe(2);
    expect(job.attemptsMade).toBe(2);
    expect(await q.getFailedCount()).toBe(1);
  });

  test('UnrecoverableError fails at once, and an AppError survives the trip through the failed reason', async () => {
    const q = queue();
    let runs = 0;
    q.process(
      async () => {
        runs += 1;
        throw unrecoverable(new AppError(422, 'bad_backup', 'the file is damaged'));
      },
      { concurrency: 1 },
    );
    const job = await q.add('restore', {}, { attempts: 5, backoff: 10 });
    const outcome = await waitForJob(q, job.id, 5_000);
    expect(outcome.state).toBe('failed');
    expect(runs).toBe(1);
    expect(errorFromFailure(outcome.error)).toMatchObject({ status: 422, code: 'bad_backup', message: 'the file is damaged' });
  });

  test('moveToDelayed then DelayedError runs the job again later without spending an attempt', async () => {
    const q = queue();
    const starts: number[] = [];
    q.process(
      async (job, token) => {
        starts.push(Date.now());
        if (starts.length === 1) {
          await job.moveToDelayed(Date.now() + 80, token);
          throw new DelayedError();
        }
        return job.attemptsMade;
      },
      { concurrency: 1 },
    );
    const job = await q.add('give-back', {}, { attempts: 1 });
    await until(() => starts.length === 1);
    await until(async () => (await job.getState()) === 'delayed');
    expect(job.attemptsMade).toBe(0);
    expect(await waitForJob(q, job.id, 5_000)).toMatchObject({ state: 'completed', result: 0 });
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(75);
  });

  test('a job that is not active cannot be moved to delayed, and only a delayed one can be promoted', async () => {
    const q = queue();
    const job = await q.add('idle', {});
    await expect(job.moveToDelayed(Date.now() + 10, 'no-token')).rejects.toThrow(/not active/);
    await expect(job.promote()).rejects.toThrow(/not delayed/);
  });
});

describe('ids and retention', () => {
  test('an id already in the queue is not added twice', async () => {
    const q = queue();
    let runs = 0;
    q.process(async () => void (runs += 1), { concurrency: 1 });
    const a = await q.add('load', { n: 1 }, { jobId: 'load-1' });
    const b = await q.add('load', { n: 2 }, { jobId: 'load-1' });
    expect(b).toBe(a);
    await waitForJob(q, 'load-1', 5_000);
    expect(await q.add('load', { n: 3 }, { jobId: 'load-1' })).toBe(a); // still kept: still not added
    await sleep(20);
    expect(runs).toBe(1);
    expect(a.data).toEqual({ n: 1 });
  });

  test('removeOnComplete and removeOnFail keep only the newest that many finished jobs', async () => {
    const q = queue();
    let finished = 0;
    q.process(
      async (job: LocalJob<{ n: number }>) => {
        finished += 1;
        if (job.data.n % 2 === 1) throw new Error('odd');
      },
      { concurrency: 1 },
    );
    const jobs: LocalJob[] = [];
    for (let n = 0; n < 20; n++) jobs.push(await q.add('n', { n }, { removeOnComplete: 3, removeOnFail: { count: 2 } }));
    await until(async () => finished === 20 && (await jobs[19]!.getState()) === 'failed');
    expect((await q.getCompleted()).map((j) => j.data)).toEqual([{ n: 18 }, { n: 16 }, { n: 14 }]);
    expect(await q.getFailedCount()).toBe(2);
    const kept = [];
    for (const j of jobs) if (await q.getJob(j.id)) kept.push(j.data);
    expect(kept).toEqual([{ n: 14 }, { n: 16 }, { n: 17 }, { n: 18 }, { n: 19 }]);
    expect(await jobs[0]!.getState()).toBe('unknown'); // gone, as BullMQ says of a removed job
  });
});

describe('flows', () => {
  test('the parent runs after its children, also when one of them failed', async () => {
    const queues = localQueues();
    const order: string[] = [];
    local(queues.loads).process(
      async (job: LocalJob<{ id: string; ms: number; fail?: boolean }>) => {
        order.push(`start ${job.data.id}`);
        await sleep(job.data.ms);
        order.push(`end ${job.data.id}`);
        if (job.data.fail) throw new Error(`${job.data.id} failed`);
      },
      { concurrency: 4 },
    );
    await queues.addFlow('loads', {
      name: 'load',
      data: { id: 'hires', ms: 0 },
      opts: { jobId: 'hires' },
      children: [
        { name: 'load', data: { id: 'departments', ms: 80 }, opts: { jobId: 'departments' } },
        { name: 'load', data: { id: 'jobs', ms: 40, fail: true }, opts: { jobId: 'jobs', attempts: 1 } },
      ],
    });
    expect(await (await queues.loads.getJob('hires'))!.getState()).toBe('waiting-children');
    expect(await waitForJob(queues.loads, 'hires', 5_000)).toMatchObject({ state: 'completed' });
    expect(order.indexOf('start hires')).toBeGreaterThan(order.indexOf('end departments'));
    expect(order.indexOf('start hires')).toBeGreaterThan(order.indexOf('end jobs'));
    expect(await (await queues.loads.getJob('jobs'))!.getState()).toBe('failed');
  });

  test('a child that is retried keeps the parent waiting until its last attempt', async () => {
    const q = queue();
    const order: string[] = [];
    q.process(
      async (job: LocalJob<{ id: string }>) => {
        order.push(job.data.id);
        if (job.data.id === 'child') throw new Error('again');
      },
      { concurrency: 2 },
    );
    await q.addFlow({ name: 'p', data: { id: 'parent' }, opts: { jobId: 'p' }, children: [{ name: 'c', data: { id: 'child' }, opts: { attempts: 3, backoff: 20 } }] });
    await waitForJob(q, 'p', 5_000);
    expect(order).toEqual(['child', 'child', 'child', 'parent']);
  });
});

describe('workers', () => {
  test('concurrency bounds the jobs running at once', async () => {
    const q = queue();
    let running = 0;
    let most = 0;
    q.process(
      async () => {
        most = Math.max(most, ++running);
        await sleep(20);
        running -= 1;
      },
      { concurrency: 2 },
    );
    const jobs = await Promise.all(Array.from({ length: 8 }, () => q.add('j', {})));
    await Promise.all(jobs.map((j) => waitForJob(q, j.id, 5_000)));
    expect(most).toBe(2);
  });

  test('close waits for the running job and starts no other', async () => {
    const q = queue();
    const release = gate();
    const worker = q.process(async () => release.promise, { concurrency: 1 });
    const running = await q.add('long', {});
    const next = await q.add('next', {});
    await until(async () => (await running.getState()) === 'active');

    let closed = false;
    const closing = worker.close().then(() => (closed = true));
    await sleep(50);
    expect(closed).toBe(false);
    release.open();
    await closing;
    expect(await running.getState()).toBe('completed');
    expect(await next.getState()).toBe('waiting');

    // The queue takes another worker, which goes on with what waits.
    q.process(async () => 'later', { concurrency: 1 });
    expect(await waitForJob(q, next.id, 5_000)).toMatchObject({ state: 'completed', result: 'later' });
  });

  test('a worker stopping mid-job can give the job back (as loads do) and a later worker finishes it', async () => {
    const q = queue();
    let stopping = false;
    const started = gate();
    const worker = q.process(
      async (job, token) => {
        started.open();
        while (!stopping) await sleep(5);
        await job.moveToDelayed(Date.now() + 30, token);
        throw new DelayedError();
      },
      { concurrency: 1 },
    );
    const job = await q.add('load', {}, { attempts: 1 });
    await started.promise;
    stopping = true;
    await worker.close();
    expect(await job.getState()).toBe('delayed');
    expect(job.attemptsMade).toBe(0);

    q.process(async () => 'resumed', { concurrency: 1 });
    expect(await waitForJob(q, job.id, 5_000)).toMatchObject({ state: 'completed', result: 'resumed' });
  });

  test('waitForJob gives up at its timeout with the state the job is in', async () => {
    const q = queue();
    const job = await q.add('nobody runs it', {});
    expect(await waitForJob(q, job.id, 30)).toEqual({ state: 'waiting', timedOut: true });
    expect(await waitForJob(q, 'no such job', 30)).toEqual({ state: 'unknown', timedOut: false });
  });

  test('a closed queue refuses new jobs', async () => {
    const q = queue();
    await q.close();
    await expect(q.add('late', {})).rejects.toThrow(/closed/);
  });
});

describe('job schedulers', () => {
  test('fire on the cron pattern, one scheduler per id, removed with its pending iteration', async () => {
    const q = queue();
    const runs: number[] = [];
    q.process(
      async (job) => {
        runs.push(Date.now());
        return job.data;
      },
      { concurrency: 1 },
    );
    const template = { name: 'backup', data: { reason: 'schedule' }, opts: { removeOnComplete: 10 } };
    await q.upsertJobScheduler('every-second', { pattern: '* * * * * *', tz: 'UTC' }, template);
    await q.upsertJobScheduler('every-second', { pattern: '* * * * * *', tz: 'UTC' }, template);
    expect(await q.getJobSchedulers()).toHaveLength(1);

    await until(() => runs.length >= 3, 6_000);
    const [scheduler] = await q.getJobSchedulers();
    expect(scheduler!.next! % 1000).toBe(0); // on a whole second
    const completed = await q.getCompleted();
    expect(completed.map((j) => j.id)).toEqual(expect.arrayContaining([expect.stringMatching(/^repeat:every-second:\d+000$/)]));
    for (const j of completed) expect(j.processedOn!).toBeGreaterThanOrEqual(Number(j.id!.split(':')[2]));

    expect(await q.removeJobScheduler('every-second')).toBe(true);
    expect(await q.getJobSchedulers()).toHaveLength(0);
    await sleep(50); // an iteration already due may still start
    const count = runs.length;
    await sleep(1_300);
    expect(runs.length).toBe(count);
    expect(await q.getJobCounts('delayed', 'waiting')).toEqual({ delayed: 0, waiting: 0 });
  });

  test('a five-field pattern is read in UTC, as BullMQ does with tz UTC', async () => {
    const q = queue();
    await q.upsertJobScheduler('nightly', { pattern: '30 3 * * *', tz: 'UTC' }, { name: 'backup', data: {} });
    const [scheduler] = await q.getJobSchedulers();
    const next = new Date(scheduler!.next!);
    expect([next.getUTCHours(), next.getUTCMinutes(), next.getUTCSeconds()]).toEqual([3, 30, 0]);
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600_000);
    expect(await q.getJobCounts('delayed')).toEqual({ delayed: 1 });
  });

  test('a bad pattern is refused before anything changes', async () => {
    const q = queue();
    await expect(q.upsertJobScheduler('bad', { pattern: '99 * * * *', tz: 'UTC' }, { name: 'x', data: {} })).rejects.toThrow();
    expect(await q.getJobSchedulers()).toHaveLength(0);
  });
});
