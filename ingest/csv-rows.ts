import { isUtf8 } from 'node:buffer';
import { CsvError, Parser } from 'csv-parse';
import { CSV_OPTIONS, csvApi, type CsvApi } from '../core/csv-dialect.js';
import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';
import { isHeader, type FieldIssue, type TableDef } from '../core/tables.js';

/**
 * Fields of a record still being read are dropped past this many (and counted): such a record is
 * a reject for its width whatever it holds, and 5 MiB of commas must not become 5 million strings.
 */
const MAX_KEPT_FIELDS = 1024;
const BOM = [0xef, 0xbb, 0xbf];

/**
 * The records of a CSV batch body, parsed as the body arrives through the shared csv-parse
 * settings: the (maxRows+1)th data record is a 413 at once, without reading the rest. A first
 * record equal to the column names is a header and skipped. Byte offsets come from the parser's
 * running count, so each record's raw text is its exact bytes (cut at `rawMaxBytes`), and a
 * record whose bytes are not UTF-8 is a reject saying so (as in file loads) instead of fields with
 * U+FFFD in them. Input behind the record being read is let go as it is passed.
 */
export class CsvRows {
  readonly rows: string[][] = [];
  private readonly raws: string[] = [];
  private readonly cut = new Set<number>();
  private readonly issues = new Map<number, FieldIssue[]>();
  private readonly bufs: Buffer[] = [];
  private readonly starts: number[] = [];
  /** Per buffer: whether it is valid UTF-8 on its own (most are; a record in them needs no check). */
  private readonly utf8: boolean[] = [];
  private readonly api: CsvApi;
  private offset = 0;
  private prevEnd = 0;
  private headerPending = true;
  /** Fields dropped from the record being read (see MAX_KEPT_FIELDS). */
  private dropped = 0;
  /** A field of the record being read that passed `fieldMaxBytes`: its index, and the bytes let go. */
  private long: { index: number; bytes: number } | undefined;

  constructor(
    private readonly table: TableDef,
    private readonly maxRows: number,
    private readonly rawMaxBytes: number,
    private readonly fieldMaxBytes: number,
  ) {
    this.api = csvApi(new Parser({ ...CSV_OPTIONS, raw: false, info: false }));
  }

  /** The record's bytes less its line break, cut at `rawMaxBytes` (at a character boundary). */
  rawOf(i: number): { raw: string; truncated: boolean } {
    return { raw: this.raws[i]!, truncated: this.cut.has(i) };
  }

  issuesOf(i: number): FieldIssue[] | undefined {
    return this.issues.get(i);
  }

  write(buf: Buffer): void {
    if (this.offset === 0 && buf.length >= 3 && BOM.every((b, i) => buf[i] === b)) this.prevEnd = 3;
    this.bufs.push(buf);
    this.starts.push(this.offset);
    this.utf8.push(isUtf8(buf));
    this.offset += buf.length;
    this.check(this.api.parse(buf, false, this.onRecord, () => {}));
    const pending = this.api.state.record;
    const field = this.api.state.field;
    if (field.length > this.fieldMaxBytes) {
      // The record is a reject for this field whatever follows: count its bytes instead of keeping
      // them (csv-parse would grow its buffer, then a string, to the field's full size). The last
      // few bytes stay when they may be half a character.
      let keep = field.length;
      while (keep > field.length - 3 && keep > 0 && (field.buf[keep - 1]! & 0xc0) === 0x80) keep--;
      if (keep > 0 && field.buf[keep - 1]! >= 0xc0) keep--;
      this.long ??= { index: pending.length + this.dropped, bytes: 0 };
      this.long.bytes += keep;
      field.buf.copy(field.buf, 0, keep, field.length);
      field.length -= keep;
    }
    if (pending.length > MAX_KEPT_FIELDS) {
      this.dropped += pending.length;
      pending.length = 0;
    }
    // Let go of input wholly behind the last record; what follows it may still be needed.
    while (this.bufs.length > 1 && this.starts[0]! + this.bufs[0]!.length <= this.prevEnd) {
      this.bufs.shift();
      this.starts.shift();
      this.utf8.shift();
    }
  }

  end(): void {
    this.check(this.api.parse(undefined, true, this.onRecord, () => {}));
  }

  private check(err: Error | undefined): void {
    if (!err) return;
    if (err instanceof CsvError) {
      const line = (err as CsvError & { lines?: number }).lines;
      throw new BadRequestError(`body is not valid CSV${line ? ` near line ${line}` : ''}: ${err.message}`, { line });
    }
    throw err;
  }

  private readonly onRecord = (fields: string[]): void => {
    const end = this.api.info.bytes;
    let start = this.prevEnd;
    // Blank lines before the record were skipped by the parser; step over them.
    for (let b = this.byteAt(start); b === 10 || b === 13; b = this.byteAt(++start));
    this.prevEnd = end;
    const width = fields.length + this.dropped;
    this.dropped = 0;
    const long = this.long;
    this.long = undefined;
    if (this.headerPending) {
      this.headerPending = false;
      if (width === fields.length && isHeader(fields, this.table)) return;
    }
    const i = this.rows.length;
    if (i >= this.maxRows) {
      throw new PayloadTooLargeError(`the batch holds more than ${this.maxRows} rows; at most ${this.maxRows} are accepted per request`, {
        maxRows: this.maxRows,
      });
    }
    this.rows.push(fields);
    let stop = end;
    while (stop > start && (this.byteAt(stop - 1) === 10 || this.byteAt(stop - 1) === 13)) stop--;
    const max = this.rawMaxBytes;
    if (stop - start <= max) this.raws.push(this.bytes(start, stop).toString('utf8'));
    else {
      const head = this.bytes(start, start + max + 1);
      let cut = max;
      while (cut > 0 && (head[cut]! & 0xc0) === 0x80) cut--; // not inside a character
      this.raws.push(head.toString('utf8', 0, cut));
      this.cut.add(i);
    }
    if (width !== fields.length || width !== this.table.columns.length) {
      if (width !== fields.length) this.issues.set(i, [{ field: null, message: `expected ${this.table.columns.length} fields, got ${width}` }]);
    } else if (long !== undefined) {
      const bytes = long.bytes + Buffer.byteLength(fields[long.index] ?? '');
      fields[long.index] = '';
      this.issues.set(i, [{ field: this.table.columns[long.index]!.name, message: `is ${bytes} bytes long; at most ${this.fieldMaxBytes} are allowed` }]);
    } else if (!this.isUtf8At(start, end)) {
      this.issues.set(i, [{ field: null, message: 'is not valid UTF-8 text' }]);
    }
  };

  private isUtf8At(from: number, to: number): boolean {
    for (let k = 0; k < this.bufs.length; k++) {
      const s = this.starts[k]!;
      if (s + this.bufs[k]!.length <= from || s >= to) continue;
      if (!this.utf8[k]) return isUtf8(this.bytes(from, to));
    }
    return true;
  }

  private byteAt(abs: number): number | undefined {
    for (let k = this.bufs.length - 1; k >= 0; k--) {
      const s = this.starts[k]!;
      if (abs >= s) return abs < s + this.bufs[k]!.length ? this.bufs[k]![abs - s] : undefined;
    }
    return undefined;
  }

  private bytes(from: number, to: number): Buffer {
    const parts: Buffer[] = [];
    for (let k = 0; k < this.bufs.length; k++) {
      const s = this.starts[k]!;
      const b = this.bufs[k]!;
      if (s + b.length <= from || s >= to) continue;
      parts.push(b.subarray(Math.max(from, s) - s, Math.min(to, s + b.length) - s));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
