import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from './config.js';

/**
 * The BullMQ queues, one per kind of work. Producers (the API, other jobs) and workers import the
 * names from here; each queue's processor lives in worker/. All keys sit under QUEUE_PREFIX so
 * several instances can share one Redis.
 */
export const QUEUE_NAMES = {
  loads: 'loads',
  warehouse: 'warehouse',
  backups: 'backups',
} as const;

export type QueueName = keyof typeof QUEUE_NAMES;

export interface Queues {
  readonly loads: Queue;
  readonly warehouse: Queue;
  readonly backups: Queue;
  /** How long a requested warehouse refresh waits to absorb the requests after it (default 1000 ms). */
  readonly warehouseDebounceMs?: number;
  close(): Promise<void>;
}

export function createQueues(config: Config, connection: Redis): Queues {
  const make = (name: string) => new Queue(name, { connection, prefix: config.QUEUE_PREFIX });
  const queues = {
    loads: make(QUEUE_NAMES.loads),
    warehouse: make(QUEUE_NAMES.warehouse),
    backups: make(QUEUE_NAMES.backups),
  };
  return {
    ...queues,
    warehouseDebounceMs: config.WAREHOUSE_REFRESH_DEBOUNCE_MS,
    async close() {
      await Promise.allSettled(Object.values(queues).map((q) => q.close()));
    },
  };
}

/** The deduplication id of the one refresh job that may be waiting at any time. */
export const REFRESH_DEDUP_ID = 'refresh-pending';

/**
 * Asks for a warehouse refresh after data changed in PostgreSQL (ingest, load, restore), and
 * returns the id of the job that will do it.
 *
 * Coalescing: at most one refresh job is *waiting* at a time; every request made meanwhile joins
 * it (BullMQ deduplication). The refresh processor releases the deduplication id as soon as it
 * starts (worker/warehouse.ts), so a request that arrives while a refresh is running creates the
 * next waiting job instead of being dropped: a change is always followed by a refresh that
 * starts after it. A burst of 100 requests therefore causes one or two refreshes. Refreshes never
 * overlap: the worker runs one at a time and the refresh itself holds a PostgreSQL advisory lock.
 *
 * `immediate` (a user asking for it) skips the debounce: a delayed job it joins is promoted.
 */
export async function requestWarehouseRefresh(
  queues: Queues,
  reason: string,
  opts: { immediate?: boolean } = {},
): Promise<string> {
  const job = await queues.warehouse.add(
    'refresh',
    { reason },
    {
      delay: opts.immediate ? 0 : (queues.warehouseDebounceMs ?? 1_000),
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
