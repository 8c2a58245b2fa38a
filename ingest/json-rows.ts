import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';
import { cutToBytes } from '../core/rules.js';
import type { FieldIssue } from '../core/tables.js';

/** Nesting deeper than this is refused (400) as it is read, before anything recursive sees it. */
export const MAX_JSON_DEPTH = 32;
/** Keys of one row kept; a row with more is a reject (no table has that many columns). */
const MAX_ROW_KEYS = 64;

// Scanner states.
const VALUE = 0; // a value must come
const FIRST_VALUE = 1; // after `[`: a value or `]`
const FIRST_KEY = 2; // after `{`: a key or `}`
const KEY = 3; // after `,` in an object
const COLON = 4;
const AFTER = 5; // after a value: `,` or the closing bracket
const STRING = 6;
const NUMBER = 7;
const LITERAL = 8;
const DONE = 9; // after the top-level value: only whitespace

// Number sub-states; the terminal ones are those after a digit.
const N_MINUS = 0;
const N_ZERO = 1;
const N_INT = 2;
const N_DOT = 3;
const N_FRAC = 4;
const N_E = 5;
const N_ESIGN = 6;
const N_EXP = 7;
const TERMINAL = [false, true, true, false, true, false, false, true];

const OBJ = 1;
const ARR = 2;
const SCALAR = 3;
// Finer kinds of a row member's scalar value, known when it ends: decoded without JSON.parse.
const PLAIN_STRING = 4; // a string without escapes: its text between the quotes
const NUM = 5; // a number: Number() of its text reads the same double as JSON.parse
/**
 * The prototype of row objects: nothing inherited (its own prototype is null), so a key
 * "__proto__" is a key like any other, as with JSON.parse. Unlike Object.create(null) objects,
 * which V8 keeps as slow dictionaries, rows made from it share shapes and read fast.
 */
const ROW: object = Object.create(null);
/** Numbers kept per row member: key start, key end, key has escapes (0/1), value start, value end, value kind. */
const STRIDE = 6;

/**
 * The rows of a JSON batch body (an array of rows, or `{"rows": [...]}`), read as the body
 * arrives and held to its limits while reading: the (maxRows+1)th row is a 413 at once, nesting
 * past `MAX_JSON_DEPTH` a 400 at once, and a syntax error a 400 saying where (line, column).
 *
 * A hand-written, non-recursive scanner rather than `JSON.parse`: it keeps the source text of
 * each row (a reject's raw text is what the client sent, cut at `rawMaxBytes`) and never builds
 * what no row can use. A row object becomes an object of its top-level members: scalars decoded,
 * a nested object or array replaced by an empty one (no column takes either, so the rules reject
 * it the same way). Text behind the row being read is let go as it is passed.
 */
export class JsonRows {
  readonly rows: unknown[] = [];
  private readonly raws: string[] = [];
  private readonly cut = new Set<number>();
  private readonly issues = new Map<number, FieldIssue[]>();
  private readonly pieces: string[] = [];
  private readonly starts: number[] = [];
  private offset = 0;
  /** Lines wholly in text already let go, and where the last of them ended (for error positions). */
  private droppedLines = 0;
  private droppedLineStart = 0;

  private state = VALUE;
  private readonly stack: number[] = [];
  private top = 0;
  private num = N_INT;
  private literal = '';
  private literalAt = 0;
  private escape = false;
  /** The string being read (or the last one read) holds a backslash escape. */
  private escaped = false;
  private hex = 0;
  private stringIsKey = false;
  private tokenStart = 0;

  /** Stack depth of the rows array's elements; -1 until it is known. */
  private rowsLevel = -1;
  private inRows = false;
  private rowsSeen = false;
  private rowsNotArray = false;
  private keyIsRows = false;

  private rowStart = 0;
  private rowKind = 0;
  /** Of the current row object: STRIDE numbers per member (see STRIDE). */
  private members: number[] = [];
  private extraKeys = 0;
  private memberKind = 0;

  constructor(
    private readonly maxRows: number,
    private readonly rawMaxBytes: number,
  ) {}

  /** The source text of row `i`, cut at `rawMaxBytes`. */
  rawOf(i: number): { raw: string; truncated: boolean } {
    return { raw: this.raws[i]!, truncated: this.cut.has(i) };
  }

  /** Reasons the reader found to reject row `i` whatever the rules say (too many keys). */
  issuesOf(i: number): FieldIssue[] | undefined {
    return this.issues.get(i);
  }

  /** Scans the next piece of the body's text; throws a 400 or a 413 as soon as one is due. */
  write(text: string): void {
    const base = this.offset;
    this.pieces.push(text);
    this.starts.push(base);
    this.offset += text.length;
    const n = text.length;
    for (let i = 0; i < n; i++) {
      let c = text.charCodeAt(i);
      switch (this.state) {
        case STRING: {
          if (!this.escape && this.hex === 0) {
            // The bulk of a body: run to the next quote, backslash or control character.
            while (c !== 34 && c !== 92 && c >= 32 && ++i < n) c = text.charCodeAt(i);
            if (i === n) break;
          }
          if (this.hex > 0) {
            if (!isHex(c)) this.fail(base + i, 'a \\u escape needs four hex digits');
            this.hex--;
          } else if (this.escape) {
            if (c === 117 /* u */) this.hex = 4;
            else if (!isEscapable(c)) this.fail(base + i, `\\${String.fromCharCode(c)} is not a JSON escape`);
            this.escape = false;
          } else if (c === 92) this.escape = this.escaped = true;
          else if (c < 32) this.fail(base + i, 'a control character inside a string must be escaped');
          else if (this.stringIsKey) this.endKey(base + i + 1);
          else this.endValue(base + i + 1);
          break;
        }
        case NUMBER: {
          const next = numberStep(this.num, c);
          if (next >= 0) {
            this.num = next;
            break;
          }
          if (!TERMINAL[this.num]) this.fail(base + i, 'a number is cut short');
          this.endValue(base + i);
          i--; // the character after the number is read again in the new state
          break;
        }
        case LITERAL: {
          if (c !== this.literal.charCodeAt(this.literalAt)) this.fail(base + i, `expected ${this.literal}`);
          if (++this.literalAt === this.literal.length) this.endValue(base + i + 1);
          break;
        }
        default:
          if (c === 32 || c === 10 || c === 13 || c === 9) break;
          this.structural(c, base + i);
      }
    }
    this.letGo();
  }

  /** Drops the pieces of text nothing will read again: all before the row (or key) being read. */
  private letGo(): void {
    let keep = this.offset;
    if (this.rowKind !== 0) keep = this.rowStart;
    if (this.state === STRING) keep = Math.min(keep, this.tokenStart);
    while (this.pieces.length > 1 && this.starts[1]! <= keep) {
      const piece = this.pieces.shift()!;
      const start = this.starts.shift()!;
      for (let p = piece.indexOf('\n'); p !== -1; p = piece.indexOf('\n', p + 1)) {
        this.droppedLines++;
        this.droppedLineStart = start + p + 1;
      }
    }
  }

  /** The body is complete. */
  end(): void {
    if (this.state === NUMBER && TERMINAL[this.num]) this.endValue(this.offset);
    if (this.state !== DONE) {
      if (this.state === VALUE && this.stack.length === 0) {
        throw new BadRequestError('body is empty; send a JSON array of rows or {"rows": [...]}');
      }
      this.fail(this.offset, 'the body ends before the JSON does');
    }
    if (this.top === ARR || (this.top === OBJ && this.rowsSeen && !this.rowsNotArray)) return;
    throw new BadRequestError('body must be a JSON array of rows or an object {"rows": [...]}');
  }

  private structural(c: number, at: number): void {
    const state = this.state;
    if (state === VALUE || state === FIRST_VALUE) {
      if (state === FIRST_VALUE && c === 93 /* ] */) this.close(at);
      else this.beginValue(c, at);
    } else if (state === KEY || state === FIRST_KEY) {
      if (state === FIRST_KEY && c === 125 /* } */) return this.close(at);
      if (c !== 34) this.fail(at, 'expected a key in double quotes');
      this.stringIsKey = true;
      this.escaped = false;
      this.tokenStart = at;
      this.state = STRING;
    } else if (state === COLON) {
      if (c !== 58) this.fail(at, 'expected : after a key');
      this.state = VALUE;
    } else if (state === AFTER) {
      const inArray = this.stack[this.stack.length - 1] === ARR;
      if (c === 44 /* , */) this.state = inArray ? VALUE : KEY;
      else if (c === (inArray ? 93 : 125)) this.close(at);
      else this.fail(at, `expected , or ${inArray ? ']' : '}'}`);
    } else {
      this.fail(at, 'unexpected text after the JSON value');
    }
  }

  private beginValue(c: number, at: number): void {
    let kind: number;
    if (c === 123 /* { */ || c === 91 /* [ */) kind = c === 123 ? OBJ : ARR;
    else if (c === 34 || c === 45 || (c >= 48 && c <= 57) || c === 116 || c === 102 || c === 110) kind = SCALAR;
    else return this.fail(at, `unexpected ${describe(c)}`);

    const depth = this.stack.length;
    if (depth === 0) {
      this.top = kind;
      if (kind === ARR) this.rowsLevel = 1;
    } else if (this.inRows && depth === this.rowsLevel) {
      if (this.rows.length >= this.maxRows) {
        throw new PayloadTooLargeError(`the batch holds more than ${this.maxRows} rows; at most ${this.maxRows} are accepted per request`, {
          maxRows: this.maxRows,
        });
      }
      this.rowStart = at;
      this.rowKind = kind;
      this.members.length = 0;
      this.extraKeys = 0;
    } else if (this.inRows && this.rowKind === OBJ && depth === this.rowsLevel + 1) {
      this.memberKind = kind;
      if (this.extraKeys === 0) this.members.push(at);
    } else if (depth === 1 && this.top === OBJ && this.keyIsRows) {
      if (this.rowsSeen) return this.fail(at, 'the key "rows" appears twice');
      this.rowsSeen = true;
      if (kind === ARR) this.rowsLevel = 2;
      else this.rowsNotArray = true;
    }

    if (kind !== SCALAR) {
      if (depth >= MAX_JSON_DEPTH) {
        throw new BadRequestError(`JSON nested deeper than ${MAX_JSON_DEPTH} levels at ${this.where(at).text}; rows are flat objects`, this.where(at).details);
      }
      this.stack.push(kind);
      if (depth + 1 === this.rowsLevel && (depth === 0 || this.keyIsRows)) this.inRows = true;
      this.state = kind === OBJ ? FIRST_KEY : FIRST_VALUE;
      return;
    }
    if (c === 34) {
      this.stringIsKey = false;
      this.escaped = false;
      this.tokenStart = at;
      this.state = STRING;
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      this.num = c === 45 ? N_MINUS : c === 48 ? N_ZERO : N_INT;
      this.state = NUMBER;
    } else {
      this.literal = c === 116 ? 'true' : c === 102 ? 'false' : 'null';
      this.literalAt = 1;
      this.state = LITERAL;
    }
  }

  private close(at: number): void {
    this.stack.pop();
    if (this.inRows && this.stack.length === this.rowsLevel - 1) this.inRows = false;
    this.endValue(at + 1);
  }

  private endKey(end: number): void {
    const depth = this.stack.length;
    if (this.inRows && this.rowKind === OBJ && depth === this.rowsLevel + 1) {
      if (this.members.length >= STRIDE * MAX_ROW_KEYS) this.extraKeys++;
      else this.members.push(this.tokenStart, end, this.escaped ? 1 : 0);
    } else if (depth === 1 && this.top === OBJ) {
      // `"rows"`, or the same written with escapes (a short key is cheap to decode).
      const len = end - this.tokenStart;
      this.keyIsRows = len === 6 ? this.slice(this.tokenStart, end) === '"rows"' : len < 64 && JSON.parse(this.slice(this.tokenStart, end)) === 'rows';
    }
    this.state = COLON;
  }

  private endValue(end: number): void {
    const depth = this.stack.length;
    if (this.inRows && depth === this.rowsLevel) this.endRow(end);
    else if (this.inRows && this.rowKind === OBJ && depth === this.rowsLevel + 1 && this.extraKeys === 0) {
      const kind = this.memberKind !== SCALAR ? this.memberKind : this.state === NUMBER ? NUM : this.state === STRING && !this.escaped ? PLAIN_STRING : SCALAR;
      this.members.push(end, kind);
    }
    if (depth === 1 && this.top === OBJ) this.keyIsRows = false;
    this.state = depth === 0 ? DONE : AFTER;
  }

  private endRow(end: number): void {
    const i = this.rows.length;
    const length = end - this.rowStart;
    const raw = cutToBytes(this.slice(this.rowStart, this.rowStart + Math.min(length, this.rawMaxBytes)), this.rawMaxBytes);
    this.raws.push(raw);
    if (raw.length < length) this.cut.add(i);
    if (this.rowKind === ARR) {
      this.rows.push([]);
    } else if (this.rowKind === SCALAR) {
      this.rows.push(JSON.parse(this.slice(this.rowStart, end)));
    } else if (this.extraKeys > 0) {
      this.rows.push({});
      this.issues.set(i, [{ field: null, message: `has more than ${MAX_ROW_KEYS} keys; a row has one per column` }]);
    } else {
      const row = Object.create(ROW) as Record<string, unknown>;
      const m = this.members;
      for (let k = 0; k < m.length; k += STRIDE) {
        const key = m[k + 2] ? (JSON.parse(this.slice(m[k]!, m[k + 1]!)) as string) : this.slice(m[k]! + 1, m[k + 1]! - 1);
        const kind = m[k + 5];
        const from = m[k + 3]!;
        const to = m[k + 4]!;
        row[key] =
          kind === PLAIN_STRING
            ? this.slice(from + 1, to - 1)
            : kind === NUM
              ? Number(this.slice(from, to))
              : kind === SCALAR
                ? JSON.parse(this.slice(from, to))
                : kind === OBJ
                  ? {}
                  : [];
      }
      this.rows.push(row);
    }
    this.rowKind = 0;
  }

  /** Text [from, to) of the body. */
  private slice(from: number, to: number): string {
    let k = this.starts.length - 1;
    while (k > 0 && this.starts[k]! > from) k--;
    const first = this.pieces[k]!;
    const start = this.starts[k]!;
    if (to - start <= first.length) return first.slice(from - start, to - start);
    let out = first.slice(from - start);
    for (let j = k + 1; j < this.pieces.length && this.starts[j]! < to; j++) {
      out += this.pieces[j]!.slice(0, to - this.starts[j]!);
    }
    return out;
  }

  private where(at: number): { text: string; details: { line: number; column: number } } {
    let line = 1 + this.droppedLines;
    let lineStart = this.droppedLineStart;
    for (let k = 0; k < this.pieces.length && this.starts[k]! < at; k++) {
      const piece = this.pieces[k]!;
      const stop = Math.min(piece.length, at - this.starts[k]!);
      for (let p = piece.indexOf('\n'); p !== -1 && p < stop; p = piece.indexOf('\n', p + 1)) {
        line++;
        lineStart = this.starts[k]! + p + 1;
      }
    }
    const column = at - lineStart + 1;
    return { text: `line ${line}, column ${column}`, details: { line, column } };
  }

  private fail(at: number, what: string): never {
    const w = this.where(at);
    throw new BadRequestError(`body is not valid JSON at ${w.text}: ${what}`, w.details);
  }
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** After a backslash: " \ / b f n r t (u is handled apart). */
function isEscapable(c: number): boolean {
  return c === 34 || c === 92 || c === 47 || c === 98 || c === 102 || c === 110 || c === 114 || c === 116;
}

/** The number sub-state after `c`, or -1 when `c` does not continue the number. */
function numberStep(state: number, c: number): number {
  const digit = c >= 48 && c <= 57;
  switch (state) {
    case N_MINUS:
      return c === 48 ? N_ZERO : digit ? N_INT : -1;
    case N_ZERO:
      return c === 46 ? N_DOT : c === 101 || c === 69 ? N_E : -1;
    case N_INT:
      return digit ? N_INT : c === 46 ? N_DOT : c === 101 || c === 69 ? N_E : -1;
    case N_DOT:
      return digit ? N_FRAC : -1;
    case N_FRAC:
      return digit ? N_FRAC : c === 101 || c === 69 ? N_E : -1;
    case N_E:
      return digit ? N_EXP : c === 43 || c === 45 ? N_ESIGN : -1;
    case N_ESIGN:
    case N_EXP:
      return digit ? N_EXP : -1;
  }
  return -1;
}

function describe(c: number): string {
  return c >= 33 && c < 127 ? `character ${String.fromCharCode(c)}` : `character U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}
