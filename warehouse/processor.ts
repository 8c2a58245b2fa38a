import type { Services } from '../jobs/index.js';
import { refreshWarehouse, type RefreshResult } from './refresh.js';
import { requestWarehouseRefresh } from './request.js';

/**
 * The refresh processor. One refresh at a time: concurrency 1 here, a global concurrency of 1 on
 * the queue (for several worker processes), and the advisory lock inside refreshWarehouse().
 *
 * Every WAREHOUSE_CHECK_MS it also looks for changes no refresh has taken (see `checkForChanges`):
 * a refresh requested while Redis was down, or by a process that died before it could ask, still
 * happens once the queue is back.
 */
export async function startWarehouseWorker(services: Services): Promise<() => Promise<void>> {
  const { config, log } = services;
  await services.queues.warehouse.setGlobalConcurrency(1);
  const stop = services.queues.process<{ reason?: string }>('warehouse',
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
  let timer: NodeJS.Timeout | undefined;
  if (config.WAREHOUSE_CHECK_MS > 0) {
    let checking = false;
    timer = setInterval(() => {
      if (checking) return;
      checking = true;
      checkForChanges(services)
        .catch((err: unknown) => log.warn({ err }, 'could not check for changes to refresh; trying again later'))
        .finally(() => (checking = false));
    }, config.WAREHOUSE_CHECK_MS);
    timer.unref();
  }
  return async () => {
    clearInterval(timer);
    await stop();
  };
}

/**
 * Queues a refresh when PostgreSQL holds changes no refresh has exported yet (rows of the
 * `warehouse_changes` log the triggers fill, committed) and no refresh job is waiting or running
 * to take them. Returns whether it queued one.
 */
export async function checkForChanges(services: Services): Promise<boolean> {
  const { rows } = await services.pool.query<{ pending: boolean }>('SELECT EXISTS (SELECT 1 FROM warehouse_changes) AS pending');
  if (!rows[0]?.pending) return false;
  const counts = await services.queues.warehouse.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
  if (Object.values(counts).some((n) => n > 0)) return false;
  const jobId = await requestWarehouseRefresh(services, 'changes not refreshed yet');
  services.log.info({ jobId }, 'queued a refresh for changes no refresh has taken yet');
  return true;
}
