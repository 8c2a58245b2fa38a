import zlib from 'node:zlib';
import avro from 'avsc';
import type { Column, TableDef, TableName } from '../core/tables.js';

/**
 * The Avro side of backups: one record schema per table, derived from the data dictionary, and
 * the codec. `datetime` is a `long` with the `timestamp-micros` logical type (microseconds since
 * 1970-01-01T00:00:00Z), which keeps PostgreSQL's full precision. Decoded, it is an ISO 8601 UTC
 * string, the shape the data rules take; encoded, it accepts that string or the microseconds.
 */

export const AVRO_NAMESPACE = 'hr.backup';
export const CODEC = 'deflate';
/** Level 3 compresses the backup data about as well as 6 at a fraction of the CPU. */
export const DEFLATE_LEVEL = 3;
export const BLOCK_SIZE = 256 * 1024;

export type Micros = number | bigint;
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

const DAY_US = 86_400_000_000;
const DAY_US_BIG = BigInt(DAY_US);
const TWO = Array.from({ length: 100 }, (_, i) => (i < 10 ? `0${i}` : `${i}`));

/**
 * `2021-11-07T02:48:42.123456Z` for any microsecond count in years 1..9999. Integer civil-date
 * arithmetic (H. Hinnant's days-to-civil), several times faster than `Date#toISOString` on the
 * restore path, where it runs once per row.
 */
export function microsToIso(v: Micros): string {
  let days: number;
  let rem: number;
  if (typeof v === 'number') {
    days = Math.floor(v / DAY_US);
    rem = v - days * DAY_US;
    if (rem < 0) {
      days--;
      rem += DAY_US;
    } else if (rem >= DAY_US) {
      days++;
      rem -= DAY_US;
    }
  } else {
    let d = v / DAY_US_BIG;
    if (v % DAY_US_BIG < 0n) d -= 1n;
    days = Number(d);
    rem = Number(v - d * DAY_US_BIG);
  }
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const secs = Math.floor(rem / 1_000_000);
  const us = rem - secs * 1_000_000;
  const h = Math.floor(secs / 3600);
  const mi = Math.floor((secs - h * 3600) / 60);
  const sec = secs - h * 3600 - mi * 60;
  const y = year >= 1000 ? `${year}` : `${year}`.padStart(4, '0');
  const frac = us >= 100_000 ? `${us}` : `${us}`.padStart(6, '0');
  return `${y}-${TWO[month]}-${TWO[day]}T${TWO[h]}:${TWO[mi]}:${TWO[sec]}.${frac}Z`;
}

const ISO_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$/;

/** The inverse of `microsToIso`; only the UTC form it produces. */
export function isoToMicros(s: string): Micros {
  const m = ISO_UTC.exec(s);
  const ms = m ? Date.parse(`${m[1]}Z`) : NaN;
  if (!m || Number.isNaN(ms)) throw new Error(`not a UTC timestamp: ${s}`);
  const frac = Number((m[2] ?? '').padEnd(6, '0'));
  const micros = BigInt(ms) * 1000n + BigInt(frac);
  return micros >= MIN_SAFE && micros <= MAX_SAFE ? Number(micros) : micros;
}

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

/** Codecs a backup file may use when read back (BlockDecoder's `codecs`). */
export const codecs = {
  null: (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => cb(null, buf),
  deflate: (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => zlib.inflateRaw(buf, cb),
};
