/**
 * The field rules of the data dictionary. Each checker takes a raw value (a CSV string or a JSON
 * value) and returns the normalized value to store, or a `FieldError`. They are written for the
 * hot path of multi-million-row loads: no exceptions, no per-field allocation on success.
 */
export class FieldError {
  constructor(public readonly message: string) {}
}

export const INT_MAX = 2147483647;

const REQUIRED = new FieldError('is required');
const NOT_INTEGER = new FieldError('must be a base-10 integer in 1..2147483647');
const OUT_OF_RANGE = new FieldError('must be in 1..2147483647');
const NOT_STRING = new FieldError('must be a string');
const BLANK = new FieldError('must not be empty');
const HAS_NUL = new FieldError('must not contain the NUL character');
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
  // PostgreSQL text cannot hold U+0000; taking it would fail the whole write later.
  if (t.indexOf('\u0000') !== -1) return HAS_NUL;
  return t;
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
 * No offset means UTC. Returns the value normalized for PostgreSQL's timestamptz input
 * (`YYYY-MM-DDTHH:MM:SS[.f]±HH:MM` or `...Z`), so the database never guesses a time zone.
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
  if (+m[4]! > 23 || +m[5]! > 59 || +m[6]! > 59) {
    return new FieldError(`is not a real time of day: ${m[4]}:${m[5]}:${m[6]}`);
  }
  const off = m[8];
  if (off === undefined) {
    return (s.charCodeAt(10) === 84 ? s : s.slice(0, 10) + 'T' + s.slice(11)) + 'Z';
  }
  if (off === 'Z') return s.charCodeAt(10) === 84 ? s : s.slice(0, 10) + 'T' + s.slice(11);
  const oh = +off.slice(1, 3);
  const om = +off.slice(off.length - 2);
  // PostgreSQL's timestamptz takes offsets up to ±15:59; a larger one would fail a whole write.
  if (oh > 15 || om > 59) return new FieldError(`has an impossible UTC offset: ${off}`);
  const body = s.slice(0, s.length - off.length);
  const norm = off.length === 5 ? `${off.slice(0, 3)}:${off.slice(3)}` : off;
  return (body.charCodeAt(10) === 84 ? body : body.slice(0, 10) + 'T' + body.slice(11)) + norm;
}
