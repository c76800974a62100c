-- When an incident's Prometheus queries (`metrics_queries`, migration 0010) are run: at
-- detection, and again `after` past the end (every resolve statement makes a planned capture
-- due again), like the log capture. Its own schedule because it runs whether or not logs are
-- captured. NULL due time: nothing to run now (not planned, or done).
ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS metrics_capture_due_at        timestamptz,
    -- A replica running the capture holds it until then; a crashed one's lease runs out.
    ADD COLUMN IF NOT EXISTS metrics_capture_claimed_until timestamptz,
    -- Runs recorded (each due capture is recorded once).
    ADD COLUMN IF NOT EXISTS metrics_capture_runs          integer NOT NULL DEFAULT 0;

-- Claims look only at the few incidents with a capture due.
CREATE INDEX IF NOT EXISTS downtime_incidents_metrics_capture_due_idx
    ON downtime_incidents (metrics_capture_due_at)
    WHERE metrics_capture_due_at IS NOT NULL;
