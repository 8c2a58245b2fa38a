-- Issue 13: the published DuckDB file of each warehouse version, uploaded to the storage bucket
-- (STORAGE_URL) by the refresh, so API processes on other machines fetch the newest one.
CREATE TABLE warehouse_published (
  version        bigint PRIMARY KEY,            -- the last batch the file holds
  key            text NOT NULL,                 -- its object key, relative to STORAGE_URL
  bytes          bigint NOT NULL,
  schema_version integer NOT NULL,              -- the star schema's version (warehouse/schema.ts)
  refreshed_at   timestamptz NOT NULL,
  published_at   timestamptz NOT NULL DEFAULT now()
);
