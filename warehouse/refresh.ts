import path from 'node:path';
import type { Config } from '../core/config.js';
import type { Pool } from '../core/db.js';
import type { Logger } from '../core/log.js';
import { compact } from './compact.js';
import { setBuildLimits } from './duck.js';
import { exportChanges, type ExportedTable } from './export.js';
import { readLedger } from './ledger.js';
import { layoutOf } from './layout.js';
import { forgetMissingFiles, removeOrphans, writeManifest } from './manifest.js';
import { publish, type PublishOptions, type PublishResult } from './publish.js';
import { fetchMissingParquet, mirrorParquet, remoteStorage, uploadPublished } from './remote.js';

/** Arbitrary constant: the advisory lock that keeps two refreshes (in any process) from overlapping. */
const REFRESH_LOCK = 748_201_404;

export interface RefreshResult {
  batch: number | null;
  exported: ExportedTable[];
  build: 'full' | 'incremental' | 'none';
  via: PublishResult['via'];
  version: number;
  refreshedAt: string | null;
  compacted: string[];
  ms: { export: number; publish: number; compact: number; total: number };
}

export interface RefreshDeps {
  config: Config;
  pool: Pool;
  log: Logger;
}

/**
 * One warehouse refresh: export the changes from PostgreSQL to Parquet, publish a new DuckDB file
 * if anything changed, and compact Parquet deltas that piled up. Holds a PostgreSQL advisory lock
 * throughout, so refreshes never overlap, whoever starts them.
 */
export async function refreshWarehouse({ config, pool, log }: RefreshDeps, opts: PublishOptions = {}): Promise<RefreshResult> {
  const layout = layoutOf(config.dirs.warehouse);
  setBuildLimits(config.WAREHOUSE_MEMORY_LIMIT, config.WAREHOUSE_THREADS, path.join(layout.tmp, 'spill'));
  const t0 = performance.now();
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [REFRESH_LOCK]);
    try {
      const before = await readLedger(client);
      // With a bucket: files another machine exported come from there; what this refresh makes goes there.
      const store = await remoteStorage(config);
      if (store) await fetchMissingParquet(store, layout, before, log);
      await forgetMissingFiles(client, layout, before, log);
      await removeOrphans(layout, await readLedger(client));
      const exported = await exportChanges(client, layout, log);
      let ledger = await readLedger(client);
      if (exported.batch !== null) await writeManifest(layout, ledger);
      const t1 = performance.now();
      const published = await publish(layout, ledger, log, opts);
      const t2 = performance.now();
      const compacted = await compact(client, layout, ledger, config.WAREHOUSE_COMPACT_AFTER, log);
      if (compacted.length > 0) {
        ledger = await readLedger(client);
        await writeManifest(layout, ledger);
      }
      if (store) {
        await mirrorParquet(store, layout, ledger, log);
        await uploadPublished(store, client, layout, log);
      }
      const t3 = performance.now();
      return {
        batch: exported.batch,
        exported: exported.tables,
        build: published.build,
        via: published.via,
        version: published.version,
        refreshedAt: published.refreshedAt,
        compacted,
        ms: { export: ms(t1 - t0), publish: ms(t2 - t1), compact: ms(t3 - t2), total: ms(t3 - t0) },
      };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [REFRESH_LOCK]).catch(() => {});
    }
  } finally {
    client.release();
  }
}

const ms = (v: number) => Math.round(v);
