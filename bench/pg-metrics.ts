/**
 * The two analytics metrics computed by PostgreSQL directly from the OLTP tables, for the
 * benchmark's side-by-side figures and answer check. Same rules as warehouse/analytics.ts:
 * UTC years and quarters, case-insensitive order with exact (byte-wise, COLLATE "C") tiebreak.
 */
export const PG_HIRES_BY_QUARTER = `
SELECT d.department, j.job,
       count(*) FILTER (WHERE extract(quarter FROM h.datetime AT TIME ZONE 'UTC') = 1)::int AS q1,
       count(*) FILTER (WHERE extract(quarter FROM h.datetime AT TIME ZONE 'UTC') = 2)::int AS q2,
       count(*) FILTER (WHERE extract(quarter FROM h.datetime AT TIME ZONE 'UTC') = 3)::int AS q3,
       count(*) FILTER (WHERE extract(quarter FROM h.datetime AT TIME ZONE 'UTC') = 4)::int AS q4
  FROM hired_employees h
  JOIN departments d ON d.id = h.department_id
  JOIN jobs j ON j.id = h.job_id
 WHERE h.datetime >= make_timestamptz($1, 1, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1 + 1, 1, 1, 0, 0, 0, 'UTC')
 GROUP BY d.department, j.job
 ORDER BY lower(d.department) COLLATE "C", d.department COLLATE "C", lower(j.job) COLLATE "C", j.job COLLATE "C"`;

export const PG_DEPARTMENTS_ABOVE_MEAN = `
WITH per AS (
  SELECT department_id, count(*)::int AS hired
    FROM hired_employees
   WHERE datetime >= make_timestamptz($1, 1, 1, 0, 0, 0, 'UTC') AND datetime < make_timestamptz($1 + 1, 1, 1, 0, 0, 0, 'UTC')
   GROUP BY department_id
)
SELECT p.department_id AS id, d.department, p.hired
  FROM per p JOIN departments d ON d.id = p.department_id
 WHERE p.hired > (SELECT avg(hired) FROM per)
 ORDER BY p.hired DESC, lower(d.department) COLLATE "C", d.department COLLATE "C", p.department_id`;
