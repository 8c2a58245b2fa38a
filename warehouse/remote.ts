import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../core/config.js';
import type { Pool, PoolClient } from '../core/db.js';
import type { Logger } from '../core/log.js';
import { storageFor, StorageNotFoundError, type Storage } from '../storage/index.js';
import { liveFiles, type Ledger } from './ledger.js';
import type { WarehouseLayout } from './layout.js';
import { SCHEMA_VERSION } from './schema.js';
import { newVersionPath, publishVersion, readVersions, removeVersionsExcept, writeInfo } from './versions.js';

/**
 * The warehouse in a bucket (STORAGE_URL=s3://…). DuckDB writes Parquet and builds its files in
 * local scratch (DATA_DIR/warehouse, a cache); the bucket holds what other machines read:
 *
 *   warehouse/parquet/<table>/…         every live Parquet file, as under DATA_DIR (layout.ts)
 *   warehouse/parquet/manifest.json     written after the files it names, so it never names a missing one
 *   warehouse/duckdb/hr-<version>.duckdb  the published DuckDB file of each version (the last two kept)
 *
 * and PostgreSQL's `warehouse_published` names the newest DuckDB object. The refresh (a worker)
 * uploads; each API process downloads a newer version when it sees one and swaps its local link
 * as a refresh does (versions.ts), answering from the old file meanwhile. A worker on another
 * machine fetches the Parquet files it lacks before it builds. With the local backend (the
 * default) the files already are the storage's objects: everything here does nothing.
 */

export const PARQUET_PREFIX = 'warehouse/parquet/';
export const DUCKDB_PREFIX = 'warehouse/duckdb/';
const pad = (n: number) => String(n).padStart(10, '0');
export const duckdbKey = (version: number) => `${DUCKDB_PREFIX}hr-${pad(version)}.duckdb`;

/** The bucket, or null with the local backend (the files are in place already). */
export async function remoteStorage(config: Config): Promise<Storage | null> {
  const store = await storageFor(config);
  return store.kind === 'local' ? null : store;
}

/** The local files of one ledger entry (a partitioned base is a folder), relative to the Parquet folder. */
async function localFilesOf(parquetDir: string, rel: string): Promise<string[]> {
  const full = path.join(parquetDir, rel);
  const s = await stat(full).catch(() => null);
  if (!s) return [];
  if (s.isFile()) return [rel];
  const out: string[] = [];
  for (const e of await readdir(full, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(path.relative(parquetDir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
  }
  return out;
}

async function keysUnder(store: Storage, prefix: string): Promise<Map<string, number>> {
  const keys = new Map<string, number>();
  for await (const o of store.list(prefix)) keys.set(o.key, o.size);
  return keys;
}

/**
 * Uploads the live Parquet files the bucket lacks, then the manifest, then deletes the objects
 * no live file names any more (superseded bases, compacted deltas). Under the refresh lock.
 */
export async function mirrorParquet(store: Storage, layout: WarehouseLayout, ledger: Ledger, log: Logger): Promise<{ uploaded: number; removed: number }> {
  const there = await keysUnder(store, PARQUET_PREFIX);
  const live = new Set<string>();
  let uploaded = 0;
  for (const f of liveFiles(ledger)) {
    for (const rel of await localFilesOf(layout.parquet, f.path)) {
      const key = PARQUET_PREFIX + rel;
      live.add(key);
      const size = (await stat(path.join(layout.parquet, rel))).size;
      if (there.get(key) === size) continue; // Parquet files are never rewritten under one name
      await store.put(key, createReadStream(path.join(layout.parquet, rel)));
      uploaded++;
    }
  }
  const manifestKey = `${PARQUET_PREFIX}manifest.json`;
  if (await stat(layout.manifest).catch(() => null)) await store.put(manifestKey, createReadStream(layout.manifest));
  let removed = 0;
  for (const key of there.keys()) {
    if (key === manifestKey || live.has(key)) continue;
    await store.delete(key);
    removed++;
  }
  if (uploaded + removed > 0) log.info({ uploaded, removed, location: store.location }, 'warehouse Parquet files mirrored to the storage');
  return { uploaded, removed };
}

/**
 * A worker whose local folder lacks live Parquet files (another machine exported them) fetches
 * them from the bucket, so that it builds incrementally instead of exporting whole tables again.
 * Files the bucket lacks too stay missing (forgetMissingFiles then re-exports those tables).
 */
export async function fetchMissingParquet(store: Storage, layout: WarehouseLayout, ledger: Ledger, log: Logger): Promise<number> {
  let fetched = 0;
  let there: Map<string, number> | undefined;
  for (const f of liveFiles(ledger)) {
    if (f.rows === 0 || (await stat(path.join(layout.parquet, f.path)).catch(() => null))) continue;
    there ??= await keysUnder(store, PARQUET_PREFIX);
    const prefix = PARQUET_PREFIX + f.path;
    for (const key of there.keys()) {
      if (key !== prefix && !key.startsWith(`${prefix}/`)) continue;
      await download(store, key, path.join(layout.parquet, ...key.slice(PARQUET_PREFIX.length).split('/')));
      fetched++;
    }
  }
  if (fetched > 0) log.info({ fetched }, 'warehouse Parquet files fetched from the storage');
  return fetched;
}

/** Streams an object to `file` through a temp name: the file appears whole or not at all. */
async function download(store: Storage, key: string, file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.download-${process.pid}`;
  try {
    await pipeline(await store.get(key), createWriteStream(tmp));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * After a publish: uploads the published DuckDB file under its version's key (once), records it
 * in PostgreSQL, and deletes uploaded versions older than the one before it.
 */
export async function uploadPublished(store: Storage, db: Pool | PoolClient, layout: WarehouseLayout, log: Logger): Promise<number | null> {
  const pub = (await readVersions(layout)).published;
  if (!pub?.info) return null;
  const version = pub.info.lastBatch;
  const key = duckdbKey(version);
  const recorded = await db.query('SELECT 1 FROM warehouse_published WHERE version = $1', [version]);
  if (recorded.rowCount === 0 || !(await store.exists(key))) {
    const { size } = await store.put(key, createReadStream(pub.file));
    await db.query(
      `INSERT INTO warehouse_published (version, key, bytes, schema_version, refreshed_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (version) DO UPDATE SET key = EXCLUDED.key, bytes = EXCLUDED.bytes, published_at = now()`,
      [version, key, size, pub.info.schemaVersion, pub.info.refreshedAt],
    );
    log.info({ version, key, bytes: size }, 'warehouse DuckDB file uploaded');
  }
  // The last two stay: an API process may be downloading the one before.
  const { rows } = await db.query<{ version: number; key: string }>(
    'SELECT version::float8 AS version, key FROM warehouse_published ORDER BY version DESC OFFSET 2',
  );
  for (const r of rows) {
    await store.delete(r.key);
    await db.query('DELETE FROM warehouse_published WHERE version = $1', [r.version]);
  }
  return version;
}

/** How often an API process asks PostgreSQL whether a newer DuckDB file was published. */
const LOOK_EVERY_MS = 1_000;

/**
 * For an API process: a function to call before reading the warehouse. At most once a second it
 * looks up the newest published version; when it is newer than the local one, it downloads it
 * (to tmp/, then into versions/) and swaps the local `hr.duckdb` link to it. Readers answer from
 * the old file meanwhile and move to the new one on their next query (reader.ts). One download at
 * a time; a failed one is logged and tried again on the next look. Does nothing on the local backend.
 */
export function publishedFollower(services: { config: Config; pool: Pool; log: Logger }, layout: WarehouseLayout): () => Promise<void> {
  let f = followers.get(services.config);
  if (!f) followers.set(services.config, (f = makeFollower(services, layout)));
  return f;
}

/** One per process (per config: each test suite has its own), shared by the routes that read. */
const followers = new WeakMap<Config, () => Promise<void>>();

function makeFollower({ config, pool, log }: { config: Config; pool: Pool; log: Logger }, layout: WarehouseLayout): () => Promise<void> {
  let lookedAt = 0;
  let running: Promise<void> | undefined;
  const look = async (): Promise<void> => {
    const store = await remoteStorage(config);
    if (!store) return;
    const { rows } = await pool.query<{ version: number; key: string; schema_version: number; refreshed_at: Date }>(
      'SELECT version::float8 AS version, key, schema_version, refreshed_at FROM warehouse_published ORDER BY version DESC LIMIT 1',
    );
    const newest = rows[0];
    if (!newest || newest.schema_version !== SCHEMA_VERSION) return;
    const versions = await readVersions(layout);
    if ((versions.published?.info?.lastBatch ?? -1) >= newest.version) return;
    await mkdir(layout.tmp, { recursive: true });
    const file = newVersionPath(layout, versions);
    try {
      await download(store, newest.key, path.join(layout.tmp, path.basename(file)));
    } catch (err) {
      if (err instanceof StorageNotFoundError) return; // replaced meanwhile: the next look finds the newer one
      throw err;
    }
    await mkdir(layout.versions, { recursive: true });
    await rename(path.join(layout.tmp, path.basename(file)), file);
    await writeInfo(file, { schemaVersion: newest.schema_version, lastBatch: newest.version, refreshedAt: newest.refreshed_at.toISOString() });
    await publishVersion(layout, file);
    const previous = versions.published?.file;
    await removeVersionsExcept(layout, previous ? [file, previous] : [file]);
    log.info({ version: newest.version }, 'warehouse version fetched from the storage');
  };
  return async () => {
    if (config.storage.kind === 'local') return;
    if (!running && Date.now() - lookedAt >= LOOK_EVERY_MS) {
      lookedAt = Date.now();
      running = look()
        .catch((err: unknown) => log.warn({ err }, 'could not fetch the newest warehouse version; answering from the one held'))
        .finally(() => {
          running = undefined;
        });
    }
    // A process holding no version yet waits for the first; the others answer from the one they hold.
    const held = await readVersions(layout).then((v) => v.published !== null);
    if (!held && running) await running;
  };
}
