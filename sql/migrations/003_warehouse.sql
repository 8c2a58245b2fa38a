-- Change capture for the warehouse export (warehouse/export.ts explains the whole cycle).
--
-- Why triggers feeding a change log, consumed by DELETE:
--  * Statement-level AFTER triggers with transition tables see every write path alike: API
--    upserts (INSERT ... ON CONFLICT DO UPDATE), loads (COPY into staging, then INSERT ... SELECT),
--    restores (DELETE + INSERT), hand-written SQL. One trigger call per statement, not per row.
--  * They log id ranges, not rows: consecutive ids changed by one statement collapse into one
--    (lo, hi) row (gaps-and-islands), so a bulk load of a million consecutive ids adds one row.
--    The export later reads the current version of each id in the ranges: present means upsert,
--    absent means delete. Cost follows the size of the change, never the size of the tables.
--  * The export consumes the log with DELETE ... RETURNING inside a REPEATABLE READ transaction
--    and registers the Parquet file it wrote (warehouse_batches) in that same transaction. A change
--    row written by a transaction that commits late (it began before the export) is invisible to
--    the export's snapshot, so the DELETE leaves it in place and the next export picks it up.
--    No watermark on a sequence or on xmin can skip it, and a failed export rolls back and
--    leaves the log untouched.
--  * xmin bookkeeping would need a scan of the whole table per export and cannot see deletes;
--    logical decoding needs wal_level=logical and a slot that holds WAL when nobody consumes it.
CREATE TABLE warehouse_changes (
  table_name text NOT NULL,
  lo integer,        -- first id of a run of changed ids; NULL with hi NULL: the whole table (TRUNCATE)
  hi integer         -- last id of the run
);

CREATE FUNCTION warehouse_capture_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warehouse_changes (table_name, lo, hi)
  SELECT TG_TABLE_NAME, min(id), max(id)
    FROM (SELECT id, id::bigint - row_number() OVER (ORDER BY id) AS run FROM new_rows) s
   GROUP BY run;
  RETURN NULL;
END $$;

CREATE FUNCTION warehouse_capture_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warehouse_changes (table_name, lo, hi)
  SELECT TG_TABLE_NAME, min(id), max(id)
    FROM (SELECT id, id::bigint - row_number() OVER (ORDER BY id) AS run FROM old_rows) s
   GROUP BY run;
  RETURN NULL;
END $$;

-- An UPDATE may change an id: both the old and the new id changed.
CREATE FUNCTION warehouse_capture_both() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warehouse_changes (table_name, lo, hi)
  SELECT TG_TABLE_NAME, min(id), max(id)
    FROM (SELECT id, id::bigint - row_number() OVER (ORDER BY id) AS run
            FROM (SELECT id FROM new_rows UNION SELECT id FROM old_rows) u) s
   GROUP BY run;
  RETURN NULL;
END $$;

CREATE FUNCTION warehouse_capture_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warehouse_changes (table_name, lo, hi) VALUES (TG_TABLE_NAME, NULL, NULL);
  RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['departments', 'jobs', 'hired_employees'] LOOP
    EXECUTE format('CREATE TRIGGER warehouse_ins AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION warehouse_capture_new()', t);
    EXECUTE format('CREATE TRIGGER warehouse_upd AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION warehouse_capture_both()', t);
    EXECUTE format('CREATE TRIGGER warehouse_del AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION warehouse_capture_old()', t);
    EXECUTE format('CREATE TRIGGER warehouse_trunc AFTER TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION warehouse_capture_truncate()', t);
    -- Loads write with session_replication_role = replica to skip the per-row FK triggers (they
    -- check references set-based instead); change capture must fire in that mode too.
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER warehouse_ins, ENABLE ALWAYS TRIGGER warehouse_upd,
                    ENABLE ALWAYS TRIGGER warehouse_del, ENABLE ALWAYS TRIGGER warehouse_trunc', t);
  END LOOP;
END $$;

-- The manifest of Parquet files: one row per table per export (or compaction). Registered in the
-- export's transaction, so a file is part of the warehouse exactly when its changes left the log.
CREATE SEQUENCE warehouse_batch_seq;

CREATE TABLE warehouse_batches (
  batch bigint NOT NULL,
  table_name text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('base', 'delta')),  -- base: the whole table; delta: changed ids
  path text NOT NULL,                                     -- relative to the Parquet folder
  rows bigint NOT NULL,                                   -- rows written (deltas: incl. deletions)
  deleted bigint NOT NULL DEFAULT 0,                      -- deltas: ids that no longer exist
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (batch, table_name, kind)  -- a compaction's base carries the batch of the last delta it merged
);
