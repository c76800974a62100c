-- Log capture: the plan fixed at detection and what each capture found.
-- The plan (query, before, after, max lines, storage) is kept with the incident so that an
-- operator restarted after `ended_at + after` can run the final capture without the monitor,
-- which may have been edited or deleted since.

ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS logs_query                 text,
    ADD COLUMN IF NOT EXISTS logs_before_seconds        double precision,
    ADD COLUMN IF NOT EXISTS logs_after_seconds         double precision,
    ADD COLUMN IF NOT EXISTS logs_max_lines             integer,
    ADD COLUMN IF NOT EXISTS logs_storage               text,
    -- What the last capture covered and found; logs_available is how many lines Loki had in
    -- the window (NULL when not counted to the end), logs_count how many were kept.
    ADD COLUMN IF NOT EXISTS logs_window_start          timestamptz,
    ADD COLUMN IF NOT EXISTS logs_window_end            timestamptz,
    ADD COLUMN IF NOT EXISTS logs_available             integer,
    ADD COLUMN IF NOT EXISTS logs_captured_at           timestamptz,
    -- Capture runs recorded for this incident (each due capture is recorded once).
    ADD COLUMN IF NOT EXISTS logs_capture_runs          integer NOT NULL DEFAULT 0,
    -- A replica running a capture holds it until then; a crashed one's lease runs out.
    ADD COLUMN IF NOT EXISTS logs_capture_claimed_until timestamptz;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('downtime_incidents_logs_storage_check',
             $c$CHECK (logs_storage IN ('auto', 'database', 'file'))$c$),
            ('downtime_incidents_logs_max_lines_check',
             $c$CHECK (logs_max_lines BETWEEN 1 AND 10000)$c$),
            ('downtime_incidents_logs_margins_nonnegative',
             $c$CHECK (logs_before_seconds >= 0 AND logs_after_seconds >= 0)$c$),
            ('downtime_incidents_logs_available_nonnegative',
             $c$CHECK (logs_available IS NULL OR logs_available >= 0)$c$)
        ) AS t(name, def)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'downtime_incidents'::regclass AND conname = c.name
        ) THEN
            EXECUTE format('ALTER TABLE downtime_incidents ADD CONSTRAINT %I %s', c.name, c.def);
        END IF;
    END LOOP;
END
$$;
