import type { Pool } from '../../core/db.js';
import { queryRows } from '../../warehouse/duck.js';
import { WarehouseReader } from '../../warehouse/reader.js';

/** Small reference data written straight to PostgreSQL (the triggers see it like any write). */
export async function seed(pool: Pool, hires = 50): Promise<void> {
  await pool.query(`INSERT INTO departments SELECT i, 'Dept ' || i FROM generate_series(1, 5) i`);
  await pool.query(`INSERT INTO jobs SELECT i, 'Job ' || i FROM generate_series(1, 7) i`);
  await pool.query(
    `INSERT INTO hired_employees
     SELECT i, 'Person ' || i, timestamptz '2020-12-31 22:00:00+00' + i * interval '9 days', 1 + i % 5, 1 + i % 7
       FROM generate_series(1, $1) i`,
    [hires],
  );
}

export interface HireRow {
  id: number;
  name: string;
  at: string;
  department_id: number;
  job_id: number;
}

/** hired_employees as PostgreSQL has it, timestamps as UTC text. */
export async function pgHires(pool: Pool): Promise<HireRow[]> {
  const { rows } = await pool.query<HireRow>(
    `SELECT id, name, to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, department_id, job_id
       FROM hired_employees ORDER BY id`,
  );
  return rows;
}

/** fact_hires as the published DuckDB file has it, in the same shape as pgHires. */
export function duckHires(reader: WarehouseReader): Promise<HireRow[]> {
  return reader.use((conn) =>
    queryRows<HireRow>(
      conn,
      `SELECT hire_id AS id, employee_name AS name, strftime(hired_at_utc, '%Y-%m-%d %H:%M:%S.%f') AS at, department_id, job_id
         FROM fact_hires ORDER BY hire_id`,
    ),
  );
}

/** The aggregate compared with the same count computed by PostgreSQL from hired_employees. */
export async function aggMatches(pool: Pool, reader: WarehouseReader): Promise<{ pg: string[]; duck: string[] }> {
  const { rows } = await pool.query<{ k: string }>(
    `SELECT concat_ws('/', y, q, department_id, job_id, count(*)) AS k
       FROM (SELECT extract(year FROM datetime AT TIME ZONE 'UTC') AS y, extract(quarter FROM datetime AT TIME ZONE 'UTC') AS q,
                    department_id, job_id FROM hired_employees) h
      GROUP BY y, q, department_id, job_id `,
  );
  const duck = await reader.use((conn) =>
    queryRows<{ k: string }>(conn, `SELECT concat_ws('/', year, quarter, department_id, job_id, hires) AS k FROM agg_hires_by_quarter`),
  );
  return { pg: rows.map((r) => r.k).sort(), duck: duck.map((r) => r.k).sort() };
}
