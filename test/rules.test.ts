import { describe, expect, test } from 'vitest';
import { checkDatetime, checkInt, checkText, FieldError } from '../core/rules.js';
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
  });
  test.each([
    ['', 'is required'],
    [null, 'is required'],
    ['   ', 'must not be empty'],
    ['\t\n', 'must not be empty'],
    [5, 'must be a string'],
    ['a\u0000b', 'must not contain the NUL character'],
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

  test('a header line is recognized only when it names the columns in order', () => {
    expect(isHeader(['id', 'department'], TABLES.departments)).toBe(true);
    expect(isHeader([' ID ', 'Department'], TABLES.departments)).toBe(true);
    expect(isHeader(['department', 'id'], TABLES.departments)).toBe(false);
    expect(isHeader(['1', 'Sales'], TABLES.departments)).toBe(false);
  });
});
