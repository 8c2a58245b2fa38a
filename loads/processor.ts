import { DelayedError, UnrecoverableError } from 'bullmq';
import type { Services } from '../jobs/index.js';
import { AppError, publicReason } from '../core/errors.js';
import { enqueueLoads, type LoadJobData } from './enqueue.js';
import { failLoad, getLoad, getLoads, unfinishedLoads, type LoadRow } from './store.js';
import type { Logger } from '../core/log.js';
import { type QueueJob } from '../jobs/index.js';
import { requestWarehouseRefresh } from '../warehouse/index.js';
import { TABLES } from '../core/tables.js';
import { ChunkReader } from './reader.js';
import { openLoadFile } from './source.js';
import { ChunkWriter } from './writer.js';
import { RETENTION_JOB, RETENTION_SCHEDULER_ID, runRetention, scheduleRetention } from './retention.js';
import { finishInboxLoad, LANDING_SCAN_JOB, runLandingScan, scheduleLandingScan, type ScanJobData } from './inbox.js';

/**
 * The processor of the `loads` queue: streams one CSV file into its table, chunk by chunk.
 *
 * Crash safety: each chunk commits with the load's checkpoint (next byte, next line, counters), so
 * a retry after a crash or a kill resumes at the first uncommitted chunk and the tables end up
 * exactly as after a clean run. A killed worker's job comes back through BullMQ's stalled-job check;
 * in-process jobs die with the process, so there the loads it left unfinished are queued again at
 * start. A job given up on marks its load failed (on the `failed` event, and by a periodic sweep
 * as a backstop), so no load stays `running` or `queued` for ever.
 */
export async function startLoadWorker(services: Services): Promise<() => Promise<void>> {
  const { config, log } = services;
  let stopping = false;
  if (!services.queues.durable) await resumeLoads(services);
  // The queue also carries the scheduled retention job (loads/retention.ts) and the landing
  // inbox scans (loads/inbox.ts). An inbox load's file moves on as soon as its job ends.
  const run = async (job: QueueJob<LoadJobData>, token?: string) => {
    if (job.name === RETENTION_JOB) return runRetention(services);
    if (job.name === LANDING_SCAN_JOB) return runLandingScan(services, job as QueueJob<ScanJobData>);
    try {
      return await processLoad(services, job, token, () => stopping);
    } finally {
      await finishInboxLoad(services, job.data.loadId).catch((err: unknown) =>
        log.warn({ err, loadId: job.data.loadId }, 'could not move the inbox file of a finished load; the next scan will'),
      );
    }
  };
  const stop = services.queues.process<LoadJobData>('loads', run, {
    concurrency: config.LOAD_CONCURRENCY,
    locks: { lockDuration: config.LOAD_LOCK_MS, stalledInterval: config.LOAD_STALLED_CHECK_MS, maxStalledCount: 3 },
    onFailed: (job, err) => {
      if (job.name === RETENTION_JOB) return void log.warn({ err }, 'retention failed; it runs again on RETENTION_CRON');
      if (job.name === LANDING_SCAN_JOB) return void log.warn({ err }, 'landing inbox scan failed; it runs again on LANDING_SCAN_CRON');
      void (async () => {
        if ((await job.getState()) !== 'failed') return; // it will be retried
        const reason = /stalled/i.test(err.message)
          ? `the worker running it stopped ${job.stalledCounter ?? 'several'} times (killed or hung); load the file again`
          : err.message;
        if (await failLoad(services.pool, job.data.loadId, reason)) log.warn({ loadId: job.data.loadId, reason }, 'load failed');
      })().catch((e: unknown) => log.error({ err: e }, 'could not record a failed load'));
    },
  });
  if (config.UPLOAD_RETENTION_DAYS > 0 || config.REJECT_RETENTION_DAYS > 0) await scheduleRetention(services);
  else await services.queues.loads.removeJobScheduler(RETENTION_SCHEDULER_ID);
  await scheduleLandingScan(services);

  const sweep = () => reconcile(services).catch((err: unknown) => log.warn({ err }, 'load sweep failed'));
  const timer = setInterval(sweep, Math.max(60_000, config.LOAD_STALLED_CHECK_MS * 4));
  timer.unref();
  void sweep();

  return async () => {
    stopping = true;
    clearInterval(timer);
    await stop();
  };
}

/**
 * In-process jobs do not outlive the process: the loads a previous run left `queued` or `running`
 * are queued again (their checkpoints say where to go on), before the sweep would fail them.
 */
async function resumeLoads(services: Services): Promise<void> {
  const loads = await unfinishedLoads(services.pool, 0);
  if (loads.length === 0) return;
  await enqueueLoads(services, loads);
  services.log.info({ loads: loads.length }, 'queued again the loads the last run left unfinished');
}

type Totals = { inserted: number; updated: number; unchanged: number; rejected: number };

async function processLoad(services: Services, job: QueueJob<LoadJobData>, token: string | undefined, stopping: () => boolean): Promise<Totals | undefined> {
  const { pool } = services;
  const { loadId } = job.data;
  const log = services.log.child({ loadId, jobId: job.id });
  const load = await getLoad(pool, loadId);
  if (!load || load.status === 'succeeded' || load.status === 'failed') return undefined;

  if (load.after_loads.length > 0) {
    const before = await getLoads(pool, load.after_loads);
    const failed = before.filter((b) => b.status === 'failed');
    if (failed.length > 0) {
      const message = `not run: the ${failed.map((f) => `${f.table_name} load ${f.id}`).join(' and ')} of the same request failed; fix that file and send them again`;
      await failLoad(pool, loadId, message);
      throw new UnrecoverableError(message);
    }
    if (before.some((b) => b.status !== 'succeeded')) throw new Error('the loads this one waits for have not finished');
  }

  const { rows } = await pool.query<LoadRow>(
    `UPDATE loads SET status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now())
      WHERE id = $1 AND status IN ('queued', 'running') RETURNING *`,
    [loadId],
  );
  const running = rows[0];
  if (!running) return undefined;
  log.info({ table: running.table_name, file: running.file, from: running.next_offset, attempt: running.attempts }, 'load started');

  try {
    const totals = await runLoad(services, running, log, stopping);
    if (totals === 'stopped') {
      // Shutting down: give the job back without spending an attempt; the checkpoint says where to go on.
      await pool.query(`UPDATE loads SET status = 'queued' WHERE id = $1 AND status = 'running'`, [loadId]);
      await job.moveToDelayed(Date.now() + 1_000, token);
      throw new DelayedError();
    }
    if (totals === undefined) return undefined; // another worker owns it now
    const done = await getLoad(pool, loadId);
    log.info({ rowsRead: done?.rows_read, inserted: done?.inserted, updated: done?.updated, rejected: done?.rejected }, 'load succeeded');
    if ((done?.inserted ?? 0) + (done?.updated ?? 0) > 0) {
      await requestWarehouseRefresh(services, `load ${running.table_name}`).catch((err: unknown) =>
        log.warn({ err }, 'could not request a warehouse refresh'),
      );
    }
    return totals;
  } catch (err) {
    if (err instanceof DelayedError) throw err;
    const badInput = err instanceof AppError ? !err.retryable : isDataError(err);
    // What the load's `error` says: never the driver's text (SQL, values, hosts); that is logged here.
    const message =
      err instanceof AppError || !badInput
        ? publicReason(err)
        : `PostgreSQL refused a value of the file (a gap in the data rules, SQLSTATE ${(err as { code: string }).code}); the worker log has the details under load ${loadId}`;
    if (badInput) {
      await failLoad(pool, loadId, message);
      log.warn({ err }, `load failed: bad input: ${message}`);
      throw new UnrecoverableError(message);
    }
    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    log.warn({ err, attempt, attempts }, 'load attempt failed');
    await (attempt >= attempts
      ? failLoad(pool, loadId, `gave up after ${attempts} attempts: ${message}`)
      : pool.query(`UPDATE loads SET status = 'queued', error = $2 WHERE id = $1 AND status = 'running'`, [
          loadId,
          `attempt ${attempt} of ${attempts} failed, retrying: ${message}`,
        ])
    ).catch(() => {}); // the database may be what is down; the failed event and the sweep catch up
    // The queue keeps this as the job's failed reason, which may become the load's error: the public text.
    throw new Error(message);
  }
}

async function runLoad(services: Services, load: LoadRow, log: Logger, stopping: () => boolean): Promise<Totals | 'stopped' | undefined> {
  const { config } = services;
  const table = TABLES[load.table_name];
  const source = await openLoadFile(config, load.file);
  const reader = await ChunkReader.open(source, table, load.next_offset, load.next_line, config.LOAD_CHUNK_ROWS, {
    chunkBytes: config.LOAD_CHUNK_BYTES,
    fieldMaxBytes: config.FIELD_MAX_BYTES,
    rawMaxBytes: config.REJECT_RAW_MAX_BYTES,
  });
  let writer: ChunkWriter | undefined;
  try {
    // DATABASE_URL when set; embedded, the pool knows where the loopback server listens.
    const connection = config.DATABASE_URL ? { connectionString: config.DATABASE_URL } : services.pool.options;
    writer = await ChunkWriter.open(connection, table, load.id, config.LOAD_SET_BASED_FK, log, config.REJECT_RAW_MAX_BYTES);
    const totals: Totals = { inserted: 0, updated: 0, unchanged: 0, rejected: 0 };
    const rawAt = (s: number, e: number) => reader.rawAt(s, e);
    let chunk = await reader.next();
    for (;;) {
      const plan = await writer.begin(chunk, rawAt);
      if (!plan) return undefined;
      // Read and check the next chunk while the database writes this one.
      const next = chunk.final ? undefined : reader.next();
      next?.catch(() => {});
      const out = await writer.write(plan);
      totals.inserted += out.inserted;
      totals.updated += out.updated;
      totals.unchanged += out.unchanged;
      totals.rejected += out.rejected;
      if (!next) return totals;
      if (stopping()) return 'stopped';
      chunk = await next;
    }
  } finally {
    await writer?.close();
    await reader.close();
  }
}

/** PostgreSQL refusing a value (data exception, constraint) is about the data: retrying will not help. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/** Fails loads whose queue job is gone or failed without the load being told (a backstop). */
async function reconcile(services: Services): Promise<void> {
  for (const load of await unfinishedLoads(services.pool, 60_000)) {
    const job = await services.queues.loads.getJob(load.id);
    const state = job ? await job.getState() : 'missing';
    if (state === 'failed' || state === 'completed' || state === 'missing' || state === 'unknown') {
      const reason =
        state === 'failed' ? (job?.failedReason ?? 'its job failed') : `its queue job is ${state}; load the file again`;
      if (await failLoad(services.pool, load.id, reason)) services.log.warn({ loadId: load.id, reason }, 'load failed (sweep)');
    }
  }
}
