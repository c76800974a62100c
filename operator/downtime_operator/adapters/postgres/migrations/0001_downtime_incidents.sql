-- downtime_incidents: the system of record for outages.
-- Written with IF NOT EXISTS throughout so that it also adopts a table created earlier by the
-- seed's Supabase migration: missing columns, constraints and indexes are added, data is kept.
-- Plain PostgreSQL 13+ (gen_random_uuid is built in); no extensions, works on Supabase.

CREATE TABLE IF NOT EXISTS downtime_incidents (
    incident_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at        timestamptz NOT NULL,
    detected_at       timestamptz NOT NULL,
    ended_at          timestamptz,
    duration_seconds  double precision,
    health_endpoint   text NOT NULL,
    error_message     text,
    http_status_code  integer,
    response_body     text,
    status            text NOT NULL DEFAULT 'ongoing',
    severity          text NOT NULL,
    logs_captured     jsonb,
    logs_file_path    text,
    metrics_snapshot  jsonb,
    environment       text NOT NULL DEFAULT 'production',
    server_info       jsonb,
    notes             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Operator additions: which monitor/CR the incident belongs to, and the log-capture state that
-- lets a restarted operator finish a capture that was due while it was down.
ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS monitor_namespace   text,
    ADD COLUMN IF NOT EXISTS monitor_name        text,
    ADD COLUMN IF NOT EXISTS k8s_name            text,
    ADD COLUMN IF NOT EXISTS failed_checks       integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS logs_capture_status text,
    ADD COLUMN IF NOT EXISTS logs_capture_due_at timestamptz,
    ADD COLUMN IF NOT EXISTS logs_count          integer,
    ADD COLUMN IF NOT EXISTS logs_truncated      boolean,
    ADD COLUMN IF NOT EXISTS logs_capture_error  text,
    ADD COLUMN IF NOT EXISTS log_analysis        jsonb;

-- Constraints by name, added only when absent (ADD CONSTRAINT has no IF NOT EXISTS).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('downtime_incidents_status_check',
             $c$CHECK (status IN ('ongoing', 'resolved', 'investigating'))$c$),
            ('downtime_incidents_severity_check',
             $c$CHECK (severity IN ('low', 'medium', 'high', 'critical'))$c$),
            ('downtime_incidents_logs_capture_status_check',
             $c$CHECK (logs_capture_status IN ('pending', 'captured', 'failed', 'disabled'))$c$),
            ('downtime_incidents_ended_after_start',
             $c$CHECK (ended_at IS NULL OR ended_at >= started_at)$c$),
            ('downtime_incidents_detected_after_start',
             $c$CHECK (detected_at >= started_at)$c$),
            ('downtime_incidents_duration_nonnegative',
             $c$CHECK (duration_seconds IS NULL OR duration_seconds >= 0)$c$),
            ('downtime_incidents_resolved_has_end',
             $c$CHECK (status <> 'resolved' OR ended_at IS NOT NULL)$c$),
            ('downtime_incidents_failed_checks_nonnegative',
             $c$CHECK (failed_checks >= 0)$c$),
            ('downtime_incidents_logs_count_nonnegative',
             $c$CHECK (logs_count IS NULL OR logs_count >= 0)$c$)
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

-- Indexes for the admin API's filters and ordering.
CREATE INDEX IF NOT EXISTS downtime_incidents_status_idx
    ON downtime_incidents (status);
CREATE INDEX IF NOT EXISTS downtime_incidents_started_at_idx
    ON downtime_incidents (started_at DESC);
CREATE INDEX IF NOT EXISTS downtime_incidents_severity_idx
    ON downtime_incidents (severity);
CREATE INDEX IF NOT EXISTS downtime_incidents_environment_idx
    ON downtime_incidents (environment);
CREATE INDEX IF NOT EXISTS downtime_incidents_monitor_idx
    ON downtime_incidents (monitor_namespace, monitor_name, started_at DESC);

-- Captures a restarted operator must still run.
CREATE INDEX IF NOT EXISTS downtime_incidents_capture_due_idx
    ON downtime_incidents (logs_capture_due_at)
    WHERE logs_capture_status = 'pending';

-- At most one open incident per monitor, ever. The store recognises a violation
-- of this index by its name, so renaming it is a code change too.
CREATE UNIQUE INDEX IF NOT EXISTS downtime_incidents_one_open_per_monitor
    ON downtime_incidents (monitor_namespace, monitor_name)
    WHERE status <> 'resolved';

-- updated_at tracks the last write without every caller having to remember it.
CREATE OR REPLACE FUNCTION downtime_incidents_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS downtime_incidents_touch_updated_at ON downtime_incidents;
CREATE TRIGGER downtime_incidents_touch_updated_at
    BEFORE UPDATE ON downtime_incidents
    FOR EACH ROW EXECUTE FUNCTION downtime_incidents_touch_updated_at();
