import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

/**
 * DuckDB's native module, loaded on first use: processes that never touch the warehouse (a
 * backup, a restore that only asks for a refresh, a load) do not pay for loading it.
 */
export async function duckdb(): Promise<typeof DuckDBInstance> {
  return (await import('@duckdb/node-api')).DuckDBInstance;
}
import { TABLES, type Column, type TableName } from '../core/tables.js';

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

/** Limits for the DuckDB instances that build the warehouse (set from config by the refresh). */
let buildOptions: Record<string, string> = {};

export function setBuildLimits(memoryLimit: string, threads: number, spillDir: string): void {
  buildOptions = { memory_limit: memoryLimit, threads: String(threads), temp_directory: spillDir };
}

/** A throwaway in-memory DuckDB for converting and merging Parquet; `options` add to the build limits. */
export async function withMemoryDuck<T>(fn: (conn: DuckDBConnection) => Promise<T>, options: Record<string, string> = {}): Promise<T> {
  const instance = await (await duckdb()).create(':memory:', { ...buildOptions, ...options });
  const conn = await instance.connect();
  try {
    return await fn(conn);
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/** Opens a DuckDB file read-write, runs `fn`, checkpoints and closes it (so no WAL is left). */
export async function withDuckFile<T>(file: string, fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
  const instance = await (await duckdb()).create(file, buildOptions);
  const conn = await instance.connect();
  try {
    const out = await fn(conn);
    await conn.run('CHECKPOINT');
    return out;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

export async function queryRows<T>(conn: DuckDBConnection, sql: string, params: (string | number | boolean | null)[] = []): Promise<T[]> {
  const reader = await conn.runAndReadAll(sql, params);
  return reader.getRowObjectsJS() as T[];
}
