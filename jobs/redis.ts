import { Redis } from 'ioredis';

/**
 * BullMQ workers block on Redis and need `maxRetriesPerRequest: null`; command connections
 * (health checks, producers) keep a bound so a dead Redis answers with an error, not a hang.
 */
export function createRedis(url: string, kind: 'worker' | 'command' = 'command'): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: kind === 'worker' ? null : 2,
    connectTimeout: 5_000,
    lazyConnect: false,
  });
}
