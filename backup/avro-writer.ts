import { randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import avro from 'avsc';
import { BinaryCopyReader, type CopyType } from '../pg/index.js';
import type { TableDef } from '../core/tables.js';

/**
 * An Avro object container file writer (spec 1.11 "Object Container Files") that compresses
 * blocks on libuv's thread pool while the next block is being encoded. avsc's BlockEncoder waits
 * for each block's compression before encoding more, which leaves a core idle on the backup path.
 * At most `inFlight` blocks wait for compression; they are written in order. Codec: deflate.
 */

/** The Avro container file header (spec "Object Container Files"), shared with the restore reader. */
export const MAGIC = Buffer.from('Obj\x01', 'latin1');
export const HEADER = avro.Type.forSchema({
  type: 'record',
  name: 'org.apache.avro.file.Header',
  fields: [
    { name: 'magic', type: { type: 'fixed', name: 'Magic', size: 4 } },
    { name: 'meta', type: { type: 'map', values: 'bytes' } },
    { name: 'sync', type: { type: 'fixed', name: 'Sync', size: 16 } },
  ],
});
const LONG = avro.Type.forSchema('long');

export interface WriterOptions {
  blockSize: number;
  level: number;
  metadata: Record<string, Buffer>;
  inFlight?: number;
}

export class AvroDeflateWriter extends Transform {
  private readonly sync = randomBytes(16);
  protected block: Buffer;
  protected pos = 0;
  protected count = 0;
  private readonly pending: Promise<Buffer>[] = [];
  private readonly inFlight: number;

  constructor(
    private readonly type: avro.Type,
    private readonly opts: WriterOptions,
    /** False: bytes in (a subclass encodes them itself), not records. */
    objectMode = true,
  ) {
    super(objectMode ? { writableObjectMode: true, writableHighWaterMark: 1024 } : {});
    this.block = Buffer.allocUnsafe(opts.blockSize);
    this.inFlight = opts.inFlight ?? 2;
    const meta = {
      ...opts.metadata,
      'avro.schema': Buffer.from(JSON.stringify(type.schema({ exportAttrs: true }))),
      'avro.codec': Buffer.from('deflate'),
    };
    this.push(HEADER.toBuffer({ magic: MAGIC, meta, sync: this.sync }));
  }

  override _transform(rec: unknown, _enc: BufferEncoding, cb: TransformCallback): void {
    let end: number;
    try {
      end = this.type.encode(rec, this.block, this.pos);
      if (end < 0) {
        // The block is full: ship it and encode again into a fresh one (bigger if one record needs it).
        this.ship();
        end = this.type.encode(rec, this.block, 0);
        if (end < 0) {
          this.block = Buffer.allocUnsafe((this.block.length - end) * 2);
          end = this.type.encode(rec, this.block, 0);
        }
      }
    } catch (err) {
      return cb(err as Error);
    }
    this.pos = end;
    this.count++;
    if (this.pending.length >= this.inFlight) this.drainOne().then(() => cb(), cb);
    else cb();
  }

  override _flush(cb: TransformCallback): void {
    this.ship();
    const drainAll = async () => {
      while (this.pending.length > 0) await this.drainOne();
    };
    drainAll().then(() => cb(), cb);
  }

  /** Ships the block (compression starts) and waits while too many are in flight; then `cb`. */
  protected blockDone(cb: TransformCallback): void {
    if (this.pending.length < this.inFlight) return cb();
    const drain = async () => {
      while (this.pending.length >= this.inFlight) await this.drainOne();
    };
    drain().then(() => cb(), cb);
  }

  protected ship(): void {
    if (this.count === 0) return;
    const raw = this.block.subarray(0, this.pos);
    const count = this.count;
    const sync = this.sync;
    const framed = new Promise<Buffer>((resolve, reject) =>
      zlib.deflateRaw(raw, { level: this.opts.level }, (err, data) =>
        err ? reject(err) : resolve(Buffer.concat([LONG.toBuffer(count), LONG.toBuffer(data.length), data, sync])),
      ),
    );
    framed.catch(() => {}); // reported when drained, in order
    this.pending.push(framed);
    this.block = Buffer.allocUnsafe(this.opts.blockSize);
    this.pos = 0;
    this.count = 0;
  }

  private async drainOne(): Promise<void> {
    const next = this.pending.shift();
    if (next) this.push(await next);
  }
}

const PG_EPOCH_US = 946_684_800_000_000;
const PG_EPOCH_US_BIG = BigInt(PG_EPOCH_US);
const TWO_32 = 2 ** 32;
/** Below this, a zig-zagged long is a safe integer and the varint is written with plain arithmetic. */
const TWO_52 = 2 ** 52;

/** Writes `zz` (a non-negative safe integer) as an Avro varint at `o`. */
function putVarint(buf: Buffer, o: number, zz: number): number {
  while (zz >= 0x80) {
    buf[o++] = (zz % 0x80) | 0x80;
    zz = Math.floor(zz / 0x80);
  }
  buf[o++] = zz;
  return o;
}

/** An Avro `long` from a bigint (values past ±2^52, rare: timestamps before 1827 or after 2112). */
function putBigLong(buf: Buffer, o: number, v: bigint): number {
  let zz = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
  while (zz >= 0x80n) {
    buf[o++] = Number(zz & 0x7fn) | 0x80;
    zz >>= 7n;
  }
  buf[o++] = Number(zz);
  return o;
}

/**
 * A backup's COPY → Avro step without a JS value per field: binary COPY bytes of `table`'s
 * columns in (dictionary order, no NULLs), the Avro container file out, its records encoded
 * straight from the COPY fields into the block: an `integer` as an Avro `int`, a `text`'s UTF-8
 * bytes copied as the Avro `string`'s (they are the same bytes), a `timestamptz` shifted to
 * microseconds since 1970 as a `long` (timestamp-micros). Each record's bytes are those avsc
 * writes for the decoded record (the tests compare them); only where blocks end may differ, as a
 * block ends when the largest the next record could take no longer fits.
 */
export class CopyToAvroWriter extends AvroDeflateWriter {
  private readonly reader: BinaryCopyReader;
  private readonly kinds: CopyType[];
  private readonly onRow: (values: unknown, buf: Buffer) => void;
  /** Blocks handed to compression so far. */
  private shipped = 0;

  constructor(table: TableDef, type: avro.Type, opts: WriterOptions) {
    super(type, opts, false);
    this.kinds = table.columns.map((c) => c.pgType);
    this.reader = new BinaryCopyReader(this.kinds, { names: table.columns.map((c) => c.name), raw: true });
    this.onRow = (_values, buf) => this.encode(buf);
  }

  /** Rows read so far. */
  get rows(): number {
    return this.reader.rows;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const before = this.shipped;
    try {
      this.reader.read(chunk, this.onRow);
    } catch (err) {
      return cb(err as Error);
    }
    // A chunk (64 KiB from the socket) fills at most a block or two: wait for compression as the object writer does.
    if (this.shipped !== before) this.blockDone(cb);
    else cb();
  }

  override _flush(cb: TransformCallback): void {
    if (!this.reader.ended) return cb(new Error('COPY output ended before its trailer'));
    super._flush(cb);
  }

  private encode(src: Buffer): void {
    const { kinds } = this;
    const { starts, lens } = this.reader;
    const n = kinds.length;
    // Most bytes the record takes: 5 per int, 10 per long, 10 + the bytes per string.
    let need = 0;
    for (let c = 0; c < n; c++) need += kinds[c] === 'text' ? 10 + lens[c]! : 10;
    if (this.pos + need > this.block.length) {
      if (this.count > 0) {
        this.ship();
        this.shipped++;
      }
      if (need > this.block.length) this.block = Buffer.allocUnsafe(need * 2);
    }
    const buf = this.block;
    let o = this.pos;
    for (let c = 0; c < n; c++) {
      const at = starts[c]!;
      const kind = kinds[c];
      if (kind === 'integer') {
        const v = src.readInt32BE(at);
        o = putVarint(buf, o, ((v << 1) ^ (v >> 31)) >>> 0);
      } else if (kind === 'text') {
        const len = lens[c]!;
        o = putVarint(buf, o, len * 2);
        if (len < 64) {
          for (let i = 0; i < len; i++) buf[o + i] = src[at + i]!;
        } else src.copy(buf, o, at, at + len);
        o += len;
      } else if (kind === 'timestamptz') {
        const hi = src.readInt32BE(at);
        // Within ±2^20 high words, the value and the epoch shift stay well inside ±2^52: exact.
        if (hi > -0x100000 && hi < 0x100000) {
          const v = hi * TWO_32 + src.readUInt32BE(at + 4) + PG_EPOCH_US;
          if (v < TWO_52 && v > -TWO_52) {
            o = putVarint(buf, o, v >= 0 ? v * 2 : -v * 2 - 1);
            continue;
          }
        }
        o = putBigLong(buf, o, src.readBigInt64BE(at) + PG_EPOCH_US_BIG);
      } else {
        o = putBigLong(buf, o, src.readBigInt64BE(at));
      }
    }
    this.pos = o;
    this.count++;
  }
}
