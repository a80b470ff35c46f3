-- dbswatch schema, version 6: snapshots stored as differences. Never edit a released migration:
-- add a new file.
--
-- A watch's current answer is stored whole once: its normalised content in `watch_state` (as
-- before), its raw body in `current_bodies`; its row in `snapshots` holds two empty texts,
-- meaning "the texts are the watch's current ones". When a change replaces it, that row gets reverse deltas: LZ4 blocks
-- that rebuild its texts from those of the snapshot that replaced it (src/store/delta.rs).
-- A row therefore only grows, once, from nothing to about the size of what changed: no row
-- ever shrinks, which in SQLite would leave holes in pages that nothing refills.
--
-- snapshots.delta_base
--   NULL: `content` and `raw_body` are text: whole (rows written before this version, or a
--   difference that would not have been smaller), or both empty for a watch's current answer.
--   An id: each of `content` and `raw_body` is a BLOB (a delta against the same text of row
--   `delta_base`, the newer snapshot of the same watch) or text (kept whole).
-- A row is only ever a delta against a newer one, so retention, which deletes the oldest
-- first, never removes a row another still needs; it checks anyway (a clock that went back).
--
-- current_bodies
--   The exact body of each watch's current answer (`snapshot_id`). Apart from `watch_state`,
--   which every poll cycle updates (`last_ok_at`): rows twice the size there would be twice
--   the pages written, and cached, per cycle. A watch whose current answer was stored before
--   this version has no row here: its snapshot row still holds its texts whole.
ALTER TABLE snapshots ADD COLUMN delta_base INTEGER;
CREATE INDEX snapshots_by_delta_base ON snapshots(delta_base) WHERE delta_base IS NOT NULL;
CREATE TABLE current_bodies (
    watch           TEXT PRIMARY KEY,
    snapshot_id     INTEGER NOT NULL,
    raw_body        TEXT NOT NULL
);
