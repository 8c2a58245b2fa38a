import type { DuckDBConnection } from '@duckdb/node-api';
import { queryRows } from './duck.js';

/** Bumped when the star schema changes: a published file of another version is rebuilt in full. */
export const SCHEMA_VERSION = 1;

/** `YYYYMMDD` of a UTC wall-time TIMESTAMP, the key into dim_date. */
export const dateKey = (ts: string) => `(year(${ts}) * 10000 + month(${ts}) * 100 + day(${ts}))::INTEGER`;

const FACT_SELECT = `SELECT id AS hire_id, name AS employee_name, datetime AS hired_at_utc,
  ${dateKey('datetime')} AS date_key, department_id, job_id`;

/** Year and quarter from date_key alone (YYYYMMDD), so finding old versions need not read the timestamps. */
const AGG_SELECT = (from: string) => `SELECT (date_key // 10000)::INTEGER AS year, ((date_key // 100 % 100 + 2) // 3)::INTEGER AS quarter,
  department_id, job_id, count(*)::INTEGER AS hires FROM ${from} GROUP BY ALL`;

/** The full build: every table from the current Parquet rows (see sources.ts). */
export async function createStarSchema(
  conn: DuckDBConnection,
  src: { departments: string; jobs: string; hired_employees: string },
): Promise<void> {
  await conn.run(`CREATE TABLE dim_department AS SELECT id AS department_id, department FROM (${src.departments}) ORDER BY id`);
  await conn.run(`CREATE TABLE dim_job AS SELECT id AS job_id, job FROM (${src.jobs}) ORDER BY id`);
  // Sorted by hire_id: the id column then compresses to almost nothing, so the scan an incremental
  // refresh makes to find the old versions of changed hires costs a third of what it does over
  // rows sorted by time (measured at 10M hires; README, "Refresh and publish").
  await conn.run(`CREATE TABLE fact_hires AS ${FACT_SELECT} FROM (${src.hired_employees}) ORDER BY hire_id`);
  await conn.run(`CREATE TABLE agg_hires_by_quarter AS ${AGG_SELECT('fact_hires')} ORDER BY ALL`);
  await conn.run(`CREATE TABLE warehouse_info (schema_version INTEGER, version BIGINT, last_batch BIGINT,
    refreshed_at TIMESTAMPTZ, build VARCHAR, build_ms INTEGER)`);
  await rebuildDimDate(conn);
}

/**
 * The incremental build, applied to a file that is not published (the older version, or a copy): `chg_<table>` temp tables hold
 * the newest change per id (with `_deleted`). The aggregate is adjusted by difference (minus the
 * old version of each changed hire, plus the new one), so the work follows the change, not the
 * size of fact_hires.
 */
export async function applyChanges(conn: DuckDBConnection, changed: Set<string>): Promise<void> {
  if (changed.has('departments')) {
    await conn.run(`DELETE FROM dim_department WHERE department_id IN (SELECT id FROM chg_departments)`);
    await conn.run(`INSERT INTO dim_department SELECT id, department FROM chg_departments WHERE NOT _deleted`);
  }
  if (changed.has('jobs')) {
    await conn.run(`DELETE FROM dim_job WHERE job_id IN (SELECT id FROM chg_jobs)`);
    await conn.run(`INSERT INTO dim_job SELECT id, job FROM chg_jobs WHERE NOT _deleted`);
  }
  if (changed.has('hired_employees')) {
    // Finding the old versions scans four narrow columns of fact_hires once (no index: an ART
    // index on 10M rows takes seconds to build and makes every checkpoint rewrite it, ~0.4 s).
    // A semi-join probes faster than a literal IN list, which DuckDB plans as a join over every
    // column anyway; deleting by rowid avoids a second scan.
    await conn.run(`CREATE TEMP TABLE old_hires AS SELECT rowid AS rid, date_key, department_id, job_id
      FROM fact_hires WHERE hire_id IN (SELECT id FROM chg_hired_employees)`);
    await conn.run(`CREATE TEMP TABLE new_hires AS ${FACT_SELECT} FROM chg_hired_employees WHERE NOT _deleted`);
    await conn.run(`CREATE TEMP TABLE agg_diff AS
      SELECT year, quarter, department_id, job_id, sum(hires)::INTEGER AS hires FROM (
        SELECT year, quarter, department_id, job_id, -hires AS hires FROM (${AGG_SELECT('old_hires')})
        UNION ALL ${AGG_SELECT('new_hires')}
      ) GROUP BY ALL HAVING sum(hires) <> 0`);
    await conn.run(`DELETE FROM fact_hires WHERE rowid IN (SELECT rid FROM old_hires)`);
    await conn.run(`INSERT INTO fact_hires SELECT * FROM new_hires`);
    await conn.run(`CREATE TEMP TABLE agg_new AS
      SELECT d.year, d.quarter, d.department_id, d.job_id, (coalesce(a.hires, 0) + d.hires)::INTEGER AS hires
        FROM agg_diff d LEFT JOIN agg_hires_by_quarter a USING (year, quarter, department_id, job_id)`);
    await conn.run(`DELETE FROM agg_hires_by_quarter a USING agg_diff d
      WHERE a.year = d.year AND a.quarter = d.quarter AND a.department_id = d.department_id AND a.job_id = d.job_id`);
    await conn.run(`INSERT INTO agg_hires_by_quarter SELECT * FROM agg_new WHERE hires > 0`);
    await conn.run(`INSERT INTO dim_date ${calendarSql('(SELECT DISTINCT year FROM agg_hires_by_quarter WHERE year NOT IN (SELECT year FROM dim_date))')}`);
  }
}

/**
 * Every day of every UTC year that has (or, after incremental refreshes, had) at least one hire:
 * small, and complete for those years.
 */
async function rebuildDimDate(conn: DuckDBConnection): Promise<void> {
  await conn.run(`CREATE OR REPLACE TABLE dim_date AS ${calendarSql('(SELECT DISTINCT year FROM agg_hires_by_quarter)')}`);
}

function calendarSql(years: string): string {
  return `SELECT ${dateKey('d')} AS date_key, d::DATE AS date, year(d)::INTEGER AS year, quarter(d)::INTEGER AS quarter,
           month(d)::INTEGER AS month, monthname(d) AS month_name, day(d)::INTEGER AS day,
           isodow(d)::INTEGER AS iso_day_of_week, dayname(d) AS day_name, week(d)::INTEGER AS iso_week
      FROM ${years} y,
           generate_series(make_timestamp(y.year, 1, 1, 0, 0, 0), make_timestamp(y.year, 12, 31, 0, 0, 0), INTERVAL 1 DAY) g(d)
     ORDER BY date_key`;
}

/** Names and descriptions a notebook user sees with `SELECT * FROM duckdb_tables()` / `duckdb_columns()`. */
const COMMENTS: Record<string, [string, Record<string, string>]> = {
  dim_department: ['Departments (one row per department in PostgreSQL)', {
    department_id: 'Department id, as in PostgreSQL departments.id',
    department: 'Department name',
  }],
  dim_job: ['Jobs (one row per job in PostgreSQL)', { job_id: 'Job id, as in PostgreSQL jobs.id', job: 'Job title' }],
  dim_date: ['Calendar: every day of every year (UTC) that has at least one hire', {
    date_key: 'YYYYMMDD as an integer; fact_hires.date_key points here',
    date: 'The calendar date (UTC)',
    year: 'Year', quarter: 'Quarter 1-4', month: 'Month 1-12', month_name: 'Month name', day: 'Day of month',
    iso_day_of_week: 'ISO day of week, 1 = Monday', day_name: 'Day name', iso_week: 'ISO week number',
  }],
  fact_hires: ['One row per current hire (PostgreSQL hired_employees)', {
    hire_id: 'Hire id, as in PostgreSQL hired_employees.id',
    employee_name: 'Name and surname of the employee',
    hired_at_utc: 'When the employee was hired, UTC wall time (TIMESTAMP without zone, so year/quarter are UTC in every session)',
    date_key: 'Hire date (UTC) as YYYYMMDD; joins dim_date.date_key',
    department_id: 'Joins dim_department.department_id',
    job_id: 'Joins dim_job.job_id',
  }],
  agg_hires_by_quarter: ['Number of hires per UTC year, quarter, department and job (kept in step with fact_hires; only non-zero rows)', {
    year: 'UTC year of the hire', quarter: 'UTC quarter 1-4', department_id: 'Joins dim_department', job_id: 'Joins dim_job', hires: 'Number of hires',
  }],
  warehouse_info: ['When and from what this file was built (one row)', {
    schema_version: 'Version of this star schema', version: 'Data version: the last export batch applied',
    last_batch: 'Last Parquet export batch applied', refreshed_at: 'When this file was published',
    build: 'full or incremental', build_ms: 'Build time in milliseconds',
  }],
};

export async function applyComments(conn: DuckDBConnection): Promise<void> {
  const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;
  for (const [table, [comment, columns]] of Object.entries(COMMENTS)) {
    await conn.run(`COMMENT ON TABLE ${table} IS ${lit(comment)}`);
    for (const [col, text] of Object.entries(columns)) await conn.run(`COMMENT ON COLUMN ${table}.${col} IS ${lit(text)}`);
  }
}
