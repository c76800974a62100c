"""The SLA report of a month with known incidents and maintenance equals a hand-computed
fixture, as JSON and as CSV (issue 15, acceptance 5).

October 2026 has 31 days, 2,678,400 s. Now is 2026-11-29, so the whole month is judged.

    shop/api  objective 99.9, created 2026-09-01
      incident 09-30 23:50 .. 10-01 00:10   600 s in October (clipped at its start)
      incident 10-05 10:00 .. 10-05 10:30   1,800 s
      incident 10-20 23:50 .. 10-21 00:20   1,800 s, of which 1,200 s in maintenance
      maintenance 10-21 00:00 .. 10-21 02:00   7,200 s excluded
      judged 2,678,400 - 7,200 = 2,671,200 s; down 600 + 1,800 + 600 = 3,000 s
      availability 1 - 3,000 / 2,671,200 = 99.887691 %
      budget 0.1 % of 2,671,200 = 2,671.2 s; left 2,671.2 - 3,000 = -328.8 s
      (-12.309075 %): breached
    shop/web  objective 99, created 2026-10-16 00:00 (judged on 16 days, 1,382,400 s)
      incident 10-10 00:00 .. 01:00: an earlier monitor of that name, not counted
      incident 10-25 12:00 .. 12:10   600 s
      availability 1 - 600 / 1,382,400 = 99.956597 %
      budget 1 % of 1,382,400 = 13,824 s; left 13,224 s (95.659722 %): met
    shop/db   no objective: not in the report
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from tests.support.api import KEYS, ApiUnderTest, clear, insert_incident, serve_api

from downtime_operator.adapters.postgres.maintenance import PostgresMaintenanceLedger
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.sla_report import monitor_objective

GOLDEN = Path(__file__).parent / "golden"
API = MonitorRef(namespace="shop", name="api")
WEB = MonitorRef(namespace="shop", name="web")
AUTH = {"Authorization": f"Bearer {KEYS['ops']}"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=UTC)


OBJECTIVES = {
    API: monitor_objective({"slo": {"objective": "99.9"}}, created_at=at("09-01T00:00")),
    WEB: monitor_objective(
        {"slo": {"objective": "99", "window": "7d"}}, created_at=at("10-16T00:00")
    ),
}


@pytest.fixture(scope="module")
async def api(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    objectives = {ref: found for ref, found in OBJECTIVES.items() if found is not None}
    async with serve_api(migrated_dsn, objectives=objectives) as served:
        await clear(served.pool)
        served.clock.pinned = at("11-29T12:00")
        pool = served.pool
        for name, start, end in (
            ("api", "09-30T23:50", "10-01T00:10"),
            ("api", "10-05T10:00", "10-05T10:30"),
            ("api", "10-20T23:50", "10-21T00:20"),
            ("web", "10-10T00:00", "10-10T01:00"),
            ("web", "10-25T12:00", "10-25T12:10"),
            ("db", "10-03T00:00", "10-03T05:00"),
        ):
            await insert_incident(
                pool, name=name, namespace="shop", started_at=at(start), ended_at=at(end)
            )
        ledger = PostgresMaintenanceLedger(pool)
        await ledger.open_maintenance(monitor=API, at=at("10-21T00:00"), reason="upgrade")
        await ledger.close_maintenance(monitor=API, at=at("10-21T02:00"))
        yield served


async def get(api: ApiUnderTest, query: str, accept: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            api.url(f"/admin/downtime/slo?{query}"), headers={**AUTH, "Accept": accept}
        ) as response,
    ):
        return response.status, response.content_type, await response.text()


async def test_the_report_equals_the_hand_computed_json(api: ApiUnderTest) -> None:
    status, content_type, body = await get(api, "month=2026-10", "application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == json.loads((GOLDEN / "sla_2026_10.json").read_text())


async def test_the_report_equals_the_hand_computed_csv(api: ApiUnderTest) -> None:
    status, content_type, body = await get(api, "month=2026-10", "text/csv")
    assert (status, content_type) == (200, "text/csv")
    assert body == (GOLDEN / "sla_2026_10.csv").read_text()


async def test_one_monitor(api: ApiUnderTest) -> None:
    status, _, body = await get(api, "month=2026-10&monitor=shop/web", "application/json")
    expected = json.loads((GOLDEN / "sla_2026_10.json").read_text())["monitors"][1]
    assert (status, json.loads(body)["monitors"]) == (200, [expected])


async def test_the_current_month_is_judged_up_to_now(api: ApiUnderTest) -> None:
    status, _, body = await get(api, "month=2026-11", "application/json")
    report = json.loads(body)
    assert status == 200
    assert report["period_end"] == "2026-11-29T12:00:00Z"
    assert [m["availability_percent"] for m in report["monitors"]] == [100.0, 100.0]


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        ("month=2026-12", 404, "has not begun"),
        ("month=2026-13", 422, "month"),
        ("month=2026-10&monitor=shop/db", 404, "has no spec.slo"),
        ("month=2026-10&monitor=nobody", 422, "monitor"),
        ("", 422, "month"),
    ],
)
async def test_refusals(api: ApiUnderTest, query: str, code: int, text: str) -> None:
    status, _, body = await get(api, query, "application/json")
    assert status == code and text in body


async def post_maintenance(api: ApiUnderTest, body: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url("/admin/downtime/maintenance"), json=body, headers=AUTH) as response,
    ):
        return response.status, await response.json()


async def test_ad_hoc_maintenance_creates_a_one_off_window_and_is_audited(
    api: ApiUnderTest,
) -> None:
    status, body = await post_maintenance(
        api,
        {"namespace": "shop", "monitors": ["api"], "duration": "30m", "reason": "hotfix"},
    )
    assert status == 201, body
    assert (body["start"], body["end"]) == ("2026-11-29T12:00:00Z", "2026-11-29T12:30:00Z")
    [(namespace, name, spec)] = api.maintenance.windows
    assert (namespace, name) == ("shop", body["name"])
    assert spec == {
        "monitors": ["api"],
        "start": "2026-11-29T12:00:00Z",
        "end": "2026-11-29T12:30:00Z",
        "reason": "hotfix (ops)",
    }
    audited = await api.pool.fetchval(
        "SELECT count(*) FROM downtime_audit_log WHERE action = 'startMaintenance'"
    )
    assert audited >= 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"namespace": "shop", "duration": "30m", "reason": "x"}, "body"),
        (
            {
                "namespace": "shop",
                "monitors": ["api"],
                "selector": {"team": "a"},
                "duration": "30m",
                "reason": "x",
            },
            "body",
        ),
        ({"namespace": "shop", "monitors": ["api"], "duration": "30s", "reason": "x"}, "duration"),
        ({"namespace": "shop", "monitors": ["api"], "duration": "half", "reason": "x"}, "duration"),
        ({"namespace": "Shop", "monitors": ["api"], "duration": "1h", "reason": "x"}, "namespace"),
        ({"namespace": "shop", "monitors": ["api"], "duration": "1h", "reason": " "}, "reason"),
        ({"namespace": "shop", "monitors": [], "duration": "1h", "reason": "x"}, "monitors"),
    ],
)
async def test_ad_hoc_maintenance_refusals(
    api: ApiUnderTest, body: dict[str, object], field: str
) -> None:
    status, answer = await post_maintenance(api, body)
    assert status == 422, answer
    assert field in [e["field"] for e in answer["errors"]], answer  # type: ignore[union-attr]
