import type { Services } from '../core/context.js';
import { startLoadWorker } from './loads.js';
import { startWarehouseWorker } from './warehouse.js';
import { startBackupWorker } from './backups.js';

export interface Workers {
  close(): Promise<void>;
}

/**
 * Starts the workers of this process, BullMQ or in-process as the queues are (core/queues.ts).
 * Each job kind has its own processor module under worker/; this is where they are wired to
 * their queues.
 */
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
