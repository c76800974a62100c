"""``AuditLog`` on PostgreSQL: the ``downtime_audit_log`` table (migration 0003).

An attempt is inserted before the action runs and its outcome filled in afterwards, so an action
whose outcome write is lost (process killed mid-request) still shows as ``pending`` with who
asked for it, rather than not at all.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.postgres import rows
from downtime_operator.adapters.postgres.queries import store_errors
from downtime_operator.domain.report import AuditedCall
from downtime_operator.services.admin_ports import AuditEntry

_INSERT_SQL = """
INSERT INTO downtime_audit_log (at, key_name, action, incident_id, parameters, remote_addr)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
RETURNING audit_id
"""

_FOR_INCIDENT_SQL = """
SELECT at, key_name, action, parameters::text AS parameters, outcome
FROM downtime_audit_log WHERE incident_id = $1
ORDER BY audit_id
"""

_OUTCOME_SQL = """
UPDATE downtime_audit_log SET outcome = $2, status_code = $3, finished_at = now()
WHERE audit_id = $1
"""


class PostgresAuditLog:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def record_attempt(self, entry: AuditEntry) -> int:
        with store_errors():
            audit_id = await self._pool.fetchval(
                _INSERT_SQL,
                rows.require_aware(entry.at, "at"),
                rows.clean_text(entry.key_name),
                entry.action,
                entry.incident_id,
                rows.to_json_text(dict(entry.parameters)),
                rows.clean_text(entry.remote_addr),
            )
        return int(audit_id)

    async def record_outcome(self, entry_id: int, *, outcome: str, status_code: int) -> None:
        with store_errors():
            await self._pool.execute(_OUTCOME_SQL, entry_id, outcome, status_code)

    async def for_incident(self, incident_id: UUID) -> list[AuditedCall]:
        with store_errors():
            found = await self._pool.fetch(_FOR_INCIDENT_SQL, incident_id)
        return [
            AuditedCall(
                at=r["at"],
                actor=r["key_name"],
                action=r["action"],
                parameters=json.loads(r["parameters"]),
                outcome=r["outcome"],
            )
            for r in found
        ]
