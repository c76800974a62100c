"""SQLite adapter: the embedded store of the standalone monitor (incidents, captures, audit)."""

from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.adapters.sqlite.log_captures import SqliteLogCaptures
from downtime_operator.adapters.sqlite.queries import SqliteAuditLog, SqliteIncidentQueries
from downtime_operator.adapters.sqlite.store import SqliteIncidentStore

__all__ = [
    "SqliteAuditLog",
    "SqliteDatabase",
    "SqliteIncidentQueries",
    "SqliteIncidentStore",
    "SqliteLogCaptures",
]
