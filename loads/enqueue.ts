import type { Config } from '../core/config.js';
import type { Services } from '../jobs/index.js';
import type { LoadRow } from './store.js';
import type { JobOptions } from '../jobs/index.js';

/** Jobs for loads: the job carries only the load id; the `loads` row holds the state. */
export const LOAD_JOB = 'load';

export interface LoadJobData {
  loadId: string;
}

export function loadJobOptions(config: Config, loadId: string): JobOptions {
  return {
    jobId: loadId,
    attempts: config.LOAD_ATTEMPTS,
    backoff: { type: 'exponential', delay: config.LOAD_BACKOFF_MS },
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 1000 },
  };
}

/**
 * Queues the loads of one request. A load with `after_loads` (hired_employees sent with its
 * departments and jobs) becomes the parent of a flow whose children are those loads, so it runs
 * only once they have finished; a failed child does not block it (the worker then fails it with
 * a reason instead of leaving it waiting forever).
 */
export async function enqueueLoads(services: Services, loads: readonly LoadRow[]): Promise<void> {
  const { config, queues } = services;
  const children = new Set(loads.flatMap((l) => l.after_loads));
  const byId = new Map(loads.map((l) => [l.id, l]));
  for (const load of loads) {
    if (children.has(load.id)) continue;
    const data: LoadJobData = { loadId: load.id };
    if (load.after_loads.length === 0) {
      await queues.loads.add(LOAD_JOB, data, loadJobOptions(config, load.id));
      continue;
    }
    await queues.addFlow('loads', {
      name: LOAD_JOB,
      data,
      opts: loadJobOptions(config, load.id),
      children: load.after_loads
        .filter((id) => byId.has(id))
        .map((id) => ({ name: LOAD_JOB, data: { loadId: id } satisfies LoadJobData, opts: loadJobOptions(config, id) })),
    });
  }
}
