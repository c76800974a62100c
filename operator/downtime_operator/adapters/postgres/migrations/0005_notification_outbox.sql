-- The notification outbox (issue 12): one row per (incident, event, channel), written with the
-- incident change and delivered later by the replica holding its lease.

-- No foreign key to downtime_incidents: the pipeline's sinks run independently, so a
-- notification may be enqueued before its incident's row is written, and that must not fail.
-- Retention removes an incident's notifications with it instead (the trigger below).
CREATE TABLE IF NOT EXISTS downtime_notifications (
    id               uuid PRIMARY KEY,
    incident_id      uuid NOT NULL,
    channel          text NOT NULL,
    event            text NOT NULL,
    sequence         integer NOT NULL,
    state            text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_owner      text,
    lease_until      timestamptz,
    last_error       text,
    provider_id      text,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    CONSTRAINT downtime_notifications_state_check
        CHECK (state IN ('pending', 'sent', 'failed')),
    CONSTRAINT downtime_notifications_sequence_positive CHECK (sequence > 0),
    CONSTRAINT downtime_notifications_attempts_nonnegative CHECK (attempts >= 0),
    -- Once per event and channel, however often the pipeline repeats its write.
    CONSTRAINT downtime_notifications_once UNIQUE (incident_id, event, channel),
    -- The delivery order of one incident on one channel; also the claim's "earlier row" lookup.
    CONSTRAINT downtime_notifications_order UNIQUE (incident_id, channel, sequence)
);

-- Claiming: due rows by state and time.
CREATE INDEX IF NOT EXISTS downtime_notifications_due_idx
    ON downtime_notifications (state, next_attempt_at);

-- A channel's last delivery, for its status; pending rows are never asked for here.
CREATE INDEX IF NOT EXISTS downtime_notifications_delivered_idx
    ON downtime_notifications (channel, updated_at DESC)
    WHERE state <> 'pending';

-- Why a statement-level trigger rather than ON DELETE CASCADE (which needs the foreign key
-- above we cannot have) or a DELETE in each retention query: it follows every way an incident
-- row goes (cleanup_old_incidents, the retention service, a manual DELETE), and a bulk cleanup
-- removes the notifications in one statement rather than one per incident.
CREATE OR REPLACE FUNCTION downtime_notifications_follow_incidents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM downtime_notifications n
    USING gone
    WHERE n.incident_id = gone.incident_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS downtime_notifications_follow_incidents ON downtime_incidents;
CREATE TRIGGER downtime_notifications_follow_incidents
    AFTER DELETE ON downtime_incidents
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION downtime_notifications_follow_incidents();
