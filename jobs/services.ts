import type { Config } from '../core/config.js';
import type { Pool } from '../core/db.js';
import type { Logger } from '../core/log.js';
import type { Queues } from './queues.js';

/**
 * What the API, the workers and every feature are built from: core's settings, pool and logger,
 * plus the job queues. Created once per process in main.ts (and per suite in the tests).
 */
export interface Services {
  readonly config: Config;
  readonly pool: Pool;
  readonly log: Logger;
  /** Producers and processors for every queue, whichever runner holds them. */
  readonly queues: Queues;
}
