import type { Pool, PoolClient } from '../core/db.js';
import { cutToBytes, storableText } from '../core/rules.js';
import type { FieldIssue, TableName } from '../core/tables.js';

/** A row that broke a rule, as every write path reports it and the `rejects` table keeps it. */
export interface Reject {
  /** 0-based position in a batch, or 1-based line in a file. */
  position: number;
  raw: string;
  errors: FieldIssue[];
  /** The source text went on past `raw` (cut at the raw cap where the reject was made). */
  truncated?: boolean;
}

export type RejectSource = 'ingest' | 'load' | 'restore';

/** REJECT_RAW_MAX_BYTES's default, for callers without the setting at hand. */
export const DEFAULT_REJECT_RAW_MAX_BYTES = 4 * 1024;

/**
 * One INSERT carries at most this many rejects, or this many UTF-16 units of raw text (plus one
 * reject; at most 3 bytes each on the wire): the driver builds each array parameter as one string.
 */
const INSERT_ROWS = 1000;
const INSERT_CHARS = 1024 * 1024;

/**
 * A reject's raw text as stored: at most `maxBytes` of UTF-8 (cut at a character boundary, and
 * then marked truncated), with what PostgreSQL text cannot hold made visible (see `storableText`).
 */
export function rawForStorage(raw: string, maxBytes: number): { raw: string; truncated: boolean } {
  // Made storable before it is cut (a NUL becomes 3 bytes); the first maxBytes units hold at
  // least maxBytes bytes, so nothing past them is needed. Both steps keep one unit per unit.
  let head = raw.length > maxBytes ? raw.slice(0, maxBytes) : raw;
  const last = head.charCodeAt(head.length - 1);
  if (head.length < raw.length && last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1); // half a pair
  const cut = cutToBytes(storableText(head), maxBytes);
  return { raw: cut, truncated: cut.length < raw.length };
}

/** Keeps rejects in the rejects table, in bounded INSERTs; a no-op for none. */
export async function storeRejects(
  db: Pool | PoolClient,
  source: RejectSource,
  sourceId: string,
  table: TableName,
  rejects: readonly Reject[],
  opts: { rawMaxBytes?: number } = {},
): Promise<void> {
  const max = opts.rawMaxBytes ?? DEFAULT_REJECT_RAW_MAX_BYTES;
  for (let from = 0; from < rejects.length; ) {
    const positions: number[] = [];
    const raws: string[] = [];
    const truncated: boolean[] = [];
    const errors: string[] = [];
    let chars = 0;
    for (; from < rejects.length && positions.length < INSERT_ROWS && chars < INSERT_CHARS; from++) {
      const r = rejects[from]!;
      const stored = rawForStorage(r.raw, max);
      positions.push(r.position);
      raws.push(stored.raw);
      truncated.push(stored.truncated || r.truncated === true);
      // jsonb refuses \u0000 and lone surrogates (JSON.stringify writes them as escapes).
      errors.push(JSON.stringify(r.errors.map((e) => ({ field: e.field === null ? null : storableText(e.field), message: storableText(e.message) }))));
      chars += stored.raw.length;
    }
    await db.query(
      `INSERT INTO rejects (source, source_id, table_name, position, raw, raw_truncated, errors)
       SELECT $1, $2, $3, r.position, r.raw, r.truncated, r.errors
         FROM unnest($4::bigint[], $5::text[], $6::boolean[], $7::jsonb[]) AS r(position, raw, truncated, errors)`,
      [source, sourceId, table, positions, raws, truncated, errors],
    );
  }
}
