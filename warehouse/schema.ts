import type { DuckDBConnection } from '@duckdb/node-api';

/** Bumped when the star schema changes: a published file of another version is rebuilt in full. */
export const SCHEMA_VERSION = 2;

/** `YYYYMMDD` of a UTC wall-time TIMESTAMP, the key into dim_date. */
export const dateKey = (ts: string) => `(year(${ts}) * 10000 + month(${ts}) * 100 + day(${ts}))::INTEGER`;

export const FACT_SELECT = `SELECT id AS hire_id, name AS employee_name, datetime AS hired_at_utc,
  ${dateKey('datetime')} AS date_key, department_id, job_id`;

/** Year and quarter from date_key alone (YYYYMMDD), so finding old versions need not read the timestamps. */
export const AGG_SELECT = (from: string) => `SELECT (date_key // 10000)::INTEGER AS year, ((date_key // 100 % 100 + 2) // 3)::INTEGER AS quarter,
  department_id, job_id, count(*)::INTEGER AS hires FROM ${from} GROUP BY ALL`;

/**
 * fact_hires is a view: the base table with the changes since laid over it. A refresh writes only
 * the small fact_hires_changes table (the current version of each hire changed since the base, or
 * a `deleted` marker), so it never rewrites or deletes rows among the millions of the base; see
 * apply.ts. The anti-join costs a reader scanning all of fact_hires a hash probe per base row.
 */
const FACT_VIEW = `CREATE OR REPLACE VIEW fact_hires AS
  SELECT b.* FROM fact_hires_base b ANTI JOIN fact_hires_changes c ON b.hire_id = c.hire_id
  UNION ALL SELECT * EXCLUDE (deleted) FROM fact_hires_changes WHERE NOT deleted`;

/** The full build: every table from the current Parquet rows (see sources.ts). */
export async function createStarSchema(
  conn: DuckDBConnection,
  src: { departments: string; jobs: string; hired_employees: string },
): Promise<void> {
  await conn.run(`CREATE TABLE dim_department AS SELECT id AS department_id, department FROM (${src.departments}) ORDER BY id`);
  await conn.run(`CREATE TABLE dim_job AS SELECT id AS job_id, job FROM (${src.jobs}) ORDER BY id`);
  // Sorted by hire_id: the id column compresses to almost nothing, which makes the scan an
  // incremental refresh makes to find the old versions of changed hires a third cheaper.
  await conn.run(`CREATE TABLE fact_hires_base AS ${FACT_SELECT} FROM (${src.hired_employees}) ORDER BY hire_id`);
  await conn.run(`CREATE TABLE fact_hires_changes AS SELECT *, false AS deleted FROM fact_hires_base WHERE false`);
  await conn.run(FACT_VIEW);
  await conn.run(`CREATE TABLE agg_hires_by_quarter AS ${AGG_SELECT('fact_hires_base')} ORDER BY ALL`);
  await conn.run(`CREATE TABLE warehouse_info (schema_version INTEGER, version BIGINT, last_batch BIGINT,
    refreshed_at TIMESTAMPTZ, build VARCHAR, build_ms INTEGER)`);
  await conn.run(`CREATE TABLE dim_date AS ${calendarSql('(SELECT DISTINCT year FROM agg_hires_by_quarter)')}`);
}

/**
 * Every day of every UTC year that has (or, after incremental refreshes, had) at least one hire:
 * small, and complete for those years.
 */
export function calendarSql(years: string): string {
  return `SELECT ${dateKey('d')} AS date_key, d::DATE AS date, year(d)::INTEGER AS year, quarter(d)::INTEGER AS quarter,
           month(d)::INTEGER AS month, monthname(d) AS month_name, day(d)::INTEGER AS day,
           isodow(d)::INTEGER AS iso_day_of_week, dayname(d) AS day_name, week(d)::INTEGER AS iso_week
      FROM ${years} y,
           generate_series(make_timestamp(y.year, 1, 1, 0, 0, 0), make_timestamp(y.year, 12, 31, 0, 0, 0), INTERVAL 1 DAY) g(d)
     ORDER BY date_key`;
}

const FACT_COLUMNS: Record<string, string> = {
  hire_id: 'Hire id, as in PostgreSQL hired_employees.id',
  employee_name: 'Name and surname of the employee',
  hired_at_utc: 'When the employee was hired, UTC wall time (TIMESTAMP without zone, so year/quarter are UTC in every session)',
  date_key: 'Hire date (UTC) as YYYYMMDD; joins dim_date.date_key',
  department_id: 'Joins dim_department.department_id',
  job_id: 'Joins dim_job.job_id',
};

/** Names and descriptions a notebook user sees with `duckdb_tables()`, `duckdb_views()`, `duckdb_columns()`. */
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
  fact_hires: ['View: one row per current hire (PostgreSQL hired_employees): fact_hires_base with fact_hires_changes laid over it', FACT_COLUMNS],
  fact_hires_base: ['Hires as of the last full build or fold, sorted by hire_id; read fact_hires for the current ones', FACT_COLUMNS],
  fact_hires_changes: ['Hires changed since fact_hires_base: their current version, or deleted = true; folded into the base from time to time', {
    ...FACT_COLUMNS,
    deleted: 'true: the hire no longer exists (its base row, if any, is hidden by fact_hires)',
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
    await conn.run(`COMMENT ON ${table === 'fact_hires' ? 'VIEW' : 'TABLE'} ${table} IS ${lit(comment)}`);
    for (const [col, text] of Object.entries(columns)) await conn.run(`COMMENT ON COLUMN ${table}.${col} IS ${lit(text)}`);
  }
}
