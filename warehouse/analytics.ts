import type { DuckDBConnection } from '@duckdb/node-api';
import { queryRows } from './duck.js';

/**
 * The two metrics of the contract, answered from the aggregate (agg_hires_by_quarter: a few rows
 * per department, job and quarter), not from the 10-million-row fact table.
 *
 * Ordering: "alphabetical" is case-insensitive (lower()), ties broken by the exact value, which
 * DuckDB compares byte-wise (UTF-8 byte order = code point order). Years and quarters are UTC:
 * the aggregate was computed from UTC wall-time timestamps.
 */
export interface HiresByQuarterRow {
  department: string;
  job: string;
  q1: number;
  q2: number;
  q3: number;
  q4: number;
}

export interface DepartmentAboveMeanRow {
  id: number;
  department: string;
  hired: number;
}

/** One row per department and job (by name) with at least one hire in `year`. */
export function hiresByQuarter(conn: DuckDBConnection, year: number): Promise<HiresByQuarterRow[]> {
  return queryRows<HiresByQuarterRow>(
    conn,
    `SELECT d.department, j.job,
            coalesce(sum(a.hires) FILTER (WHERE a.quarter = 1), 0)::INTEGER AS q1,
            coalesce(sum(a.hires) FILTER (WHERE a.quarter = 2), 0)::INTEGER AS q2,
            coalesce(sum(a.hires) FILTER (WHERE a.quarter = 3), 0)::INTEGER AS q3,
            coalesce(sum(a.hires) FILTER (WHERE a.quarter = 4), 0)::INTEGER AS q4
       FROM agg_hires_by_quarter a
       JOIN dim_department d USING (department_id)
       JOIN dim_job j USING (job_id)
      WHERE a.year = $1
      GROUP BY d.department, j.job
      ORDER BY lower(d.department), d.department, lower(j.job), j.job`,
    [year],
  );
}

/**
 * Departments whose hires in `year` exceed the mean over the departments that hired that year
 * (compared as hired * n > total, exact in integers), by hires descending, then by name.
 */
export function departmentsAboveMean(conn: DuckDBConnection, year: number): Promise<DepartmentAboveMeanRow[]> {
  return queryRows<DepartmentAboveMeanRow>(
    conn,
    `WITH per AS (
       SELECT department_id, sum(hires)::BIGINT AS hired FROM agg_hires_by_quarter WHERE year = $1 GROUP BY department_id
     ), mean AS (SELECT sum(hired) AS total, count(*) AS n FROM per)
     SELECT p.department_id AS id, d.department, p.hired::INTEGER AS hired
       FROM per p JOIN dim_department d USING (department_id), mean m
      WHERE p.hired * m.n > m.total
      ORDER BY p.hired DESC, lower(d.department), d.department, p.department_id`,
    [year],
  );
}

/** Row counts of the star schema's tables, for GET /warehouse. */
export async function tableCounts(conn: DuckDBConnection): Promise<Record<string, number>> {
  const rows = await queryRows<{ t: string; n: number }>(
    conn,
    `SELECT 'dim_department' AS t, count(*)::DOUBLE AS n FROM dim_department
     UNION ALL SELECT 'dim_job', count(*)::DOUBLE FROM dim_job
     UNION ALL SELECT 'dim_date', count(*)::DOUBLE FROM dim_date
     UNION ALL SELECT 'fact_hires', count(*)::DOUBLE FROM fact_hires
     UNION ALL SELECT 'agg_hires_by_quarter', count(*)::DOUBLE FROM agg_hires_by_quarter`,
  );
  return Object.fromEntries(rows.map((r) => [r.t, r.n]));
}
