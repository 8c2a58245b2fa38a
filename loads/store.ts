import type { Config } from '../core/config.js';
import type { Pool, PoolClient } from '../core/db.js';
import type { TableName } from '../core/tables.js';
import { showFile } from './source.js';

/**
 * The `loads` table: one row per CSV file, the source of truth for a load's state. The API
 * creates rows and reads them; the worker moves them along. BullMQ only carries the load id.
 */
export type LoadStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface LoadRow {
  id: string;
  table_name: TableName;
  file: string;
  bytes: number;
  status: LoadStatus;
  after_loads: string[];
  rows_read: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
  wrong_width: number;
  next_offset: number;
  next_line: number;
  attempts: number;
  error: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  file_removed_at: Date | null;
  /** 'api' (POST /loads, the demo) or 'inbox' (a file dropped into landing/inbox/). */
  source: LoadSource;
  /** Inbox loads: the file's name as it was dropped. */
  source_name: string | null;
}

export type LoadSource = 'api' | 'inbox';

/** What GET /loads/{id} answers. */
export interface LoadView {
  id: string;
  table: TableName;
  status: LoadStatus;
  file: string;
  bytes: number;
  rowsRead: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
  attempts: number;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  fileRemovedAt: string | null;
  source: LoadSource;
  sourceName: string | null;
}

/**
 * The answer for a load; its file is shown relative to DATA_DIR (local storage) or as
 * `s3://bucket/key` (loads/source.ts showFile). A bare DATA_DIR means the local storage.
 */
export function toView(r: LoadRow, where: Pick<Config, 'DATA_DIR' | 'storage'> | string): LoadView {
  const config = typeof where === 'string' ? { DATA_DIR: where, storage: { kind: 'local' as const, root: where } } : where;
  return {
    id: r.id,
    table: r.table_name,
    status: r.status,
    file: showFile(r.file, config),
    bytes: r.bytes,
    rowsRead: r.rows_read,
    inserted: r.inserted,
    updated: r.updated,
    unchanged: r.unchanged,
    rejected: r.rejected,
    attempts: r.attempts,
    error: r.error,
    createdAt: r.created_at.toISOString(),
    startedAt: r.started_at?.toISOString() ?? null,
    finishedAt: r.finished_at?.toISOString() ?? null,
    fileRemovedAt: r.file_removed_at?.toISOString() ?? null,
    source: r.source,
    sourceName: r.source_name,
  };
}

export const isTerminal = (s: LoadStatus) => s === 'succeeded' || s === 'failed';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isLoadId = (id: string) => UUID.test(id);

export interface NewLoad {
  id: string;
  table: TableName;
  file: string;
  bytes: number;
  after?: string[];
  source?: LoadSource;
  sourceName?: string;
}

/**
 * Sets each load's dependencies within one request: hired_employees sent with departments or
 * jobs waits for them (`after`). The order of the list does not matter.
 */
export function withDependencies(landed: readonly Omit<NewLoad, 'after'>[]): NewLoad[] {
  return landed.map((l) => ({
    ...l,
    after: l.table === 'hired_employees' ? landed.filter((o) => o.table !== 'hired_employees').map((o) => o.id) : [],
  }));
}

export async function insertLoads(db: Pool | PoolClient, loads: readonly NewLoad[]): Promise<LoadRow[]> {
  const { rows } = await db.query<LoadRow>(
    `INSERT INTO loads (id, table_name, file, bytes, after_loads, source, source_name)
     SELECT l.id, l.table_name, l.file, l.bytes, ARRAY(SELECT jsonb_array_elements_text(l.after))::uuid[], l.source, l.source_name
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::text[])
         AS l(id, table_name, file, bytes, after, source, source_name)
     RETURNING *`,
    [
      loads.map((l) => l.id),
      loads.map((l) => l.table),
      loads.map((l) => l.file),
      loads.map((l) => l.bytes),
      loads.map((l) => JSON.stringify(l.after ?? [])),
      loads.map((l) => l.source ?? 'api'),
      loads.map((l) => l.sourceName ?? null),
    ],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  return loads.map((l) => byId.get(l.id)!);
}

export async function getLoad(db: Pool | PoolClient, id: string): Promise<LoadRow | undefined> {
  if (!isLoadId(id)) return undefined;
  const { rows } = await db.query<LoadRow>('SELECT * FROM loads WHERE id = $1', [id]);
  return rows[0];
}

export async function getLoads(db: Pool | PoolClient, ids: readonly string[]): Promise<LoadRow[]> {
  const { rows } = await db.query<LoadRow>('SELECT * FROM loads WHERE id = ANY($1::uuid[])', [ids]);
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((id) => byId.get(id)).filter((r): r is LoadRow => r !== undefined);
}

export interface LoadFilter {
  limit: number;
  table?: TableName | undefined;
  status?: LoadStatus | undefined;
}

export async function listLoads(db: Pool | PoolClient, f: LoadFilter): Promise<LoadRow[]> {
  const { rows } = await db.query<LoadRow>(
    `SELECT * FROM loads
      WHERE ($1::text IS NULL OR table_name = $1) AND ($2::text IS NULL OR status = $2)
      ORDER BY created_at DESC, id DESC LIMIT $3`,
    [f.table ?? null, f.status ?? null, f.limit],
  );
  return rows;
}

/** Marks a load failed unless it already finished; returns whether it changed. */
export async function failLoad(db: Pool | PoolClient, id: string, error: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE loads SET status = 'failed', error = $2, finished_at = now()
      WHERE id = $1 AND status IN ('queued', 'running')`,
    [id, error],
  );
  return (rowCount ?? 0) > 0;
}

/** Loads not finished and created before `olderThanMs` ago: candidates for the reconciler. */
export async function unfinishedLoads(db: Pool | PoolClient, olderThanMs: number): Promise<LoadRow[]> {
  const { rows } = await db.query<LoadRow>(
    `SELECT * FROM loads WHERE status IN ('queued', 'running')
        AND created_at < now() - make_interval(secs => $1::double precision / 1000)
      ORDER BY created_at LIMIT 1000`,
    [olderThanMs],
  );
  return rows;
}

/**
 * The rejects of a load as NDJSON text, a page of lines at a time, in file order. Pages by line
 * number, at most `pageRows` lines and about `pageBytes` of raw text (one more line past it), so
 * memory stays flat for millions of rejects, and for raw text kept before it was capped.
 * A line whose raw text was cut at REJECT_RAW_MAX_BYTES says `"truncated": true`.
 */
export async function* rejectsOf(
  db: Pool | PoolClient,
  loadId: string,
  { pageRows = 1000, pageBytes = 4 * 1024 * 1024 } = {},
): AsyncGenerator<string> {
  let after = 0;
  for (;;) {
    const { rows } = await db.query<{ position: number; raw: string; errors: unknown; truncated: boolean }>(
      `SELECT position, raw, errors, truncated FROM (
         SELECT position, raw, errors, raw_truncated AS truncated,
                sum(octet_length(raw)) OVER (ORDER BY position) - octet_length(raw) AS before
           FROM (SELECT position, raw, errors, raw_truncated FROM rejects
                  WHERE source = 'load' AND source_id = $1 AND position > $2 ORDER BY position LIMIT $3) r
       ) p WHERE before < $4 ORDER BY position`,
      [loadId, after, pageRows, pageBytes],
    );
    if (rows.length === 0) return;
    after = rows[rows.length - 1]!.position;
    yield rows
      .map((r) => JSON.stringify(r.truncated ? { line: r.position, raw: r.raw, truncated: true, errors: r.errors } : { line: r.position, raw: r.raw, errors: r.errors }))
      .join('\n') + '\n';
  }
}
