-- Retention (issue 11): uploads of finished loads are removed after UPLOAD_RETENTION_DAYS and
-- rejects pruned after REJECT_RETENTION_DAYS, by the scheduled job in loads/retention.ts.

-- When retention removed the load's uploaded file; the load's record stays.
ALTER TABLE loads ADD COLUMN file_removed_at timestamptz;

-- The uploads still on disk of finished loads, oldest first.
CREATE INDEX loads_finished_files_idx ON loads (finished_at)
  WHERE file_removed_at IS NULL AND status IN ('succeeded', 'failed');

-- Pruning by age without reading the whole table.
CREATE INDEX rejects_created_at_idx ON rejects (created_at);
