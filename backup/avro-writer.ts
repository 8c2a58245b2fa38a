import { randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import avro from 'avsc';

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
  private block: Buffer;
  private pos = 0;
  private count = 0;
  private readonly pending: Promise<Buffer>[] = [];
  private readonly inFlight: number;

  constructor(
    private readonly type: avro.Type,
    private readonly opts: WriterOptions,
  ) {
    super({ writableObjectMode: true, writableHighWaterMark: 1024 });
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

  private ship(): void {
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
