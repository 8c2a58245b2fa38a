import { constants, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES } from '../core/tables.js';
import { queryRows, withDuckFile } from './duck.js';
import { lastBatch, type Ledger } from './ledger.js';
import type { WarehouseLayout } from './layout.js';
import { applyChanges, applyComments, createStarSchema, SCHEMA_VERSION } from './schema.js';
import { currentRowsSql, latestChangesSql } from './sources.js';

export interface PublishResult {
  build: 'full' | 'incremental' | 'none';
  version: number;
  refreshedAt: string | null;
  ms: number;
}

/** Written beside the DuckDB file after each publish, so a no-op refresh need not open it. */
interface Sidecar {
  schemaVersion: number;
  lastBatch: number;
  refreshedAt: string;
}

const sidecarPath = (layout: WarehouseLayout) => `${layout.duckdb}.json`;

async function readSidecar(layout: WarehouseLayout): Promise<Sidecar | null> {
  try {
    return JSON.parse(await readFile(sidecarPath(layout), 'utf8')) as Sidecar;
  } catch {
    return null;
  }
}

/**
 * Brings the published DuckDB file up to the Parquet files in the ledger, atomically:
 * the new version is built in tmp/ (a copy of the published file with the new deltas applied, or
 * a full build from Parquet), checkpointed, closed, and renamed over `hr.duckdb`. Readers that
 * have the old file open keep reading the old inode; new opens see the new file. The published
 * file is never opened read-write, so other processes (notebooks) can always open it read-only.
 */
export async function publish(layout: WarehouseLayout, ledger: Ledger, log: Logger, opts: { full?: boolean } = {}): Promise<PublishResult> {
  const started = performance.now();
  const target = lastBatch(ledger);
  const published = existsSync(layout.duckdb) ? await readSidecar(layout) : null;
  const baseAfter = (batch: number) => TABLE_NAMES.some((t) => (ledger[t].base?.batch ?? 0) > batch);
  // Changes bigger than a quarter of a table are cheaper to build in full than to apply.
  const bigChange = (after: number) =>
    TABLE_NAMES.some((t) => {
      const changed = ledger[t].deltas.filter((d) => d.batch > after).reduce((n, d) => n + d.rows, 0);
      return changed > 1000 && changed > 0.25 * (ledger[t].base?.rows ?? 0);
    });
  const incremental =
    !opts.full &&
    published !== null &&
    published.schemaVersion === SCHEMA_VERSION &&
    !baseAfter(published.lastBatch) &&
    !bigChange(published.lastBatch);
  if (incremental && published.lastBatch >= target) {
    return { build: 'none', version: published.lastBatch, refreshedAt: published.refreshedAt, ms: 0 };
  }

  await mkdir(layout.tmp, { recursive: true });
  const building = path.join(layout.tmp, `hr.duckdb.build-${target}-${process.pid}-${Date.now()}`);
  const refreshedAt = new Date().toISOString();
  const build: 'full' | 'incremental' = incremental ? 'incremental' : 'full';
  try {
    if (incremental) await copyFile(layout.duckdb, building, constants.COPYFILE_FICLONE);
    await withDuckFile(building, async (conn) => {
      if (incremental) {
        const info = await queryRows<{ last_batch: number }>(conn, 'SELECT last_batch::INTEGER AS last_batch FROM warehouse_info');
        // The sidecar is a hint; the file itself says what it holds.
        if (info[0]?.last_batch !== published!.lastBatch) throw new Error('published file does not match its sidecar');
        // One transaction: no automatic checkpoint can move rowids in the middle of it.
        await conn.run('BEGIN TRANSACTION');
        await applyNewDeltas(conn, layout, ledger, published!.lastBatch);
      } else {
        await createStarSchema(conn, {
          departments: currentRowsSql(layout.parquet, 'departments', ledger.departments),
          jobs: currentRowsSql(layout.parquet, 'jobs', ledger.jobs),
          hired_employees: currentRowsSql(layout.parquet, 'hired_employees', ledger.hired_employees),
        });
      }
      await conn.run('DELETE FROM warehouse_info');
      await conn.run(`INSERT INTO warehouse_info VALUES ($1, $2, $2, $3::TIMESTAMPTZ, $4, $5)`, [
        SCHEMA_VERSION,
        target,
        refreshedAt,
        build,
        Math.round(performance.now() - started),
      ]);
      if (incremental) await conn.run('COMMIT');
      else await applyComments(conn);
    });
    await rm(`${building}.wal`, { force: true });
    await rename(building, layout.duckdb);
    const sidecar: Sidecar = { schemaVersion: SCHEMA_VERSION, lastBatch: target, refreshedAt };
    await writeFile(`${sidecarPath(layout)}.tmp`, JSON.stringify(sidecar));
    await rename(`${sidecarPath(layout)}.tmp`, sidecarPath(layout));
  } catch (err) {
    await rm(building, { force: true });
    await rm(`${building}.wal`, { force: true });
    if (incremental) {
      // Anything odd about the published copy: fall back to a full build from Parquet.
      log.warn({ err }, 'incremental warehouse build failed; building in full');
      return publish(layout, ledger, log, { full: true });
    }
    throw err;
  }
  const ms = Math.round(performance.now() - started);
  log.info({ build, version: target, ms }, 'warehouse published');
  return { build, version: target, refreshedAt, ms };
}

async function applyNewDeltas(conn: DuckDBConnection, layout: WarehouseLayout, ledger: Ledger, after: number): Promise<void> {
  const changed = new Set<string>();
  for (const table of TABLE_NAMES) {
    const deltas = ledger[table].deltas.filter((d) => d.batch > after);
    if (deltas.length === 0) continue;
    await conn.run(`CREATE TEMP TABLE chg_${table} AS ${latestChangesSql(layout.parquet, deltas, table)}`);
    changed.add(table);
  }
  await applyChanges(conn, changed);
}
