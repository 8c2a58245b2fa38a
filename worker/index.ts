/**
 * worker/ — process wiring only: which processors run in this process, and how they stop.
 * Each processor lives with its feature. May import: jobs/ and the features' surfaces.
 */
import { startBackupWorker } from '../backup/index.js';
import type { Services } from '../jobs/index.js';
import { startLoadWorker } from '../loads/index.js';
import { startWarehouseWorker } from '../warehouse/index.js';

export interface Workers {
  close(): Promise<void>;
}

/** Starts the processors of every queue in this process; `close()` lets running jobs finish first. */
export async function startWorkers(services: Services): Promise<Workers> {
  const closers: (() => Promise<void>)[] = [];
  closers.push(await startLoadWorker(services));
  closers.push(await startWarehouseWorker(services));
  closers.push(await startBackupWorker(services));
  services.log.info({ queuePrefix: services.config.QUEUE_PREFIX }, 'workers started');
  return {
    async close() {
      await Promise.allSettled(closers.map((c) => c()));
    },
  };
}
