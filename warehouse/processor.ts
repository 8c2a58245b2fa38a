import type { Services } from '../jobs/index.js';
import { refreshWarehouse, type RefreshResult } from './refresh.js';

/**
 * The refresh processor. One refresh at a time: concurrency 1 here, a global concurrency of 1 on
 * the queue (for several worker processes), and the advisory lock inside refreshWarehouse().
 */
export async function startWarehouseWorker(services: Services): Promise<() => Promise<void>> {
  const { log } = services;
  await services.queues.warehouse.setGlobalConcurrency(1);
  return services.queues.process<{ reason?: string }>('warehouse',
    async (job): Promise<RefreshResult> => {
      // Release the deduplication id first: requests from now on create the next waiting job
      // rather than joining this one, whose export may already be past their changes.
      await job.removeDeduplicationKey();
      const result = await refreshWarehouse(services);
      log.info({ jobId: job.id, reason: job.data.reason, ...result }, 'warehouse refreshed');
      return result;
    },
    { concurrency: 1, onFailed: (job, err) => log.error({ err, jobId: job.id }, 'warehouse refresh failed') },
  );
}
