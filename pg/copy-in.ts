import { Writable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { PgType } from '../core/tables.js';
import { blobCopyIn } from './blob-copy.js';
import { BinaryCopyReader, type CopyValue } from './copy-binary.js';
import { microsToIso } from './timestamps.js';

/**
 * Bulk writes that work on a PostgreSQL server and on the embedded one (pg/embedded.ts).
 *
 * On a server, `copyIn` is `COPY … FROM STDIN`, the fastest way in. PGlite's socket cannot take
 * COPY data. When PGlite runs in this process and the connection holds a transaction, COPY text
 * goes to it directly through its /dev/blob device (pg/blob-copy.ts). Otherwise the same bytes
 * (COPY text or binary format, exactly as a server would read them) are parsed into one array per column and written in batches with
 * `INSERT … SELECT … FROM unnest($1::type[], …)`: same rows, same constraint and trigger checks,
 * same errors (a duplicate key is still 23505). Callers write and `end()` as with a COPY stream and
 * wait for 'finish'.
 */

export interface CopyColumn {
  readonly name: string;
  readonly pgType: PgType | 'bigint';
}

export type CopyFormat = 'text' | 'binary';

const q = pg.escapeIdentifier;
const embedded = new WeakMap<pg.ClientBase, boolean>();

/** Is this connection served by PGlite (one shared session, no COPY FROM STDIN)? Asked once per connection. */
export async function isEmbeddedPostgres(client: pg.ClientBase): Promise<boolean> {
  let known = embedded.get(client);
  if (known === undefined) {
    const { rows } = await client.query<{ version: string }>('SELECT version()');
    known = rows[0]!.version.includes('PGlite');
    embedded.set(client, known);
  }
  return known;
}

/**
 * A writable stream of COPY data for `target`; see the module comment. On the embedded database
 * in this process, COPY text written inside a transaction goes to PGlite's own COPY through a
 * blob (pg/blob-copy.ts), which is several times faster than the batched inserts.
 */
export async function copyIn(client: pg.ClientBase, target: string, columns: readonly CopyColumn[], format: CopyFormat = 'text'): Promise<Writable> {
  if (await isEmbeddedPostgres(client)) {
    const blob = format === 'text' ? await blobCopyIn(client, target, columns.map((c) => c.name)) : undefined;
    return blob ?? new ArrayInsert(client, target, columns, format);
  }
  const cols = columns.map((c) => q(c.name)).join(', ');
  return client.query(copyFrom(`COPY ${q(target)} (${cols}) FROM STDIN${format === 'binary' ? ' (FORMAT binary)' : ''}`));
}

/** Rows per INSERT: large enough that the statement overhead vanishes, small enough to keep memory flat. */
const BATCH_ROWS = 20_000;
const TEXT_UNESCAPE: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r', b: '\b', f: '\f', v: '\v' };

type Value = string | number | null;

class ArrayInsert extends Writable {
  private readonly sql: string;
  private readonly values: Value[][];
  private readonly binary: BinaryCopyReader | null;
  /** Text: the start of a line whose end has not come yet. */
  private rest: Buffer | null = null;
  private rows = 0;

  constructor(
    private readonly client: pg.ClientBase,
    target: string,
    private readonly columns: readonly CopyColumn[],
    format: CopyFormat,
  ) {
    super();
    this.values = columns.map(() => []);
    this.binary = format === 'binary' ? new BinaryCopyReader(columns.map((c) => c.pgType), { nulls: true }) : null;
    // Text arrives as text and is cast as COPY would; binary values are decoded (timestamps to
    // ISO 8601 UTC with all six decimals, exact in every year) and sent typed.
    const params = columns.map((c, i) => `$${i + 1}::${format === 'text' ? 'text' : c.pgType}[]`);
    const exprs = columns.map((c, i) => (format === 'text' && c.pgType !== 'text' ? `u.c${i}::${c.pgType}` : `u.c${i}`));
    this.sql =
      `INSERT INTO ${q(target)} (${columns.map((c) => q(c.name)).join(', ')}) ` +
      `SELECT ${exprs.join(', ')} FROM unnest(${params.join(', ')}) AS u(${columns.map((_, i) => `c${i}`).join(', ')})`;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      if (this.binary) this.binary.read(chunk, this.onBinaryRow);
      else this.parseText(chunk);
    } catch (err) {
      return cb(err as Error);
    }
    if (this.rows < BATCH_ROWS) return cb();
    this.flush().then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      if (this.binary) this.binary.end();
      else if (this.rest && this.rest.length > 0) throw new Error('COPY data ended in the middle of a row');
    } catch (err) {
      return cb(err as Error);
    }
    this.flush().then(() => cb(), cb);
  }

  private async flush(): Promise<void> {
    if (this.rows === 0) return;
    const batch = this.values.map((col) => col.splice(0));
    this.rows = 0;
    await this.client.query(this.sql, batch);
  }

  private push(row: Value[]): void {
    for (let i = 0; i < row.length; i++) this.values[i]!.push(row[i]!);
    this.rows++;
  }

  /** COPY text: a line per row, tab between fields, `\N` for NULL, backslash escapes. */
  private parseText(chunk: Buffer): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      const fields = buf.toString('utf8', start, nl).split('\t');
      if (fields.length !== this.columns.length) throw new Error(`COPY line has ${fields.length} fields, expected ${this.columns.length}`);
      this.push(fields.map((f) => (f === '\\N' ? null : f.includes('\\') ? f.replace(/\\(.)/g, (_, c: string) => TEXT_UNESCAPE[c] ?? c) : f)));
      start = nl + 1;
    }
    this.rest = start < buf.length ? buf.subarray(start) : null;
  }

  /** COPY binary, read by the codec (pg/copy-binary.ts); a trailer is optional, as for the server. */
  private readonly onBinaryRow = (row: CopyValue[]): void => {
    for (let i = 0; i < row.length; i++) this.values[i]!.push(sendable(row[i]!, this.columns[i]!.pgType));
    this.rows++;
  };
}

/** A decoded binary value as a parameter: timestamps as ISO 8601 UTC with all six decimals, bigints past 2^53 as decimal text (both exact). */
function sendable(v: CopyValue, type: CopyColumn['pgType']): Value {
  if (v === null || typeof v === 'string') return v;
  if (type === 'timestamptz') return microsToIso(v);
  return typeof v === 'bigint' ? v.toString() : v;
}
