import { describe, expect, test } from 'vitest';
import { checkDatetime, checkInt, checkText, cutToBytes, FieldError, storableText } from '../core/rules.js';
import { isHeader, RowBatch, TABLES } from '../core/tables.js';

const err = (v: unknown) => (v instanceof FieldError ? v.message : undefined);

describe('integer ids (id, department_id, job_id)', () => {
  test.each([
    ['1', 1],
    ['2147483647', 2147483647],
    [' 42 ', 42],
    ['007', 7],
    [17, 17],
  ])('accepts %j', (input, expected) => {
    expect(checkInt(input)).toBe(expected);
  });

  test.each([
    ['', 'is required'],
    [null, 'is required'],
    [undefined, 'is required'],
    ['   ', 'is required'],
    ['0', 'must be in 1..2147483647'],
    ['-5', 'must be in 1..2147483647'],
    ['2147483648', 'must be in 1..2147483647'],
    ['99999999999999999999', 'must be in 1..2147483647'],
    [0, 'must be in 1..2147483647'],
    ['1.5', 'must be a base-10 integer in 1..2147483647'],
    ['0x10', 'must be a base-10 integer in 1..2147483647'],
    ['1e3', 'must be a base-10 integer in 1..2147483647'],
    ['12abc', 'must be a base-10 integer in 1..2147483647'],
    ['+', 'must be a base-10 integer in 1..2147483647'],
    [1.5, 'must be a base-10 integer in 1..2147483647'],
    [true, 'must be a base-10 integer in 1..2147483647'],
    [{}, 'must be a base-10 integer in 1..2147483647'],
  ])('rejects %j: %s', (input, message) => {
    expect(err(checkInt(input))).toBe(message);
  });
});

describe('names (department, job, name)', () => {
  test('keeps the value, trimmed', () => {
    expect(checkText('  Support ')).toBe('Support');
    expect(checkText('Zoë Ñandú')).toBe('Zoë Ñandú');
    expect(checkText('𝒜𝓁𝒾𝒸ℯ 😀')).toBe('𝒜𝓁𝒾𝒸ℯ 😀');
  });
  test.each([
    ['', 'is required'],
    [null, 'is required'],
    ['   ', 'must not be empty'],
    ['\t\n', 'must not be empty'],
    [5, 'must be a string'],
    ['a\u0000b', 'must not contain the NUL character'],
    ['a\ud800b', 'must be valid Unicode text (it holds a lone surrogate)'],
    ['\udfff', 'must be valid Unicode text (it holds a lone surrogate)'],
    ['x\ud83d', 'must be valid Unicode text (it holds a lone surrogate)'],
  ])('rejects %j: %s', (input, message) => {
    expect(err(checkText(input))).toBe(message);
  });
});

describe('datetime', () => {
  test.each([
    ['2021-11-07T02:48:42Z', '2021-11-07T02:48:42Z'],
    ['2021-11-07 02:48:42Z', '2021-11-07T02:48:42Z'],
    ['2021-11-07T02:48:42', '2021-11-07T02:48:42Z'],
    ['2021-11-07 02:48:42', '2021-11-07T02:48:42Z'],
    ['2021-11-07T02:48:42.123456Z', '2021-11-07T02:48:42.123456Z'],
    ['2021-11-07T02:48:42+05:30', '2021-11-07T02:48:42+05:30'],
    ['2021-11-07T02:48:42-0800', '2021-11-07T02:48:42-08:00'],
    ['2020-02-29T00:00:00Z', '2020-02-29T00:00:00Z'],
    ['2000-02-29T23:59:59Z', '2000-02-29T23:59:59Z'],
    // Fractions past microseconds are cut, never rounded: the instant stays in March, Q1.
    ['2021-03-31T23:59:59.9999999Z', '2021-03-31T23:59:59.999999Z'],
    ['2021-03-31 23:59:59.999999999', '2021-03-31T23:59:59.999999Z'],
    ['2021-03-31T23:59:59.1234567+0100', '2021-03-31T23:59:59.123456+01:00'],
    // The UTC instant must lie in 1900..2100, whatever the local date says.
    ['1900-01-01T00:00:00Z', '1900-01-01T00:00:00Z'],
    ['2100-12-31T23:59:59.999999Z', '2100-12-31T23:59:59.999999Z'],
    ['1899-12-31T23:00:00-02:00', '1899-12-31T23:00:00-02:00'],
    ['2101-01-01T01:00:00+02:00', '2101-01-01T01:00:00+02:00'],
    ['1900-01-01T00:00:00-00:30', '1900-01-01T00:00:00-00:30'],
  ])('accepts %s', (input, expected) => {
    expect(checkDatetime(input)).toBe(expected);
  });

  test.each([
    ['', 'is required'],
    [null, 'is required'],
    ['2021-02-30T00:00:00Z', 'is not a real date: 2021-02-30'],
    ['2021-02-29T00:00:00Z', 'is not a real date: 2021-02-29'],
    ['1900-02-29T00:00:00Z', 'is not a real date: 1900-02-29'],
    ['2021-13-01T00:00:00Z', 'is not a real date: 2021-13-01'],
    ['2021-04-31T00:00:00Z', 'is not a real date: 2021-04-31'],
    ['2021-01-01T24:00:00Z', 'is not a real time of day: 24:00:00'],
    ['2021-01-01T10:60:00Z', 'is not a real time of day: 10:60:00'],
    ['2021-01-01T10:00:61Z', 'is not a real time of day: 10:00:61'],
    ['2021-01-01T10:00:00+19:00', 'has an impossible UTC offset: +19:00'],
    ['0001-01-01T00:00:00+01:00', 'must lie in the years 1900..2100 (UTC)'],
    ['9999-12-31T23:00:00-12:00', 'must lie in the years 1900..2100 (UTC)'],
    ['1899-12-31T23:59:59.999999Z', 'must lie in the years 1900..2100 (UTC)'],
    ['1900-01-01T00:30:00+01:00', 'must lie in the years 1900..2100 (UTC)'],
    ['2101-01-01T00:00:00Z', 'must lie in the years 1900..2100 (UTC)'],
    ['2100-12-31T23:00:00-02:00', 'must lie in the years 1900..2100 (UTC)'],
    ['1850-06-01T00:00:00Z', 'must lie in the years 1900..2100 (UTC)'],
  ])('rejects %j: %s', (input, message) => {
    expect(err(checkDatetime(input))).toBe(message);
  });

  test.each(['2021-01-01', '2021-01-01T10:00', '01/02/2021 10:00:00', '2021-1-1T10:00:00Z', 'yesterday', '2021-01-01T10:00:00 Z', '2021-01-01T10:00:00+5'])(
    'rejects malformed %j',
    (input) => {
      expect(err(checkDatetime(input))).toMatch(/^must be an ISO 8601 date-time/);
    },
  );
});

describe('RowBatch', () => {
  test('keeps valid CSV records column by column and reports bad ones with every field', () => {
    const b = new RowBatch(TABLES.hired_employees);
    expect(b.addFields(['1', 'Harold Vogt', '2021-11-07T02:48:42Z', '2', '96'], 0)).toBeNull();
    expect(b.addFields(['x', '', '2021-02-30T00:00:00Z', '2', ''], 1)).toEqual([
      { field: 'id', message: 'must be a base-10 integer in 1..2147483647' },
      { field: 'name', message: 'is required' },
      { field: 'datetime', message: 'is not a real date: 2021-02-30' },
      { field: 'job_id', message: 'is required' },
    ]);
    expect(b.addFields(['2', 'A'], 2)).toEqual([{ field: null, message: 'expected 5 fields, got 2' }]);
    expect(b.length).toBe(1);
    expect(b.columns).toEqual([[1], ['Harold Vogt'], ['2021-11-07T02:48:42Z'], [2], [96]]);
    expect(b.positions).toEqual([0]);
  });

  test('JSON rows: must be objects with exactly the columns', () => {
    const b = new RowBatch(TABLES.departments);
    expect(b.addObject({ id: 1, department: 'Sales' }, 0)).toBeNull();
    expect(b.addObject({ id: '2', department: ' HR ' }, 1)).toBeNull();
    expect(b.addObject([1, 'x'], 2)).toEqual([{ field: null, message: 'row must be an object with id, department' }]);
    expect(b.addObject({ id: 3, department: 'X', extra: 1 }, 3)).toEqual([
      { field: 'extra', message: 'is not a column of this table' },
    ]);
    expect(b.addObject({ department: 'Y' }, 4)).toEqual([{ field: 'id', message: 'is required' }]);
    expect(b.columns).toEqual([[1, 2], ['Sales', 'HR']]);
  });

  test('a field longer than the limit is a reject saying so; up to it is fine', () => {
    const b = new RowBatch(TABLES.departments, { fieldMaxBytes: 1024 });
    expect(b.addFields(['1', 'é'.repeat(512)], 0)).toBeNull(); // 1024 bytes
    expect(b.addFields(['2', 'é'.repeat(512) + 'x'], 1)).toEqual([{ field: 'department', message: 'is 1025 bytes long; at most 1024 are allowed' }]);
    expect(b.addFields(['3'.repeat(2000), 'ok'], 2)).toEqual([{ field: 'id', message: 'is 2000 bytes long; at most 1024 are allowed' }]);
    expect(new RowBatch(TABLES.departments).fieldMaxBytes).toBe(65536);
  });

  test('JSON keys that are not valid Unicode: a reject whose reasons are storable text', () => {
    const b = new RowBatch(TABLES.departments);
    expect(b.addObject({ id: 1, department: 'x', '\u0000': 1, '\ud800': 2 }, 0)).toEqual([
      { field: '\u2400', message: 'is not a column of this table, nor valid Unicode text (a key holds a NUL or a lone surrogate)' },
      { field: '\ufffd', message: 'is not a column of this table, nor valid Unicode text (a key holds a NUL or a lone surrogate)' },
    ]);
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, i]));
    const issues = b.addObject({ id: 1, department: 'x', ...many, ['y'.repeat(500)]: 1 }, 1)!;
    expect(issues).toHaveLength(11);
    expect(issues.at(-1)).toEqual({ field: null, message: 'and 21 more keys that are not columns of this table' });
    const long = b.addObject({ id: 1, department: 'x', ['y'.repeat(500)]: 1 }, 2)!;
    expect(long[0]!.field).toBe('y'.repeat(100) + '…');
  });

  test('storable text and byte cuts', () => {
    expect(storableText('a\u0000b\ud800c\udc00')).toBe('a\u2400b\ufffdc\ufffd');
    expect(storableText('😀 ok')).toBe('😀 ok');
    expect(cutToBytes('abc', 2)).toBe('ab');
    expect(cutToBytes('é'.repeat(10), 5)).toBe('éé');
    expect(cutToBytes('😀'.repeat(10), 6)).toBe('😀');
    expect(cutToBytes('😀'.repeat(10), 1)).toBe('');
    expect(cutToBytes('short', 100)).toBe('short');
  });

  test('a header line is recognized only when it names the columns in order', () => {
    expect(isHeader(['id', 'department'], TABLES.departments)).toBe(true);
    expect(isHeader([' ID ', 'Department'], TABLES.departments)).toBe(true);
    expect(isHeader(['department', 'id'], TABLES.departments)).toBe(false);
    expect(isHeader(['1', 'Sales'], TABLES.departments)).toBe(false);
  });
});
