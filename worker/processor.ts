import { Worker } from 'bullmq';
import type { Services } from '../core/context.js';
import { LocalQueue } from '../core/local-queue.js';
import { QUEUE_NAMES, type QueueJob, type QueueName } from '../core/queues.js';
import { createRedis } from '../core/redis.js';

/** Runs one job; the same function serves BullMQ workers and the in-process queues. */
export type Processor<D> = (job: QueueJob<D>, token?: string) => Promise<unknown>;

export interface ProcessorOptions<D> {
  concurrency: number;
  /** BullMQ only: job locks and the stalled-job check (an in-process job cannot outlive its worker). */
  locks?: { lockDuration: number; stalledInterval: number; maxStalledCount: number };
  /** After every failed attempt; `job.getState()` already says whether it will be retried. */
  onFailed?: (job: QueueJob<D>, err: Error) => void;
}

/**
 * Runs `processor` on the jobs of one queue: a BullMQ Worker on its own Redis connection, or the
 * in-process queue's worker side. Returns what stops it (running jobs finish first).
 */
export function startProcessor<D>(
  services: Services,
  name: QueueName,
  processor: Processor<D>,
  opts: ProcessorOptions<D>,
): () => Promise<void> {
  const { config, log } = services;
  const queue = services.queues[name];
  const onError = (err: Error) => log.error({ err, queue: name }, 'worker error');
  const { onFailed } = opts;

  if (queue instanceof LocalQueue) {
    const worker = queue.process(processor, { concurrency: opts.concurrency });
    worker.on('error', onError);
    if (onFailed) worker.on('failed', onFailed);
    return () => worker.close();
  }

  if (!config.REDIS_URL) throw new Error(`the ${name} queue is on Redis, but REDIS_URL is not set`);
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
