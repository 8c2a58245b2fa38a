import { FlowProducer, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { urlLabel, type Config } from '../core/config.js';
import { UnavailableError } from '../core/errors.js';
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
  const make = (name: string) => unavailableWhenDown(new Queue(name, { connection, prefix }), connection);
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

/**
 * `queue` whose calls, when they fail because Redis cannot be reached (the connection is not
 * ready, or a command timed out; not once this process closed it), fail with UnavailableError instead: every producer (a load, a
 * scan, a refresh, a backup, waiting for a job) then answers 503 with a message that names no host.
 * Other errors pass as they are.
 */
function unavailableWhenDown<T extends object>(queue: T, connection: Redis): T {
  // 'end': closed by this process (a shutdown), not Redis being away.
  const unreachable = (err: unknown) =>
    connection.status !== 'end' &&
    (connection.status !== 'ready' || (err instanceof Error && (err.name === 'MaxRetriesPerRequestError' || err.message === 'Command timed out')));
  return new Proxy(queue, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = value.apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.catch((err: unknown) => {
          if (!unreachable(err)) throw err;
          throw new UnavailableError('the queue (Redis) is unreachable; try again when it is back');
        });
      };
    },
  });
}
