import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import type { Services } from '../jobs/index.js';
import type { PoolClient } from '../core/db.js';
import { TABLE_NAMES, TABLES, type TableDef, type TableName } from '../core/tables.js';
import { avroType, BLOCK_SIZE, CODEC, DEFLATE_LEVEL } from './avro.js';
import { CopyToAvroWriter } from './avro-writer.js';
import { Digest } from './digest.js';
import type { Storage } from '../storage/index.js';
import {
  backupStorage,
  entriesOf,
  fileKey,
  fileName,
  MANIFEST_FORMAT,
  manifestKey,
  newBackupId,
  partialKey,
  prune,
  type BackupEntry,
  type Manifest,
  type ManifestTable,
} from './sets.js';

export interface BackupOptions {
  tables?: readonly TableName[];
  reason?: string;
  /** Called after each table's file is complete; tests use it to stop a backup half-way. */
  onTable?: (table: TableName) => Promise<void> | void;
}

/**
 * Writes one backup set: every requested table read in ONE repeatable-read, read-only
 * transaction (so all files show the same instant), each streamed COPY → Avro → the storage (a
 * file, or a multipart upload to the bucket) with flat memory. Returns the entries of the
 * finished set, which only then becomes visible (its manifest is written last).
 */
export async function createBackup(services: Services, opts: BackupOptions = {}): Promise<BackupEntry[]> {
  const { config, pool, log } = services;
  const store = await backupStorage(config);
  const wanted = new Set(opts.tables ?? TABLE_NAMES);
  const tables = TABLE_NAMES.filter((t) => wanted.has(t));
  const id = newBackupId();
  const written: string[] = [];

  const client = await pool.connect();
  let manifest: Manifest;
  let failed: Error | undefined;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    // The first statement fixes the snapshot every COPY below reads.
    const { rows } = await client.query<{ snapshot_at: Date; version: number | null }>(
      'SELECT now() AS snapshot_at, (SELECT max(version) FROM schema_migrations) AS version',
    );
    const snapshotAt = rows[0]!.snapshot_at.toISOString();
    const files: ManifestTable[] = [];
    for (const table of tables) {
      written.push(partialKey(id, fileName(table)));
      files.push(await writeTable(client, table, store, { id, snapshotAt }));
      await opts.onTable?.(table);
    }
    await client.query('COMMIT');
    // Only now do the files take their final keys: a set cut short leaves `.partial` objects only.
    for (const f of files) {
      written.push(fileKey(id, f.file));
      await store.move(partialKey(id, f.file), fileKey(id, f.file));
    }
    manifest = {
      format: MANIFEST_FORMAT,
      id,
      snapshotAt,
      finishedAt: new Date().toISOString(),
      schemaVersion: rows[0]!.version ?? 0,
      reason: opts.reason ?? 'api',
      tables: files,
    };
    // The manifest last: with it the set is listed, complete.
    await store.put(manifestKey(id), Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
  } catch (err) {
    // A COPY cut short leaves the connection mid-protocol; dropping it is the only safe
    // rollback (the server aborts the read-only transaction when the socket closes).
    failed = err as Error;
    for (const key of written) await store.delete(key).catch(() => {});
    throw err;
  } finally {
    client.release(failed);
  }

  log.info({ backup: id, tables: manifest.tables.map((t) => ({ table: t.table, rows: t.rows, bytes: t.bytes })) }, 'backup written');
  const removed = await prune(store, config.BACKUP_KEEP, Date.now(), config.dirs.backups);
  if (removed.length > 0) log.info({ removed, keep: config.BACKUP_KEEP }, 'old backups removed');
  return entriesOf(manifest);
}

/** What backs a table up: its columns in dictionary order, ordered by id, in binary COPY format. */
function backupQuery(table: TableDef): string {
  const cols = table.columns.map((c) => `"${c.name}"`).join(', ');
  return `COPY (SELECT ${cols} FROM "${table.name}" ORDER BY id) TO STDOUT (FORMAT binary)`;
}

async function writeTable(
  client: PoolClient,
  table: TableName,
  store: Storage,
  meta: { id: string; snapshotAt: string },
): Promise<ManifestTable> {
  const def = TABLES[table];
  const file = fileName(table);
  const source = client.query(copyTo(backupQuery(def)));
  const encoder = new CopyToAvroWriter(def, avroType(def), {
    blockSize: BLOCK_SIZE,
    level: DEFLATE_LEVEL,
    metadata: {
      'hr.table': Buffer.from(table),
      'hr.backup': Buffer.from(meta.id),
      'hr.snapshot_at': Buffer.from(meta.snapshotAt),
    },
  });
  const digest = new Digest();
  // The storage reads the digest's output as it comes (a temp file fsynced and renamed, or a
  // multipart upload); a failed put stops the COPY, a failed COPY fails the put.
  const put = store.put(partialKey(meta.id, file), digest).catch((err: unknown) => {
    digest.destroy(err as Error);
    throw err;
  });
  // Both settle before this returns, so a failed put has cleaned up (temp file, multipart) first.
  const [copied, stored] = await Promise.allSettled([pipeline(source, encoder, digest), put]);
  if (copied.status === 'rejected') throw copied.reason;
  if (stored.status === 'rejected') throw stored.reason;
  return { table, file, rows: encoder.rows, bytes: digest.bytes, sha256: digest.hex(), codec: CODEC };
}
