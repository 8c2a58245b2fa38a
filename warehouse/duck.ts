import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

/**
 * DuckDB's native module, loaded on first use: processes that never touch the warehouse (a
 * backup, a restore that only asks for a refresh, a load) do not pay for loading it.
 */
export async function duckdb(): Promise<typeof DuckDBInstance> {
  return (await import('@duckdb/node-api')).DuckDBInstance;
}
import { TABLES, type Column, type TableName } from '../core/tables.js';
import { sqlString } from './layout.js';

/**
 * DuckDB helpers shared by the build and the read side. Timestamps live in DuckDB and Parquet as
 * TIMESTAMP holding UTC wall time (not TIMESTAMPTZ): year, quarter and date then mean UTC in every
 * session, whatever time zone a notebook runs in.
 */
export function duckType(c: Column): string {
  switch (c.pgType) {
    case 'integer':
      return 'INTEGER';
    case 'text':
      return 'VARCHAR';
    case 'timestamptz':
      return 'TIMESTAMP';
  }
}

export function columnNames(table: TableName): string[] {
  return TABLES[table].columns.map((c) => c.name);
}

/** Limits for the DuckDB instance that builds the warehouse (set from config by the refresh). */
let buildOptions: Record<string, string> = {};

export function setBuildLimits(memoryLimit: string, threads: number, spillDir: string): void {
  buildOptions = { memory_limit: memoryLimit, threads: String(threads), temp_directory: spillDir };
}

/**
 * One in-memory DuckDB instance per process for the build side, kept between refreshes: creating
 * an instance (its catalog of built-in functions) and closing it cost more than a refresh's own
 * small writes (at 10M hires on a loaded machine: 13-18 ms to create at real-time priority, 40-90
 * ms without, up to 75 ms to close), and a refresh needed two. Version files are ATTACHed to it and DETACHed when done, which takes and releases
 * the same file lock as an instance of their own. A change of limits starts a new instance; the
 * old one closes when its last user is done. An instance nobody used for ENGINE_IDLE_MS (a
 * second) closes too: it serves a whole refresh and a burst of refreshes, and gives its memory
 * back between them (kept for good, a worker's peak RSS after three 1M-row loads and their
 * refreshes was 590 MB; closed when idle, with the allocator's background threads returning freed
 * pages, 447-465 MB; a refresh at 10M hires 233 ms against 214 ms).
 */
interface Engine {
  key: string;
  instance: Promise<DuckDBInstance>;
  users: number;
  retired: boolean;
  idle?: NodeJS.Timeout;
}
const ENGINE_IDLE_MS = 1_000;
let engine: Engine | undefined;
let attached = 0;

async function withEngine<T>(fn: (instance: DuckDBInstance, engine: Engine) => Promise<T>): Promise<T> {
  const key = JSON.stringify(buildOptions);
  if (!engine || engine.key !== key) {
    const old = engine;
    // auto_checkpoint_skip_wal_threshold 0: a commit that checkpoints skips the WAL (apply.ts).
    // allocator_background_threads: freed memory goes back to the system, not kept by the allocator.
    const options = { ...buildOptions, auto_checkpoint_skip_wal_threshold: '0', allocator_background_threads: 'true' };
    const created: Engine = { key, instance: (async () => (await duckdb()).create(':memory:', options))(), users: 0, retired: false };
    created.instance.catch(() => {
      if (engine === created) engine = undefined;
    });
    engine = created;
    if (old) retire(old);
  }
  const e = engine;
  clearTimeout(e.idle);
  e.users++;
  try {
    return await fn(await e.instance, e);
  } finally {
    e.users--;
    if (e.users === 0) {
      if (e.retired) closeEngine(e);
      else e.idle = setTimeout(() => e.users === 0 && retire(e), ENGINE_IDLE_MS).unref();
    }
  }
}

function retire(e: Engine): void {
  if (e.retired) return;
  e.retired = true;
  if (engine === e) engine = undefined;
  if (e.users === 0) closeEngine(e);
}

function closeEngine(e: Engine): void {
  e.instance.then((i) => i.closeSync()).catch(() => {});
}

/** A connection to the in-memory build instance, for converting and merging Parquet. */
export async function withMemoryDuck<T>(fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
  return withEngine(async (instance) => {
    const conn = await instance.connect();
    try {
      return await fn(conn);
    } finally {
      conn.closeSync();
    }
  });
}

/**
 * Opens a DuckDB file read-write (ATTACHed to the build instance and made the connection's
 * default, so unqualified names are its tables), runs `fn`, checkpoints and DETACHes it: the file
 * is closed, its lock released and no WAL left when this returns. When `fn` throws, its open
 * transaction is rolled back and the file detached without a CHECKPOINT (what DuckDB does at
 * close: committed work in the WAL is checkpointed, as a close of its own instance did).
 */
export async function withDuckFile<T>(file: string, fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
  return withEngine(async (instance, e) => {
    const conn = await instance.connect();
    const alias = `wh_build_${++attached}`;
    let isAttached = false;
    let done = false;
    try {
      await conn.run(`ATTACH ${sqlString(file)} AS ${alias}`);
      isAttached = true;
      await conn.run(`USE ${alias}`);
      const out = await fn(conn);
      await conn.run('CHECKPOINT');
      done = true;
      return out;
    } finally {
      try {
        if (isAttached) {
          if (!done) await conn.run('ROLLBACK').catch(() => {});
          await conn.run('USE memory');
          await conn.run(`DETACH ${alias}`).catch((err: unknown) => {
            // Still attached, so still locked: close the whole instance (after its other users).
            retire(e);
            throw err;
          });
        }
      } finally {
        conn.closeSync();
      }
    }
  });
}

export async function queryRows<T>(conn: DuckDBConnection, sql: string, params: (string | number | boolean | null)[] = []): Promise<T[]> {
  const reader = await conn.runAndReadAll(sql, params);
  return reader.getRowObjectsJS() as T[];
}
