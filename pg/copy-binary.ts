import { Transform, type TransformCallback } from 'node:stream';
import type { PgType, TableDef } from '../core/tables.js';
import type { Micros } from './timestamps.js';

/**
 * PostgreSQL's binary COPY format, read and written here only. Binary is the cheapest form for the
 * server to produce and to take: no text to print or parse, and `timestamptz` travels as a 64-bit
 * count of microseconds (from 2000-01-01; this module shifts it to and from 1970-01-01, see
 * pg/timestamps.ts), exact in every year.
 *
 * Layout: the 11-byte signature, int32 flags, int32 header-extension length (and the extension);
 * per row an int16 field count, then per field an int32 byte length (-1: NULL) and the value;
 * an int16 -1 ends the data. Everything big-endian. Only the types of the data dictionary are
 * understood (`integer`, `text`, `timestamptz`), and `bigint`.
 *
 * The `put*` encoders write one whole field (length and value) at `o` and return the offset after
 * it; the caller makes room first (`BinaryCopyWriter#room`, sizes from `fieldBytes`). They write
 * byte by byte and turn numbers into int64 without a BigInt: the restore runs them per value.
 */

export type CopyType = PgType | 'bigint';
export type CopyValue = number | bigint | string | null;

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** Signature, flags 0 (no OIDs), no header extension. */
const HEADER = Buffer.concat([SIGNATURE, Buffer.alloc(8)]);
/** Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
const PG_EPOCH_US = 946_684_800_000_000;
const PG_EPOCH_US_BIG = BigInt(PG_EPOCH_US);
const MIN_SAFE_BIG = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
const TWO_32 = 2 ** 32;

// ---- encoders ----

/** Most bytes a field of `type` takes; a text's depends on `text` (UTF-8: at most 3 bytes per UTF-16 unit). */
export function fieldBytes(type: CopyType, text?: string): number {
  if (type === 'text') return 4 + 3 * (text?.length ?? 0);
  return type === 'integer' ? 8 : 12;
}

/** A row's field count: starts every row. */
export function putFieldCount(buf: Buffer, o: number, n: number): number {
  buf[o] = n >>> 8;
  buf[o + 1] = n & 0xff;
  return o + 2;
}

export function putNull(buf: Buffer, o: number): number {
  buf[o] = buf[o + 1] = buf[o + 2] = buf[o + 3] = 0xff;
  return o + 4;
}

function putInt32(buf: Buffer, o: number, v: number): number {
  buf[o] = v >>> 24;
  buf[o + 1] = (v >>> 16) & 0xff;
  buf[o + 2] = (v >>> 8) & 0xff;
  buf[o + 3] = v & 0xff;
  return o + 4;
}

/** A safe integer as int64, without a BigInt. */
function putSafeInt64(buf: Buffer, o: number, v: number): number {
  const hi = Math.floor(v / TWO_32);
  putInt32(buf, o, hi);
  return putInt32(buf, o + 4, v - hi * TWO_32);
}

/** `integer` */
export function putInt4(buf: Buffer, o: number, v: number): number {
  return putInt32(buf, putInt32(buf, o, 4), v);
}

/** `bigint`: any safe integer or bigint. */
export function putInt8(buf: Buffer, o: number, v: number | bigint): number {
  o = putInt32(buf, o, 8);
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return putSafeInt64(buf, o, v);
    throw new RangeError(`not an exact integer: ${v}`);
  }
  return buf.writeBigInt64BE(v, o);
}

/** `text` from a string. */
export function putText(buf: Buffer, o: number, s: string): number {
  const len = buf.write(s, o + 4, 'utf8');
  putInt32(buf, o, len);
  return o + 4 + len;
}

/** `text` from bytes that are already UTF-8 (`src[start..end)`), copied as they are. */
export function putTextBytes(buf: Buffer, o: number, src: Buffer, start: number, end: number): number {
  const len = end - start;
  o = putInt32(buf, o, len);
  if (len < 64) {
    for (let i = 0; i < len; i++) buf[o + i] = src[start + i]!;
  } else src.copy(buf, o, start, end);
  return o + len;
}

/** `timestamptz` from microseconds since 1970-01-01 (exact: a safe integer or a bigint). */
export function putTimestamp(buf: Buffer, o: number, us: Micros): number {
  o = putInt32(buf, o, 8);
  if (typeof us === 'number') {
    const v = us - PG_EPOCH_US;
    if (Number.isSafeInteger(v)) return putSafeInt64(buf, o, v);
    // Within 2^53 of 1970 but not of 2000 (before about 1685): exact through a BigInt.
    if (!Number.isSafeInteger(us)) throw new RangeError(`not an exact count of microseconds: ${us}`);
    return buf.writeBigInt64BE(BigInt(us) - PG_EPOCH_US_BIG, o);
  }
  return buf.writeBigInt64BE(us - PG_EPOCH_US_BIG, o);
}

// ---- decoders: the value of a field of `len` bytes at `at` ----

type Decode = (buf: Buffer, at: number, len: number) => CopyValue;

export const getInt4 = (buf: Buffer, at: number): number => buf.readInt32BE(at);

export const getText = (buf: Buffer, at: number, len: number): string => buf.toString('utf8', at, at + len);

/** `bigint`: a number when safe, else a bigint. */
export function getInt8(buf: Buffer, at: number): number | bigint {
  const hi = buf.readInt32BE(at);
  // Within ±2^21 the high word keeps the value inside 2^53: plain arithmetic is exact.
  if (hi > -0x200000 && hi < 0x200000) return hi * TWO_32 + buf.readUInt32BE(at + 4);
  const v = buf.readBigInt64BE(at);
  return v >= MIN_SAFE_BIG && v <= MAX_SAFE_BIG ? Number(v) : v;
}

/** `timestamptz` as microseconds since 1970-01-01: a number when safe, else a bigint. */
export function getTimestamp(buf: Buffer, at: number): Micros {
  const hi = buf.readInt32BE(at);
  // Below 2^53 - 2^50 the value stays inside 2^53 once the epoch (< 2^50) is added: exact.
  if (hi > -0x1c0000 && hi < 0x1c0000) return hi * TWO_32 + buf.readUInt32BE(at + 4) + PG_EPOCH_US;
  const v = buf.readBigInt64BE(at) + PG_EPOCH_US_BIG;
  return v >= MIN_SAFE_BIG && v <= MAX_SAFE_BIG ? Number(v) : v;
}

const DECODERS: Record<CopyType, { decode: Decode; len: number }> = {
  integer: { decode: getInt4, len: 4 },
  text: { decode: getText, len: -1 },
  timestamptz: { decode: getTimestamp, len: 8 },
  bigint: { decode: getInt8, len: 8 },
};

// ---- reader ----

/**
 * Binary COPY bytes, in chunks cut anywhere, to rows. `read` hands each whole row to `onRow` as an
 * array of values (the same array every time: copy what you keep); a row cut by the chunk's end
 * waits for the next chunk. Values: `integer` a number, `text` a string, `timestamptz` and `bigint`
 * exact (see `getTimestamp`, `getInt8`), NULL null (an error unless `nulls`).
 */
export class BinaryCopyReader {
  /** Rows read so far. */
  rows = 0;
  /** True once the trailer was read. */
  ended = false;
  private headerDone = false;
  /** The unread end of the data so far (a row cut short), in pieces until `need` bytes are there. */
  private rest: Buffer[] = [];
  private restBytes = 0;
  private need = 0;
  private readonly decoders: Decode[];
  private readonly lengths: number[];
  private readonly values: CopyValue[];
  /**
   * With `raw`, where each field of the row handed to `onRow` starts in the buffer handed with it,
   * and its length (-1: NULL): the values are not decoded, `values` stays all null.
   */
  readonly starts: Int32Array;
  readonly lens: Int32Array;
  private readonly raw: boolean;

  constructor(
    readonly types: readonly CopyType[],
    private readonly opts: { nulls?: boolean; names?: readonly string[]; raw?: boolean } = {},
  ) {
    this.decoders = types.map((t) => DECODERS[t].decode);
    this.lengths = types.map((t) => DECODERS[t].len);
    this.values = new Array<CopyValue>(types.length).fill(null);
    this.starts = new Int32Array(types.length);
    this.lens = new Int32Array(types.length);
    this.raw = opts.raw ?? false;
  }

  /** `onRow` gets the row's values (none with `raw`) and the buffer that `starts` points into. */
  read(chunk: Buffer, onRow: (values: CopyValue[], buf: Buffer) => void): void {
    let buf = chunk;
    if (this.restBytes > 0) {
      // Joined once enough has come for the next step: a large row in small chunks costs no more than its size.
      this.rest.push(chunk);
      this.restBytes += chunk.length;
      if (this.restBytes < this.need) return;
      buf = Buffer.concat(this.rest, this.restBytes);
      this.rest = [];
      this.restBytes = 0;
    }
    const end = buf.length;
    let pos = 0;
    if (!this.headerDone) {
      const start = this.headerBytes(buf);
      if (end < start) return this.keep(buf, 0, start);
      this.headerDone = true;
      pos = start;
    }
    const n = this.types.length;
    const { decoders, lengths, values, starts, lens, raw } = this;
    /** Bytes from `pos` the next step needs, when it stops for more. */
    let need = 2;
    while (!this.ended && end - pos >= 2) {
      const count = buf.readInt16BE(pos);
      if (count === -1) {
        this.ended = true;
        pos += 2;
        break;
      }
      if (count !== n) throw new Error(`COPY row ${this.rows + 1} has ${count} fields, expected ${n}`);
      let p = pos + 2;
      let i = 0;
      for (; i < n; i++) {
        if (end - p < 4) {
          need = p + 4 - pos;
          break;
        }
        const len = buf.readInt32BE(p);
        p += 4;
        if (len < 0) {
          if (!this.opts.nulls) throw new Error(`COPY row ${this.rows + 1}: ${this.opts.names?.[i] ?? `field ${i + 1}`} is NULL`);
          values[i] = null;
          lens[i] = -1;
          continue;
        }
        const want = lengths[i]!;
        if (want >= 0 && len !== want) throw new Error(`COPY row ${this.rows + 1}: a ${this.types[i]} field of ${len} bytes`);
        if (len > end - p) {
          need = p + len - pos;
          break;
        }
        if (raw) {
          starts[i] = p;
          lens[i] = len;
        } else values[i] = decoders[i]!(buf, p, len);
        p += len;
      }
      if (i < n) break; // the row goes on in the next chunk
      this.rows++;
      onRow(values, buf);
      pos = p;
      need = 2;
    }
    if (pos === end) return;
    if (this.ended) throw new Error('data after the end of the COPY data');
    this.keep(buf, pos, need);
  }

  /** Throws when the data stopped inside a row (or the header); `ended` tells whether the trailer came. */
  end(): void {
    if (!this.headerDone) throw new Error('COPY data ended before its header');
    if (this.restBytes > 0) throw new Error('COPY data ended in the middle of a row');
  }

  private keep(buf: Buffer, from: number, need: number): void {
    this.rest = [buf.subarray(from)];
    this.restBytes = buf.length - from;
    this.need = need;
  }

  /** The header's length (signature, flags, extension), checked as far as `buf` goes. */
  private headerBytes(buf: Buffer): number {
    if (buf.length < HEADER.length) return HEADER.length;
    if (!buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
    // The high 16 flag bits are critical (bit 16: OIDs included): none is understood here.
    if (buf.readUInt16BE(SIGNATURE.length) !== 0) throw new Error('binary COPY header with unsupported flags');
    return HEADER.length + buf.readUInt32BE(SIGNATURE.length + 4);
  }
}

/**
 * The reader as a stream: binary COPY bytes of `table`'s columns (dictionary order, no NULLs) in,
 * one plain object per row out, keyed by column name, e.g. for the Avro encoder.
 */
export class BinaryCopyToRecords extends Transform {
  private readonly reader: BinaryCopyReader;
  private readonly names: string[];
  private readonly onRow: (values: CopyValue[]) => void;

  constructor(table: TableDef) {
    super({ readableObjectMode: true, readableHighWaterMark: 4096 });
    this.names = table.columns.map((c) => c.name);
    this.reader = new BinaryCopyReader(
      table.columns.map((c) => c.pgType),
      { names: this.names },
    );
    this.onRow = (values) => {
      const rec: Record<string, CopyValue> = {};
      for (let i = 0; i < values.length; i++) rec[this.names[i]!] = values[i]!;
      this.push(rec);
    };
  }

  get rows(): number {
    return this.reader.rows;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.reader.read(chunk, this.onRow);
    } catch (err) {
      return cb(err as Error);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    cb(this.reader.ended ? null : new Error('COPY output ended before its trailer'));
  }
}

// ---- writer ----

const CHUNK_BYTES = 256 * 1024;

/**
 * Rows to binary COPY bytes: the header at once, then rows written with the `put*` encoders into
 * a buffer that `emit` receives in chunks of about `chunkBytes`. A row is written as
 *
 *     const buf = w.room(need);      // need: 2 + the fields' `fieldBytes`
 *     let o = putFieldCount(buf, w.o, n);
 *     o = putInt4(buf, o, id); ...
 *     w.o = o;
 *
 * or, off the hot paths, with `row(values)`. `end()` writes the trailer and emits the rest.
 */
export class BinaryCopyWriter {
  buf: Buffer;
  /** Where the next byte goes in `buf`. */
  o: number;

  constructor(
    private readonly emit: (chunk: Buffer) => void,
    private readonly chunkBytes = CHUNK_BYTES,
  ) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
    this.o = HEADER.copy(this.buf, 0);
  }

  /** A buffer with `need` free bytes at `o`: the filled part is emitted first when they do not fit. */
  room(need: number): Buffer {
    if (this.o + need > this.buf.length) {
      this.flush();
      if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
    }
    return this.buf;
  }

  /** Appends one row of `types` (NULL for null). */
  row(types: readonly CopyType[], values: readonly CopyValue[]): void {
    let need = 2;
    for (let i = 0; i < types.length; i++) {
      const v = values[i];
      need += v === null ? 4 : fieldBytes(types[i]!, typeof v === 'string' ? v : undefined);
    }
    const buf = this.room(need);
    let o = putFieldCount(buf, this.o, types.length);
    for (let i = 0; i < types.length; i++) {
      const v = values[i];
      const type = types[i]!;
      if (v === null || v === undefined) o = putNull(buf, o);
      else if (typeof v === 'string' && type === 'text') o = putText(buf, o, v);
      else if (typeof v === 'string' || type === 'text') throw new TypeError(`not a ${type} value: ${String(v)}`);
      else if (type === 'timestamptz') o = putTimestamp(buf, o, v);
      else if (type === 'bigint') o = putInt8(buf, o, v);
      else if (typeof v === 'number' && (v | 0) === v) o = putInt4(buf, o, v);
      else throw new RangeError(`not an integer: ${String(v)}`);
    }
    // Only a whole row moves `o`: a value refused above leaves no partial row behind.
    this.o = o;
  }

  /** Emits what is written so far. */
  flush(): void {
    if (this.o === 0) return;
    this.emit(this.buf.subarray(0, this.o));
    this.buf = Buffer.allocUnsafe(this.chunkBytes);
    this.o = 0;
  }

  /** The trailer, then everything still held. */
  end(): void {
    const buf = this.room(2);
    buf[this.o] = buf[this.o + 1] = 0xff;
    this.o += 2;
    this.flush();
  }
}
