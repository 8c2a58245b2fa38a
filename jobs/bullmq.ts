import { FlowProducer, Queue, Worker } from 'bullmq';
import { urlLabel, type Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { QUEUE_NAMES, type Queues } from './queues.js';
import { createRedis } from './redis.js';

/**
 * The queues on BullMQ: every key under QUEUE_PREFIX, so several instances can share one Redis.
 * Producers share one command connection; each processor's Worker opens its own blocking one.
 */
export function bullmqQueues(config: Config, redisUrl: string, log: Logger): Queues {
  const connection = createRedis(redisUrl, 'command', config.REDIS_COMMAND_TIMEOUT_MS);
  // Without a listener ioredis reports every failed reconnect as unhandled; callers see the errors.
  connection.on('error', (err) => log.debug({ err }, 'redis connection error'));
  const prefix = config.QUEUE_PREFIX;
  const make = (name: string) => new Queue(name, { connection, prefix });
  const queues = {
    loads: make(QUEUE_NAMES.loads),
    warehouse: make(QUEUE_NAMES.warehouse),
    backups: make(QUEUE_NAMES.backups),
  };
  let flows: FlowProducer | undefined;
  const workers = new Set<() => Promise<void>>();
  return {
    ...queues,
    durable: true,
    label: `BullMQ on ${urlLabel(redisUrl)}, prefix ${prefix}`,
    async addFlow(name, { children, ...parent }) {
      flows ??= new FlowProducer({ connection, prefix });
      const queueName = QUEUE_NAMES[name];
      await flows.add({
        ...parent,
        queueName,
        children: children.map((c) => ({ ...c, queueName, opts: { ...c.opts, ignoreDependencyOnFailure: true } })),
      });
    },
    process(name, processor, opts) {
      const workerConnection = createRedis(redisUrl, 'worker');
      const worker = new Worker(QUEUE_NAMES[name], processor, {
        connection: workerConnection,
        prefix,
        concurrency: opts.concurrency,
        ...opts.locks,
      });
      worker.on('error', (err) => log.error({ err, queue: name }, 'worker error'));
      const { onFailed } = opts;
      if (onFailed) worker.on('failed', (job, err) => job && onFailed(job, err));
      const stop = async () => {
        workers.delete(stop);
        await worker.close();
        await workerConnection.quit().catch(() => {});
      };
      workers.add(stop);
      return stop;
    },
    async ping() {
      await connection.ping();
    },
    async close() {
      await Promise.allSettled([...workers].map((stop) => stop()));
      await Promise.allSettled([...Object.values(queues).map((q) => q.close()), flows?.close()]);
      await connection.quit().catch(() => {});
    },
  };
}
