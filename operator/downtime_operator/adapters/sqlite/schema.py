"""The SQLite schema: ``downtime_incidents`` with the same logical columns as PostgreSQL.

Type mapping (SQLite has few types): uuid and timestamps are TEXT, booleans INTEGER 0/1, jsonb
TEXT holding JSON. Timestamps are always written as fixed-width UTC ISO 8601
(``2026-03-10T12:00:00.000000+00:00``), so comparing and ordering the text is comparing and
ordering the instants; that is what lets the CHECKs and indexes below work on them.

Versions are counted in ``PRAGMA user_version`` and applied inside one ``BEGIN IMMEDIATE``
transaction that re-reads the version, so two processes opening a new file at once apply each
version exactly once. Only features of SQLite 3.33+ are used (``UPDATE … FROM`` for the
outbox's batched outcomes; no RETURNING, no STRICT), so the store works with the sqlite3 of
older distributions too; an older library is refused when the file is opened
(``MIN_SQLITE``).
"""

from __future__ import annotations

import sqlite3

OPEN_INCIDENT_INDEX = "downtime_incidents_one_open_per_monitor"
MIN_SQLITE = (3, 33, 0)

_V1 = (
    """
    CREATE TABLE IF NOT EXISTS downtime_incidents (
        incident_id         TEXT PRIMARY KEY NOT NULL,
        started_at          TEXT NOT NULL,
        detected_at         TEXT NOT NULL,
        ended_at            TEXT,
        duration_seconds    REAL,
        health_endpoint     TEXT NOT NULL,
        error_message       TEXT,
        http_status_code    INTEGER,
        response_body       TEXT,
        status              TEXT NOT NULL DEFAULT 'ongoing',
        severity            TEXT NOT NULL,
        logs_captured       TEXT,
        logs_file_path      TEXT,
        metrics_snapshot    TEXT,
        environment         TEXT NOT NULL DEFAULT 'production',
        server_info         TEXT,
        notes               TEXT,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL,
        monitor_namespace   TEXT,
        monitor_name        TEXT,
        k8s_name            TEXT,
        failed_checks       INTEGER NOT NULL DEFAULT 0,
        logs_capture_status TEXT,
        logs_capture_due_at TEXT,
        logs_count          INTEGER,
        logs_truncated      INTEGER,
        logs_capture_error  TEXT,
        log_analysis        TEXT,
        CONSTRAINT downtime_incidents_status_check
            CHECK (status IN ('ongoing', 'resolved', 'investigating')),
        CONSTRAINT downtime_incidents_severity_check
            CHECK (severity IN ('low', 'medium', 'high', 'critical')),
        CONSTRAINT downtime_incidents_logs_capture_status_check
            CHECK (logs_capture_status IN ('pending', 'captured', 'failed', 'disabled')),
        CONSTRAINT downtime_incidents_ended_after_start
            CHECK (ended_at IS NULL OR ended_at >= started_at),
        CONSTRAINT downtime_incidents_detected_after_start
            CHECK (detected_at >= started_at),
        CONSTRAINT downtime_incidents_duration_nonnegative
            CHECK (duration_seconds IS NULL OR duration_seconds >= 0),
        CONSTRAINT downtime_incidents_resolved_has_end
            CHECK (status <> 'resolved' OR ended_at IS NOT NULL),
        CONSTRAINT downtime_incidents_failed_checks_nonnegative
            CHECK (failed_checks >= 0),
        CONSTRAINT downtime_incidents_logs_count_nonnegative
            CHECK (logs_count IS NULL OR logs_count >= 0),
        CONSTRAINT downtime_incidents_logs_truncated_boolean
            CHECK (logs_truncated IS NULL OR logs_truncated IN (0, 1))
    )
    """,
    "CREATE INDEX IF NOT EXISTS downtime_incidents_status_idx ON downtime_incidents (status)",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_started_at_idx"
    " ON downtime_incidents (started_at DESC)",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_severity_idx ON downtime_incidents (severity)",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_environment_idx"
    " ON downtime_incidents (environment)",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_monitor_idx"
    " ON downtime_incidents (monitor_namespace, monitor_name, started_at DESC)",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_capture_due_idx"
    " ON downtime_incidents (logs_capture_due_at) WHERE logs_capture_status = 'pending'",
    # At most one open incident per monitor, ever, as in PostgreSQL.
    f"CREATE UNIQUE INDEX IF NOT EXISTS {OPEN_INCIDENT_INDEX}"
    " ON downtime_incidents (monitor_namespace, monitor_name) WHERE status <> 'resolved'",
)

# Log capture (PostgreSQL migration 0002): the plan fixed at detection, what the last capture
# covered and found, and the claim that keeps a capture from running twice.
_V2_CAPTURE_COLUMNS = (
    "logs_query TEXT",
    "logs_before_seconds REAL CHECK (logs_before_seconds >= 0)",
    "logs_after_seconds REAL CHECK (logs_after_seconds >= 0)",
    "logs_max_lines INTEGER CHECK (logs_max_lines BETWEEN 1 AND 10000)",
    "logs_storage TEXT CHECK (logs_storage IN ('auto', 'database', 'file'))",
    "logs_window_start TEXT",
    "logs_window_end TEXT",
    "logs_available INTEGER CHECK (logs_available IS NULL OR logs_available >= 0)",
    "logs_captured_at TEXT",
    "logs_capture_runs INTEGER NOT NULL DEFAULT 0",
    "logs_capture_claimed_until TEXT",
)

_V2 = (
    *(f"ALTER TABLE downtime_incidents ADD COLUMN {column}" for column in _V2_CAPTURE_COLUMNS),
    # The admin API's audit trail (PostgreSQL migration 0003): written before the action, so
    # nothing happens unrecorded; no foreign key, so it outlives retention.
    """
    CREATE TABLE IF NOT EXISTS downtime_audit_log (
        audit_id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at           TEXT NOT NULL,
        key_name     TEXT,
        action       TEXT NOT NULL,
        incident_id  TEXT,
        parameters   TEXT NOT NULL DEFAULT '{}',
        remote_addr  TEXT,
        outcome      TEXT NOT NULL DEFAULT 'pending',
        status_code  INTEGER,
        finished_at  TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS downtime_audit_log_at_idx ON downtime_audit_log (at DESC)",
)

# The notification outbox (PostgreSQL migration 0005). No foreign key, as there: a notification
# may be enqueued before its incident's row is written. The trigger removes an incident's
# notifications with its row, however the row goes (retention, cleanup, by hand).
_V3 = (
    """
    CREATE TABLE IF NOT EXISTS downtime_notifications (
        id               TEXT PRIMARY KEY NOT NULL,
        incident_id      TEXT NOT NULL,
        channel          TEXT NOT NULL,
        event            TEXT NOT NULL,
        sequence         INTEGER NOT NULL,
        state            TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT NOT NULL,
        lease_owner      TEXT,
        lease_until      TEXT,
        last_error       TEXT,
        provider_id      TEXT,
        payload          TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        sent_at          TEXT,
        CONSTRAINT downtime_notifications_state_check
            CHECK (state IN ('pending', 'sent', 'failed')),
        CONSTRAINT downtime_notifications_sequence_positive CHECK (sequence > 0),
        CONSTRAINT downtime_notifications_attempts_nonnegative CHECK (attempts >= 0),
        CONSTRAINT downtime_notifications_once UNIQUE (incident_id, event, channel),
        CONSTRAINT downtime_notifications_order UNIQUE (incident_id, channel, sequence)
    )
    """,
    "CREATE INDEX IF NOT EXISTS downtime_notifications_due_idx"
    " ON downtime_notifications (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS downtime_notifications_delivered_idx"
    " ON downtime_notifications (channel, updated_at DESC) WHERE state <> 'pending'",
    """
    CREATE TRIGGER IF NOT EXISTS downtime_notifications_follow_incidents
    AFTER DELETE ON downtime_incidents
    BEGIN
        DELETE FROM downtime_notifications WHERE incident_id = OLD.incident_id;
    END
    """,
)

# The claim's order in an index (PostgreSQL migration 0006): a claim stops at its limit instead
# of sorting every pending row.
_V4 = (
    "CREATE INDEX IF NOT EXISTS downtime_notifications_claim_idx"
    " ON downtime_notifications (state, next_attempt_at, sequence, id)",
    "DROP INDEX IF EXISTS downtime_notifications_due_idx",
)

# The post-mortem's root cause (PostgreSQL migration 0007); an incident's audit trail is read
# for its report, as PostgreSQL's index allows since migration 0003.
_V5 = (
    "ALTER TABLE downtime_incidents ADD COLUMN root_cause TEXT",
    "CREATE INDEX IF NOT EXISTS downtime_audit_log_incident_idx"
    " ON downtime_audit_log (incident_id, at DESC) WHERE incident_id IS NOT NULL",
)

# The actual maintenance periods of each monitor (PostgreSQL migration 0008), at most one open
# per monitor. Version 6.
_MAINTENANCE = (
    """
    CREATE TABLE IF NOT EXISTS downtime_maintenance_periods (
        period_id         INTEGER PRIMARY KEY AUTOINCREMENT,
        monitor_namespace TEXT NOT NULL,
        monitor_name      TEXT NOT NULL,
        started_at        TEXT NOT NULL,
        ended_at          TEXT,
        reason            TEXT NOT NULL DEFAULT '',
        CONSTRAINT downtime_maintenance_periods_ended_after_start
            CHECK (ended_at IS NULL OR ended_at >= started_at)
    )
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS downtime_maintenance_periods_one_open"
    " ON downtime_maintenance_periods (monitor_namespace, monitor_name) WHERE ended_at IS NULL",
    "CREATE INDEX IF NOT EXISTS downtime_maintenance_periods_started_idx"
    " ON downtime_maintenance_periods (started_at DESC)",
)

# The Kubernetes context of an incident (PostgreSQL migration 0009): JSON text, one object
# per stage. Version 7.
_KUBE_CONTEXT = ("ALTER TABLE downtime_incidents ADD COLUMN kube_context TEXT",)

# The monitor's playbook, the escalations and the Prometheus queries of an incident
# (PostgreSQL migration 0010). Version 8.
_PLAYBOOK_AND_METRICS = (
    "ALTER TABLE downtime_incidents ADD COLUMN playbook TEXT",
    "ALTER TABLE downtime_incidents ADD COLUMN severity_changes TEXT",
    "ALTER TABLE downtime_incidents ADD COLUMN metrics_queries TEXT",
)

# When the Prometheus queries run (PostgreSQL migration 0011). Version 9.
_METRICS_CAPTURE_SCHEDULE = (
    "ALTER TABLE downtime_incidents ADD COLUMN metrics_capture_due_at TEXT",
    "ALTER TABLE downtime_incidents ADD COLUMN metrics_capture_claimed_until TEXT",
    "ALTER TABLE downtime_incidents ADD COLUMN metrics_capture_runs INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS downtime_incidents_metrics_capture_due_idx"
    " ON downtime_incidents (metrics_capture_due_at) WHERE metrics_capture_due_at IS NOT NULL",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1,
    _V2,
    _V3,
    _V4,
    _V5,
    _MAINTENANCE,
    _KUBE_CONTEXT,
    _PLAYBOOK_AND_METRICS,
    _METRICS_CAPTURE_SCHEDULE,
)
"""Statements of schema version 1, 2, ...; append, never edit a released version."""


def apply_schema(conn: sqlite3.Connection) -> int:
    """Bring the file to the newest version; return the version it is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this program"
                f" ({len(MIGRATIONS)}); upgrade downtime-operator"
            )
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")  # an int we counted, not input
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
