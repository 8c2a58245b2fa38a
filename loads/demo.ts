import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Services } from '../jobs/index.js';
import { enqueueLoads } from './enqueue.js';
import { withDependencies, insertLoads, type LoadRow } from './store.js';
import { generate } from './sample.js';
import { storageOf } from './source.js';
import { TABLE_NAMES } from '../core/tables.js';

export const DEMO_ROWS = 20_000;

/**
 * `npm start -- --demo`: fills an empty store with generated sample data through the ordinary
 * load path (files in the landing folder, one load per table, hired_employees after the other two),
 * so the dashboard, the loads list (with its rejects: 1% of the rows break a rule on purpose) and
 * the warehouse, which a finished load refreshes, show real work at once. A store that holds any
 * rows, or has loads under way, is left alone. Returns the loads it queued (none when it left the store alone).
 */
export async function startDemo(services: Services, rows = DEMO_ROWS): Promise<LoadRow[]> {
  const { config, pool, log } = services;
  // Only into an empty store, and not while loads (a demo interrupted earlier, resumed) are under way.
  const { rows: held } = await pool.query<{ any: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM departments) OR EXISTS (SELECT 1 FROM jobs) OR EXISTS (SELECT 1 FROM hired_employees)
         OR EXISTS (SELECT 1 FROM loads WHERE status IN ('queued', 'running')) AS any`,
  );
  if (held[0]!.any) {
    log.info('demo: the store is not empty (or loads are under way); nothing loaded');
    return [];
  }
  const dir = path.join(config.dirs.landing, 'demo');
  await generate({ rows, out: dir, badShare: 0.01, seed: 2021 });
  // Made in DATA_DIR/landing/demo; with a bucket, copied to landing/demo/ there, where any worker reads it.
  const storage = await storageOf(config);
  const landed = await Promise.all(
    TABLE_NAMES.map(async (table) => {
      const file = path.join(dir, `${table}.csv`);
      const key = `landing/demo/${table}.csv`;
      if (storage.kind !== 'local') await storage.put(key, createReadStream(file));
      return { id: randomUUID(), table, file: key, bytes: (await stat(file)).size };
    }),
  );
  const loads = await insertLoads(pool, withDependencies(landed));
  await enqueueLoads(services, loads);
  log.info({ rows, loads: loads.map((l) => l.id) }, `demo: loading ${rows} generated hires (1% break a rule on purpose); the dashboard fills in as they land`);
  return loads;
}
