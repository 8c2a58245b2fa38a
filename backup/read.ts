import { Transform, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import avro from 'avsc';
import { UnprocessableError } from '../core/errors.js';
import { TABLES, type TableDef, type TableName } from '../core/tables.js';
import { codecs, parseWriterSchema, schemaMismatch } from './avro.js';
import { Digest } from './digest.js';
import type { Config } from '../core/config.js';
import { StorageNotFoundError, type Storage } from '../storage/index.js';
import { backupStorage, fileKey, readManifest, type ManifestTable } from './sets.js';

/**
 * Reading a backup file back, with every check a restore needs: the header and the embedded
 * schema (it must be this table's), each block (sync marker, decompression, record decoding),
 * and at the end the byte count, the SHA-256 and the record count against the manifest.
 * Any failure is a `BackupFileError`, which says what is wrong with the file.
 */
export class BackupFileError extends UnprocessableError {
  constructor(key: string, problem: string) {
    // Named by its storage key (`backups/<id>/<table>.avro`), never by a path or a bucket's host.
    super(`backup file ${key} is unusable: ${problem}`, { file: key, problem });
  }
}

/**
 * Streams the records of the object `file` (a storage key) into `sink` (object mode), straight
 * from the storage, then checks them against `entry`.
 */
export async function readBackupFile(
  store: Storage,
  file: string,
  table: TableDef,
  entry: ManifestTable,
  sink: Writable[],
  opts: {
    rawTimestamps?: boolean;
    /** Records seen by the first sink, when it counts them: saves a stream stage per record. */
    count?: () => number;
    /**
     * The first sink reads the Avro bytes itself (`AvroToCopy`, made with `avroReading`): no
     * `BlockDecoder`; its `problem` says what is wrong with a file it could not read.
     */
    readsAvro?: { problem: string | undefined };
  } = {},
): Promise<number> {
  const info = await store.stat(file).catch((err: unknown) => {
    if (err instanceof StorageNotFoundError) return undefined;
    throw err;
  });
  const early = !info
    ? new BackupFileError(file, 'the file is missing')
    : info.size !== entry.bytes
      ? new BackupFileError(file, `it holds ${info.size} bytes, the manifest says ${entry.bytes} (truncated or changed)`)
      : undefined;
  if (early) {
    // The sinks may be a COPY waiting for data: ending them releases the connection.
    for (const s of sink) s.on('error', () => {}).destroy(early);
    throw early;
  }
  const digest = new Digest();
  if (opts.readsAvro && !opts.count) throw new Error('readsAvro needs count');
  let problem: string | undefined;
  const decoder = new avro.streams.BlockDecoder({
    codecs,
    parseHook: (schema: avro.Schema) => {
      const type = parseWriterSchema(schema, opts.rawTimestamps);
      const mismatch = schemaMismatch(type, table, schema);
      if (mismatch) throw new Error(mismatch);
      return type;
    },
  });
  decoder.on('error', (err: Error) => {
    problem ??= err.message;
  });
  let rows = 0;
  const counter = new Transform({
    objectMode: true,
    transform(rec: unknown, _enc, cb) {
      rows++;
      cb(null, rec);
    },
  });
  const stages: (Duplex | Writable)[] = opts.count && sink.length > 0 ? sink : sink.length > 0 ? [counter, ...sink] : [counter, nullSink()];
  try {
    const bytes = await store.get(file);
    if (opts.readsAvro) await pipeline(bytes, digest, ...(stages as [Duplex]));
    else await pipeline(bytes, digest, decoder, ...(stages as [Duplex]));
  } catch (err) {
    problem ??= opts.readsAvro?.problem;
    if (problem !== undefined) throw new BackupFileError(file, `it is corrupt: ${problem}`);
    throw err;
  }
  if (opts.count) rows = opts.count();
  const sha = digest.hex();
  if (sha !== entry.sha256) throw new BackupFileError(file, `its SHA-256 is ${sha}, the manifest says ${entry.sha256}`);
  if (rows !== entry.rows) throw new BackupFileError(file, `it holds ${rows} records, the manifest says ${entry.rows}`);
  return rows;
}

/** What `AvroToCopy` needs to read a file of `table` as `readBackupFile` does: the codecs and the schema check. */
export function avroReading(table: TableDef): { codecs: typeof codecs; parseHook: (schema: avro.Schema) => avro.Type } {
  return {
    codecs,
    parseHook: (schema: avro.Schema) => {
      const type = parseWriterSchema(schema, true);
      const mismatch = schemaMismatch(type, table, schema);
      if (mismatch) throw new Error(mismatch);
      return type;
    },
  };
}

function nullSink(): Writable {
  return new Writable({ objectMode: true, write: (_r, _e, cb) => cb() });
}

export interface FileCheck {
  table: TableName;
  file: string;
  ok: boolean;
  rows: number;
  bytes: number;
  sha256: string;
  problem?: string;
}

export interface VerifyReport {
  id: string;
  ok: boolean;
  tables: FileCheck[];
}

/** Checks every file of a set (or one table's) without touching the database. */
export async function verifyBackup(config: Config, id: string, table?: TableName): Promise<VerifyReport> {
  const store = await backupStorage(config);
  const manifest = await readManifest(store, id);
  const tables: FileCheck[] = [];
  for (const entry of manifest.tables) {
    if (table !== undefined && entry.table !== table) continue;
    const file = fileKey(id, entry.file);
    const check: FileCheck = { table: entry.table, file, ok: true, rows: entry.rows, bytes: entry.bytes, sha256: entry.sha256 };
    try {
      await readBackupFile(store, file, TABLES[entry.table], entry, []);
    } catch (err) {
      if (!(err instanceof BackupFileError)) throw err;
      check.ok = false;
      check.problem = (err.details as { problem: string }).problem;
    }
    tables.push(check);
  }
  return { id, ok: tables.every((t) => t.ok), tables };
}
