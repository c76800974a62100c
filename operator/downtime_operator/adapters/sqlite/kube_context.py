"""``KubeContextStore`` in SQLite: the incident's ``kube_context`` column (``schema``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from downtime_operator.adapters.postgres.rows import to_json_text
from downtime_operator.adapters.sqlite.columns import timestamp
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.domain.kube_context import ContextStage


class SqliteKubeContexts:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def record_kube_context(
        self, incident_id: UUID, *, stage: ContextStage, snapshot: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        def record(conn: sqlite3.Connection) -> dict[str, Any] | None:
            # Read and written in one write transaction: the other stage is kept as stored.
            with self._db.write():
                row = conn.execute(
                    "SELECT kube_context FROM downtime_incidents WHERE incident_id = ?",
                    (str(incident_id),),
                ).fetchone()
                if row is None:
                    return None
                stored: dict[str, Any] = json.loads(row[0]) if row[0] else {}
                stored[stage.value] = dict(snapshot)
                conn.execute(
                    "UPDATE downtime_incidents SET kube_context = ?, updated_at = ?"
                    " WHERE incident_id = ?",
                    (
                        to_json_text(stored),
                        timestamp(datetime.now(UTC), "now"),
                        str(incident_id),
                    ),
                )
                return stored

        return await self._db.run(record, self._db.conn)
