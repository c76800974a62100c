"""``KubeContextStore`` in PostgreSQL: the incident's ``kube_context`` column (migration 0009)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.postgres.rows import to_json_text
from downtime_operator.domain.kube_context import ContextStage

# One statement: the stage is set inside the stored object, so the detection and resolution
# snapshots, written by separate events, never overwrite each other.
_RECORD_SQL = """
UPDATE downtime_incidents
SET kube_context = jsonb_set(COALESCE(kube_context, '{}'::jsonb), ARRAY[$2::text],
                             $3::text::jsonb),
    updated_at = now()
WHERE incident_id = $1
RETURNING kube_context::text AS kube_context
"""


class PostgresKubeContexts:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def record_kube_context(
        self, incident_id: UUID, *, stage: ContextStage, snapshot: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        stored = await self._pool.fetchval(
            _RECORD_SQL, incident_id, stage.value, to_json_text(dict(snapshot))
        )
        return None if stored is None else dict(json.loads(stored))
