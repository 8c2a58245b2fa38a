-- A reject's raw text is kept up to REJECT_RAW_MAX_BYTES (issue 11): longer text is cut, at a
-- character boundary, and marked here, so a reader knows the line went on.
ALTER TABLE rejects ADD COLUMN raw_truncated boolean NOT NULL DEFAULT false;
