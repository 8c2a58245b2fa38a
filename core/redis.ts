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

/** The server a Redis URL points at, for logs: no user name or password. */
export function redisLabel(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
}
