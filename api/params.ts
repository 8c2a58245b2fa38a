import { UnknownTableError } from '../core/errors.js';
import { isTableName, TABLE_NAMES, TABLES, type TableDef } from '../core/tables.js';

/** The table a path or query names, or a 404 that lists the known ones. */
export function tableFrom(name: string | undefined): TableDef {
  if (name === undefined || !isTableName(name)) throw new UnknownTableError(name ?? '', TABLE_NAMES);
  return TABLES[name];
}
