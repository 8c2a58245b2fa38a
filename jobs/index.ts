/**
 * jobs/ — the job queues. Owns: the queue interfaces every producer and processor uses, their
 * two implementations (BullMQ on Redis when REDIS_URL is set; in-process otherwise), one way to
 * wait for a job, and how an AppError crosses a job boundary. Nothing outside this folder knows
 * which runner is in use. May import: core/.
 */
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { bullmqQueues } from './bullmq.js';
import { localQueues } from './local.js';
import type { Queues } from './queues.js';

export * from './queues.js';
export { errorFromFailure, unrecoverable } from './errors.js';
export type { Services } from './services.js';
export { waitForJob, type JobOutcome } from './wait.js';

/** BullMQ queues when REDIS_URL is set, in-process ones when it is not. */
export function createQueues(config: Config, log: Logger): Queues {
  return config.REDIS_URL ? bullmqQueues(config, config.REDIS_URL, log) : localQueues(log);
}
