-- The three tables of the migration, exactly as the data dictionary (core/tables.ts) describes
-- them, plus the rejects store. CHECKs repeat the data rules so nothing can bypass them.

CREATE TABLE departments (
  id integer PRIMARY KEY CHECK (id > 0),
  department text NOT NULL CHECK (btrim(department) <> '')
);

CREATE TABLE jobs (
  id integer PRIMARY KEY CHECK (id > 0),
  job text NOT NULL CHECK (btrim(job) <> '')
);

CREATE TABLE hired_employees (
  id integer PRIMARY KEY CHECK (id > 0),
  name text NOT NULL CHECK (btrim(name) <> ''),
  datetime timestamptz NOT NULL,
  department_id integer NOT NULL REFERENCES departments (id),
  job_id integer NOT NULL REFERENCES jobs (id)
);

-- Deleting a department or job (a restore in replace mode) checks these; without the indexes
-- each check is a sequential scan of hired_employees.
CREATE INDEX hired_employees_department_id_idx ON hired_employees (department_id);
CREATE INDEX hired_employees_job_id_idx ON hired_employees (job_id);

-- Every row that broke a data rule, with where it came from and why.
CREATE TABLE rejects (
  id bigserial PRIMARY KEY,
  source text NOT NULL CHECK (source IN ('ingest', 'load', 'restore')),
  source_id text NOT NULL,          -- request id, load id or backup id
  table_name text NOT NULL,
  position bigint NOT NULL,         -- 0-based row in a batch, 1-based line in a file
  raw text NOT NULL,                -- the row as received
  errors jsonb NOT NULL,            -- [{"field", "message"}]
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rejects_source_idx ON rejects (source, source_id, position);
