import { Transform, type TransformCallback } from 'node:stream';
import pg from 'pg';
import type { Reject } from '../apply.js';
import { RowBatch, type TableDef } from '../tables.js';
import { microsToIso, type Micros } from './avro.js';

/**
 * The staging side of a restore: records decoded from a backup go through the data rules
 * (`RowBatch`, like every other write) and the valid ones leave as binary COPY rows for a
 * temporary staging table, with their 0-based position in the file. Rule breakers are handed to
 * `onReject` instead.
 */

const q = pg.escapeIdentifier;
const FLUSH_ROWS = 2000;

export const STAGE = 'restore_stage';

export function createStageSql(table: TableDef): string {
  const cols = table.columns.map((c) => `${q(c.name)} ${c.pgType} NOT NULL`).join(', ');
  return `CREATE TEMP TABLE ${STAGE} (${cols}, pos bigint NOT NULL) ON COMMIT DROP`;
}

export function copyStageSql(table: TableDef): string {
  return `COPY ${STAGE} (${table.columns.map((c) => q(c.name)).join(', ')}, pos) FROM STDIN (FORMAT binary)`;
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** Microseconds from 1970-01-01 (Avro) to 2000-01-01 (PostgreSQL). */
const PG_EPOCH_US = 946_684_800_000_000;
const CHUNK = 256 * 1024;
const TWO_32 = 2 ** 32;

/** A safe integer as a big-endian int64, without a BigInt per value. */
function writeInt64(buf: Buffer, v: number, o: number): number {
  const hi = Math.floor(v / TWO_32);
  o = buf.writeInt32BE(hi, o);
  return buf.writeUInt32BE(v - hi * TWO_32, o);
}

/**
 * Records arrive with timestamps as raw microseconds (see `readBackupFile`'s `rawTimestamps`).
 * Each is turned into the ISO string the data rules check; when the row passes, the staging row
 * is written in binary COPY format with the original microseconds, the very instant the checked
 * string names, so PostgreSQL parses no text at all.
 */
export class ValidateToCopy extends Transform {
  private readonly batch: RowBatch;
  private readonly kinds: ('int' | 'text' | 'micros')[];
  private readonly micros: Micros[][];
  private readonly names: string[];
  private position = 0;
  private lastId = 0;
  private started = false;
  /** True while ids arrive strictly increasing, as every backup this service writes has them. */
  ascending = true;
  valid = 0;
  rejected = 0;

  constructor(
    table: TableDef,
    private readonly onReject: (r: Reject) => void,
  ) {
    super({ writableObjectMode: true, writableHighWaterMark: 4096 });
    this.batch = new RowBatch(table);
    this.names = table.columns.map((c) => c.name);
    this.kinds = table.columns.map((c) => (c.pgType === 'text' ? 'text' : c.pgType === 'timestamptz' ? 'micros' : 'int'));
    this.micros = table.columns.map(() => []);
  }

  override _transform(rec: Record<string, unknown>, _enc: BufferEncoding, cb: TransformCallback): void {
    const pos = this.position++;
    const kinds = this.kinds;
    for (let c = 0; c < kinds.length; c++) {
      if (kinds[c] !== 'micros') continue;
      const v = rec[this.names[c]!];
      if (typeof v === 'number' || typeof v === 'bigint') {
        this.micros[c]!.push(v);
        rec[this.names[c]!] = microsToIso(v);
      }
    }
    const issues = this.batch.addObject(rec, pos);
    if (issues) {
      for (let c = 0; c < kinds.length; c++) if (kinds[c] === 'micros') this.micros[c]!.pop();
      this.rejected++;
      this.onReject({ position: pos, raw: JSON.stringify(rec), errors: issues });
    } else {
      this.valid++;
      const id = this.batch.columns[0]![this.batch.length - 1] as number;
      if (id <= this.lastId) this.ascending = false;
      this.lastId = id;
    }
    if (this.batch.length >= FLUSH_ROWS) this.flushBatch();
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.flushBatch();
    const trailer = Buffer.alloc(2);
    trailer.writeInt16BE(-1);
    this.push(trailer);
    cb();
  }

  private flushBatch(): void {
    if (!this.started) {
      const header = Buffer.alloc(19);
      SIGNATURE.copy(header, 0);
      this.push(header); // flags and header extension length: zero
      this.started = true;
    }
    const { columns, positions } = this.batch;
    const n = positions.length;
    if (n === 0) return;
    const kinds = this.kinds;
    const ncol = kinds.length;
    let buf = Buffer.allocUnsafe(CHUNK);
    let o = 0;
    for (let r = 0; r < n; r++) {
      let need = 2 + 12;
      for (let c = 0; c < ncol; c++) need += kinds[c] === 'text' ? 4 + Buffer.byteLength(columns[c]![r] as string) : 12;
      if (o + need > buf.length) {
        this.push(buf.subarray(0, o));
        buf = Buffer.allocUnsafe(Math.max(CHUNK, need));
        o = 0;
      }
      o = buf.writeInt16BE(ncol + 1, o);
      for (let c = 0; c < ncol; c++) {
        const kind = kinds[c];
        if (kind === 'int') {
          o = buf.writeInt32BE(4, o);
          o = buf.writeInt32BE(columns[c]![r] as number, o);
        } else if (kind === 'text') {
          const len = buf.write(columns[c]![r] as string, o + 4, 'utf8');
          buf.writeInt32BE(len, o);
          o += 4 + len;
        } else {
          o = buf.writeInt32BE(8, o);
          const us = this.micros[c]![r]!;
          o = typeof us === 'bigint' ? buf.writeBigInt64BE(us - BigInt(PG_EPOCH_US), o) : writeInt64(buf, us - PG_EPOCH_US, o);
        }
      }
      o = buf.writeInt32BE(8, o);
      o = writeInt64(buf, positions[r]!, o);
    }
    this.push(buf.subarray(0, o));
    this.batch.clear();
    for (const m of this.micros) m.length = 0;
  }
}
