-- dbswatch schema, version 6: snapshots stored as differences. Never edit a released migration:
-- add a new file.
--
-- snapshots.delta_base
--   NULL: `content` and `raw_body` hold the text whole (every row written before this version,
--   and each watch's newest snapshot).
--   An id: `content` and `raw_body` hold reverse deltas (BLOBs): LZ4 blocks that rebuild this
--   row's texts from those of row `delta_base`, the snapshot of the same watch that replaced it
--   (see src/store/delta.rs). A row is only ever a delta against a newer row, so retention,
--   which deletes the oldest first, never removes a row another still needs; it also checks.
ALTER TABLE snapshots ADD COLUMN delta_base INTEGER;
CREATE INDEX snapshots_by_delta_base ON snapshots(delta_base) WHERE delta_base IS NOT NULL;
