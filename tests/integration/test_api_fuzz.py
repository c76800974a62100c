"""Schema-driven fuzzing of every route with schemathesis, against the served OpenAPI document.

Valid and invalid inputs are generated from the document for each operation and sent over a
real port to the API on a real PostgreSQL; every response is checked against the document
(status code, content type, headers, body schema), invalid input must be refused with a 4xx,
and no request may cause a 5xx. The document itself is checked against the routes.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests
from tests.support.api import KEYS, ApiUnderTest, ThreadedApi, clear, insert_incident

from downtime_operator.api.routes import OPERATIONS
from downtime_operator.domain.models import IncidentStatus

MAX_EXAMPLES = 60
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LINES = [
    {"timestamp": "2026-03-10T12:00:01Z", "level": "ERROR", "logger": "db", "message": "boom"},
    {"timestamp": "2026-03-10T12:00:02Z", "level": "INFO", "logger": "http", "message": "ok"},
]


async def _seed(api: ApiUnderTest) -> list[UUID]:
    await clear(api.pool)
    ids = []
    for n, status in enumerate(
        [IncidentStatus.ONGOING, IncidentStatus.INVESTIGATING, IncidentStatus.RESOLVED]
    ):
        started = T0 + timedelta(hours=n)
        incident = await insert_incident(
            api.pool,
            name=f"fuzz-{n}",
            started_at=started,
            status=status,
            ended_at=started + timedelta(minutes=5) if status is IncidentStatus.RESOLVED else None,
        )
        api.logs.entries[incident.incident_id] = list(LINES)
        ids.append(incident.incident_id)
    return ids


@pytest.fixture(scope="module")
def served_document(migrated_dsn: str) -> Iterator[tuple[str, dict[str, Any], list[UUID]]]:
    server = ThreadedApi(migrated_dsn)
    with server as api:
        ids = server.run(_seed)
        response = requests.get(api.url("/admin/downtime/openapi.json"), timeout=10)
        response.raise_for_status()
        yield api.base_url, response.json(), ids


def test_fuzz_every_route(
    served_document: tuple[str, dict[str, Any], list[UUID]], tmp_path: Path
) -> None:
    base_url, document, ids = served_document
    # Point the explicit-examples phase at incidents that exist, so the success paths of the
    # incident routes are exercised too, not only their 404s.
    with_examples = copy.deepcopy(document)
    for path_item in with_examples["paths"].values():
        for operation in path_item.values():
            for parameter in operation["parameters"]:
                if parameter["name"] == "incident_id":
                    parameter["examples"] = {
                        f"seeded{n}": {"value": str(i)} for n, i in enumerate(ids)
                    }
    location = tmp_path / "openapi.json"
    location.write_text(json.dumps(with_examples))
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(location),
        f"--url={base_url}",
        f"--header=Authorization: Bearer {KEYS['ops']}",
        "--checks=all",
        "--mode=all",
        f"--max-examples={MAX_EXAMPLES}",
        "--seed=20261127",
        "--workers=2",
        "--request-timeout=30",
        "--suppress-health-check=all",
        f"--report-dir={tmp_path / 'report'}",
        "--report=junit",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-4000:]


def test_the_document_matches_the_routes(
    served_document: tuple[str, dict[str, Any], list[UUID]],
) -> None:
    _, document, _ = served_document
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert documented == {(op.method, op.path) for op in OPERATIONS}
    listing = document["paths"]["/admin/downtime/incidents"]["get"]
    assert [p["name"] for p in listing["parameters"]] == [
        "limit",
        "status",
        "severity",
        "environment",
        "monitor",
        "namespace",
        "cursor",
    ]
    limit = listing["parameters"][0]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 500, 50)
    assert set(listing["responses"]) == {"200", "401", "403", "422", "429", "503"}
    resolve = document["paths"]["/admin/downtime/incidents/{incident_id}/resolve"]["post"]
    assert set(resolve["responses"]) == {"200", "401", "403", "404", "409", "422", "429", "503"}
    assert document["paths"]["/healthz"]["get"]["security"] == []
