-- CSV file loads (issue 3). One row per file; the worker commits each chunk of rows together with
-- the checkpoint below, so a load killed mid-file resumes exactly where its last commit ended.

CREATE TABLE loads (
  id uuid PRIMARY KEY,
  table_name text NOT NULL CHECK (table_name IN ('departments', 'jobs', 'hired_employees')),
  file text NOT NULL,                      -- absolute path under the landing folder
  bytes bigint NOT NULL CHECK (bytes >= 0),
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  after_loads uuid[] NOT NULL DEFAULT '{}', -- loads of the same request that must succeed first
  rows_read bigint NOT NULL DEFAULT 0,
  inserted bigint NOT NULL DEFAULT 0,
  updated bigint NOT NULL DEFAULT 0,
  unchanged bigint NOT NULL DEFAULT 0,
  rejected bigint NOT NULL DEFAULT 0,
  wrong_width bigint NOT NULL DEFAULT 0,   -- rejects for a wrong number of fields
  next_offset bigint NOT NULL DEFAULT 0,   -- checkpoint: the byte where the next chunk starts
  next_line bigint NOT NULL DEFAULT 1,     -- and its physical line number
  attempts integer NOT NULL DEFAULT 0,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);

CREATE INDEX loads_created_at_idx ON loads (created_at DESC);
CREATE INDEX loads_unfinished_idx ON loads (created_at) WHERE status IN ('queued', 'running');
