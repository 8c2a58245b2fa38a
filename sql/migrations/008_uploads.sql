-- Presigned uploads (issue 13): POST /uploads hands out a URL the client PUTs a file to (the
-- bucket's, or the service's own with the local storage); POST /uploads/{id}/load then makes the
-- ordinary load, whose id is the upload's.

CREATE TABLE uploads (
  id uuid PRIMARY KEY,
  table_name text NOT NULL CHECK (table_name IN ('departments', 'jobs', 'hired_employees')),
  file text NOT NULL,                            -- the storage key the URL writes (landing/uploads/…)
  declared_bytes bigint CHECK (declared_bytes >= 0), -- the size the client announced, if it did
  expires_at timestamptz NOT NULL,               -- when the URL stops working
  created_at timestamptz NOT NULL DEFAULT now(),
  received_at timestamptz,                       -- local storage: when a PUT through the service finished
  received_bytes bigint
);

CREATE INDEX uploads_created_at_idx ON uploads (created_at);
