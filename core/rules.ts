/**
 * The field rules of the data dictionary. Each checker takes a raw value (a CSV string or a JSON
 * value) and returns the normalized value to store, or a `FieldError`. They are written for the
 * hot path of multi-million-row loads: no exceptions, no per-field allocation on success.
 */
export class FieldError {
  constructor(public readonly message: string) {}
}

export const INT_MAX = 2147483647;

/** Longest field the rules accept, in UTF-8 bytes (FIELD_MAX_BYTES; see `RowBatch`). */
export const DEFAULT_FIELD_MAX_BYTES = 64 * 1024;
/**
 * The largest FIELD_MAX_BYTES may be set to. A restore holds fields to this, not to the current
 * setting: a backup restores whatever the setting was when its rows were accepted.
 */
export const MAX_FIELD_MAX_BYTES = 256 * 1024;

/** The UTC instants a datetime may name: years 1900..2100, what every part of the service handles. */
export const MIN_DATETIME_MS = Date.UTC(1900, 0, 1);
export const END_DATETIME_MS = Date.UTC(2101, 0, 1);

const REQUIRED = new FieldError('is required');
const NOT_INTEGER = new FieldError('must be a base-10 integer in 1..2147483647');
const OUT_OF_RANGE = new FieldError('must be in 1..2147483647');
const NOT_STRING = new FieldError('must be a string');
const BLANK = new FieldError('must not be empty');
const HAS_NUL = new FieldError('must not contain the NUL character');
const LONE_SURROGATE = new FieldError('must be valid Unicode text (it holds a lone surrogate)');
const OUT_OF_YEARS = new FieldError('must lie in the years 1900..2100 (UTC)');
const NOT_DATETIME = new FieldError(
  'must be an ISO 8601 date-time: YYYY-MM-DD, T or space, HH:MM:SS, optional fraction, optional Z, ±HH:MM or ±HHMM',
);

function isMissing(v: unknown): boolean {
  return v === undefined || v === null || v === '';
}

/** `id`, `department_id`, `job_id`: base-10 integers in 1 .. 2147483647. */
export function checkInt(v: unknown): number | FieldError {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return NOT_INTEGER;
    return v >= 1 && v <= INT_MAX ? v : OUT_OF_RANGE;
  }
  if (typeof v !== 'string') return isMissing(v) ? REQUIRED : NOT_INTEGER;
  let start = 0;
  let end = v.length;
  while (start < end && isSpace(v.charCodeAt(start))) start++;
  while (end > start && isSpace(v.charCodeAt(end - 1))) end--;
  if (start === end) return REQUIRED;
  // "-5" is an integer, just not an allowed one; say so rather than "not an integer".
  const negative = v.charCodeAt(start) === 45; /* - */
  if (negative) start++;
  if (start === end || !allDigits(v, start, end)) return NOT_INTEGER;
  if (negative) return OUT_OF_RANGE;
  while (start < end - 1 && v.charCodeAt(start) === 48) start++; // leading zeros
  if (end - start > 10) return OUT_OF_RANGE;
  let n = 0;
  for (let i = start; i < end; i++) n = n * 10 + (v.charCodeAt(i) - 48);
  return n >= 1 && n <= INT_MAX ? n : OUT_OF_RANGE;
}

function allDigits(v: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0xfeff;
}

/** `department`, `job`, `name`: non-empty after trimming; stored trimmed. */
export function checkText(v: unknown): string | FieldError {
  if (typeof v !== 'string') return isMissing(v) ? REQUIRED : NOT_STRING;
  const t = v.trim();
  if (t.length === 0) return v.length === 0 ? REQUIRED : BLANK;
  // PostgreSQL text cannot hold U+0000, and a lone surrogate would be stored as U+FFFD (or
  // refused by jsonb, DuckDB, Avro readers): either way, not the text that was sent.
  if (t.indexOf('\u0000') !== -1) return HAS_NUL;
  if (!t.isWellFormed()) return LONE_SURROGATE;
  return t;
}

/** Valid Unicode text: no NUL character, no lone surrogate (the rule for values and JSON keys). */
export function isValidText(s: string): boolean {
  return s.indexOf('\u0000') === -1 && s.isWellFormed();
}

/**
 * Text that PostgreSQL text and jsonb can hold whatever came in, for what is kept *about* data
 * (a reject's raw text, a field name in its reasons): lone surrogates become U+FFFD, NUL becomes
 * U+2400 (the visible symbol for NUL).
 */
export function storableText(s: string): string {
  const w = s.isWellFormed() ? s : s.toWellFormed();
  if (w.indexOf('\u0000') === -1) return w;
  // Not String#replace: with thousands of matches it takes milliseconds per kilobyte.
  const units = Buffer.from(w, 'utf16le');
  for (let i = 0; i < units.length; i += 2) if (units[i] === 0 && units[i + 1] === 0) units[i + 1] = 0x24;
  return units.toString('utf16le');
}

/** `s` cut to at most `maxBytes` of UTF-8, at a character boundary; `s` itself when it fits. */
export function cutToBytes(s: string, maxBytes: number): string {
  if (s.length * 3 <= maxBytes) return s;
  // More code units than bytes allowed: the first `maxBytes` units hold at least `maxBytes` bytes.
  let head = s.length > maxBytes ? s.slice(0, maxBytes) : s;
  const last = head.charCodeAt(head.length - 1);
  if (head.length < s.length && last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1); // half a pair
  if (Buffer.byteLength(head) <= maxBytes) return head;
  const buf = Buffer.from(head);
  let cut = maxBytes;
  while (cut > 0 && (buf[cut]! & 0xc0) === 0x80) cut--;
  return buf.toString('utf8', 0, cut);
}

const DT =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$/;
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  if (month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0))) return 29;
  return DAYS[month - 1]!;
}

/**
 * `datetime`: ISO 8601 with a date, `T` or space, `HH:MM:SS`, optional fraction and offset.
 * No offset means UTC. The instant, in UTC, must lie in years 1900..2100: PostgreSQL would take
 * 1 BC or year 10000, but DuckDB, the Avro round trip and the year/quarter logic would not.
 * A fraction past microseconds is truncated, never rounded (so 23:59:59.9999999 stays in its
 * day, month and quarter). Returns the value normalized for PostgreSQL's timestamptz input
 * (`YYYY-MM-DDTHH:MM:SS[.ffffff]±HH:MM` or `...Z`), so the database never guesses a time zone.
 */
export function checkDatetime(v: unknown): string | FieldError {
  if (typeof v !== 'string') return isMissing(v) ? REQUIRED : NOT_DATETIME;
  const s = v.trim();
  if (s.length === 0) return REQUIRED;
  const m = DT.exec(s);
  if (m === null) return NOT_DATETIME;
  const year = +m[1]!;
  const month = +m[2]!;
  const day = +m[3]!;
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) {
    return new FieldError(`is not a real date: ${m[1]}-${m[2]}-${m[3]}`);
  }
  const hour = +m[4]!;
  const minute = +m[5]!;
  const second = +m[6]!;
  if (hour > 23 || minute > 59 || second > 59) {
    return new FieldError(`is not a real time of day: ${m[4]}:${m[5]}:${m[6]}`);
  }
  const off = m[8];
  let offsetMinutes = 0;
  if (off !== undefined && off !== 'Z') {
    const oh = +off.slice(1, 3);
    const om = +off.slice(off.length - 2);
    // PostgreSQL's timestamptz takes offsets up to ±15:59; a larger one would fail a whole write.
    if (oh > 15 || om > 59) return new FieldError(`has an impossible UTC offset: ${off}`);
    offsetMinutes = (off.charCodeAt(0) === 45 ? -1 : 1) * (oh * 60 + om);
  }
  // Offsets stay under 16 hours, so only the years next to the bounds need the UTC instant. The
  // bounds are whole seconds, so the fraction cannot move an instant across one.
  if (year < 1901 || year > 2099) {
    const utc = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
    if (year < 1899 || year > 2101 || utc < MIN_DATETIME_MS || utc >= END_DATETIME_MS) return OUT_OF_YEARS;
  }
  const frac = m[7];
  const t = s.charCodeAt(10) === 84; /* T */
  if (t && (frac === undefined || frac.length <= 7)) {
    // The common shapes need no rebuilding.
    if (off === undefined) return s + 'Z';
    if (off === 'Z' || off.length === 6) return s;
  }
  const zone = off === undefined ? 'Z' : off.length === 5 ? `${off.slice(0, 3)}:${off.slice(3)}` : off;
  const fraction = frac === undefined ? '' : frac.length > 7 ? frac.slice(0, 7) : frac;
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${fraction}${zone}`;
}

declare global {
  // ES2024 String methods, in Node since 20; the project's lib is ES2022.
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}
