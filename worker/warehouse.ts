import { Worker, type Job } from 'bullmq';
import type { Services } from '../core/context.js';
import { QUEUE_NAMES } from '../core/queues.js';
import { createRedis } from '../core/redis.js';
import { refreshWarehouse, type RefreshResult } from '../warehouse/refresh.js';

/**
 * The refresh processor. One refresh at a time: concurrency 1 here, a global concurrency of 1 on
 * the queue (for several worker processes), and the advisory lock inside refreshWarehouse().
 */
export async function startWarehouseWorker(services: Services): Promise<() => Promise<void>> {
  const { config, log } = services;
  const connection = createRedis(config.REDIS_URL, 'worker');
  await services.queues.warehouse.setGlobalConcurrency(1);
  const worker = new Worker(
    QUEUE_NAMES.warehouse,
    async (job: Job<{ reason?: string }>): Promise<RefreshResult> => {
      // Release the deduplication id first: requests from now on create the next waiting job
      // rather than joining this one, whose export may already be past their changes.
      await job.removeDeduplicationKey();
      const result = await refreshWarehouse(services);
      log.info({ jobId: job.id, reason: job.data.reason, ...result }, 'warehouse refreshed');
      return result;
    },
    { connection, prefix: config.QUEUE_PREFIX, concurrency: 1 },
  );
  worker.on('failed', (job, err) => log.error({ err, jobId: job?.id }, 'warehouse refresh failed'));
  worker.on('error', (err) => log.error({ err }, 'warehouse worker error'));
  return async () => {
    await worker.close();
    await connection.quit().catch(() => {});
  };
}
