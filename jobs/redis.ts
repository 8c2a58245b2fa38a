import { Redis } from 'ioredis';

/**
 * BullMQ workers block on Redis and need `maxRetriesPerRequest: null` (they wait for Redis to
 * come back). Command connections (producers, health checks) must answer instead: while Redis is
 * unreachable their commands fail at once (no offline queue), and a command Redis does not answer
 * fails after `commandTimeoutMs`. ioredis keeps reconnecting either way (backoff up to 2 s), and
 * the first command after Redis is back works.
 */
export function createRedis(url: string, kind: 'worker' | 'command' = 'command', commandTimeoutMs = 3_000): Redis {
  if (kind === 'worker') {
    return new Redis(url, { maxRetriesPerRequest: null, connectTimeout: 5_000, lazyConnect: false });
  }
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: 5_000,
    commandTimeout: commandTimeoutMs,
    // Commands sent while the first connection is being made wait for it (a start, a test's
    // first call); once connected, a command sent while Redis is away fails at once.
    enableOfflineQueue: true,
    lazyConnect: false,
  });
  redis.once('ready', () => {
    redis.options.enableOfflineQueue = false;
  });
  return redis;
}
