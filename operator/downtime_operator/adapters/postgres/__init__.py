"""PostgreSQL adapter: the incident store and the schema migrations it needs."""

from downtime_operator.adapters.postgres.migrations import apply_migrations, load_migrations
from downtime_operator.adapters.postgres.store import PostgresIncidentStore

__all__ = ["PostgresIncidentStore", "apply_migrations", "load_migrations"]
