import { stat } from 'node:fs/promises';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { AppError } from '../core/errors.js';
import { queryRows } from './duck.js';

/** What the published file says about itself (its warehouse_info row). */
export interface WarehouseInfo {
  version: number;
  refreshedAt: string;
  build: string;
}

export class WarehouseNotReadyError extends AppError {
  constructor() {
    super(
      503,
      'warehouse_not_ready',
      'the warehouse has not been built yet; it builds after the first ingest or load, or on POST /warehouse/refresh (add ?wait=true to wait for it)',
    );
  }
}

interface Opened {
  key: string;
  instance: DuckDBInstance;
  info: WarehouseInfo;
  users: number;
  retired: boolean;
}

/**
 * The read side of the warehouse: the published DuckDB file, opened READ_ONLY. Before each use it
 * looks at the file's inode; a refresh renames a new file into place, so a new inode means a new
 * version, which is opened for the next queries while queries already running finish on the old
 * one (closed when its last user is done). A read-only open takes a shared lock only, so
 * notebooks and other processes can open the same file at the same time.
 */
export class WarehouseReader {
  private current: Opened | undefined;
  private opening: Promise<Opened> | undefined;

  constructor(readonly file: string) {}

  async use<T>(fn: (conn: DuckDBConnection, info: WarehouseInfo) => Promise<T>): Promise<T> {
    const opened = await this.acquire();
    opened.users++;
    let conn: DuckDBConnection | undefined;
    try {
      conn = await opened.instance.connect();
      return await fn(conn, opened.info);
    } finally {
      conn?.closeSync();
      opened.users--;
      if (opened.retired && opened.users === 0) opened.instance.closeSync();
    }
  }

  private async acquire(): Promise<Opened> {
    const s = await stat(this.file).catch(() => null);
    if (s === null) throw new WarehouseNotReadyError();
    const key = `${s.dev}:${s.ino}:${s.mtimeMs}`;
    if (this.current?.key === key) return this.current;
    this.opening ??= this.open(key).finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async open(key: string): Promise<Opened> {
    const instance = await DuckDBInstance.create(this.file, { access_mode: 'READ_ONLY' });
    const conn = await instance.connect();
    let ok = false;
    try {
      const [row] = await queryRows<{ version: number; refreshed_at: string; build: string }>(
        conn,
        `SELECT version::DOUBLE AS version, strftime(refreshed_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS refreshed_at, build FROM warehouse_info`,
      );
      if (!row) throw new WarehouseNotReadyError();
      const opened: Opened = {
        key,
        instance,
        info: { version: row.version, refreshedAt: row.refreshed_at, build: row.build },
        users: 0,
        retired: false,
      };
      const old = this.current;
      this.current = opened;
      if (old) {
        old.retired = true;
        if (old.users === 0) old.instance.closeSync();
      }
      ok = true;
      return opened;
    } finally {
      conn.closeSync();
      if (!ok) instance.closeSync();
    }
  }

  close(): void {
    const c = this.current;
    this.current = undefined;
    if (c) {
      c.retired = true;
      if (c.users === 0) c.instance.closeSync();
    }
  }
}

const shared = new Map<string, WarehouseReader>();

/** One reader per published file per process, shared by the routes that read it. */
export function sharedReader(file: string): WarehouseReader {
  let r = shared.get(file);
  if (!r) shared.set(file, (r = new WarehouseReader(file)));
  return r;
}
