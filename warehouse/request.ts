import { AppError } from '../core/errors.js';
import { waitForJob, type Services } from '../jobs/index.js';

/** The deduplication id of the one refresh job that may be waiting at any time. */
export const REFRESH_DEDUP_ID = 'refresh-pending';

/**
 * Asks for a warehouse refresh after data changed in PostgreSQL (ingest, load, restore), and
 * returns the id of the job that will do it.
 *
 * Coalescing: at most one refresh job is *waiting* at a time; every request made meanwhile joins
 * it (deduplication). The refresh processor releases the deduplication id as soon as it starts
 * (warehouse/processor.ts), so a request that arrives while a refresh is running creates the next
 * waiting job instead of being dropped: a change is always followed by a refresh that starts
 * after it. A burst of 100 requests therefore causes one or two refreshes. Refreshes never
 * overlap: the worker runs one at a time and the refresh itself holds a PostgreSQL advisory lock.
 *
 * `immediate` (a user asking for it) skips the debounce: a delayed job it joins is promoted.
 */
export async function requestWarehouseRefresh(
  { config, queues }: Pick<Services, 'config' | 'queues'>,
  reason: string,
  opts: { immediate?: boolean } = {},
): Promise<string> {
  const job = await queues.warehouse.add(
    'refresh',
    { reason },
    {
      delay: opts.immediate ? 0 : config.WAREHOUSE_REFRESH_DEBOUNCE_MS,
      deduplication: { id: REFRESH_DEDUP_ID },
      attempts: 3,
      backoff: { type: 'exponential', delay: 2_000 },
      removeOnComplete: 100,
      removeOnFail: 100,
    },
  );
  if (opts.immediate) {
    // A deduplicated add answers with the waiting job; make it run now if it was debouncing.
    const existing = await queues.warehouse.getJob(job.id!);
    if (existing && (await existing.isDelayed())) await existing.promote().catch(() => {});
  }
  return job.id!;
}


export type RefreshOutcome =
  | { done: true; jobId: string; status: string; result: unknown }
  | { done: false; jobId: string; status?: 'queued' | 'running' };

/**
 * A refresh asked for by a user: it runs now, and with `wait` this waits for it up to
 * WAREHOUSE_REFRESH_WAIT_MS; past that, the job's current state. A failed refresh is a 500
 * naming the job.
 */
export async function refreshNow(services: Pick<Services, 'config' | 'queues'>, wait: boolean): Promise<RefreshOutcome> {
  const jobId = await requestWarehouseRefresh(services, 'api', { immediate: true });
  if (!wait) return { done: false, jobId };
  const done = await waitForJob(services.queues.warehouse, jobId, services.config.WAREHOUSE_REFRESH_WAIT_MS);
  if (done.timedOut) return { done: false, jobId, status: done.state === 'active' ? 'running' : 'queued' };
  if (done.state === 'failed') {
    // The failure's own text (DuckDB's, the driver's) names files and SQL: it is in the worker's log.
    throw new AppError(500, 'refresh_failed', `the warehouse refresh failed; the worker log has the details under job ${jobId}`, { jobId });
  }
  return { done: true, jobId, status: done.state, result: done.result };
}
