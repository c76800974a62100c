-- The admin API's audit trail and the indexes its queries need.

-- One row per mutating call, written before the call is carried out (outcome 'pending') and
-- completed after, so an action can never happen unrecorded. key_name is the configured name
-- of the API key, never the key. No foreign key to downtime_incidents: the trail must outlive
-- retention cleanup, and attempts on unknown incidents are worth recording too.
CREATE TABLE IF NOT EXISTS downtime_audit_log (
    audit_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    key_name     text,
    action       text NOT NULL,
    incident_id  uuid,
    parameters   jsonb NOT NULL DEFAULT '{}'::jsonb,
    remote_addr  text,
    outcome      text NOT NULL DEFAULT 'pending',
    status_code  integer,
    finished_at  timestamptz
);

CREATE INDEX IF NOT EXISTS downtime_audit_log_at_idx
    ON downtime_audit_log (at DESC);
CREATE INDEX IF NOT EXISTS downtime_audit_log_incident_idx
    ON downtime_audit_log (incident_id, at DESC)
    WHERE incident_id IS NOT NULL;

-- Keyset paging of the incident list: newest first, ties broken by id, one index per filter so
-- that a page is a short index range scan whatever the filter (a rare status or a small
-- environment would otherwise walk the whole started_at index looking for 50 matches). The
-- columns are ascending and read backwards: that way the row comparison
-- (started_at, incident_id) < (cursor) is an index condition, not a filter. (The unfiltered
-- list uses downtime_incidents_newest_idx, migration 0004.)
CREATE INDEX IF NOT EXISTS downtime_incidents_status_newest_idx
    ON downtime_incidents (status, started_at, incident_id);
CREATE INDEX IF NOT EXISTS downtime_incidents_severity_newest_idx
    ON downtime_incidents (severity, started_at, incident_id);
CREATE INDEX IF NOT EXISTS downtime_incidents_environment_newest_idx
    ON downtime_incidents (environment, started_at, incident_id);
CREATE INDEX IF NOT EXISTS downtime_incidents_monitor_name_newest_idx
    ON downtime_incidents (monitor_name, started_at, incident_id);
CREATE INDEX IF NOT EXISTS downtime_incidents_namespace_newest_idx
    ON downtime_incidents (monitor_namespace, started_at, incident_id);
