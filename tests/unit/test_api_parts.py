"""The admin API's parts without a server: keys, token buckets, cursors, settings, the service."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from downtime_operator.adapters.postgres.queries import SPAN_LEVELS, day_spans
from downtime_operator.api.auth import KeyRing
from downtime_operator.api.coalesce import SingleFlight
from downtime_operator.api.guard import client_address
from downtime_operator.api.negotiation import prefers
from downtime_operator.api.ratelimit import RateLimit, TokenBuckets, retry_after_header
from downtime_operator.api.schemas import ListQuery, decode_cursor, encode_cursor
from downtime_operator.assembly import resource_pipeline
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.services.admin_ports import IncidentAlreadyResolvedError, PageCursor
from downtime_operator.services.incident_admin import IncidentAdmin, IncidentNotFoundError
from downtime_operator.settings import ApiSettings, SettingsError, load_settings
from tests.unit.fakes import FakeClock, RecordingResources

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEYS = {"ops": "ops-key-0123456789abcdef", "ci": "ci-key-fedcba9876543210"}

# -- Keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {KEYS['ops']}", "ops"),
        (f"bearer {KEYS['ci']}", "ci"),
        (f"Bearer  {KEYS['ci']} ", "ci"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        (f"Basic {KEYS['ops']}", None),
        (KEYS["ops"], None),
        (f"Bearer {KEYS['ops']}x", None),
        (f"Bearer {KEYS['ops'][:-1]}", None),
    ],
)
def test_the_key_ring_names_the_key(header: str | None, expected: str | None) -> None:
    assert KeyRing(KEYS).identify(header) == expected


def test_an_empty_key_ring_accepts_nothing() -> None:
    ring = KeyRing({})
    assert not ring
    assert ring.identify("Bearer ") is None
    assert ring.identify("Bearer anything-at-all-really") is None


def test_identify_costs_the_same_for_any_wrong_key() -> None:
    """Digests first, then every key compared: no length or prefix leaks through timing."""
    ring = KeyRing({f"k{n}": f"key-{n:04d}-0123456789abcdef" for n in range(8)})
    presented = {
        "none": None,
        "short": "Bearer x",
        "same length": "Bearer " + "y" * len("key-0000-0123456789abcdef"),
        "right prefix": "Bearer key-0007-0123456789abcdeX",
    }
    samples: dict[str, list[float]] = {name: [] for name in presented}
    for _ in range(200):
        for name, header in presented.items():
            started = time.perf_counter_ns()
            for _ in range(20):
                ring.identify(header)
            samples[name].append(time.perf_counter_ns() - started)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    assert max(medians.values()) / min(medians.values()) < 1.3, medians


# -- Token buckets -----------------------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    ticks = Ticks()
    buckets = TokenBuckets(limit=RateLimit(rate=2.0, burst=3), clock=ticks)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") is None  # clients are independent
    ticks.now += 0.5
    assert buckets.take("a") is None
    assert buckets.take("a") == pytest.approx(0.5)
    ticks.now += 100
    assert [buckets.take("a") for _ in range(4)][-1] is not None  # refills to burst, no more


def test_buckets_are_bounded_in_number() -> None:
    buckets = TokenBuckets(limit=RateLimit(rate=1.0, burst=1), clock=Ticks(), max_clients=3)
    for client in "abcd":
        assert buckets.take(client) is None
    # "a" was dropped as least recently used, so it comes back with a full bucket.
    assert buckets.take("a") is None
    assert buckets.take("d") is not None


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (4.0, "4")])
def test_retry_after_rounds_up_to_whole_seconds(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header


def test_a_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimit(rate=1, burst=0)


# -- Cursors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "started_at",
    [T0, T0 + timedelta(microseconds=123_456), datetime(1969, 12, 31, 23, 59, tzinfo=UTC)],
)
def test_cursors_round_trip_exactly(started_at: datetime) -> None:
    cursor = PageCursor(started_at=started_at, incident_id=uuid.uuid4())
    text = encode_cursor(cursor)
    assert decode_cursor(text) == cursor
    assert ListQuery.model_validate({"cursor": text}).page_cursor() == cursor


@pytest.mark.parametrize("text", ["", "abc", "12_xyz", "12" + "_" + "0" * 31, "1.5_" + "0" * 32])
def test_malformed_cursors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(text)


# -- Settings ----------------------------------------------------------------------------------


def test_api_settings_defaults() -> None:
    settings = load_settings(ApiSettings, {})
    assert (settings.port, settings.host, settings.keys, settings.serve) == (
        8080,
        "0.0.0.0",
        {},
        False,
    )


def test_keys_from_the_environment_and_a_mounted_secret(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "ci").write_text("ci-key-fedcba9876543210\n")
    (secret / "..data").mkdir()  # the kubelet's bookkeeping in a Secret volume
    settings = load_settings(
        ApiSettings,
        {
            "ADMIN_API_KEYS": " ops=ops-key-0123456789abcdef , old=old-key-0123456789abc== ",
            "ADMIN_API_KEYS_FILE": str(secret),
            "API_PORT": "9090",
            "API_ALLOWED_CIDRS": "10.0.0.0/8, 127.0.0.1/32",
            "API_RATE_LIMIT_PER_KEY": "2.5",
        },
    )
    assert {n: k.get_secret_value() for n, k in settings.keys.items()} == {
        "ops": "ops-key-0123456789abcdef",
        "old": "old-key-0123456789abc==",
        "ci": "ci-key-fedcba9876543210",
    }
    assert settings.serve and settings.port == 9090 and settings.key_rate == 2.5
    assert [str(n) for n in settings.allowed_cidrs] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert "ops-key" not in repr(settings)  # keys are secrets, also in reprs and tracebacks


def test_keys_from_a_file_of_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        "# rotation in progress\nnew=new-key-0123456789abcdef\n\nold=old-key-0123456789\n"
    )
    assert sorted(load_settings(ApiSettings, {"ADMIN_API_KEYS_FILE": str(path)}).keys) == [
        "new",
        "old",
    ]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ADMIN_API_KEYS": "ops"}, "ADMIN_API_KEYS"),
        ({"ADMIN_API_KEYS": "ops=short"}, "ADMIN_API_KEYS"),
        ({"ADMIN_API_KEYS": "bad name=ops-key-0123456789abcdef"}, "ADMIN_API_KEYS"),
        ({"ADMIN_API_KEYS": "a=ops-key-0123456789abcdef,a=ops-key-0123456789abcdeX"}, "ADMIN"),
        ({"ADMIN_API_KEYS": "a=ops-key-0123456789abcdef,b=ops-key-0123456789abcdef"}, "ADMIN"),
        ({"ADMIN_API_KEYS_FILE": "/nonexistent/keys"}, "ADMIN_API_KEYS_FILE"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"API_ALLOWED_CIDRS": "10.0.0.1/8"}, "API_ALLOWED_CIDRS"),
        ({"API_RATE_BURST_PER_KEY": "0"}, "API_RATE_BURST_PER_KEY"),
        ({"API_ENABLED": "maybe"}, "API_ENABLED"),
    ],
)
def test_bad_api_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(ApiSettings, env)
    assert variable in str(caught.value)
    assert "0123456789abcdef" not in str(caught.value)  # a key is never echoed


# -- Content negotiation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/markdown, application/json", False),
        ("text/markdown;q=0.5, application/json", True),
        ("application/json;q=0, */*", False),
        ("text/*;q=0.9, application/*", True),
        ("text/html", False),
        ("application/json;q=abc", False),
    ],
)
def test_json_only_when_the_client_prefers_it(accept: str | None, json: bool) -> None:
    assert prefers(accept, offered="application/json", default="text/markdown") is json


# -- The service -------------------------------------------------------------------------------


def incident(**changes: object) -> Incident:
    base = Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace="default", name="api"),
        k8s_name="api-20260310-120000",
        health_endpoint="http://api/health",
        environment="production",
        started_at=T0,
        detected_at=T0,
        severity=Severity.HIGH,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class ScriptedTransitions:
    def __init__(self, stored: Incident | None) -> None:
        self.stored = stored
        self.annotations: list[tuple[str | None, str | None]] = []

    async def resolve_open_incident(
        self, incident_id: uuid.UUID, *, ended_at: datetime, notes: str | None
    ) -> Incident | None:
        if self.stored is None:
            return None
        if self.stored.status is IncidentStatus.RESOLVED:
            raise IncidentAlreadyResolvedError(self.stored)
        self.stored = dataclasses.replace(
            self.stored,
            status=IncidentStatus.RESOLVED,
            ended_at=ended_at,
            duration_seconds=(ended_at - self.stored.started_at).total_seconds(),
            notes=notes,
        )
        return self.stored

    async def acknowledge_open_incident(
        self, incident_id: uuid.UUID, *, notes: str | None
    ) -> Incident | None:
        if self.stored is None:
            return None
        if self.stored.status is IncidentStatus.RESOLVED:
            raise IncidentAlreadyResolvedError(self.stored)
        self.stored = dataclasses.replace(self.stored, status=IncidentStatus.INVESTIGATING)
        return self.stored

    async def annotate_incident(
        self, incident_id: uuid.UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None:
        if self.stored is None:
            return None
        self.annotations.append((root_cause, note))
        self.stored = dataclasses.replace(self.stored, root_cause=root_cause or "kept")
        return self.stored


def make_admin(stored: Incident | None) -> tuple[IncidentAdmin, RecordingResources]:
    resources = RecordingResources()
    admin = IncidentAdmin(
        transitions=ScriptedTransitions(stored),
        clock=FakeClock(T0 + timedelta(minutes=5)),
        events=resource_pipeline(resources),
    )
    return admin, resources


async def test_resolve_mirrors_to_the_resource_and_posts_an_event() -> None:
    admin, resources = make_admin(incident())
    admin.start()
    resolved = await admin.resolve(uuid.uuid4(), notes="done", actor="ops")
    await admin.close()
    assert resolved.duration_seconds == 300.0
    assert resources.incidents["api-20260310-120000"].status is IncidentStatus.RESOLVED
    assert resources.events == [
        (
            "IncidentResolvedManually",
            "Incident api-20260310-120000 resolved by ops after 300s: done",
        )
    ]


async def test_rows_without_a_resource_are_resolved_in_the_store_only() -> None:
    admin, resources = make_admin(incident(k8s_name="", monitor=MonitorRef(namespace="", name="")))
    admin.start()
    await admin.acknowledge(uuid.uuid4(), notes=None, actor="ops")
    await admin.close()
    assert resources.incidents == {} and resources.events == []


async def test_a_note_is_signed_and_the_root_cause_mirrored_without_an_event() -> None:
    transitions = ScriptedTransitions(incident(status=IncidentStatus.RESOLVED, ended_at=T0))
    resources = RecordingResources()
    admin = IncidentAdmin(
        transitions=transitions,
        clock=FakeClock(T0 + timedelta(minutes=5)),
        events=resource_pipeline(resources),
    )
    admin.start()
    annotated = await admin.annotate(
        uuid.uuid4(), root_cause="disk full", note="freed 20 GiB", actor="ops"
    )
    await admin.close()
    assert transitions.annotations == [("disk full", "[2026-03-10T12:05:00Z ops] freed 20 GiB")]
    assert annotated.root_cause == "disk full"
    assert resources.incidents["api-20260310-120000"].root_cause == "disk full"
    assert resources.events == []  # a post-mortem edit is no news for the monitor's Events
    admin, _ = make_admin(None)
    with pytest.raises(IncidentNotFoundError):
        await admin.annotate(uuid.uuid4(), root_cause=None, note="x", actor="ops")


async def test_unknown_and_resolved_incidents_are_reported() -> None:
    admin, _ = make_admin(None)
    with pytest.raises(IncidentNotFoundError):
        await admin.resolve(uuid.uuid4(), notes=None, actor="ops")
    admin, _ = make_admin(incident(status=IncidentStatus.RESOLVED, ended_at=T0))
    with pytest.raises(IncidentAlreadyResolvedError):
        await admin.acknowledge(uuid.uuid4(), notes=None, actor="ops")


# -- Day spans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2, 7, 29, 30, 31, 90, 365, 1000])
@pytest.mark.parametrize("offset", [0, 1, 5, 100, 20_000])
def test_day_spans_tile_a_range_exactly_and_briefly(length: int, offset: int) -> None:
    first = date(1970, 1, 1) + timedelta(days=offset)
    levels, buckets = day_spans(first, first + timedelta(days=length))
    days: list[int] = []
    for level, bucket in zip(levels, buckets, strict=True):
        days.extend(range(bucket << level, (bucket + 1) << level))
    assert days == list(range(offset, offset + length))
    assert len(levels) <= 2 * (SPAN_LEVELS + 1) + length // (1 << SPAN_LEVELS)


# -- Single flight ------------------------------------------------------------------------------


async def test_concurrent_identical_requests_share_one_computation() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiters = [asyncio.create_task(flight.run(30, compute)) for _ in range(5)]
    other = asyncio.create_task(flight.run(7, compute))  # another key: its own computation
    await asyncio.sleep(0)
    waiters[0].cancel()  # one client leaving does not cancel the others' answer
    release.set()
    assert sorted(await asyncio.gather(*waiters[1:], other)) in ([1, 1, 1, 1, 2], [1, 2, 2, 2, 2])
    assert calls == 2
    assert await flight.run(30, compute) == 3  # nothing is kept once it finished


async def test_a_failed_computation_fails_every_waiter() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def compute() -> int:
        await asyncio.sleep(0)
        raise TimeoutError("database away")

    results = await asyncio.gather(
        *(flight.run("k", compute) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, TimeoutError) for r in results)


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "client"),
    [
        ("127.0.0.1", "203.0.113.7", [], "127.0.0.1"),  # no trusted proxy: the peer
        ("192.0.2.1", "203.0.113.7", ["127.0.0.1/32"], "192.0.2.1"),  # peer not trusted
        ("127.0.0.1", None, ["127.0.0.1/32"], "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", ["127.0.0.1/32"], "203.0.113.7"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", ["127.0.0.1/32"], "203.0.113.7"),  # spoofed left
        ("127.0.0.1", "203.0.113.7, 10.0.0.5", ["127.0.0.1/32", "10.0.0.0/8"], "203.0.113.7"),
        ("127.0.0.1", "10.0.0.6, 10.0.0.5", ["127.0.0.1/32", "10.0.0.0/8"], "10.0.0.6"),
        ("127.0.0.1", "203.0.113.7, junk", ["127.0.0.1/32"], "127.0.0.1"),  # malformed hop
        ("::1", "2001:db8::7", ["::1/128"], "2001:db8::7"),
    ],
)
def test_client_address_behind_trusted_proxies(
    remote: str, forwarded: str | None, trusted: list[str], client: str
) -> None:
    networks = tuple(ip_network(n) for n in trusted)
    assert client_address(remote, forwarded, networks) == client


def test_trusted_proxies_are_read_from_the_environment() -> None:
    settings = load_settings(ApiSettings, {"API_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1/32"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
    with pytest.raises(SettingsError, match=r"^API_TRUSTED_PROXIES: "):
        load_settings(ApiSettings, {"API_TRUSTED_PROXIES": "not-a-network"})
