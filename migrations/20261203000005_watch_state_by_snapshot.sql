-- Retention asks, for each old snapshot, whether it is still some watch's diff baseline.
-- Without this index that question read the whole watch_state table (every baseline's JSON)
-- after every poll cycle.
CREATE INDEX watch_state_by_snapshot ON watch_state(snapshot_id);
