import { Transform, type TransformCallback } from 'node:stream';
import type { TableDef } from '../core/tables.js';

/**
 * Reads PostgreSQL's binary COPY format (`COPY ... TO STDOUT (FORMAT binary)`) into plain objects
 * for the Avro encoder. Binary is the cheapest form for the server to produce, and it hands over
 * `timestamptz` as what Avro's `timestamp-micros` wants: a 64-bit count of microseconds (PostgreSQL
 * counts from 2000-01-01, Avro from 1970-01-01). Only the column types of the data dictionary
 * are understood: `integer`, `text`, `timestamptz`.
 */

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** Microseconds from 1970-01-01 to 2000-01-01. */
const PG_EPOCH_US = 946_684_800_000_000;
const PG_EPOCH_US_BIG = BigInt(PG_EPOCH_US);
const TWO_32 = 2 ** 32;

type Parse = (buf: Buffer, start: number, len: number) => unknown;

const parseInt4: Parse = (buf, start) => buf.readInt32BE(start);
const parseText: Parse = (buf, start, len) => buf.toString('utf8', start, start + len);
const parseTimestamp: Parse = (buf, start) => {
  const hi = buf.readInt32BE(start);
  // Within ±2^21 the high word keeps the value inside 2^53: plain arithmetic is exact.
  if (hi > -0x200000 && hi < 0x200000) return hi * TWO_32 + buf.readUInt32BE(start + 4) + PG_EPOCH_US;
  const v = buf.readBigInt64BE(start) + PG_EPOCH_US_BIG;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
};

export class BinaryCopyToRecords extends Transform {
  private rest: Buffer | null = null;
  private headerDone = false;
  private ended = false;
  private readonly names: string[];
  private readonly parsers: Parse[];
  rows = 0;

  constructor(table: TableDef) {
    super({ readableObjectMode: true, readableHighWaterMark: 4096 });
    this.names = table.columns.map((c) => c.name);
    this.parsers = table.columns.map((c) =>
      c.pgType === 'text' ? parseText : c.pgType === 'timestamptz' ? parseTimestamp : parseInt4,
    );
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let pos = 0;
    try {
      if (!this.headerDone) {
        if (buf.length < 19) {
          this.rest = buf;
          return cb();
        }
        if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
        pos = 19 + buf.readUInt32BE(15);
        this.headerDone = true;
      }
      const n = this.names.length;
      for (;;) {
        if (buf.length - pos < 2) break;
        const count = buf.readInt16BE(pos);
        if (count === -1) {
          this.ended = true;
          pos += 2;
          break;
        }
        if (count !== n) throw new Error(`COPY row ${this.rows + 1} has ${count} fields, expected ${n}`);
        // Find the row's end first, so a row split across chunks waits for the next one.
        let p = pos + 2;
        let complete = true;
        for (let i = 0; i < n; i++) {
          if (buf.length - p < 4) {
            complete = false;
            break;
          }
          const len = buf.readInt32BE(p);
          p += 4 + Math.max(len, 0);
          if (p > buf.length) {
            complete = false;
            break;
          }
        }
        if (!complete) break;
        const rec: Record<string, unknown> = {};
        p = pos + 2;
        for (let i = 0; i < n; i++) {
          const len = buf.readInt32BE(p);
          if (len < 0) throw new Error(`COPY row ${this.rows + 1}: ${this.names[i]} is NULL`);
          rec[this.names[i]!] = this.parsers[i]!(buf, p + 4, len);
          p += 4 + len;
        }
        this.rows++;
        this.push(rec);
        pos = p;
      }
    } catch (err) {
      return cb(err as Error);
    }
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
    cb();
  }

  override _flush(cb: TransformCallback): void {
    cb(this.ended && !this.rest ? null : new Error('COPY output ended before its trailer'));
  }
}

/** The SELECT that backs a table up: columns in dictionary order, ordered by id. */
export function backupQuery(table: TableDef): string {
  const cols = table.columns.map((c) => `"${c.name}"`).join(', ');
  return `COPY (SELECT ${cols} FROM "${table.name}" ORDER BY id) TO STDOUT (FORMAT binary)`;
}
