import { Worker } from 'bullmq';
import type { Services } from '../core/context.js';
import { QUEUE_NAMES, type QueueJob, type QueueName } from '../core/queues.js';
import { createRedis } from '../core/redis.js';

/** Runs one job, whichever runner hands it over. */
export type Processor<D> = (job: QueueJob<D>, token?: string) => Promise<unknown>;

export interface ProcessorOptions<D> {
  concurrency: number;
  /** Job locks and the stalled-job check. */
  locks?: { lockDuration: number; stalledInterval: number; maxStalledCount: number };
  /** After every failed attempt; `job.getState()` already says whether it will be retried. */
  onFailed?: (job: QueueJob<D>, err: Error) => void;
}

/**
 * Runs `processor` on the jobs of one queue: a BullMQ Worker on its own Redis connection.
 * Returns what stops it (running jobs finish first).
 */
export function startProcessor<D>(
  services: Services,
  name: QueueName,
  processor: Processor<D>,
  opts: ProcessorOptions<D>,
): () => Promise<void> {
  const { config, log } = services;
  const onError = (err: Error) => log.error({ err, queue: name }, 'worker error');
  const { onFailed } = opts;
  const connection = createRedis(config.REDIS_URL, 'worker');
  const worker = new Worker<D>(QUEUE_NAMES[name], processor, {
    connection,
    prefix: config.QUEUE_PREFIX,
    concurrency: opts.concurrency,
    ...opts.locks,
  });
  worker.on('error', onError);
  if (onFailed) worker.on('failed', (job, err) => job && onFailed(job, err));
  return async () => {
    await worker.close();
    await connection.quit().catch(() => {});
  };
}
