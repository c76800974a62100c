"""Keys, timing, rate limits, the address allowlist and the audit log, over a real port."""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import aiohttp
import pytest
from tests.support.api import KEYS, ApiUnderTest, clear, insert_incident, serve_api

from downtime_operator.api import RateLimit

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
INCIDENTS = "/admin/downtime/incidents"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def served(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with serve_api(migrated_dsn) as api:
        yield api


@pytest.fixture
async def api(served: ApiUnderTest) -> ApiUnderTest:
    await clear(served.pool)
    return served


# -- Authentication ----------------------------------------------------------------------------

SAME_LENGTH_WRONG = "x" * len(KEYS["ops"])
REFUSED = {
    "no header": {},
    "wrong key": bearer("wrong"),
    "right length, wrong content": bearer(SAME_LENGTH_WRONG),
    "one character off": bearer(KEYS["ops"][:-1] + "X"),
    "basic scheme": {"Authorization": f"Basic {KEYS['ops']}"},
    "empty bearer": {"Authorization": "Bearer "},
    "key without scheme": {"Authorization": KEYS["ops"]},
}


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_requests_without_a_valid_key_get_401(
    api: ApiUnderTest, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:
        for method, path in (("GET", INCIDENTS), ("POST", f"{INCIDENTS}/{uuid.uuid4()}/resolve")):
            async with session.request(method, api.url(path)) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert await response.json() == {
                    "status": "error",
                    "message": "missing or invalid API key",
                }


async def test_every_configured_key_is_accepted(api: ApiUnderTest) -> None:
    for key in KEYS.values():
        async with (
            aiohttp.ClientSession(headers=bearer(key)) as session,
            session.get(api.url(INCIDENTS)) as response,
        ):
            assert response.status == 200


async def test_refusals_take_the_same_time_whatever_was_presented(api: ApiUnderTest) -> None:
    """No key, a wrong key, and a right-length wrong key: indistinguishable by latency.

    Interleaved so that machine noise hits all three alike; medians over many requests.
    """
    kinds = {
        "none": {},
        "wrong": bearer("wrong"),
        "same length": bearer(SAME_LENGTH_WRONG),
    }
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    url = api.url(INCIDENTS)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            for name, headers in kinds.items():
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    await response.read()
                samples[name].append(time.perf_counter() - started)
                assert response.status == 401
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print({name: f"{m * 1e6:.0f}us" for name, m in medians.items()})
    assert max(medians.values()) / min(medians.values()) < 1.25, medians


# -- Rate limits -------------------------------------------------------------------------------


class FrozenMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_over_the_key_limit_gets_429_and_other_keys_do_not(
    migrated_dsn: str,
) -> None:
    clock = FrozenMonotonic()
    async with serve_api(
        migrated_dsn,
        key_limit=RateLimit(rate=0.25, burst=5),
        address_limit=RateLimit(rate=100.0, burst=100),
        monotonic=clock,
    ) as api:
        statuses = []
        async with aiohttp.ClientSession(headers=bearer(KEYS["ops"])) as ops:
            for _ in range(8):
                async with ops.get(api.url(INCIDENTS)) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert response.headers["Retry-After"] == "4"  # 1 token at 0.25/s
                        body = await response.json()
                        assert body == {
                            "status": "error",
                            "message": "rate limit exceeded for this API key",
                        }
            assert statuses == [200] * 5 + [429] * 3

            async with (
                aiohttp.ClientSession(headers=bearer(KEYS["ci"])) as ci,
                ci.get(api.url(INCIDENTS)) as response,
            ):
                assert response.status == 200  # the other key is unaffected

            clock.now += 4.0  # what Retry-After said
            async with ops.get(api.url(INCIDENTS)) as response:
                assert response.status == 200


async def test_the_per_address_limit_covers_unauthenticated_guessing(migrated_dsn: str) -> None:
    clock = FrozenMonotonic()
    async with serve_api(
        migrated_dsn,
        key_limit=RateLimit(rate=100.0, burst=100),
        address_limit=RateLimit(rate=1.0, burst=3),
        monotonic=clock,
    ) as api:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for n in range(5):
                headers = bearer(f"guess-{n}")
                async with session.get(api.url(INCIDENTS), headers=headers) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert response.headers["Retry-After"] == "1"
            # Probes stay outside the limits: kubelet must always get an answer.
            async with session.get(api.url("/healthz")) as response:
                assert response.status == 200
        assert statuses == [401, 401, 401, 429, 429]


# -- Address allowlist -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("networks", "expected"),
    [(["10.0.0.0/8"], 403), (["10.0.0.0/8", "127.0.0.0/8"], 200), (["::1/128"], 403)],
)
async def test_the_address_allowlist(migrated_dsn: str, networks: list[str], expected: int) -> None:
    async with (
        serve_api(migrated_dsn, allowed_networks=[ip_network(n) for n in networks]) as api,
        aiohttp.ClientSession(headers=bearer(KEYS["ops"])) as session,
    ):
        async with session.get(api.url(INCIDENTS)) as response:
            assert response.status == expected
        async with session.get(api.url("/admin/downtime/openapi.json")) as response:
            assert response.status == 200


async def test_behind_a_trusted_proxy_the_forwarded_client_is_the_client(
    migrated_dsn: str,
) -> None:
    """Behind an ingress (API_TRUSTED_PROXIES) the allowlist, the per-address limit and the
    audit trail see the client; a client that is not behind it cannot claim an address."""
    clients = [ip_network("203.0.113.0/24")]
    loopback = [ip_network("127.0.0.1/32")]

    def via(client: str) -> dict[str, str]:
        return {**bearer(KEYS["ops"]), "X-Forwarded-For": f"198.51.100.9, {client}"}

    async with (
        serve_api(
            migrated_dsn,
            allowed_networks=clients,
            trusted_proxies=loopback,
            address_limit=RateLimit(rate=0.001, burst=2),
        ) as api,
        aiohttp.ClientSession() as session,
    ):
        statuses = []
        for client in ("203.0.113.7", "203.0.113.7", "203.0.113.7", "203.0.113.8", "10.9.9.9"):
            async with session.get(api.url(INCIDENTS), headers=via(client)) as response:
                statuses.append(response.status)
        # Two for .7, then its own limit; .8 has its own bucket; 10.9.9.9 is not allowed.
        assert statuses == [200, 200, 429, 200, 403]
        async with session.post(
            api.url(f"{INCIDENTS}/{uuid.uuid4()}/resolve"), headers=via("203.0.113.9")
        ) as response:
            assert response.status == 404
        remote = await api.pool.fetchval(
            "SELECT remote_addr FROM downtime_audit_log ORDER BY audit_id DESC LIMIT 1"
        )
        assert remote == "203.0.113.9"

    async with (
        serve_api(migrated_dsn, allowed_networks=clients) as untrusting,
        aiohttp.ClientSession() as session,
        session.get(untrusting.url(INCIDENTS), headers=via("203.0.113.7")) as response,
    ):
        assert response.status == 403  # the header alone proves nothing


# -- Audit -------------------------------------------------------------------------------------


async def test_every_post_is_audited_with_the_key_name_never_the_key(
    api: ApiUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    incident = await insert_incident(api.pool, started_at=T0)
    api.logs.entries[incident.incident_id] = []
    iid = incident.incident_id
    unknown = uuid.uuid4()
    calls = [
        (KEYS["ops"], f"{INCIDENTS}/{iid}/acknowledge", {"notes": "looking"}, 200),
        (KEYS["ci"], f"{INCIDENTS}/{iid}/capture-logs", {}, 202),
        (KEYS["ops"], f"{INCIDENTS}/{iid}/resolve", {"notes": "fixed"}, 200),
        (KEYS["ops"], f"{INCIDENTS}/{iid}/resolve", {}, 409),
        (KEYS["ci"], f"{INCIDENTS}/{unknown}/acknowledge", {}, 404),
        (KEYS["ops"], f"{INCIDENTS}/not-a-uuid/resolve", {}, 422),
        ("not-the-key", f"{INCIDENTS}/{iid}/resolve", {"notes": "sneaky"}, 401),
    ]
    async with aiohttp.ClientSession() as session:
        async with session.get(api.url(INCIDENTS), headers=bearer(KEYS["ops"])) as response:
            assert response.status == 200  # reads are not audited
        for key, path, params, status in calls:
            async with session.post(api.url(path), params=params, headers=bearer(key)) as response:
                assert response.status == status, await response.text()

    audit = await api.pool.fetch(
        "SELECT key_name, action, incident_id, parameters::text AS parameters, remote_addr,"
        " outcome, status_code, at, finished_at FROM downtime_audit_log ORDER BY audit_id"
    )
    assert [
        (r["key_name"], r["action"], r["incident_id"], r["outcome"], r["status_code"])
        for r in audit
    ] == [
        ("ops", "acknowledgeIncident", iid, "success", 200),
        ("ci", "captureIncidentLogs", iid, "success", 202),
        ("ops", "resolveIncident", iid, "success", 200),
        ("ops", "resolveIncident", iid, "conflict", 409),
        ("ci", "acknowledgeIncident", unknown, "not_found", 404),
        ("ops", "resolveIncident", None, "invalid", 422),
        (None, "resolveIncident", iid, "unauthorized", 401),
    ]
    assert audit[0]["parameters"] == '{"notes": "looking"}'
    assert all(r["remote_addr"] == "127.0.0.1" for r in audit)
    assert all(r["finished_at"] >= r["at"] - timedelta(seconds=1) for r in audit)

    everything = "\n".join(
        [r["t"] for r in await api.pool.fetch("SELECT t::text AS t FROM downtime_audit_log t")]
        + [record.getMessage() for record in caplog.records]
    )
    for key in KEYS.values():
        assert key not in everything
