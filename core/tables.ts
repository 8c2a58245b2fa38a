import { checkDatetime, checkInt, checkText, cutToBytes, DEFAULT_FIELD_MAX_BYTES, FieldError, isValidText, storableText } from './rules.js';

/**
 * The data dictionary, defined once. The batch API, CSV loads and restores all validate rows
 * through `RowBatch`, and the SQL that writes them is derived from these definitions, so a rule
 * or a column lives in exactly one place. Identifiers in SQL come only from this list.
 */
export const TABLE_NAMES = ['departments', 'jobs', 'hired_employees'] as const;
export type TableName = (typeof TABLE_NAMES)[number];

export type ColumnKind = 'id' | 'ref' | 'text' | 'datetime';
export type PgType = 'integer' | 'text' | 'timestamptz';

export interface Column {
  readonly name: string;
  readonly kind: ColumnKind;
  readonly pgType: PgType;
  /** For `ref` columns: the table whose `id` this must match when the row is applied. */
  readonly references?: TableName;
  readonly description: string;
}

export interface TableDef {
  readonly name: TableName;
  readonly columns: readonly Column[];
  readonly description: string;
  /** Tables whose rows must exist before rows of this one can be applied. */
  readonly dependsOn: readonly TableName[];
}

const id: Column = { name: 'id', kind: 'id', pgType: 'integer', description: 'Identifier, 1..2147483647' };

export const TABLES: Readonly<Record<TableName, TableDef>> = {
  departments: {
    name: 'departments',
    description: 'Departments of the company',
    dependsOn: [],
    columns: [id, { name: 'department', kind: 'text', pgType: 'text', description: 'Name of the department' }],
  },
  jobs: {
    name: 'jobs',
    description: 'Job titles',
    dependsOn: [],
    columns: [id, { name: 'job', kind: 'text', pgType: 'text', description: 'Name of the job' }],
  },
  hired_employees: {
    name: 'hired_employees',
    description: 'Employees hired, with when, where and as what',
    dependsOn: ['departments', 'jobs'],
    columns: [
      id,
      { name: 'name', kind: 'text', pgType: 'text', description: 'Name and surname of the employee' },
      {
        name: 'datetime',
        kind: 'datetime',
        pgType: 'timestamptz',
        description: 'Hire date-time, ISO 8601; no offset means UTC',
      },
      {
        name: 'department_id',
        kind: 'ref',
        pgType: 'integer',
        references: 'departments',
        description: 'Id of the department the employee was hired into',
      },
      {
        name: 'job_id',
        kind: 'ref',
        pgType: 'integer',
        references: 'jobs',
        description: 'Id of the job the employee was hired for',
      },
    ],
  },
};

export function isTableName(name: string): name is TableName {
  return (TABLE_NAMES as readonly string[]).includes(name);
}

export interface FieldIssue {
  /** The column, or `null` when the row as a whole is wrong (not an object, wrong width). */
  field: string | null;
  message: string;
}

const CHECKERS: Record<ColumnKind, (v: unknown) => unknown> = {
  id: checkInt,
  ref: checkInt,
  text: checkText,
  datetime: checkDatetime,
};

export interface RowLimits {
  /** Longest field, in UTF-8 bytes (FIELD_MAX_BYTES); a longer one is a reject saying so. */
  fieldMaxBytes?: number;
}

/** Unknown keys named one by one in a JSON row's reasons; past this many, one line counts the rest. */
const MAX_KEY_ISSUES = 10;
/** A key named in a reason is cut to this many bytes. */
const MAX_KEY_LABEL_BYTES = 100;

/**
 * Validated rows of one table held column by column (the shape `unnest()` and COPY want),
 * with each row's position in its source. Invalid rows are not added; `add*` returns their issues.
 * Every reason it gives is storable text (no NUL, no lone surrogate), whatever the input held.
 */
export class RowBatch {
  readonly columns: unknown[][];
  readonly positions: number[] = [];
  readonly fieldMaxBytes: number;
  private readonly checkers: ((v: unknown) => unknown)[];
  private readonly names: string[];
  private readonly values: unknown[];
  private readonly scratch: unknown[];
  /** Strings up to this many UTF-16 code units cannot exceed `fieldMaxBytes` (3 bytes a unit at most). */
  private readonly safeChars: number;

  constructor(
    readonly table: TableDef,
    limits: RowLimits = {},
  ) {
    this.columns = table.columns.map(() => []);
    this.checkers = table.columns.map((c) => CHECKERS[c.kind]);
    this.names = table.columns.map((c) => c.name);
    this.values = new Array(table.columns.length);
    this.scratch = new Array(table.columns.length);
    this.fieldMaxBytes = limits.fieldMaxBytes ?? DEFAULT_FIELD_MAX_BYTES;
    this.safeChars = Math.floor(this.fieldMaxBytes / 3);
  }

  get length(): number {
    return this.positions.length;
  }

  clear(): void {
    for (const col of this.columns) col.length = 0;
    this.positions.length = 0;
  }

  /** A CSV record: fields in column order. */
  addFields(fields: readonly unknown[], position: number): FieldIssue[] | null {
    const n = this.names.length;
    if (fields.length !== n) {
      return [{ field: null, message: `expected ${n} fields, got ${fields.length}` }];
    }
    return this.check(fields, position);
  }

  /** A JSON row: an object with exactly the table's columns. */
  addObject(row: unknown, position: number): FieldIssue[] | null {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      return [{ field: null, message: `row must be an object with ${this.names.join(', ')}` }];
    }
    const obj = row as Record<string, unknown>;
    let issues: FieldIssue[] | null = null;
    let unknown = 0;
    for (const key of Object.keys(obj)) {
      if (this.names.includes(key)) continue;
      if (++unknown > MAX_KEY_ISSUES) continue;
      (issues ??= []).push({
        field: keyLabel(key),
        message: isValidText(key)
          ? 'is not a column of this table'
          : 'is not a column of this table, nor valid Unicode text (a key holds a NUL or a lone surrogate)',
      });
    }
    if (unknown > MAX_KEY_ISSUES) {
      issues!.push({ field: null, message: `and ${unknown - MAX_KEY_ISSUES} more keys that are not columns of this table` });
    }
    const values = this.values;
    for (let i = 0; i < this.names.length; i++) values[i] = obj[this.names[i]!];
    const more = this.check(values, position, issues !== null);
    return issues === null ? more : more === null ? issues : [...issues, ...more];
  }

  private check(values: readonly unknown[], position: number, forceReject = false): FieldIssue[] | null {
    const n = this.checkers.length;
    const out = this.scratch;
    let issues: FieldIssue[] | null = null;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (typeof v === 'string' && v.length > this.safeChars) {
        const bytes = Buffer.byteLength(v);
        if (bytes > this.fieldMaxBytes) {
          (issues ??= []).push({ field: this.names[i]!, message: `is ${bytes} bytes long; at most ${this.fieldMaxBytes} are allowed` });
          continue;
        }
      }
      const r = this.checkers[i]!(v);
      if (r instanceof FieldError) (issues ??= []).push({ field: this.names[i]!, message: r.message });
      else out[i] = r;
    }
    if (issues !== null || forceReject) return issues;
    for (let i = 0; i < n; i++) this.columns[i]!.push(out[i]);
    this.positions.push(position);
    return null;
  }
}

/** A JSON key as named in a reason: storable, and cut when long. */
function keyLabel(key: string): string {
  const label = storableText(cutToBytes(key, MAX_KEY_LABEL_BYTES));
  return label.length < key.length ? `${label}…` : label;
}

/** True when a CSV record is the table's header line (its column names, in order). */
export function isHeader(fields: readonly string[], table: TableDef): boolean {
  return (
    fields.length === table.columns.length &&
    table.columns.every((c, i) => fields[i]!.trim().toLowerCase() === c.name)
  );
}
