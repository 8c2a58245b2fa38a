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
    async close() {
      await Promise.allSettled(Object.values(queues).map((q) => q.close()));
    },
  };
}

/**
 * Asks for a warehouse refresh after data changed in PostgreSQL (ingest, load, restore).
 * Requests are coalesced: a burst of writes causes a few refreshes, not one each.
 */
export async function requestWarehouseRefresh(queues: Queues, reason: string): Promise<void> {
  await queues.warehouse.add(
    'refresh',
    { reason },
    { deduplication: { id: 'refresh' }, removeOnComplete: 100, removeOnFail: 100 },
  );
}
