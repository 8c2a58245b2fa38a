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

/** 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z in Unix microseconds: the years `microsToIso` writes in 4 digits. */
const MIN_VALID_US = -62_135_596_800_000_000n;
const END_VALID_US = 253_402_300_800_000_000n;
const INT_MAX = 2147483647;

/**
 * Records arrive with timestamps as raw microseconds (see `readBackupFile`'s `rawTimestamps`).
 * Every row is held to the data rules (`RowBatch`), and a passing row is written in binary COPY
 * format with the original microseconds, so PostgreSQL parses no text at all.
 *
 * Most rows take a shortcut that reaches the verdict `RowBatch` would, without building strings
 * or arrays: an Avro int in 1..2147483647 passes `checkInt` unchanged; a string with no NUL whose
 * first and last characters are printable ASCII (not space) passes `checkText` unchanged (trim is
 * a no-op); microseconds in years 1..9999 give an ISO string `checkDatetime` accepts as is. Any
 * row outside those cases goes through `RowBatch.addObject` exactly as before, which decides and
 * words the rejection (or normalizes, e.g. trims, the values that are written).
 */
export class ValidateToCopy extends Transform {
  private readonly batch: RowBatch;
  private readonly kinds: ('int' | 'text' | 'micros')[];
  private readonly names: string[];
  private readonly withPosition: boolean;
  private readonly texts: string[];
  private buf = Buffer.allocUnsafe(CHUNK);
  private o = 0;
  private position = 0;
  private lastId = 0;
  /** True while ids arrive strictly increasing, as every backup this service writes has them. */
  ascending = true;
  valid = 0;
  rejected = 0;

  /** `withPosition`: add each row's 0-based position in the file as a last column (the staging table's `pos`). */
  constructor(
    table: TableDef,
    private readonly onReject: (r: Reject) => void,
    opts: { withPosition?: boolean } = {},
  ) {
    super({ writableObjectMode: true, writableHighWaterMark: 4096 });
    this.batch = new RowBatch(table);
    this.names = table.columns.map((c) => c.name);
    this.kinds = table.columns.map((c) => (c.pgType === 'text' ? 'text' : c.pgType === 'timestamptz' ? 'micros' : 'int'));
    this.withPosition = opts.withPosition ?? true;
    this.texts = new Array(table.columns.length);
    const header = Buffer.alloc(19);
    SIGNATURE.copy(header, 0); // flags and header extension length: zero
    this.o = header.copy(this.buf, 0);
  }

  /** Records read so far (valid or not). */
  get records(): number {
    return this.position;
  }

  override _transform(rec: Record<string, unknown>, _enc: BufferEncoding, cb: TransformCallback): void {
    const pos = this.position++;
    if (this.fits(rec)) this.writeRow(rec, pos);
    else this.slow(rec, pos);
    if (this.o >= CHUNK - 4096) this.pushChunk();
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.ensure(2);
    this.o = this.buf.writeInt16BE(-1, this.o);
    this.pushChunk();
    cb();
  }

  /** True when every value of `rec` passes its rule unchanged (see the class comment). */
  private fits(rec: Record<string, unknown>): boolean {
    const kinds = this.kinds;
    for (let c = 0; c < kinds.length; c++) {
      const v = rec[this.names[c]!];
      const kind = kinds[c];
      if (kind === 'int') {
        if (typeof v !== 'number' || !(v >= 1 && v <= INT_MAX) || !Number.isInteger(v)) return false;
      } else if (kind === 'text') {
        if (typeof v !== 'string' || v.length === 0) return false;
        const a = v.charCodeAt(0);
        const z = v.charCodeAt(v.length - 1);
        if (a <= 32 || a >= 127 || z <= 32 || z >= 127 || v.indexOf('\u0000') !== -1) return false;
      } else if (typeof v === 'bigint') {
        if (v < MIN_VALID_US || v >= END_VALID_US) return false;
      } else if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
        // Safe integers (about years 1684..2255) are always in range.
        return false;
      }
    }
    return true;
  }

  /** The rules' own verdict and wording, through `RowBatch`, for a row the shortcut cannot vouch for. */
  private slow(rec: Record<string, unknown>, pos: number): void {
    const kinds = this.kinds;
    const micros: unknown[] = [];
    for (let c = 0; c < kinds.length; c++) {
      if (kinds[c] !== 'micros') continue;
      const v = rec[this.names[c]!];
      micros[c] = v;
      if (typeof v === 'number' || typeof v === 'bigint') rec[this.names[c]!] = microsToIso(v);
    }
    const issues = this.batch.addObject(rec, pos);
    if (issues) {
      this.rejected++;
      this.onReject({ position: pos, raw: JSON.stringify(rec), errors: issues });
      return;
    }
    // Passed once normalized (trimmed text): write the normalized values and the original microseconds.
    const row: Record<string, unknown> = {};
    for (let c = 0; c < kinds.length; c++) row[this.names[c]!] = kinds[c] === 'micros' ? micros[c] : this.batch.columns[c]![0];
    this.batch.clear();
    this.writeRow(row, pos);
  }

  private ensure(need: number): void {
    if (this.o + need <= this.buf.length) return;
    this.pushChunk();
    if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
  }

  private pushChunk(): void {
    if (this.o === 0) return;
    this.push(this.buf.subarray(0, this.o));
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.o = 0;
  }

  /** Appends one valid row (timestamps as microseconds) as a binary COPY tuple. */
  private writeRow(row: Record<string, unknown>, pos: number): void {
    const kinds = this.kinds;
    const ncol = kinds.length;
    let need = 2 + (this.withPosition ? 12 : 0);
    for (let c = 0; c < ncol; c++) {
      if (kinds[c] === 'text') {
        const s = row[this.names[c]!] as string;
        this.texts[c] = s;
        need += 4 + 3 * s.length; // UTF-8 takes at most 3 bytes per UTF-16 unit
      } else need += 12;
    }
    this.ensure(need);
    const buf = this.buf;
    let o = buf.writeInt16BE(this.withPosition ? ncol + 1 : ncol, this.o);
    for (let c = 0; c < ncol; c++) {
      const kind = kinds[c];
      if (kind === 'int') {
        o = buf.writeInt32BE(4, o);
        o = buf.writeInt32BE(row[this.names[c]!] as number, o);
      } else if (kind === 'text') {
        const len = buf.write(this.texts[c]!, o + 4, 'utf8');
        buf.writeInt32BE(len, o);
        o += 4 + len;
      } else {
        o = buf.writeInt32BE(8, o);
        const us = row[this.names[c]!] as Micros;
        o = typeof us === 'bigint' ? buf.writeBigInt64BE(us - BigInt(PG_EPOCH_US), o) : writeInt64(buf, us - PG_EPOCH_US, o);
      }
    }
    if (this.withPosition) {
      o = buf.writeInt32BE(8, o);
      o = writeInt64(buf, pos, o);
    }
    this.o = o;
    this.valid++;
    const id = row[this.names[0]!] as number;
    if (id <= this.lastId) this.ascending = false;
    this.lastId = id;
  }
}
