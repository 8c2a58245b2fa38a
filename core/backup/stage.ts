import { Transform, type TransformCallback } from 'node:stream';
import pg from 'pg';
import type { Reject } from '../apply.js';
import { RowBatch, type TableDef } from '../tables.js';

/**
 * The staging side of a restore: records decoded from a backup go through the data rules
 * (`RowBatch`, like every other write) and the valid ones leave as COPY text lines for a
 * temporary staging table, with their 0-based position in the file. Rule breakers are handed to
 * `onReject` instead.
 */

const q = pg.escapeIdentifier;
const FLUSH_ROWS = 2000;

export const STAGE = 'restore_stage';

export function createStageSql(table: TableDef): string {
  const cols = table.columns.map((c) => `${q(c.name)} ${c.pgType} NOT NULL`).join(', ');
  return `CREATE TEMP TABLE ${STAGE} (${cols}, pos bigint NOT NULL) ON COMMIT DROP`;
}

export function copyStageSql(table: TableDef): string {
  return `COPY ${STAGE} (${table.columns.map((c) => q(c.name)).join(', ')}, pos) FROM STDIN`;
}

const NEEDS_ESCAPE = /[\\\t\n\r\b\f\v]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v' };

function escapeText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(/[\\\t\n\r\b\f\v]/g, (c) => ESCAPES[c]!) : s;
}

export class ValidateToCopy extends Transform {
  private readonly batch: RowBatch;
  private readonly textCols: boolean[];
  private position = 0;
  private lastId = 0;
  /** True while ids arrive strictly increasing, as every backup this service writes has them. */
  ascending = true;
  valid = 0;
  rejected = 0;

  constructor(
    table: TableDef,
    private readonly onReject: (r: Reject) => void,
  ) {
    super({ writableObjectMode: true, writableHighWaterMark: 4096 });
    this.batch = new RowBatch(table);
    this.textCols = table.columns.map((c) => c.pgType === 'text' || c.pgType === 'timestamptz');
  }

  override _transform(rec: Record<string, unknown>, _enc: BufferEncoding, cb: TransformCallback): void {
    const pos = this.position++;
    const issues = this.batch.addObject(rec, pos);
    if (issues) {
      this.rejected++;
      this.onReject({ position: pos, raw: JSON.stringify(rec, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)), errors: issues });
    } else {
      this.valid++;
      const id = this.batch.columns[0]![this.batch.length - 1] as number;
      if (id <= this.lastId) this.ascending = false;
      this.lastId = id;
    }
    if (this.batch.length >= FLUSH_ROWS) this.flushBatch();
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.flushBatch();
    cb();
  }

  private flushBatch(): void {
    const { columns, positions } = this.batch;
    const n = positions.length;
    if (n === 0) return;
    const text = this.textCols;
    let out = '';
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < columns.length; c++) {
        const v = columns[c]![r];
        out += (text[c] ? escapeText(v as string) : String(v)) + '\t';
      }
      out += positions[r] + '\n';
    }
    this.batch.clear();
    this.push(Buffer.from(out));
  }
}
