"""The Loki client against the Loki protocol test server (tests/support/loki_server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.loki_server import LokiServer, parse_timestamp

from downtime_operator.adapters.loki import LokiClient, query_range_url
from downtime_operator.domain.log_capture import LogQuery
from downtime_operator.domain.window import CaptureWindow, capture_window, to_unix_ns
from downtime_operator.services.ports import LogSourceError

BASE = to_unix_ns(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
QUERY = '{app="api"}'
A = {"app": "api", "pod": "a"}
B = {"app": "api", "pod": "b"}


@pytest.fixture
def loki() -> Iterator[LokiServer]:
    with LokiServer(max_entries=5000) as server:
        yield server


@pytest.fixture
async def client(loki: LokiServer) -> AsyncIterator[LokiClient]:
    async with LokiClient(url=loki.url, deadline=10, base_delay=0.01, max_delay=0.05) as c:
        yield c


def whole(start: int = BASE, end: int = BASE + 10**12) -> CaptureWindow:
    return CaptureWindow(start_ns=start, end_ns=end)


async def test_paging_past_the_cap_keeps_the_first_10000_distinct_lines_in_order(
    loki: LokiServer, client: LokiClient
) -> None:
    """Acceptance 1: 12,000 lines, cap 5000, 50 entries of one nanosecond across a page edge."""
    tie = range(4980, 5030)  # page 1 ends inside this group (after 20 of its 25 "a" entries)
    lines: list[tuple[int, dict[str, str], str]] = []
    for i in range(12_000):
        ts = BASE + (tie.start if i in tie else i) * 1000
        lines.append((ts, A if i % 2 == 0 else B, f"line {i:05d}"))
    for labels in (A, B):
        loki.push(labels, [(ts, line) for ts, stream, line in lines if stream is labels])

    batch = await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10_000))

    expected = sorted(lines, key=lambda x: (x[0], sorted(x[1].items()), x[2]))[:10_000]
    assert [e.message for e in batch.entries] == [line for _, _, line in expected]
    assert len({e.message for e in batch.entries}) == 10_000  # no duplicates
    assert {int(e.message.split()[1]) for e in batch.entries} == set(range(10_000))  # no gaps
    assert [e.timestamp_ns for e in batch.entries] == sorted(e.timestamp_ns for e in batch.entries)
    assert batch.truncated is True
    assert batch.available == 12_000  # the number of lines Loki had
    requests = loki.requests
    assert len(requests) == 3
    # Each page after the first starts AT the previous page's last timestamp: one repeat.
    assert [r.returned for r in requests] == [5000, 5000, 2021]
    assert requests[1].params["start"] == str(BASE + tie.start * 1000)  # resumed AT the edge
    for request in requests:
        assert request.params["direction"] == "forward"
        assert request.params["limit"] == "5000"
        assert request.params["start"].isdigit() and request.params["end"].isdigit()


async def test_window_bounds_follow_lokis_inclusive_start_and_exclusive_end(
    loki: LokiServer, client: LokiClient
) -> None:
    """Acceptance 2: lines just outside [start - before, end + after) are not captured."""
    started = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    ended = started + timedelta(seconds=42, microseconds=7)
    window = capture_window(
        started_at=started,
        ended_at=ended,
        now=ended + timedelta(hours=1),
        before=timedelta(minutes=5),
        after=timedelta(minutes=5),
    )
    first, end = window.start_ns, window.end_ns
    assert first == to_unix_ns(started - timedelta(minutes=5))
    assert end == to_unix_ns(ended + timedelta(minutes=5))
    marks = {
        "just before start": first - 1,
        "at start": first,
        "during": (first + end) // 2,
        "just before end": end - 1,
        "at end": end,
        "after end": end + 1,
    }
    loki.push(A, [(ts, name) for name, ts in sorted(marks.items(), key=lambda kv: kv[1])])

    batch = await client.fetch(LogQuery(query=QUERY, window=window, max_lines=100))

    assert [e.message for e in batch.entries] == ["at start", "during", "just before end"]
    assert (batch.available, batch.truncated) == (3, False)
    [request] = loki.requests
    assert (request.params["start"], request.params["end"]) == (str(first), str(end))


def test_float_seconds_would_move_the_window() -> None:
    """Why the bounds are integers: Loki reads '1772366400.0000007' at millisecond precision."""
    exact = BASE + 700
    assert parse_timestamp(str(exact), 0) == exact
    assert parse_timestamp(f"{exact / 1e9:.7f}", 0) == BASE  # the 700 ns are gone


async def test_streams_are_merged_by_time_and_structured_metadata_is_read(
    loki: LokiServer, client: LokiClient
) -> None:
    loki.push(A, [(BASE + 3, "a3"), (BASE + 1, "a1", {"detected_level": "error", "trace": "t1"})])
    loki.push(B, [(BASE + 2, '{"level": "warn", "logger": "app.http", "msg": "b2"}')])
    loki.push({"app": "other"}, [(BASE + 2, "not selected")])

    batch = await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=100))

    assert [(e.message, e.level, e.logger) for e in batch.entries] == [
        ("a1", "ERROR", None),
        ("b2", "WARNING", "app.http"),
        ("a3", None, None),
    ]
    assert batch.entries[0].labels == {**A, "detected_level": "error", "trace": "t1"}
    assert loki.requests[0].headers["X-Loki-Response-Encoding-Flags"] == "categorize-labels"


async def test_two_429s_then_success(loki: LokiServer, client: LokiClient) -> None:
    """Acceptance 3a: throttling is retried."""
    loki.push(A, [(BASE + 1, "hello")])
    loki.inject("429", "429")
    batch = await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
    assert [e.message for e in batch.entries] == ["hello"]
    assert [r.status for r in loki.requests] == [429, 429, 200]


async def test_persistent_500_fails_with_lokis_text_after_the_deadline(loki: LokiServer) -> None:
    """Acceptance 3b (client side): 5xx retried with backoff until the deadline, then an error."""
    loki.fail_always = "500:internal error: too many chunks"
    async with LokiClient(url=loki.url, deadline=1.0, base_delay=0.05, max_delay=0.2) as client:
        started = time.monotonic()
        with pytest.raises(LogSourceError) as caught:
            await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
        elapsed = time.monotonic() - started
    assert "HTTP 500: internal error: too many chunks" in str(caught.value)
    assert "1s deadline" in str(caught.value)
    assert 0.2 < elapsed < 1.5
    assert len(loki.requests) >= 3
    gaps = [b.at - a.at for a, b in zip(loki.requests, loki.requests[1:], strict=False)]
    assert gaps[-1] > gaps[0]  # exponential backoff


async def test_a_backoff_sleep_that_overruns_the_deadline_still_names_lokis_answer(
    loki: LokiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded host wakes late from the backoff; the error must still say what Loki answered."""
    loki.fail_always = "500:rpc error: code = Unavailable desc = no queriers"
    real_sleep = asyncio.sleep

    async def late_sleep(delay: float) -> None:
        await real_sleep(delay + 1.0)

    async with LokiClient(url=loki.url, deadline=1.0, base_delay=0.05, max_delay=0.2) as client:
        monkeypatch.setattr(asyncio, "sleep", late_sleep)
        with pytest.raises(LogSourceError) as caught:
            await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
        monkeypatch.undo()
    assert str(caught.value) == (
        "Loki query failed after 1 attempt(s) within the 1s deadline:"
        " HTTP 500: rpc error: code = Unavailable desc = no queriers"
    )
    assert len(loki.requests) == 1


async def test_400_fails_at_once_with_the_plain_text_body(
    loki: LokiServer, client: LokiClient
) -> None:
    """Acceptance 3c (client side): bad LogQL is not retried."""
    with pytest.raises(LogSourceError) as caught:
        await client.fetch(LogQuery(query='app="api"', window=whole(), max_lines=10))
    assert str(caught.value) == (
        "Loki refused the query: HTTP 400: parse error at line 1, col 1: syntax error:"
        ' unexpected IDENTIFIER, expecting "{"'
    )
    assert len(loki.requests) == 1


async def test_a_page_limit_above_the_servers_cap_is_a_400_not_retried(loki: LokiServer) -> None:
    loki.max_entries = 1000
    async with LokiClient(url=loki.url, page_limit=5000) as client:
        with pytest.raises(LogSourceError, match=r"max entries limit per query exceeded"):
            await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
    assert len(loki.requests) == 1


async def test_a_slow_answer_times_out_and_is_retried(loki: LokiServer) -> None:
    loki.push(A, [(BASE + 1, "late")])
    loki.inject("slow:2")
    async with LokiClient(url=loki.url, request_timeout=0.3, deadline=5, base_delay=0.01) as client:
        batch = await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
    assert [e.message for e in batch.entries] == ["late"]
    assert len(loki.requests) >= 1


async def test_basic_auth_and_tenant_header() -> None:
    with LokiServer(username="12345", password="glc_secret", tenant="team-a") as loki:
        loki.push(A, [(BASE + 1, "private")])
        async with LokiClient(
            url=loki.url + "/loki/api/v1/query_range",
            username="12345",
            api_key="glc_secret",
            tenant_id="team-a",
        ) as client:
            batch = await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))
        assert [e.message for e in batch.entries] == ["private"]
        async with LokiClient(url=loki.url, username="12345", api_key="wrong") as client:
            with pytest.raises(LogSourceError, match="HTTP 401: unauthorized"):
                await client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=10))


async def test_more_than_a_page_in_one_nanosecond_does_not_loop_forever(
    loki: LokiServer,
) -> None:
    loki.max_entries = 10
    loki.push(A, [(BASE + 5, f"burst {i:02d}") for i in range(25)] + [(BASE + 6, "after")])
    async with LokiClient(url=loki.url, page_limit=10, deadline=5) as client:
        batch = await asyncio.wait_for(
            client.fetch(LogQuery(query=QUERY, window=whole(), max_lines=100)), 10
        )
    assert batch.entries[-1].message == "after"
    assert batch.truncated is True and batch.available is None  # some of the burst is lost


def test_query_range_url_accepts_a_base_or_the_endpoint() -> None:
    assert query_range_url("http://loki:3100/") == "http://loki:3100/loki/api/v1/query_range"
    assert (
        query_range_url("https://logs.grafana.net/loki/api/v1/query_range")
        == "https://logs.grafana.net/loki/api/v1/query_range"
    )
