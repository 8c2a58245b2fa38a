import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError } from 'bullmq';
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { loadConfig, type Config } from '../core/config.js';
import { AppError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { createQueues, errorFromFailure, unrecoverable, waitForJob, type JobQueue, type JobState, type QueueJob, type Queues } from '../jobs/index.js';
import { createRedis } from '../jobs/redis.js';
import { requestWarehouseRefresh } from '../warehouse/request.js';
import { REDIS_URL, uniqueName } from './support/services.js';

/**
 * The job-runner contract: the behaviours of BullMQ the service relies on, run on both runners
 * through the `Queues` interface alone (jobs/index.ts), so the in-process runner cannot drift.
 *
 * Timing: the in-process runner's delays are Node timers, so its cases run on vitest's fake clock
 * and assert delays exactly. BullMQ's delays live in Redis and its worker has timers of its own,
 * so there the same cases run on the real clock with short delays and assert order and state only.
 */
const RUNNERS = [
  { runner: 'BullMQ on Redis', redisUrl: REDIS_URL as string | undefined, exactClock: false },
  { runner: 'in-process', redisUrl: undefined, exactClock: true },
];

const log = createLogger('silent');
const FINAL: JobState[] = ['completed', 'failed'];

const gates: (() => void)[] = [];

/** A promise with its resolve, to hold a processor until the test lets it go (afterEach does, at the latest). */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  gates.push(open);
  return { promise, open };
}

describe.each(RUNNERS)('$runner', ({ redisUrl, exactClock }) => {
  // Each test gets a prefix of its own under the suite's, so ids and schedulers never meet.
  const suitePrefix = uniqueName('hrq_jobs');
  let tests = 0;
  const open: Queues[] = [];
  let fake = false;

  /** Fresh queues on this runner, with settings given as environment variables. */
  function services(env: Record<string, string> = {}): { config: Config; queues: Queues } {
    const config = loadConfig({
      DATABASE_URL: 'postgres://unused/none',
      ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
      QUEUE_PREFIX: `${suitePrefix}_${++tests}`,
      LOG_LEVEL: 'silent',
      ...env,
    });
    const queues = createQueues(config, log);
    open.push(queues);
    return { config, queues };
  }
  const queues = (): Queues => services().queues;

  /** In-process: from here on, time moves only when `pass` says (timers and Date). BullMQ: no-op. */
  function useExactClock(now?: number): void {
    if (!exactClock) return;
    // queueMicrotask stays real: the in-process runner starts its processors with it.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], ...(now === undefined ? {} : { now }) });
    fake = true;
  }

  async function pass(ms: number): Promise<void> {
    if (fake) await vi.advanceTimersByTimeAsync(ms);
    else await sleep(ms);
  }

  /** Waits (on whichever clock runs) until `check` holds, for at most `ms` of that clock. */
  async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
    for (let waited = 0; !(await check()); waited += 10) {
      if (waited > ms) throw new Error('condition not met in time');
      await pass(10);
    }
  }

  async function stateOf(q: JobQueue, id: string): Promise<JobState> {
    return (await (await q.getJob(id))?.getState()) ?? 'unknown';
  }

  /** The job's final outcome, as waitForJob reports it, waited for on the test's clock. */
  async function outcome(q: JobQueue, id: string, ms = 5_000) {
    await until(async () => FINAL.includes(await stateOf(q, id)), ms);
    return waitForJob(q, id, 0);
  }

  /** BullMQ hands out snapshots, so a job's counters are read again from its queue. */
  async function reread(q: JobQueue, id: string): Promise<QueueJob> {
    const job = await q.getJob(id);
    if (!job) throw new Error(`job ${id} is gone`);
    return job;
  }

  afterEach(async () => {
    gates.splice(0).forEach((release) => release());
    await Promise.all(open.splice(0).map((q) => q.close()));
    vi.useRealTimers();
    fake = false;
  });

  afterAll(async () => {
    if (!redisUrl) return;
    const redis = createRedis(redisUrl);
    const keys = await redis.keys(`${suitePrefix}_*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  test('the runner under test is the one asked for', () => {
    const q = queues();
    expect(q.durable).toBe(redisUrl !== undefined);
    expect(q.label).toMatch(redisUrl ? /^BullMQ on redis:/ : /^in-process/);
  });

  describe('warehouse refresh requests', () => {
    test('coalesce into one waiting job; a request during the run gets the next one; immediate promotes', async () => {
      const s = services({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '1000' });
      const q = s.queues;
      const release = gate();
      const runs: string[] = [];
      q.process<{ reason: string }>(
        'warehouse',
        async (job) => {
          // What warehouse/processor.ts does first.
          await job.removeDeduplicationKey();
          runs.push(job.data.reason);
          await release.promise;
        },
        { concurrency: 1 },
      );

      const ids = await Promise.all(Array.from({ length: 100 }, (_, i) => requestWarehouseRefresh(s, `burst ${i}`)));
      expect(new Set(ids).size).toBe(1);
      const first = ids[0]!;
      expect(await stateOf(q.warehouse, first)).toBe('delayed'); // debouncing

      // A user asking joins the same job and makes it run now.
      expect(await requestWarehouseRefresh(s, 'api', { immediate: true })).toBe(first);
      await until(async () => (await stateOf(q.warehouse, first)) === 'active');
      await until(() => runs.length === 1);
      expect(runs).toEqual(['burst 0']);

      // Running, it has let go of the deduplication id: the next request is a job of its own.
      const second = await requestWarehouseRefresh(s, 'while running');
      expect(second).not.toBe(first);
      expect(await requestWarehouseRefresh(s, 'joins the second')).toBe(second);

      release.open();
      expect(await outcome(q.warehouse, second)).toMatchObject({ state: 'completed', timedOut: false });
      expect(runs).toEqual(['burst 0', 'while running']);
      expect(await q.warehouse.getCompletedCount()).toBe(2);
    });
  });

  describe('attempts', () => {
    test('a failing job is retried after its exponential backoff, onFailed seeing the retry coming', async () => {
      useExactClock();
      const q = queues();
      const starts: number[] = [];
      const seen: Promise<string>[] = [];
      q.process(
        'loads',
        async () => {
          starts.push(Date.now());
          if (starts.length < 3) throw new Error(`attempt ${starts.length} broke`);
          return { ok: true, at: new Date(0) };
        },
        { concurrency: 1, onFailed: (job, err) => seen.push(job.getState().then((s) => `${s}: ${err.message}`)) },
      );
      const job = await q.loads.add('flaky', {}, { attempts: 3, backoff: { type: 'exponential', delay: 60 } });

      // The return value came back through JSON, as it does from Redis.
      expect(await outcome(q.loads, job.id!)).toMatchObject({ state: 'completed', result: { ok: true, at: '1970-01-01T00:00:00.000Z' } });
      expect((await reread(q.loads, job.id!)).attemptsMade).toBe(3);
      expect(await Promise.all(seen)).toEqual(['delayed: attempt 1 broke', 'delayed: attempt 2 broke']);
      if (exactClock) expect([starts[1]! - starts[0]!, starts[2]! - starts[1]!]).toEqual([60, 120]);
    });

    test('the last attempt fails the job for good with its reason; fixed backoff', async () => {
      useExactClock();
      const q = queues();
      const starts: number[] = [];
      q.process(
        'loads',
        async () => {
          starts.push(Date.now());
          throw new Error('still broken');
        },
        { concurrency: 1 },
      );
      const job = await q.loads.add('broken', {}, { attempts: 2, backoff: 20 });
      expect(await outcome(q.loads, job.id!)).toEqual({ state: 'failed', timedOut: false, error: 'still broken' });
      expect(starts).toHaveLength(2);
      expect((await reread(q.loads, job.id!)).attemptsMade).toBe(2);
      expect(await q.loads.getFailedCount()).toBe(1);
      if (exactClock) expect(starts[1]! - starts[0]!).toBe(20);
    });

    test('UnrecoverableError fails at once, and an AppError survives the trip through the failed reason', async () => {
      const q = queues();
      let runs = 0;
      q.process(
        'backups',
        async () => {
          runs += 1;
          throw unrecoverable(new AppError(422, 'bad_backup', 'the file is damaged'));
        },
        { concurrency: 1 },
      );
      const job = await q.backups.add('restore', {}, { attempts: 5, backoff: 10 });
      const result = await outcome(q.backups, job.id!);
      expect(result.state).toBe('failed');
      expect(runs).toBe(1);
      expect(errorFromFailure(result.error)).toMatchObject({ status: 422, code: 'bad_backup', message: 'the file is damaged' });
    });

    test('moveToDelayed then DelayedError runs the job again later without spending an attempt', async () => {
      useExactClock();
      const q = queues();
      const starts: number[] = [];
      q.process(
        'loads',
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
      const job = await q.loads.add('give-back', {}, { attempts: 1 });
      await until(() => starts.length === 1);
      if (exactClock) {
        await until(async () => (await stateOf(q.loads, job.id!)) === 'delayed');
        expect((await reread(q.loads, job.id!)).attemptsMade).toBe(0);
      }
      // It had one attempt: had the give-back spent it, the job would have failed, not run again.
      expect(await outcome(q.loads, job.id!)).toMatchObject({ state: 'completed', result: 0 });
      expect(starts).toHaveLength(2);
      if (exactClock) expect(starts[1]! - starts[0]!).toBe(80);
    });

    test('only the active job, under its token, can be moved to delayed; only a delayed one promoted', async () => {
      const q = queues();
      const release = gate();
      let token: string | undefined;
      q.process('loads', async (_job, t) => {
        token = t;
        await release.promise;
      }, { concurrency: 1 });
      const active = await q.loads.add('running', {});
      await until(() => token !== undefined);
      await expect(active.moveToDelayed(Date.now() + 10, 'not-its-token')).rejects.toThrow(/Lock mismatch for job/);
      await expect(active.promote()).rejects.toThrow(/is not in the delayed state/);

      const idle = await q.loads.add('idle', {});
      await expect(idle.moveToDelayed(Date.now() + 10, token)).rejects.toThrow(/Missing lock for job/);
      await expect(idle.promote()).rejects.toThrow(/is not in the delayed state/);
      release.open();
      await outcome(q.loads, active.id!);
      expect(await stateOf(q.loads, active.id!)).toBe('completed');
    });
  });

  describe('ids and retention', () => {
    test('an id already in the queue is not added twice, also once it has finished', async () => {
      const q = queues();
      let runs = 0;
      q.process('loads', async () => void (runs += 1), { concurrency: 1 });
      const a = await q.loads.add('load', { n: 1, at: new Date(0) }, { jobId: 'load-1' });
      // The answer names the job already there. (BullMQ's answer is a handle carrying the data
      // of this add, not of the job; the in-process queue answers with the job itself.)
      const b = await q.loads.add('load', { n: 2 }, { jobId: 'load-1' });
      expect([a.id, b.id]).toEqual(['load-1', 'load-1']);
      await outcome(q.loads, 'load-1');
      expect((await q.loads.add('load', { n: 3 }, { jobId: 'load-1' })).id).toBe('load-1');
      await sleep(50); // time to run a second job, were there one
      expect(runs).toBe(1);
      // The data went through JSON, as it does to Redis.
      expect((await reread(q.loads, 'load-1')).data).toEqual({ n: 1, at: '1970-01-01T00:00:00.000Z' });
      expect(await q.loads.getCompletedCount()).toBe(1);
    });

    test('removeOnComplete and removeOnFail keep only the newest that many finished jobs', async () => {
      const q = queues();
      let finished = 0;
      q.process<{ n: number }>(
        'loads',
        async (job) => {
          finished += 1;
          if (job.data.n % 2 === 1) throw new Error('odd');
        },
        { concurrency: 1 },
      );
      const ids: string[] = [];
      for (let n = 0; n < 20; n++) ids.push((await q.loads.add('n', { n }, { removeOnComplete: 3, removeOnFail: { count: 2 } })).id!);
      await until(async () => finished === 20 && (await stateOf(q.loads, ids[19]!)) === 'failed');
      expect((await q.loads.getCompleted()).map((j) => j.data)).toEqual([{ n: 18 }, { n: 16 }, { n: 14 }]);
      expect(await q.loads.getCompletedCount()).toBe(3);
      expect(await q.loads.getFailedCount()).toBe(2);
      const kept = [];
      for (const id of ids) {
        const job = await q.loads.getJob(id);
        if (job) kept.push(job.data);
      }
      expect(kept).toEqual([{ n: 14 }, { n: 16 }, { n: 17 }, { n: 18 }, { n: 19 }]);
      expect(await stateOf(q.loads, ids[0]!)).toBe('unknown'); // gone
    });
  });

  describe('deduplication', () => {
    test('adds join the job holding the id until it finishes or lets go of it', async () => {
      const q = queues();
      const release = gate();
      const runs: number[] = [];
      const dedup = { deduplication: { id: 'one-at-a-time' } };
      const first = await q.backups.add('b', { n: 1 }, dedup);
      expect((await q.backups.add('b', { n: 99 }, dedup)).id).toBe(first.id);
      q.process<{ n: number }>(
        'backups',
        async (job) => {
          runs.push(job.data.n);
          if (job.data.n === 1) await job.removeDeduplicationKey();
          await release.promise;
        },
        { concurrency: 1 },
      );
      await until(() => runs.length === 1);
      // The first let go: the next add is a job of its own, which holds the id in turn.
      const second = await q.backups.add('b', { n: 2 }, dedup);
      expect(second.id).not.toBe(first.id);
      expect((await q.backups.add('b', { n: 98 }, dedup)).id).toBe(second.id);
      release.open();
      await outcome(q.backups, second.id!);
      // Finished, it no longer holds the id.
      const third = await q.backups.add('b', { n: 3 }, dedup);
      expect(third.id).not.toBe(second.id);
      await outcome(q.backups, third.id!);
      expect(runs).toEqual([1, 2, 3]);
    });
  });

  describe('flows', () => {
    test('the parent runs after its children, also when one of them failed', async () => {
      const q = queues();
      const order: string[] = [];
      q.process<{ id: string; ms: number; fail?: boolean }>(
        'loads',
        async (job) => {
          order.push(`start ${job.data.id}`);
          await sleep(job.data.ms);
          order.push(`end ${job.data.id}`);
          if (job.data.fail) throw new Error(`${job.data.id} failed`);
        },
        { concurrency: 4 },
      );
      await q.addFlow('loads', {
        name: 'load',
        data: { id: 'hires', ms: 0 },
        opts: { jobId: 'hires' },
        children: [
          { name: 'load', data: { id: 'departments', ms: 200 }, opts: { jobId: 'departments' } },
          { name: 'load', data: { id: 'jobs', ms: 100, fail: true }, opts: { jobId: 'jobs', attempts: 1 } },
        ],
      });
      expect(await stateOf(q.loads, 'hires')).toBe('waiting-children');
      expect(await outcome(q.loads, 'hires')).toMatchObject({ state: 'completed' });
      expect(order.indexOf('start hires')).toBeGreaterThan(order.indexOf('end departments'));
      expect(order.indexOf('start hires')).toBeGreaterThan(order.indexOf('end jobs'));
      expect(await stateOf(q.loads, 'jobs')).toBe('failed');
    });

    test('a child that is retried keeps the parent waiting until its last attempt', async () => {
      const q = queues();
      const order: string[] = [];
      q.process<{ id: string }>(
        'loads',
        async (job) => {
          order.push(job.data.id);
          if (job.data.id === 'child') throw new Error('again');
        },
        { concurrency: 2 },
      );
      await q.addFlow('loads', { name: 'p', data: { id: 'parent' }, opts: { jobId: 'p' }, children: [{ name: 'c', data: { id: 'child' }, opts: { attempts: 3, backoff: 20 } }] });
      await outcome(q.loads, 'p');
      expect(order).toEqual(['child', 'child', 'child', 'parent']);
    });
  });

  describe('workers', () => {
    test('concurrency bounds the jobs running at once', async () => {
      const q = queues();
      const release = gate();
      let running = 0;
      let most = 0;
      q.process(
        'loads',
        async () => {
          most = Math.max(most, ++running);
          await release.promise;
          running -= 1;
        },
        { concurrency: 2 },
      );
      const jobs = await Promise.all(Array.from({ length: 8 }, () => q.loads.add('j', {})));
      await until(() => running === 2);
      await sleep(100); // time for a third to start, were it allowed
      expect(await q.loads.getJobCounts('active', 'waiting')).toEqual({ active: 2, waiting: 6 });
      release.open();
      for (const j of jobs) expect(await outcome(q.loads, j.id!)).toMatchObject({ state: 'completed' });
      expect(most).toBe(2);
    });

    test('stopping a processor waits for the running job and starts no other; a new one goes on', async () => {
      const q = queues();
      const release = gate();
      const stop = q.process('loads', async () => release.promise, { concurrency: 1 });
      const running = await q.loads.add('long', {});
      const next = await q.loads.add('next', {});
      await until(async () => (await stateOf(q.loads, running.id!)) === 'active');

      let stopped = false;
      const stopping = stop().then(() => (stopped = true));
      await sleep(50);
      expect(stopped).toBe(false);
      release.open();
      await stopping;
      expect(await stateOf(q.loads, running.id!)).toBe('completed');
      expect(await stateOf(q.loads, next.id!)).toBe('waiting');

      q.process('loads', async () => 'later', { concurrency: 1 });
      expect(await outcome(q.loads, next.id!)).toMatchObject({ state: 'completed', result: 'later' });
    });

    test('a processor stopping mid-job can give the job back (as loads do) and a later one finishes it', async () => {
      const q = queues();
      let stopping = false;
      const started = gate();
      const stop = q.process(
        'loads',
        async (job, token) => {
          started.open();
          while (!stopping) await sleep(5);
          await job.moveToDelayed(Date.now() + 30, token);
          throw new DelayedError();
        },
        { concurrency: 1 },
      );
      const job = await q.loads.add('load', {}, { attempts: 1 });
      await started.promise;
      stopping = true;
      await stop();
      // Given back (delayed; after 30 ms BullMQ may already have it waiting), no attempt spent.
      expect(['delayed', 'waiting']).toContain(await stateOf(q.loads, job.id!));
      expect((await reread(q.loads, job.id!)).attemptsMade).toBe(0);

      q.process('loads', async () => 'resumed', { concurrency: 1 });
      expect(await outcome(q.loads, job.id!)).toMatchObject({ state: 'completed', result: 'resumed' });
    });

    test('waitForJob gives up at its timeout with the state the job is in', async () => {
      const q = queues();
      const job = await q.loads.add('nobody runs it', {});
      expect(await waitForJob(q.loads, job.id!, 30)).toEqual({ state: 'waiting', timedOut: true });
      expect(await waitForJob(q.loads, 'no such job', 30)).toEqual({ state: 'unknown', timedOut: false });
    });

    test('closed queues refuse new jobs', async () => {
      const q = queues();
      await q.close();
      await expect(q.loads.add('late', {})).rejects.toThrow(/closed/);
    });
  });

  describe('job schedulers', () => {
    test('fire on the cron pattern, one scheduler per id, removed with its pending iteration', async () => {
      const start = Date.UTC(2030, 0, 1, 0, 0, 0, 250);
      useExactClock(start);
      const q = queues();
      const runs: number[] = [];
      q.process(
        'backups',
        async (job) => {
          runs.push(Date.now());
          return job.data;
        },
        { concurrency: 1 },
      );
      const template = { name: 'backup', data: { reason: 'schedule' }, opts: { removeOnComplete: 10 } };
      await q.backups.upsertJobScheduler('every-second', { pattern: '* * * * * *', tz: 'UTC' }, template);
      await q.backups.upsertJobScheduler('every-second', { pattern: '* * * * * *', tz: 'UTC' }, template);
      expect(await q.backups.getJobSchedulers()).toHaveLength(1);

      await until(() => runs.length >= 3, 6_000);
      if (exactClock) expect(runs.slice(0, 3).map((t) => t - start)).toEqual([750, 1750, 2750]);
      const [scheduler] = await q.backups.getJobSchedulers();
      expect(scheduler!.next! % 1000).toBe(0); // on a whole second
      const completed = await q.backups.getCompleted();
      expect(completed.length).toBeGreaterThanOrEqual(2);
      // One job per slot, named by it as BullMQ names them; none runs before its slot.
      for (const j of completed) {
        expect(j.id).toMatch(/^repeat:every-second:\d+000$/);
        expect(j.processedOn!).toBeGreaterThanOrEqual(Number(j.id!.split(':')[2]));
        expect(j.returnvalue).toEqual({ reason: 'schedule' });
      }

      expect(await q.backups.removeJobScheduler('every-second')).toBe(true);
      expect(await q.backups.getJobSchedulers()).toHaveLength(0);
      await pass(50); // an iteration already due may still start
      const count = runs.length;
      await pass(1_300);
      expect(runs.length).toBe(count);
      expect(await q.backups.getJobCounts('delayed', 'waiting')).toEqual({ delayed: 0, waiting: 0 });
    });

    test('a five-field pattern is read in UTC, as BullMQ does with tz UTC', async () => {
      const q = queues();
      await q.backups.upsertJobScheduler('nightly', { pattern: '30 3 * * *', tz: 'UTC' }, { name: 'backup', data: {} });
      const [scheduler] = await q.backups.getJobSchedulers();
      const next = new Date(scheduler!.next!);
      expect([next.getUTCHours(), next.getUTCMinutes(), next.getUTCSeconds()]).toEqual([3, 30, 0]);
      expect(next.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600_000);
      expect(await q.backups.getJobCounts('delayed')).toEqual({ delayed: 1 });
    });

    test('a bad pattern is refused before anything changes', async () => {
      const q = queues();
      await expect(q.backups.upsertJobScheduler('bad', { pattern: '99 * * * *', tz: 'UTC' }, { name: 'x', data: {} })).rejects.toThrow();
      expect(await q.backups.getJobSchedulers()).toHaveLength(0);
    });
  });
});

/** Where the in-process runner knowingly differs from BullMQ. */
describe('in-process only', () => {
  const open: Queues[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((q) => q.close()));
  });
  function localQueues(): Queues {
    const q = createQueues(loadConfig({ DATABASE_URL: 'postgres://unused/none', LOG_LEVEL: 'silent' }), log);
    open.push(q);
    return q;
  }

  test('one processor per queue at a time (BullMQ runs any number of Workers on a queue)', () => {
    const q = localQueues();
    expect(q.durable).toBe(false);
    q.process('loads', async () => {}, { concurrency: 1 });
    expect(() => q.process('loads', async () => {}, { concurrency: 1 })).toThrow(/already has a worker/);
  });

  test('DelayedError without moveToDelayed fails the job at once (BullMQ would leave it active until its lock ran out)', async () => {
    const q = localQueues();
    let runs = 0;
    q.process(
      'loads',
      async () => {
        runs += 1;
        throw new DelayedError();
      },
      { concurrency: 1 },
    );
    const job = await q.loads.add('confused', {}, { attempts: 3 });
    const result = await waitForJob(q.loads, job.id!, 5_000);
    expect(result).toMatchObject({ state: 'failed', error: expect.stringMatching(/without moving the job to delayed/) });
    expect(runs).toBe(1);
  });
});
