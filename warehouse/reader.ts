import type { Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { AppError } from '../core/errors.js';
import { duckdb, queryRows } from './duck.js';
import { fileId, holdForRead, releaseRead } from './holds.js';

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
  /** The version file (what `hr.duckdb` linked to when it was opened), and its fileId. */
  file: string;
  id: string;
  instance: DuckDBInstance;
  info: WarehouseInfo;
  users: number;
  retired: boolean;
}

/** How often an open reader looks whether a newer version was published (see release below). */
const WATCH_MS = 250;

/** Every reader of this process, so that a refresh here can ask them to let go of a file. */
const readers = new Set<WarehouseReader>();

/**
 * The read side of the warehouse: the published DuckDB file, opened READ_ONLY. Before each use it
 * looks at the file `hr.duckdb` links to; a refresh swaps the link to a new file, which is opened
 * for the next queries while queries already running finish on the old one (closed when its last
 * user is done). A read-only open takes a shared lock only, so notebooks and other processes can
 * open the same file at the same time.
 *
 * The version before the published one is the file the next refresh rewrites, so a reader must
 * let go of it soon: while one is open, a timer looks every WATCH_MS whether the link moved, and
 * closes the old version as soon as no query uses it, even when no request comes.
 */
export class WarehouseReader {
  private current: Opened | undefined;
  private opening: Promise<Opened> | undefined;
  private watch: NodeJS.Timeout | undefined;

  constructor(readonly file: string) {
    readers.add(this);
  }

  async use<T>(fn: (conn: DuckDBConnection, info: WarehouseInfo) => Promise<T>): Promise<T> {
    let opened = await this.acquire();
    // Released between acquire() and here (a refresh of this process, the timer): take the next.
    while (opened.retired) opened = await this.acquire();
    opened.users++;
    let conn: DuckDBConnection | undefined;
    try {
      conn = await opened.instance.connect();
      return await fn(conn, opened.info);
    } finally {
      conn?.closeSync();
      opened.users--;
      if (opened.retired && opened.users === 0) closeOpened(opened);
    }
  }

  private async acquire(): Promise<Opened> {
    const key = await keyOf(this.file);
    if (key === null) throw new WarehouseNotReadyError();
    if (this.current?.key === key) return this.current;
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /**
   * Opens the file the link names, registered in holds.ts first so that a refresh of this process
   * does not rewrite it meanwhile. If that refresh already claimed it, the link has moved on since
   * it was read: read it again.
   */
  private async open(): Promise<Opened> {
    for (let attempt = 1; ; attempt++) {
      const retry = attempt < 5;
      const file = await realpath(this.file).catch(() => null);
      if (file === null) throw new WarehouseNotReadyError();
      const s = await stat(file).catch(() => null);
      if (s === null) {
        if (retry) continue; // removed after we read the link (two refreshes since)
        throw new WarehouseNotReadyError();
      }
      const key = keyFromStat(s);
      if (this.current?.key === key) return this.current;
      const id = `${s.dev}:${s.ino}`;
      if (!holdForRead(id)) {
        if (retry) continue; // being rewritten: the link has moved on since we read it
        throw new WarehouseNotReadyError();
      }
      let instance: DuckDBInstance | undefined;
      try {
        instance = await (await duckdb()).create(file, { access_mode: 'READ_ONLY' });
        // The name still on the file we registered (names of removed versions can come back).
        if ((await fileId(file)) !== id) throw new Error(`${file} was replaced while it was opened`);
        const opened: Opened = { key, id, file, instance, info: await readInfo(instance), users: 0, retired: false };
        this.replace(opened);
        return opened;
      } catch (err) {
        instance?.closeSync();
        releaseRead(id);
        // The link moved on while we opened (a refresh elsewhere may now be rewriting this file).
        const moved = (await fileId(file)) !== id || (await realpath(this.file).catch(() => null)) !== file;
        if (retry && !(err instanceof WarehouseNotReadyError) && moved) continue;
        throw err;
      }
    }
  }

  private replace(next: Opened | undefined): void {
    const old = this.current;
    this.current = next;
    if (old) retire(old);
    if (next && !this.watch) {
      this.watch = setInterval(() => void this.look(), WATCH_MS);
      this.watch.unref();
    } else if (!next && this.watch) {
      clearInterval(this.watch);
      this.watch = undefined;
    }
  }

  /** The timer: once the link has moved, the version held is closed when no query uses it. */
  private async look(): Promise<void> {
    const c = this.current;
    if (!c || this.opening) return;
    if ((await keyOf(this.file)) !== c.key && this.current === c) this.release(c.id);
  }

  /** Closes the instance on the file `id` if no query uses it; the next use opens the published file. */
  release(id: string): void {
    const c = this.current;
    if (c?.id === id && c.users === 0) this.replace(undefined);
  }

  close(): void {
    this.replace(undefined);
    readers.delete(this);
  }
}

/** Asks this process's readers to close the file `id` (a refresh will rewrite it) if they are idle. */
export function releaseIdleReaders(id: string): void {
  for (const r of readers) r.release(id);
}

function retire(o: Opened): void {
  o.retired = true;
  if (o.users === 0) closeOpened(o);
}

function closeOpened(o: Opened): void {
  o.instance.closeSync();
  releaseRead(o.id);
}

const keyFromStat = (s: Stats) => `${s.dev}:${s.ino}:${s.mtimeMs}`;

async function keyOf(file: string): Promise<string | null> {
  const s = await stat(file).catch(() => null);
  return s && keyFromStat(s);
}

async function readInfo(instance: DuckDBInstance): Promise<WarehouseInfo> {
  const conn = await instance.connect();
  try {
    const [row] = await queryRows<{ version: number; refreshed_at: string; build: string }>(
      conn,
      `SELECT version::DOUBLE AS version, strftime(refreshed_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS refreshed_at, build FROM warehouse_info`,
    );
    if (!row) throw new WarehouseNotReadyError();
    return { version: row.version, refreshedAt: row.refreshed_at, build: row.build };
  } finally {
    conn.closeSync();
  }
}

const shared = new Map<string, WarehouseReader>();

/** One reader per published file per process, shared by the routes that read it. */
export function sharedReader(file: string): WarehouseReader {
  let r = shared.get(file);
  if (!r) shared.set(file, (r = new WarehouseReader(file)));
  return r;
}
