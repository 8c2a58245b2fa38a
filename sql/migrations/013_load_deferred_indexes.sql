-- Embedded loads into an empty table (loads/writer.ts): the table's plain (non-unique, not a
-- constraint's) indexes are dropped in the load's first chunk and built again in its last, one
-- sort instead of an index insert per row. Their definitions are kept here, committed with the
-- drop, so whoever ends the load (its last chunk, its writer closing on failure or shutdown, the
-- next load's writer after a crash) can build them again. NULL: nothing deferred.
ALTER TABLE loads ADD COLUMN deferred_indexes text[];
