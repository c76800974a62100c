-- The actual maintenance periods of each monitor (issue 15): recorded by the operator as each
-- monitor enters and leaves maintenance, so that SLOs and uptime exclude exactly that time even
-- after the MaintenanceWindow is edited or deleted. At most one open period per monitor.
CREATE TABLE IF NOT EXISTS downtime_maintenance_periods (
    period_id         bigserial PRIMARY KEY,
    monitor_namespace text NOT NULL,
    monitor_name      text NOT NULL,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    reason            text NOT NULL DEFAULT '',
    CONSTRAINT downtime_maintenance_periods_ended_after_start
        CHECK (ended_at IS NULL OR ended_at >= started_at)
);

CREATE UNIQUE INDEX IF NOT EXISTS downtime_maintenance_periods_one_open
    ON downtime_maintenance_periods (monitor_namespace, monitor_name) WHERE ended_at IS NULL;

CREATE INDEX IF NOT EXISTS downtime_maintenance_periods_started_idx
    ON downtime_maintenance_periods (started_at DESC);
