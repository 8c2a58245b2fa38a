import { Transform, type TransformCallback } from 'node:stream';
import avro from 'avsc';
import { HEADER, MAGIC } from './avro-writer.js';
import pg from 'pg';
import {
  BinaryCopyWriter,
  fieldBytes,
  microsToIso,
  putFieldCount,
  putInt4,
  putInt8,
  putText,
  putTextBytes,
  putTimestamp,
  type Micros,
  type Reject,
} from '../pg/index.js';
import { cutToBytes, END_DATETIME_MS, MAX_FIELD_MAX_BYTES, MIN_DATETIME_MS } from '../core/rules.js';
import { RowBatch, type TableDef } from '../core/tables.js';

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

/** 1900-01-01T00:00:00Z and 2101-01-01T00:00:00Z in Unix microseconds: the instants the rules accept (safe integers). */
const MIN_VALID_US = MIN_DATETIME_MS * 1000;
const END_VALID_US = END_DATETIME_MS * 1000;
const INT_MAX = 2147483647;
/**
 * A restore holds fields to the largest FIELD_MAX_BYTES allowed, not to the current setting, so a
 * backup restores whatever the setting was when its rows were accepted.
 */
const FIELD_MAX_BYTES = MAX_FIELD_MAX_BYTES;
/** A reject's raw text is cut here where it is made (at most 10,000 are kept per restore). */
const RAW_MAX_BYTES = 4 * 1024;
/** Distinct ids per reference column `collectRefs` keeps before it gives up on that column (about 2 MB). */
const MAX_COLLECTED_IDS = 65_536;

/**
 * Records arrive with timestamps as raw microseconds (see `readBackupFile`'s `rawTimestamps`).
 * Every row is held to the data rules (`RowBatch`), and a passing row is written in binary COPY
 * format with the original microseconds, so PostgreSQL parses no text at all.
 *
 * Most rows take a shortcut that reaches the verdict `RowBatch` would, without building strings
 * or arrays: an Avro int in 1..2147483647 passes `checkInt` unchanged; a well-formed string (no
 * lone surrogate) with no NUL, short enough to be within the field limit, whose first and last
 * characters are printable ASCII (not space) passes `checkText` unchanged (trim is a no-op);
 * microseconds from 1900-01-01 to the end of 2100 (UTC) give an ISO string `checkDatetime`
 * accepts as is. Any row outside those cases goes through `RowBatch.addObject` exactly as before,
 * which decides and words the rejection (or normalizes, e.g. trims, the values that are written).
 */
export class ValidateToCopy extends Transform {
  protected readonly batch: RowBatch;
  protected readonly kinds: ('int' | 'text' | 'micros')[];
  protected readonly names: string[];
  protected readonly withPosition: boolean;
  private readonly texts: string[];
  /** The binary COPY rows, handed on in chunks as this stream's output. */
  protected readonly copy: BinaryCopyWriter;
  protected position = 0;
  protected lastId = 0;
  /** True while ids arrive strictly increasing, as every backup this service writes has them. */
  ascending = true;
  valid = 0;
  rejected = 0;
  /**
   * With `collectRefs`: the distinct values of each reference column among the valid rows, so
   * the references can be checked once per id instead of per row; `undefined` once a column has
   * more than MAX_COLLECTED_IDS of them (memory stays flat; the caller checks in SQL instead).
   */
  refIds: (Set<number> | undefined)[] | undefined;
  private readonly refCols: number[];

  /** `withPosition`: add each row's 0-based position in the file as a last column (the staging table's `pos`). */
  constructor(
    table: TableDef,
    private readonly onReject: (r: Reject) => void,
    opts: { withPosition?: boolean; avroBytes?: boolean; collectRefs?: readonly number[] } = {},
  ) {
    super(opts.avroBytes ? {} : { writableObjectMode: true, writableHighWaterMark: 4096 });
    this.batch = new RowBatch(table, { fieldMaxBytes: FIELD_MAX_BYTES });
    this.names = table.columns.map((c) => c.name);
    this.kinds = table.columns.map((c) => (c.pgType === 'text' ? 'text' : c.pgType === 'timestamptz' ? 'micros' : 'int'));
    this.withPosition = opts.withPosition ?? true;
    this.texts = new Array(table.columns.length);
    this.copy = new BinaryCopyWriter((chunk) => this.push(chunk));
    this.refCols = [...(opts.collectRefs ?? [])];
    this.refIds = opts.collectRefs ? this.refCols.map(() => new Set<number>()) : undefined;
  }

  /** Notes the reference ids of a valid row (`value(c)` = its value in column c). */
  protected collect(value: (c: number) => number): void {
    const sets = this.refIds!;
    for (let i = 0; i < sets.length; i++) {
      const set = sets[i];
      if (set === undefined) continue;
      set.add(value(this.refCols[i]!));
      if (set.size > MAX_COLLECTED_IDS) sets[i] = undefined;
    }
  }

  /** Records read so far (valid or not). */
  get records(): number {
    return this.position;
  }

  override _transform(rec: Record<string, unknown>, _enc: BufferEncoding, cb: TransformCallback): void {
    const pos = this.position++;
    if (this.fits(rec)) this.writeRow(rec, pos);
    else this.slow(rec, pos);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.copy.end();
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
        // Up to a third of the limit in UTF-16 units is within it in UTF-8 bytes; longer, RowBatch measures.
        if (v.length * 3 > FIELD_MAX_BYTES || !v.isWellFormed()) return false;
      } else if (typeof v !== 'number' || !(v >= MIN_VALID_US && v < END_VALID_US) || !Number.isInteger(v)) {
        // A bigint is always out of range: only values beyond 2^53 µs (about 2255) are bigints.
        return false;
      }
    }
    return true;
  }

  /** The rules' own verdict and wording, through `RowBatch`, for a row the shortcut cannot vouch for. */
  protected slow(rec: Record<string, unknown>, pos: number): void {
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
      const raw = JSON.stringify(rec);
      const cut = cutToBytes(raw, RAW_MAX_BYTES);
      this.onReject(cut.length < raw.length ? { position: pos, raw: cut, truncated: true, errors: issues } : { position: pos, raw, errors: issues });
      return;
    }
    // Passed once normalized (trimmed text): write the normalized values and the original microseconds.
    const row: Record<string, unknown> = {};
    for (let c = 0; c < kinds.length; c++) row[this.names[c]!] = kinds[c] === 'micros' ? micros[c] : this.batch.columns[c]![0];
    this.batch.clear();
    this.writeRow(row, pos);
  }

  /** Appends one valid row (timestamps as microseconds) as a binary COPY tuple. */
  protected writeRow(row: Record<string, unknown>, pos: number): void {
    const kinds = this.kinds;
    const ncol = kinds.length;
    let need = 2 + (this.withPosition ? 12 : 0);
    for (let c = 0; c < ncol; c++) {
      if (kinds[c] === 'text') {
        const s = row[this.names[c]!] as string;
        this.texts[c] = s;
        need += fieldBytes('text', s);
      } else need += 12;
    }
    const copy = this.copy;
    const buf = copy.room(need);
    let o = putFieldCount(buf, copy.o, this.withPosition ? ncol + 1 : ncol);
    for (let c = 0; c < ncol; c++) {
      const kind = kinds[c];
      if (kind === 'int') o = putInt4(buf, o, row[this.names[c]!] as number);
      else if (kind === 'text') o = putText(buf, o, this.texts[c]!);
      else o = putTimestamp(buf, o, row[this.names[c]!] as Micros);
    }
    if (this.withPosition) o = putInt8(buf, o, pos);
    copy.o = o;
    this.valid++;
    if (this.refIds) this.collect((c) => row[this.names[c]!] as number);
    const id = row[this.names[0]!] as number;
    if (id <= this.lastId) this.ascending = false;
    this.lastId = id;
  }
}

/** Marks a varint the shortcut does not take (see `AvroToCopy#readLongOrSlow`). */
const SLOW = NaN;

interface Block {
  count: number;
  data: Promise<Buffer>;
}

/**
 * `ValidateToCopy` fed with the bytes of an Avro object container file instead of decoded
 * records: it reads the header (magic, codec, the writer schema, which must be `table`'s: the same
 * `parseHook` check as `readBackupFile`'s), then each block (sync marker, decompression) and its
 * records, and turns them into binary COPY rows without a JS object or string per row.
 *
 * A record is read straight from the block bytes when every value takes the shortcut of
 * `ValidateToCopy` (an int in 1..2147483647; a string of printable ASCII with no NUL whose first
 * and last bytes are not space, within the field limit, copied as bytes, since such bytes are
 * their own UTF-8; a timestamp in 1900..2100 UTC). Any other record is
 * decoded by avsc with the writer type, exactly like `BlockDecoder` does, and goes the object way
 * (`RowBatch`, rejects). Problems with the file itself are kept in `problem`, in avsc's words,
 * and fail the stream; like `BlockDecoder`, bytes after the last whole block are left unread (the
 * record count against the manifest tells).
 */
export class AvroToCopy extends ValidateToCopy {
  /** Why the file could not be read, when it could not. */
  problem: string | undefined;
  private pending: Buffer = Buffer.alloc(0);
  private type: avro.Type | undefined;
  private sync: Buffer | undefined;
  private decompress: ((buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => void) | undefined;
  private codec = 'null';
  private readonly vals: Float64Array;
  private readonly ends: Int32Array;
  /** Read position in the current buffer; the varint readers move it. */
  private p = 0;
  private readonly valueAt = (c: number): number => this.vals[c]!;

  constructor(
    table: TableDef,
    onReject: (r: Reject) => void,
    private readonly opts: {
      withPosition?: boolean;
      /** Column indexes whose distinct values to keep in `refIds`. */
      collectRefs?: readonly number[];
      codecs: Record<string, (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => void>;
      parseHook: (schema: avro.Schema) => avro.Type;
    },
  ) {
    super(table, onReject, { withPosition: opts.withPosition, avroBytes: true, collectRefs: opts.collectRefs });
    this.vals = new Float64Array(table.columns.length);
    this.ends = new Int32Array(table.columns.length);
  }

  private fail(message: string, cb: TransformCallback): void {
    this.problem ??= message;
    cb(new Error(message));
  }

  override _transform(chunk: unknown, _enc: BufferEncoding, cb: TransformCallback): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk as Buffer]) : (chunk as Buffer);
    let pos = 0;
    if (this.type === undefined) {
      if (buf.length < MAGIC.length) {
        this.pending = buf;
        return cb();
      }
      if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return this.fail('invalid magic bytes', cb);
      let header: { value: { meta: Record<string, Buffer>; sync: Buffer }; offset: number };
      try {
        header = HEADER.decode(buf, 0) as typeof header;
      } catch (err) {
        return this.fail((err as Error).message, cb);
      }
      const { value, offset } = header;
      if (offset < 0) {
        this.pending = buf;
        return cb();
      }
      this.codec = (value.meta['avro.codec'] ?? 'null').toString();
      this.decompress = this.opts.codecs[this.codec];
      if (!this.decompress) return this.fail(`unknown codec: ${this.codec}`, cb);
      try {
        this.type = this.opts.parseHook(JSON.parse(value.meta['avro.schema']!.toString()) as avro.Schema);
      } catch (err) {
        return this.fail((err as Error).message, cb);
      }
      this.sync = value.sync;
      pos = offset;
    }
    const blocks: Block[] = [];
    for (;;) {
      this.p = pos;
      const count = this.readLongOrSlow(buf, buf.length);
      if (Number.isNaN(count)) break;
      const size = this.readLongOrSlow(buf, buf.length);
      if (Number.isNaN(size)) break;
      const start = this.p;
      if (start + size + 16 > buf.length) break;
      if (!buf.subarray(start + size, start + size + 16).equals(this.sync!)) return this.fail('invalid sync marker', cb);
      const raw = buf.subarray(start, start + size);
      const data = new Promise<Buffer>((resolve, reject) =>
        this.decompress!(raw, (err, out) => (err ? reject(err) : resolve(out!))),
      );
      data.catch(() => {}); // awaited below, in order
      blocks.push({ count, data });
      pos = start + size + 16;
    }
    // Keep what is left of this chunk for the next one: a copy, so the chunk itself can go.
    this.pending = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
    buf = Buffer.alloc(0);
    if (blocks.length === 0) return cb();
    void this.decodeBlocks(blocks).then(
      () => cb(),
      (err: Error) => this.fail(err.message, cb),
    );
  }

  private async decodeBlocks(blocks: Block[]): Promise<void> {
    for (const block of blocks) {
      let data: Buffer;
      try {
        data = await block.data;
      } catch {
        throw new Error(`${this.codec} codec decompression error`);
      }
      let p = 0;
      for (let i = 0; i < block.count; i++) {
        p = this.row(data, p);
      }
    }
  }

  /**
   * Reads the zig-zag varint at `this.p` (not past `end`) as a number when its raw value is a safe
   * integer; SLOW when it is not, or runs past `end` (the caller then lets avsc decide).
   */
  private readLongOrSlow(buf: Buffer, end: number): number {
    let p = this.p;
    let raw = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (p >= end || i === 8) return SLOW;
      const b = buf[p++]!;
      raw += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) break;
    }
    if (raw > Number.MAX_SAFE_INTEGER) return SLOW;
    this.p = p;
    return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
  }

  /** Reads the record at `start` of a block, validates it and writes it; returns where the next starts. */
  private row(data: Buffer, start: number): number {
    const kinds = this.kinds;
    const n = kinds.length;
    const end = data.length;
    const vals = this.vals;
    const ends = this.ends;
    this.p = start;
    let fast = true;
    let need = 2 + (this.withPosition ? 12 : 0);
    for (let c = 0; c < n && fast; c++) {
      const v = this.readLongOrSlow(data, end);
      if (kinds[c] === 'int') {
        // The varint's value is what avsc's int gives when it fits; a value outside 1..INT_MAX goes the slow way.
        if (!(v >= 1 && v <= INT_MAX)) fast = false;
        vals[c] = v;
        need += 8;
      } else if (kinds[c] === 'micros') {
        if (!(v >= MIN_VALID_US && v < END_VALID_US)) fast = false;
        vals[c] = v;
        need += 12;
      } else {
        // A string: its byte length, then the bytes.
        if (!(v >= 1) || v > FIELD_MAX_BYTES || this.p + v > end) {
          fast = false;
          break;
        }
        const s = this.p;
        const e = s + v;
        const first = data[s]!;
        const last = data[e - 1]!;
        if (first <= 32 || first >= 127 || last <= 32 || last >= 127) fast = false;
        else {
          for (let i = s + 1; i < e - 1; i++) {
            const b = data[i]!;
            if (b === 0 || b >= 0x80) {
              fast = false;
              break;
            }
          }
        }
        vals[c] = s;
        ends[c] = e;
        this.p = e;
        need += 4 + v;
      }
    }
    const pos = this.position++;
    if (!fast) {
      const { value, offset } = this.type!.decode(data, start);
      if (offset < 0) throw new Error('truncated block');
      this.slow(value as Record<string, unknown>, pos);
      return offset;
    }
    const next = this.p;
    const copy = this.copy;
    const buf = copy.room(need);
    let o = putFieldCount(buf, copy.o, this.withPosition ? n + 1 : n);
    for (let c = 0; c < n; c++) {
      const kind = kinds[c];
      if (kind === 'int') o = putInt4(buf, o, vals[c]!);
      else if (kind === 'text') o = putTextBytes(buf, o, data, vals[c]!, ends[c]!);
      else o = putTimestamp(buf, o, vals[c]!);
    }
    if (this.withPosition) o = putInt8(buf, o, pos);
    copy.o = o;
    this.valid++;
    if (this.refIds) this.collect(this.valueAt);
    const id = vals[0]!;
    if (id <= this.lastId) this.ascending = false;
    this.lastId = id;
    return next;
  }
}
