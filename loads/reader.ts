import { isUtf8 } from 'node:buffer';
import { Parser } from 'csv-parse';
import type { Reject } from '../pg/index.js';
import { CSV_OPTIONS, cleanRaw, csvApi, type CsvApi } from '../core/csv-dialect.js';
import { UnprocessableError } from '../core/errors.js';
import { isHeader, RowBatch, type TableDef } from '../core/tables.js';
import { diskSource, type ByteSource } from './source.js';

/** A run of consecutive records of a file, validated and ready to write in one transaction. */
export interface Chunk {
  /** Byte offset and physical line where the chunk starts, and where the next one starts. */
  startOffset: number;
  startLine: number;
  endOffset: number;
  endLine: number;
  /** The last chunk of the file. */
  final: boolean;
  /** Data records read (a header is not one). */
  rowsRead: number;
  /** COPY text, one line per valid row (`col1 \t col2 ...\n`) in file order; bytes, not
   * strings, so a chunk of 100,000 rows is one object for the garbage collector, not 100,000. */
  copy: Buffer;
  /** Where each valid row's line ends in `copy`. */
  copyEnds: number[];
  ids: number[];
  /** Per valid row, for reference checks and their rejects: the values of each `ref` column, line and bytes. */
  refs: number[][];
  lines: number[];
  starts: number[];
  ends: number[];
  /** Records that broke a field rule or had the wrong width (`position` is the physical line). */
  rejects: Reject[];
  /** Bytes of the rejects' raw text (each cut at the raw cap). */
  rejectBytes: number;
  wrongWidth: number;
  /** Ids strictly increasing in file order (already sorted, so no duplicates). */
  sorted: boolean;
  /** Whether an id occurs twice in this chunk; if so, later occurrences that change the row. */
  duplicates: boolean;
  duplicateChanges: number;
}

// Small reads keep each synchronous parse slice short (a few ms), so the event loop keeps feeding
// the COPY socket and reading replies while the next chunk is parsed.
const READ_BYTES = 64 * 1024;
/** A record longer than this is an unclosed quote, not data: fail instead of buffering the file. */
const MAX_RECORD_BYTES = 1 << 20;
const BOM = [0xef, 0xbb, 0xbf];
/** How much of the start of a file is looked at to tell binary data from CSV text. */
const SNIFF_BYTES = 64 * 1024;

/** What bounds a chunk, and the rules' field limit (the settings of the same names). */
export interface ReaderLimits {
  /** LOAD_CHUNK_BYTES: a chunk ends once its COPY text and its rejects' raw text reach this. */
  chunkBytes: number;
  /** FIELD_MAX_BYTES. */
  fieldMaxBytes: number;
  /** REJECT_RAW_MAX_BYTES: a reject's raw text is cut here where it is made, so a chunk never holds more. */
  rawMaxBytes: number;
}

const DEFAULT_LIMITS: ReaderLimits = { chunkBytes: 64 * 1024 * 1024, fieldMaxBytes: 64 * 1024, rawMaxBytes: 4 * 1024 };

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const copyText = (s: string) => (NEEDS_ESCAPE.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]!) : s);

/**
 * Streams a CSV file from a byte offset, record by record, through the shared csv-parse settings
 * and the data dictionary, and hands out chunks of `chunkRows` records, or fewer when their bytes
 * reach `limits.chunkBytes` first (wide rows, long rejected lines).
 *
 * csv-parse's per-record `info`/`raw` double its cost and miscount lines (a CRLF inside quotes
 * counts twice), so byte offsets come from the parser's running byte count (exact) and physical
 * line numbers from counting LF bytes in the file itself. That also gives each record's exact raw
 * text and lets a load resume at any record boundary. Memory holds at most about one chunk's
 * bytes (`chunkBytes` plus one record) plus the read buffers of one record (at most 1 MiB),
 * whatever the file size and however long its lines.
 */
export class ChunkReader {
  private readonly api: CsvApi;
  private readonly batch: RowBatch;
  private readonly refIndexes: number[];
  private readonly textColumns: boolean[];
  /** Input not yet behind `prevEnd`, with whether each piece is valid UTF-8. */
  private bufs: { buf: Buffer; start: number; utf8: boolean }[] = [];
  private readPos: number;
  private prevEnd: number;
  private line: number;
  private headerPending: boolean;
  private eof = false;
  private ready: Chunk[] = [];
  private cur: Chunk;

  private input: AsyncIterator<Buffer> | undefined;
  private pending: Buffer | undefined;

  private constructor(
    private readonly source: ByteSource,
    private readonly table: TableDef,
    private readonly chunkRows: number,
    private readonly limits: ReaderLimits,
    private readonly base: number,
    startLine: number,
  ) {
    // The parser's synchronous core, driven directly: records arrive while `info.bytes` is exact for each.
    this.api = csvApi(new Parser({ ...CSV_OPTIONS, raw: false, info: false, max_record_size: MAX_RECORD_BYTES }));
    this.batch = new RowBatch(table, { fieldMaxBytes: limits.fieldMaxBytes });
    this.refIndexes = table.columns.flatMap((c, i) => (c.references ? [i] : []));
    this.textColumns = table.columns.map((c) => c.kind === 'text');
    this.readPos = base;
    this.prevEnd = base;
    this.line = startLine;
    this.headerPending = base === 0;
    this.cur = this.newChunk();
  }

  /**
   * A reader of `file` (a path on this machine, or a ByteSource: an object in the storage) from
   * byte `startOffset`, at physical line `startLine`: a resumed load asks the storage for that
   * range only.
   */
  static async open(
    file: string | ByteSource,
    table: TableDef,
    startOffset: number,
    startLine: number,
    chunkRows: number,
    limits: Partial<ReaderLimits> = {},
  ): Promise<ChunkReader> {
    const source = typeof file === 'string' ? await diskSource(file) : file;
    return new ChunkReader(source, table, chunkRows, { ...DEFAULT_LIMITS, ...limits }, startOffset, startLine);
  }

  async close(): Promise<void> {
    const input = this.input;
    this.input = undefined;
    await input?.return?.().catch(() => {});
    await this.source.close().catch(() => {});
  }

  /** The next piece of the file (at most READ_BYTES; the first at least SNIFF_BYTES when the file has them), or none at its end. */
  private async read(): Promise<Buffer | undefined> {
    this.input ??= (await this.source.stream(this.readPos))[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const pull = async (): Promise<Buffer | undefined> => {
      if (this.pending) {
        const p = this.pending;
        this.pending = undefined;
        return p;
      }
      const r = await this.input!.next();
      return r.done ? undefined : Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    };
    let piece = await pull();
    if (piece && this.readPos === 0) {
      // The binary sniff looks at the first 64 KiB whole, however the store cuts its stream.
      const parts = [piece];
      let size = piece.length;
      while (size < SNIFF_BYTES) {
        const more = await pull();
        if (!more) break;
        parts.push(more);
        size += more.length;
      }
      piece = parts.length === 1 ? piece : Buffer.concat(parts);
      return piece;
    }
    if (piece && piece.length > READ_BYTES) {
      this.pending = piece.subarray(READ_BYTES);
      piece = piece.subarray(0, READ_BYTES);
    }
    return piece;
  }

  /** The next chunk; the last one has `final` set (possibly with no rows). */
  async next(): Promise<Chunk> {
    while (this.ready.length === 0) {
      if (this.eof) throw new Error('read past the end of the file');
      const piece = await this.read();
      let err: Error | undefined;
      if (!piece || piece.length === 0) {
        this.eof = true;
        err = this.api.parse(undefined, true, this.onRecord, () => {});
      } else {
        if (this.readPos === 0) this.checkText(piece);
        this.bufs.push({ buf: piece, start: this.readPos, utf8: isUtf8(piece) });
        this.readPos += piece.length;
        err = this.api.parse(piece, false, this.onRecord, () => {});
      }
      if (err) {
        throw new UnprocessableError(`the file is not valid CSV at line ${this.nextLine()}: ${err.message}`, {
          line: this.nextLine(),
        });
      }
      // Drop input wholly behind the last record; what follows it may still be needed.
      while (this.bufs.length > 1 && this.bufs[0]!.start + this.bufs[0]!.buf.length <= this.prevEnd) this.bufs.shift();
      if (this.eof) this.finishChunk(true);
    }
    return this.ready.shift()!;
  }

  /** The raw text of bytes [start, end) of the file, line break trimmed and cut at the raw cap (for reference rejects). */
  async rawAt(start: number, end: number): Promise<{ raw: string; truncated: boolean }> {
    const max = this.limits.rawMaxBytes;
    const buf = await this.source.read(start, Math.min(end - start, max + 2));
    const bytesRead = buf.length;
    // Longer than the cap even without its line break (at most 2 bytes): cut, whatever its end holds.
    if (end - start > max + 2) return { raw: cleanRaw(buf.toString('utf8', 0, charStart(buf, max))), truncated: true };
    let stop = bytesRead;
    while (stop > 0 && (buf[stop - 1] === 10 || buf[stop - 1] === 13)) stop--;
    if (stop <= max) return { raw: cleanRaw(buf.toString('utf8', 0, stop)), truncated: false };
    return { raw: cleanRaw(buf.toString('utf8', 0, charStart(buf, max))), truncated: true };
  }

  /** A rejected record's raw text: bytes [start, end) less the line break, cut at the raw cap. */
  private rawOf(start: number, end: number): { raw: string; truncated: boolean } {
    while (end > start && (this.byteAt(end - 1) === 10 || this.byteAt(end - 1) === 13)) end--;
    const max = this.limits.rawMaxBytes;
    if (end - start <= max) return { raw: this.bytes(start, end).toString('utf8'), truncated: false };
    const head = this.bytes(start, start + max + 1);
    return { raw: head.toString('utf8', 0, charStart(head, max)), truncated: true };
  }

  private checkText(first: Buffer): void {
    const sample = first.subarray(0, 64 * 1024);
    // Allow a multi-byte character cut at the end of the sample.
    let cut = sample.length;
    for (let k = 1; k <= 3 && cut - k >= 0; k++) {
      const b = sample[cut - k]!;
      if (b >= 0xc0) {
        cut -= k;
        break;
      }
      if (b < 0x80) break;
    }
    // A file is binary (or another encoding) when NUL or bytes that are not UTF-8 are more than
    // a trace of it; a few are bad lines, each a reject like anywhere else in the file.
    const head = sample.subarray(0, cut);
    if (!isUtf8(head) || head.indexOf(0) !== -1) {
      const text = head.toString('utf8');
      let odd = 0;
      for (let i = text.indexOf('\u0000'); i !== -1; i = text.indexOf('\u0000', i + 1)) odd++;
      for (let i = text.indexOf('\ufffd'); i !== -1; i = text.indexOf('\ufffd', i + 1)) odd++;
      if (odd >= 4 && odd * 100 >= head.length) {
        throw new UnprocessableError('the file is not CSV text: it holds binary data or is not UTF-8; send UTF-8 CSV');
      }
    }
    if (BOM.every((b, i) => first[i] === b)) this.prevEnd = 3;
  }

  private newChunk(): Chunk {
    return {
      startOffset: this.prevEnd,
      startLine: this.line,
      endOffset: this.prevEnd,
      endLine: this.line,
      final: false,
      rowsRead: 0,
      copy: Buffer.allocUnsafe(1 << 20),
      copyEnds: [],
      ids: [],
      refs: this.refIndexes.map(() => []),
      lines: [],
      starts: [],
      ends: [],
      rejects: [],
      rejectBytes: 0,
      wrongWidth: 0,
      sorted: true,
      duplicates: false,
      duplicateChanges: 0,
    };
  }

  private finishChunk(final: boolean): void {
    const c = this.cur;
    c.endOffset = this.prevEnd;
    c.endLine = this.line;
    c.final = final;
    c.copy = c.copy.subarray(0, c.copyEnds.at(-1) ?? 0);
    if (!c.sorted) countDuplicates(c);
    this.ready.push(c);
    this.batch.clear();
    if (!final) this.cur = this.newChunk();
  }

  /** Physical line where the next record would start (for parse errors). */
  private nextLine(): number {
    let line = this.line;
    for (let p = this.prevEnd; ; p++) {
      const b = this.byteAt(p);
      if (b === 10) line++;
      else if (b !== 13) return line;
    }
  }

  private byteAt(abs: number): number | undefined {
    for (let i = this.bufs.length - 1; i >= 0; i--) {
      const b = this.bufs[i]!;
      if (abs >= b.start) return abs < b.start + b.buf.length ? b.buf[abs - b.start] : undefined;
    }
    return undefined;
  }

  private countLf(from: number, to: number): number {
    let n = 0;
    for (const b of this.bufs) {
      const bEnd = b.start + b.buf.length;
      if (bEnd <= from || b.start >= to) continue;
      const stop = Math.min(to, bEnd) - b.start;
      let i = Math.max(from, b.start) - b.start;
      while ((i = b.buf.indexOf(10, i)) !== -1 && i < stop) {
        n++;
        i++;
      }
    }
    return n;
  }

  private bytes(from: number, to: number): Buffer {
    const parts: Buffer[] = [];
    for (const b of this.bufs) {
      const bEnd = b.start + b.buf.length;
      if (bEnd <= from || b.start >= to) continue;
      parts.push(b.buf.subarray(Math.max(from, b.start) - b.start, Math.min(to, bEnd) - b.start));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private isUtf8At(from: number, to: number): boolean {
    for (const b of this.bufs) {
      if (b.start + b.buf.length <= from || b.start >= to) continue;
      if (!b.utf8) return isUtf8(this.bytes(from, to));
    }
    return true;
  }

  private readonly onRecord = (fields: string[]): void => {
    const end = this.base + this.api.info.bytes;
    // Blank lines before the record were skipped by the parser; step over them.
    let start = this.prevEnd;
    let line = this.line;
    for (;;) {
      const b = this.byteAt(start);
      if (b === 10) line++;
      else if (b !== 13) break;
      start++;
    }
    this.line = line + this.countLf(start, end);
    this.prevEnd = end;

    if (this.headerPending) {
      this.headerPending = false;
      if (isHeader(fields, this.table)) return;
    }
    const c = this.cur;
    c.rowsRead++;
    const issues = this.isUtf8At(start, end)
      ? this.batch.addFields(fields, line)
      : [{ field: null, message: 'is not valid UTF-8 text' }];
    if (issues) {
      if (issues[0]!.field === null && issues[0]!.message.startsWith('expected')) c.wrongWidth++;
      const { raw, truncated } = this.rawOf(start, end);
      c.rejects.push(truncated ? { position: line, raw, truncated, errors: issues } : { position: line, raw, errors: issues });
      c.rejectBytes += raw.length;
    } else {
      const cols = this.batch.columns;
      const k = this.batch.length - 1;
      let text = '';
      for (let i = 0; i < cols.length; i++) {
        const v = cols[i]![k];
        text += (i === 0 ? '' : '\t') + (this.textColumns[i] ? copyText(v as string) : String(v));
      }
      text += '\n';
      let at = c.copyEnds.at(-1) ?? 0;
      if (at + text.length * 3 > c.copy.length) {
        // Doubling, but not far past the chunk's byte bound: the chunk ends once it is reached.
        const want = at + text.length * 3;
        const bigger = Buffer.allocUnsafe(Math.max(want, Math.min(c.copy.length * 2, this.limits.chunkBytes + want - at)));
        c.copy.copy(bigger, 0, 0, at);
        c.copy = bigger;
      }
      at += c.copy.write(text, at);
      c.copyEnds.push(at);
      const id = cols[0]![k] as number;
      const ids = c.ids;
      if (c.sorted && ids.length > 0 && id <= ids[ids.length - 1]!) c.sorted = c.duplicates = false;
      ids.push(id);
      if (this.refIndexes.length > 0) {
        for (let r = 0; r < this.refIndexes.length; r++) c.refs[r]!.push(cols[this.refIndexes[r]!]![k] as number);
        c.lines.push(line);
        c.starts.push(start);
        c.ends.push(end);
      }
      if (k >= 1023) this.batch.clear();
    }
    if (c.rowsRead >= this.chunkRows || (c.copyEnds.at(-1) ?? 0) + c.rejectBytes >= this.limits.chunkBytes) this.finishChunk(false);
  };
}

/**
 * `duplicates` only says the ids were not strictly increasing; find the real repeats and count
 * those that change the row (the others repeat it and change nothing).
 */
function countDuplicates(c: Chunk): void {
  const last = new Map<number, string>();
  let repeats = 0;
  let changes = 0;
  for (let i = 0; i < c.ids.length; i++) {
    const from = i === 0 ? 0 : c.copyEnds[i - 1]!;
    const values = c.copy.toString('utf8', from, c.copyEnds[i]!);
    const prev = last.get(c.ids[i]!);
    if (prev !== undefined) {
      repeats++;
      if (prev !== values) changes++;
    }
    last.set(c.ids[i]!, values);
  }
  c.duplicates = repeats > 0;
  c.duplicateChanges = changes;
}

/** Where the UTF-8 character holding byte `at` starts (so a cut there splits no character). */
function charStart(buf: Buffer, at: number): number {
  let k = Math.min(at, buf.length);
  for (let back = 0; back < 3 && k > 0 && k < buf.length && (buf[k]! & 0xc0) === 0x80; back++) k--;
  return k;
}
