import { Writable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { microsToIso } from '../backup/avro.js';
import type { PgType } from '../core/tables.js';

/**
 * Bulk writes that work on a PostgreSQL server and on the embedded one (pg/embedded.ts).
 *
 * On a server, `copyIn` is `COPY … FROM STDIN`, the fastest way in. PGlite's socket cannot take
 * COPY data, so there the same bytes (COPY text or binary format, exactly as a server would read
 * them) are parsed into one array per column and written in batches with
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

/** A writable stream of COPY data for `target`; see the module comment. */
export async function copyIn(client: pg.ClientBase, target: string, columns: readonly CopyColumn[], format: CopyFormat = 'text'): Promise<Writable> {
  if (await isEmbeddedPostgres(client)) return new ArrayInsert(client, target, columns, format);
  const cols = columns.map((c) => q(c.name)).join(', ');
  return client.query(copyFrom(`COPY ${q(target)} (${cols}) FROM STDIN${format === 'binary' ? ' (FORMAT binary)' : ''}`));
}

/** Rows per INSERT: large enough that the statement overhead vanishes, small enough to keep memory flat. */
const BATCH_ROWS = 20_000;
/** Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
const PG_EPOCH_US = 946_684_800_000_000n;
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const TEXT_UNESCAPE: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r', b: '\b', f: '\f', v: '\v' };

type Value = string | number | null;

class ArrayInsert extends Writable {
  private readonly sql: string;
  private readonly values: Value[][];
  private rest: Buffer | null = null;
  private headerDone = false;
  private rows = 0;

  constructor(
    private readonly client: pg.ClientBase,
    target: string,
    private readonly columns: readonly CopyColumn[],
    private readonly format: CopyFormat,
  ) {
    super();
    this.values = columns.map(() => []);
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
      if (this.format === 'text') this.parseText(chunk);
      else this.parseBinary(chunk);
    } catch (err) {
      return cb(err as Error);
    }
    if (this.rows < BATCH_ROWS) return cb();
    this.flush().then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.rest && this.rest.length > 0) return cb(new Error('COPY data ended in the middle of a row'));
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

  /** COPY binary: header, then per row a field count and length-prefixed big-endian values, then -1. */
  private parseBinary(chunk: Buffer): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let pos = 0;
    if (!this.headerDone) {
      if (buf.length < 19) {
        this.rest = buf;
        return;
      }
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
      pos = 19 + buf.readUInt32BE(15);
      this.headerDone = true;
    }
    const n = this.columns.length;
    while (buf.length - pos >= 2) {
      const count = buf.readInt16BE(pos);
      if (count === -1) {
        pos += 2;
        break;
      }
      if (count !== n) throw new Error(`COPY row has ${count} fields, expected ${n}`);
      const row: Value[] = [];
      let p = pos + 2;
      for (let i = 0; i < n && p !== -1; i++) {
        if (buf.length - p < 4) {
          p = -1;
          break;
        }
        const len = buf.readInt32BE(p);
        p += 4;
        if (len < 0) {
          row.push(null);
          continue;
        }
        if (p + len > buf.length) {
          p = -1;
          break;
        }
        row.push(this.binaryValue(this.columns[i]!.pgType, buf, p, len));
        p += len;
      }
      if (p === -1) break; // the row continues in the next chunk
      this.push(row);
      pos = p;
    }
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
  }

  private binaryValue(type: CopyColumn['pgType'], buf: Buffer, at: number, len: number): Value {
    switch (type) {
      case 'integer':
        return buf.readInt32BE(at);
      case 'text':
        return buf.toString('utf8', at, at + len);
      case 'timestamptz': // int64 microseconds since 2000-01-01 UTC
        return microsToIso(buf.readBigInt64BE(at) + PG_EPOCH_US);
      default: // bigint: as text, exact beyond 2^53
        return buf.readBigInt64BE(at).toString();
    }
  }
}
