import { isUtf8 } from 'node:buffer';
import { CsvError, Parser } from 'csv-parse';
import { CSV_OPTIONS, cleanRaw, csvApi, type CsvApi } from '../core/csv-dialect.js';
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
 * running count, so each record's raw text is its exact bytes, and a record whose bytes are not
 * UTF-8 is a reject saying so (as in file loads) instead of fields with U+FFFD in them.
 */
export class CsvRows {
  readonly rows: string[][] = [];
  private readonly spans: number[] = [];
  private readonly issues = new Map<number, FieldIssue[]>();
  private readonly bufs: Buffer[] = [];
  private readonly starts: number[] = [];
  private readonly api: CsvApi;
  private offset = 0;
  private prevEnd = 0;
  private headerPending = true;
  /** Fields dropped from the record being read (see MAX_KEPT_FIELDS). */
  private dropped = 0;

  constructor(
    private readonly table: TableDef,
    private readonly maxRows: number,
  ) {
    this.api = csvApi(new Parser({ ...CSV_OPTIONS, raw: false, info: false }));
  }

  rawOf(i: number): string {
    return cleanRaw(this.bytes(this.spans[2 * i]!, this.spans[2 * i + 1]!).toString('utf8'));
  }

  issuesOf(i: number): FieldIssue[] | undefined {
    return this.issues.get(i);
  }

  write(buf: Buffer): void {
    if (this.offset === 0 && buf.length >= 3 && BOM.every((b, i) => buf[i] === b)) this.prevEnd = 3;
    this.bufs.push(buf);
    this.starts.push(this.offset);
    this.offset += buf.length;
    this.check(this.api.parse(buf, false, this.onRecord, () => {}));
    const pending = this.api.state.record;
    if (pending.length > MAX_KEPT_FIELDS) {
      this.dropped += pending.length;
      pending.length = 0;
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
    this.spans.push(start, end);
    if (width !== fields.length) {
      this.issues.set(i, [{ field: null, message: `expected ${this.table.columns.length} fields, got ${width}` }]);
    } else if (!isUtf8(this.bytes(start, end))) {
      this.issues.set(i, [{ field: null, message: 'is not valid UTF-8 text' }]);
    }
  };

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
