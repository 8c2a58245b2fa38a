import zlib from 'node:zlib';
import avro from 'avsc';
import type { Column, TableDef, TableName } from '../core/tables.js';
import { isoToMicros, microsToIso, type Micros } from '../pg/index.js';

/**
 * The Avro side of backups: one record schema per table, derived from the data dictionary, and
 * the codec. `datetime` is a `long` with the `timestamp-micros` logical type (microseconds since
 * 1970-01-01T00:00:00Z), which keeps PostgreSQL's full precision. Decoded, it is an ISO 8601 UTC
 * string, the shape the data rules take; encoded, it accepts that string or the microseconds
 * (the conversions are pg/timestamps.ts's).
 */

export const AVRO_NAMESPACE = 'hr.backup';
export const CODEC = 'deflate';
/** Level 3 compresses the backup data about as well as 6 at a fraction of the CPU. */
export const DEFLATE_LEVEL = 3;
export const BLOCK_SIZE = 256 * 1024;

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const scratch = Buffer.alloc(8);

/**
 * Microseconds from year 1 to 9999 reach ±2.5e17, past the 2^53 a JS number holds exactly, so the
 * `long` is a number when it is safe and a bigint when it is not (avsc's own long throws there).
 */
const SafeOrBigLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer): Micros => {
    const hi = buf.readInt32LE(4);
    // Within ±2^21 the high word keeps the value inside 2^53: plain arithmetic is exact.
    if (hi > -0x200000 && hi < 0x200000) return hi * 4_294_967_296 + buf.readUInt32LE(0);
    const n = buf.readBigInt64LE();
    return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n;
  },
  toBuffer: (v: Micros): Buffer => {
    scratch.writeBigInt64LE(BigInt(v));
    return scratch;
  },
  fromJSON: (v: unknown): Micros => (typeof v === 'string' ? BigInt(v) : (v as number)),
  toJSON: (v: Micros): number | string => (typeof v === 'bigint' ? v.toString() : v),
  isValid: (v: unknown): boolean => typeof v === 'bigint' || Number.isSafeInteger(v),
  compare: (a: Micros, b: Micros): number => (a < b ? -1 : a > b ? 1 : 0),
});

class TimestampMicros extends avro.types.LogicalType {
  constructor(schema: avro.Schema, opts?: unknown) {
    super(schema, opts);
    // avsc builds the underlying type from the schema object itself, past any registry entry for
    // "long"; swap in the long that takes bigints.
    (this as unknown as { _underlyingType: avro.Type })._underlyingType = SafeOrBigLong;
  }

  protected override _fromValue(v: Micros): string {
    return microsToIso(v);
  }
  protected override _toValue(v: unknown): Micros | undefined {
    if (typeof v === 'number' || typeof v === 'bigint') return v;
    if (typeof v === 'string') return isoToMicros(v);
    return undefined;
  }
  protected override _resolve(type: avro.Type): ((v: Micros) => Micros) | undefined {
    if (avro.Type.isType(type, 'logical:timestamp-micros')) return (v) => v;
    return undefined;
  }
}

/** Fresh each time: avsc records named types in the options' registry. */
const typeOptions = () => ({ logicalTypes: { 'timestamp-micros': TimestampMicros }, registry: {} });

function fieldType(c: Column): avro.Schema {
  switch (c.kind) {
    case 'id':
    case 'ref':
      return 'int';
    case 'text':
      return 'string';
    case 'datetime':
      return { type: 'long', logicalType: 'timestamp-micros' };
  }
}

/** The record schema written into every backup file of `table`. */
export function avroSchema(table: TableDef): avro.Schema {
  return {
    type: 'record',
    name: table.name,
    namespace: AVRO_NAMESPACE,
    doc: table.description,
    fields: table.columns.map((c) => ({ name: c.name, type: fieldType(c), doc: c.description })),
  } as avro.Schema;
}

const types = new Map<TableName, avro.Type>();

export function avroType(table: TableDef): avro.Type {
  let t = types.get(table.name);
  if (!t) {
    t = avro.Type.forSchema(avroSchema(table), typeOptions());
    types.set(table.name, t);
  }
  return t;
}

/** Builds a file's writer type with our logical types, the way BlockDecoder's `parseHook` wants. */
export function parseWriterSchema(schema: avro.Schema, rawTimestamps = false): avro.Type {
  if (!rawTimestamps) return avro.Type.forSchema(schema, typeOptions());
  // Timestamps stay microseconds (number or bigint): the restore path converts them itself.
  return avro.Type.forSchema(schema, {
    registry: {},
    typeHook: (s: avro.Schema) =>
      s === 'long' || (typeof s === 'object' && (s as { type?: unknown }).type === 'long') ? SafeOrBigLong : undefined,
  });
}

/** The logical types the file declares for `table`'s datetime columns must be ours. */
function logicalMismatch(schema: avro.Schema, table: TableDef): string | null {
  const fields = (schema as { fields?: { name: string; type: unknown }[] }).fields ?? [];
  for (const c of table.columns.filter((col) => col.kind === 'datetime')) {
    const t = fields.find((f) => f.name === c.name)?.type as { logicalType?: string } | undefined;
    if (t?.logicalType !== 'timestamp-micros') return `the file's ${c.name} is not a timestamp-micros`;
  }
  return null;
}

/**
 * Why a file's schema is not the one of `table` (another table, another shape), or null when it
 * is. Compared on the canonical form, so docs and attribute order do not matter.
 */
export function schemaMismatch(writer: avro.Type, table: TableDef, schema?: avro.Schema): string | null {
  const expected = avroType(table);
  if (writer.name !== expected.name) {
    return `the file holds ${writer.name ?? 'unnamed'} records, not ${expected.name}`;
  }
  if (writer.fingerprint().compare(expected.fingerprint()) !== 0) {
    return `the file's ${table.name} schema differs from the table's: ${JSON.stringify(writer.schema())}`;
  }
  return schema === undefined ? null : logicalMismatch(schema, table);
}

const INFLATE_CHUNK_BYTES = 512 * 1024;

/** Codecs a backup file may use when read back (BlockDecoder's `codecs`). */
export const codecs = {
  null: (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => cb(null, buf),
  // One output buffer for a whole block (blocks are written at 256 KiB): zlib's default 16 KiB
  // chunks cost a callback and a buffer each, then a concatenation, on the main thread.
  deflate: (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => zlib.inflateRaw(buf, { chunkSize: INFLATE_CHUNK_BYTES }, cb),
};
