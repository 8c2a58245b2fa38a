import { to as copyTo } from 'pg-copy-streams';
import type { Pool } from '../core/db.js';
import type { TableDef } from '../core/tables.js';
import { copyQuery, pageQuery, rowQuery, type Selection } from './sql.js';

/** A stored row, named as the data dictionary names its columns (`datetime` as ISO 8601 UTC text). */
export type Row = Record<string, string | number>;

export interface Page {
  rows: Row[];
  /** The cursor of the next page (the last id of this one), or null on the last page. */
  next: string | null;
}

export const MAX_LIMIT = 1000;
export const DEFAULT_LIMIT = 100;

/**
 * One keyset page: rows with an id above the cursor, in id order. Never OFFSET: every page costs
 * an index range scan of `limit` rows, whatever its position in the table.
 */
export async function readPage(pool: Pool, def: TableDef, sel: Selection, limit: number): Promise<Page> {
  const q = pageQuery(def, sel, limit + 1);
  const { rows } = await pool.query<Row>(q.text, q.values);
  if (rows.length <= limit) return { rows, next: null };
  rows.length = limit;
  return { rows, next: String(rows[limit - 1]!.id) };
}

export async function readRow(pool: Pool, def: TableDef, id: number): Promise<Row | undefined> {
  const q = rowQuery(def, id);
  return (await pool.query<Row>(q.text, q.values)).rows[0];
}

/**
 * The whole selection as CSV with a header line, streamed from PostgreSQL's COPY: chunks flow
 * as the consumer pulls them (pg-copy-streams stops reading the socket while it is not), so
 * memory stays flat at any size. Resolves once the first chunk is there, so a failure to start
 * becomes an ordinary error answer rather than a broken 200.
 *
 * A consumer that cancels (the HTTP client went away) ends the COPY: the connection is dropped,
 * not returned to the pool, because it is mid-protocol; the server backend ends when its next
 * write fails. The pool opens a new connection when it needs one.
 */
export async function exportCsv(pool: Pool, def: TableDef, sel: Selection): Promise<ReadableStream<Uint8Array>> {
  const client = await pool.connect();
  let released = false;
  const release = (err?: Error) => {
    if (released) return;
    released = true;
    client.release(err);
  };
  const copy = client.query(copyTo(copyQuery(def, sel)));
  // Errors reach the iterator below; this keeps a late one (the connection ended after a cancel)
  // from being an unhandled 'error' event.
  copy.on('error', () => {});
  const chunks = copy[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let first: IteratorResult<Buffer>;
  try {
    first = await chunks.next();
  } catch (err) {
    release(err as Error);
    throw err;
  }
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        if (first.done) {
          release();
          controller.close();
        } else controller.enqueue(first.value);
      },
      async pull(controller) {
        try {
          const next = await chunks.next();
          if (next.done) {
            release();
            controller.close();
          } else controller.enqueue(next.value);
        } catch (err) {
          release(err as Error);
          controller.error(err);
        }
      },
      async cancel() {
        await chunks.return?.().catch(() => {});
        release(new Error('export cancelled by its reader'));
      },
    },
    // Pull only when the reader asks: nothing piles up in memory ahead of a slow client.
    { highWaterMark: 0 },
  );
}
