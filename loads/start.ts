import { setTimeout as sleep } from 'node:timers/promises';
import { UnavailableError } from '../core/errors.js';
import type { Services } from '../jobs/index.js';
import { enqueueLoads } from './enqueue.js';
import { failLoad, getLoads, insertLoads, isTerminal, withDependencies, type LoadRow, type NewLoad } from './store.js';

/**
 * Records the loads of one request and queues them. If the queue cannot take them, the loads are
 * marked failed (nothing waits for ever) and the caller gets 503. With `wait`, polls until every
 * load has finished or LOAD_WAIT_MS passed; `finished` says which.
 */
export async function startLoads(services: Services, landed: readonly Omit<NewLoad, 'after'>[], wait: boolean): Promise<{ loads: LoadRow[]; finished: boolean }> {
  const { pool, config } = services;
  let loads = await insertLoads(pool, withDependencies(landed));
  try {
    await enqueueLoads(services, loads);
  } catch (err) {
    // The queue's own error names its host: logged, not answered.
    services.log.warn({ err, loads: loads.map((l) => l.id) }, 'could not queue loads');
    const message = 'could not queue the load: the queue (Redis) is unreachable';
    await Promise.all(loads.map((l) => failLoad(pool, l.id, message)));
    throw new UnavailableError(`${message}; try again when the queue (Redis) is back`);
  }
  if (!wait) return { loads, finished: false };
  loads = await waitForLoads(services, loads.map((l) => l.id), config.LOAD_WAIT_MS);
  return { loads, finished: loads.every((l) => isTerminal(l.status)) };
}

/** Polls the loads until all have finished or `ms` passed; the database is the source of truth. */
export async function waitForLoads(services: Services, ids: string[], ms: number): Promise<LoadRow[]> {
  const deadline = Date.now() + ms;
  let delay = 50;
  for (;;) {
    const rows = await getLoads(services.pool, ids);
    if (rows.every((r) => isTerminal(r.status)) || Date.now() >= deadline) return rows;
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
    delay = Math.min(delay * 2, 500);
  }
}
