import type { Redis } from 'ioredis';
import type { Config } from './config.js';
import type { Pool } from './db.js';
import type { Logger } from './log.js';
import type { Queues } from './queues.js';

/** What the API and the workers are built from; created once per process in main.ts. */
export interface Services {
  readonly config: Config;
  readonly pool: Pool;
  /**
   * A connection for commands (health checks, queue producers); workers open their own.
   * Undefined without REDIS_URL: the queues are then in-process.
   */
  readonly redis: Redis | undefined;
  readonly log: Logger;
  /** Producers for every queue, BullMQ or in-process (see core/queues.ts). */
  readonly queues: Queues;
}
