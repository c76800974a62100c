"""SQLite adapter: the embedded incident store of the standalone monitor."""

from downtime_operator.adapters.sqlite.store import SqliteIncidentStore

__all__ = ["SqliteIncidentStore"]
