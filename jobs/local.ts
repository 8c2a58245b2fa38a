import type { Logger } from '../core/log.js';
import { LocalQueue } from './local-queue.js';
import { QUEUE_NAMES, type Queues } from './queues.js';

/** The queues in this process's memory, for running without Redis (see local-queue.ts). */
export function localQueues(log: Logger): Queues {
  const queues = {
    loads: new LocalQueue(QUEUE_NAMES.loads),
    warehouse: new LocalQueue(QUEUE_NAMES.warehouse),
    backups: new LocalQueue(QUEUE_NAMES.backups),
  };
  return {
    ...queues,
    durable: false,
    label: 'in-process (REDIS_URL unset)',
    async addFlow(name, flow) {
      await queues[name].addFlow(flow);
    },
    process(name, processor, opts) {
      const worker = queues[name].process(processor, { concurrency: opts.concurrency });
      worker.on('error', (err) => log.error({ err, queue: name }, 'worker error'));
      if (opts.onFailed) worker.on('failed', opts.onFailed);
      return () => worker.close();
    },
    async ping() {},
    async close() {
      await Promise.allSettled(Object.values(queues).map((q) => q.close()));
    },
  };
}
