"""Every parameter's bad values answer 422 naming the parameter, before anything is done."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from tests.support.api import KEYS, ApiUnderTest, serve_api

AUTH = {"Authorization": f"Bearer {KEYS['ops']}"}
SOME_ID = str(uuid.uuid4())
INCIDENTS = "/admin/downtime/incidents"


@pytest.fixture(scope="module")
async def api(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with serve_api(migrated_dsn) as served:
        yield served


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


BAD_QUERIES = [
    # (path, raw query string, the parameter the error must name)
    (INCIDENTS, "limit=0", "limit"),
    (INCIDENTS, "limit=501", "limit"),
    (INCIDENTS, "limit=abc", "limit"),
    (INCIDENTS, "limit=-1", "limit"),
    (INCIDENTS, "limit=1.5", "limit"),
    (INCIDENTS, "limit=10.0", "limit"),
    (INCIDENTS, "limit=", "limit"),
    (INCIDENTS, "status=down", "status"),
    (INCIDENTS, "status=ONGOING", "status"),
    (INCIDENTS, "severity=urgent", "severity"),
    (INCIDENTS, "environment=", "environment"),
    (INCIDENTS, "environment=prod%00uction", "environment"),
    (INCIDENTS, "monitor=Not_A_Name", "monitor"),
    (INCIDENTS, "namespace=a.b", "namespace"),
    (INCIDENTS, "cursor=not-a-cursor", "cursor"),
    (INCIDENTS, "cursor=%2F%2F", "cursor"),
    (INCIDENTS, "limt=10", "limt"),
    (INCIDENTS, "limit=1&limit=2", "limit"),
    ("/admin/downtime/statistics", "days=0", "days"),
    ("/admin/downtime/statistics", "days=366", "days"),
    ("/admin/downtime/statistics", "days=abc", "days"),
    ("/admin/downtime/statistics", "days=30&period=1", "period"),
    (f"{INCIDENTS}/{SOME_ID}/logs", "level=TRACE", "level"),
    (f"{INCIDENTS}/{SOME_ID}/logs", "level=error", "level"),
    (f"{INCIDENTS}/{SOME_ID}/logs", "search=", "search"),
    (f"{INCIDENTS}/{SOME_ID}/logs", "logger_name=a%0Ab", "logger_name"),
    (f"{INCIDENTS}/ongoing", "status=ongoing", "status"),
]


@pytest.mark.parametrize(("path", "query", "field"), BAD_QUERIES)
async def test_bad_query_parameters_answer_422_naming_them(
    api: ApiUnderTest, http: aiohttp.ClientSession, path: str, query: str, field: str
) -> None:
    async with http.get(f"{api.url(path)}?{query}") as response:
        assert response.status == 422
        body = await response.json()
    assert body["status"] == "error"
    assert field in [e["field"] for e in body["errors"]], body
    assert all(e["message"] for e in body["errors"])


BAD_IDS = ["not-a-uuid", "1234", SOME_ID.replace("-", ""), f"{{{SOME_ID}}}", SOME_ID + "0"]
ID_ROUTES = [
    ("GET", "{id}"),
    ("GET", "{id}/logs"),
    ("GET", "{id}/analysis"),
    ("POST", "{id}/capture-logs"),
    ("POST", "{id}/resolve"),
    ("POST", "{id}/acknowledge"),
    ("PATCH", "{id}"),
    ("GET", "{id}/report"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(("method", "route"), ID_ROUTES)
async def test_malformed_incident_ids_answer_422(
    api: ApiUnderTest, http: aiohttp.ClientSession, method: str, route: str, bad_id: str
) -> None:
    url = api.url(f"{INCIDENTS}/{route.format(id=bad_id)}")
    async with http.request(method, url) as response:
        assert response.status == 422
        body = await response.json()
    assert [e["field"] for e in body["errors"]] == ["incident_id"]


@pytest.mark.parametrize(
    "notes",
    ["x" * 4001, "bell\x07", "nul\x00"],
    ids=["too-long", "control-character", "nul"],
)
async def test_bad_notes_answer_422(
    api: ApiUnderTest, http: aiohttp.ClientSession, notes: str
) -> None:
    async with http.post(
        api.url(f"{INCIDENTS}/{SOME_ID}/resolve"), params={"notes": notes}
    ) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["notes"]


async def test_several_bad_parameters_are_all_named(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    async with http.get(api.url(f"{INCIDENTS}?limit=0&status=down&severity=x")) as response:
        body = await response.json()
    assert response.status == 422
    assert sorted(e["field"] for e in body["errors"]) == ["limit", "severity", "status"]


async def test_unknown_paths_and_methods_answer_in_the_envelope(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    async with http.get(api.url("/admin/downtime/nothing-here")) as response:
        assert (response.status, (await response.json())["status"]) == (404, "error")
    async with http.delete(api.url(INCIDENTS)) as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["status"] == "error"
