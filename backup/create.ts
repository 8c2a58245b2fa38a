import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import type { Services } from '../jobs/index.js';
import type { PoolClient } from '../core/db.js';
import { TABLE_NAMES, TABLES, type TableDef, type TableName } from '../core/tables.js';
import { avroType, BLOCK_SIZE, CODEC, DEFLATE_LEVEL } from './avro.js';
import { CopyToAvroWriter } from './avro-writer.js';
import { Digest } from './digest.js';
import {
  entriesOf,
  fileName,
  fsync,
  MANIFEST_FORMAT,
  newBackupId,
  partialDir,
  prune,
  setDir,
  writeFileAtomic,
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
 * transaction (so all files show the same instant), each streamed COPY → Avro → disk with flat
 * memory. Returns the entries of the finished set, which only then becomes visible.
 */
export async function createBackup(services: Services, opts: BackupOptions = {}): Promise<BackupEntry[]> {
  const { config, pool, log } = services;
  const root = config.dirs.backups;
  const wanted = new Set(opts.tables ?? TABLE_NAMES);
  const tables = TABLE_NAMES.filter((t) => wanted.has(t));
  const id = newBackupId();
  const work = partialDir(root, id);
  await mkdir(work, { recursive: true });

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
      files.push(await writeTable(client, table, work, { id, snapshotAt }));
      await opts.onTable?.(table);
    }
    await client.query('COMMIT');
    // Only now do the files take their final names: a set cut short leaves `*.part` files only.
    for (const f of files) await rename(path.join(work, `${f.file}.part`), path.join(work, f.file));
    manifest = {
      format: MANIFEST_FORMAT,
      id,
      snapshotAt,
      finishedAt: new Date().toISOString(),
      schemaVersion: rows[0]!.version ?? 0,
      reason: opts.reason ?? 'api',
      tables: files,
    };
    await writeFileAtomic(path.join(work, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(work, setDir(root, id));
    await fsync(root);
  } catch (err) {
    // A COPY cut short leaves the connection mid-protocol; dropping it is the only safe
    // rollback (the server aborts the read-only transaction when the socket closes).
    failed = err as Error;
    await rm(work, { recursive: true, force: true }).catch(() => {});
    throw err;
  } finally {
    client.release(failed);
  }

  log.info({ backup: id, tables: manifest.tables.map((t) => ({ table: t.table, rows: t.rows, bytes: t.bytes })) }, 'backup written');
  const removed = await prune(root, config.BACKUP_KEEP);
  if (removed.length > 0) log.info({ removed, keep: config.BACKUP_KEEP }, 'old backups removed');
  return entriesOf(config, manifest);
}

/** What backs a table up: its columns in dictionary order, ordered by id, in binary COPY format. */
function backupQuery(table: TableDef): string {
  const cols = table.columns.map((c) => `"${c.name}"`).join(', ');
  return `COPY (SELECT ${cols} FROM "${table.name}" ORDER BY id) TO STDOUT (FORMAT binary)`;
}

async function writeTable(
  client: PoolClient,
  table: TableName,
  dir: string,
  meta: { id: string; snapshotAt: string },
): Promise<ManifestTable> {
  const def = TABLES[table];
  const file = fileName(table);
  const tmp = path.join(dir, `${file}.part`);
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
  await pipeline(source, encoder, digest, createWriteStream(tmp));
  await fsync(tmp);
  return { table, file, rows: encoder.rows, bytes: digest.bytes, sha256: digest.hex(), codec: CODEC };
}
