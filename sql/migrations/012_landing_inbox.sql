-- The landing inbox (issue 12): files dropped into DATA_DIR/landing/inbox/ load by themselves.

-- Where a load came from: 'api' (POST /loads, the demo) or 'inbox'; and, for the inbox, the file's
-- name as it was dropped (the file itself moves through processing/ to done/ or failed/).
ALTER TABLE loads ADD COLUMN source text NOT NULL DEFAULT 'api';
ALTER TABLE loads ADD COLUMN source_name text;

-- A load's file by its current path: GET /landing names the load of each file in done/ and failed/.
CREATE INDEX loads_inbox_file_idx ON loads (file) WHERE source = 'inbox';

-- The last look of every scan at each inbox file: a file is taken once a later look, at least
-- LANDING_SETTLE_MS after this one, finds the same size and modification time (etag). Shared by
-- every worker, so consecutive scans on different workers agree; seen_at is the database's clock.
CREATE TABLE landing_looks (
  name    text PRIMARY KEY,
  size    bigint NOT NULL,
  etag    text NOT NULL,
  seen_at timestamptz NOT NULL DEFAULT now()
);
