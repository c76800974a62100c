-- The notification claim reads due rows in its own order: due time, then sequence, then id.
-- With that order in an index, a claim reads the index's first rows and stops at its limit;
-- with (state, next_attempt_at) alone it sorted every pending row first, 11 ms a claim in a
-- backlog of 10,000 (bench/README.md, bench.notify). The new index leads with the old one's
-- columns, so it serves the old one's queries too.
CREATE INDEX IF NOT EXISTS downtime_notifications_claim_idx
    ON downtime_notifications (state, next_attempt_at, sequence, id);

DROP INDEX IF EXISTS downtime_notifications_due_idx;
