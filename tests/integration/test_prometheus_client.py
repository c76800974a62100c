"""The Prometheus client against the real Prometheus server (built from Go modules), scraping a
gauge the test sets; its failure handling through a small proxy in front of that server that
checks the sign-in headers and answers 429 or 503 before it forwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from tests.e2e.controlplane import free_port
from tests.support.prometheus_server import GaugeExporter, PrometheusServer, prometheus_binary

from downtime_operator.adapters.prometheus import PrometheusClient
from downtime_operator.domain.prometheus import MAX_SERIES, query_step
from downtime_operator.domain.window import CaptureWindow, to_unix_ns
from downtime_operator.services.metrics_capture import MetricsSourceError

GAUGE = "app_queue_depth"


@dataclass
class Running:
    server: PrometheusServer
    exporter: GaugeExporter
    started: datetime


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server for the module: the gauge is 1, then 7, then 25 series (for truncation)."""
    with (
        GaugeExporter(GAUGE) as exporter,
        PrometheusServer(
            prometheus_binary(), tmp_path_factory.mktemp("prometheus"), targets=[exporter.target]
        ) as server,
    ):
        started = datetime.now(UTC)
        exporter.set(1)
        server.wait_for_value(f'{GAUGE}{{series="main"}}', 1)
        time.sleep(2)
        exporter.set(7)
        server.wait_for_value(f'{GAUGE}{{series="main"}}', 7)
        for n in range(MAX_SERIES + 5):
            exporter.set(n, series=f"s{n:02d}")
        server.wait_for_value(f"count({GAUGE})", MAX_SERIES + 6)
        # A range query evaluates at whole steps from its start: wait past the next one.
        time.sleep(2)
        yield Running(server, exporter, started)


def window_until_now(start: datetime) -> CaptureWindow:
    return CaptureWindow(
        start_ns=to_unix_ns(start - timedelta(seconds=5)), end_ns=to_unix_ns(datetime.now(UTC))
    )


async def test_a_range_query_returns_the_series_as_it_rose(prometheus: Running) -> None:
    window = window_until_now(prometheus.started)
    async with PrometheusClient(url=prometheus.server.url) as client:
        series, truncated = await client.query_range(
            f'{GAUGE}{{series="main"}}', window=window, step_seconds=1
        )
    assert not truncated
    [main] = series
    assert main.labels["series"] == "main" and main.labels["job"] == "app"
    values = [float(v) for _, v in main.values]
    assert values[0] == 1 and values[-1] == 7 and values == sorted(values)
    times = [at for at, _ in main.values]
    assert times == sorted(times) and times[1] - times[0] == 1  # the step asked for


async def test_a_query_matching_too_many_series_keeps_the_first_ones(prometheus: Running) -> None:
    window = window_until_now(prometheus.started)
    async with PrometheusClient(url=prometheus.server.url) as client:
        series, truncated = await client.query_range(
            GAUGE, window=window, step_seconds=query_step(window)
        )
    assert truncated and len(series) == MAX_SERIES
    assert [s.labels["series"] for s in series][:3] == ["main", "s00", "s01"]


async def test_bad_promql_fails_at_once_with_prometheus_words(prometheus: Running) -> None:
    window = window_until_now(prometheus.started)
    async with PrometheusClient(url=prometheus.server.url, base_delay=5) as client:
        began = time.monotonic()
        with pytest.raises(MetricsSourceError) as failure:
            await client.query_range("sum(", window=window, step_seconds=1)
    assert time.monotonic() - began < 2  # not retried
    assert "HTTP 400 bad_data" in str(failure.value) and "parse error" in str(failure.value)


async def test_an_unreachable_prometheus_fails_within_the_deadline() -> None:
    window = window_until_now(datetime.now(UTC))
    client = PrometheusClient(
        url=f"http://127.0.0.1:{free_port()}", deadline=1.0, base_delay=0.05, max_delay=0.1
    )
    async with client:
        began = time.monotonic()
        with pytest.raises(MetricsSourceError) as failure:
            await client.query_range("up", window=window, step_seconds=1)
    assert time.monotonic() - began < 3
    assert "Prometheus query failed after" in str(failure.value)
    assert "ClientConnectorError" in str(failure.value)


@dataclass
class Proxy:
    """Forwards to the real server once the sign-in headers are right and ``refusals`` are
    used up (each answers its status, 429 with ``Retry-After: 2``)."""

    upstream: str
    expect: dict[str, str]
    refusals: list[int] = field(default_factory=list)
    seen: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((time.monotonic(), dict(request.headers)))
        for name, value in self.expect.items():
            if request.headers.get(name) != value:
                return web.Response(status=401, text="unauthorized")
        if self.refusals:
            status = self.refusals.pop(0)
            if status == 429:
                return web.json_response(
                    {"status": "error", "errorType": "too_many_requests", "error": "slow down"},
                    status=429,
                    headers={"Retry-After": "2"},
                )
            return web.Response(status=status, text="<html>upstream unavailable</html>")
        form = await request.post()
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.upstream}/api/v1/query_range", data=dict(form)) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )


@pytest.fixture
async def proxy(prometheus: Running) -> AsyncIterator[Proxy]:
    found = Proxy(upstream=prometheus.server.url, expect={})
    app = web.Application()
    app.router.add_post("/prefix/api/v1/query_range", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}/prefix"
    yield found
    await runner.cleanup()


@pytest.mark.parametrize(
    ("settings", "headers"),
    [
        ({"username": "grafana", "password": "pw"}, {"Authorization": "Basic Z3JhZmFuYTpwdw=="}),
        ({"bearer_token": "t0k"}, {"Authorization": "Bearer t0k"}),
        ({"org_id": "team-a"}, {"X-Scope-OrgID": "team-a"}),
    ],
)
async def test_sign_in_headers_and_a_path_prefix_reach_the_server(
    proxy: Proxy, prometheus: Running, settings: dict[str, str], headers: dict[str, str]
) -> None:
    proxy.expect = headers
    async with PrometheusClient(url=proxy.url, **settings) as client:
        series, _ = await client.query_range(
            f'{GAUGE}{{series="main"}}', window=window_until_now(prometheus.started), step_seconds=1
        )
    assert len(series) == 1


async def test_429_waits_for_retry_after_and_5xx_is_retried(
    proxy: Proxy, prometheus: Running
) -> None:
    proxy.refusals = [503, 429]
    async with PrometheusClient(url=proxy.url, base_delay=0.05, max_delay=0.1) as client:
        series, _ = await client.query_range(
            f'{GAUGE}{{series="main"}}', window=window_until_now(prometheus.started), step_seconds=1
        )
    assert len(series) == 1
    times = [at for at, _ in proxy.seen]
    assert len(times) == 3
    assert times[2] - times[1] >= 2.0  # Retry-After: 2


async def test_a_refusal_that_outlasts_the_deadline_names_the_last_answer(
    proxy: Proxy, prometheus: Running
) -> None:
    proxy.refusals = [503] * 50
    client = PrometheusClient(url=proxy.url, deadline=0.6, base_delay=0.05, max_delay=0.1)
    async with client:
        with pytest.raises(MetricsSourceError) as failure:
            await client.query_range(
                "up", window=window_until_now(prometheus.started), step_seconds=1
            )
    assert "HTTP 503: <html>upstream unavailable</html>" in str(failure.value)


async def test_an_empty_window_asks_nothing(proxy: Proxy) -> None:
    empty = CaptureWindow(start_ns=10, end_ns=10)
    async with PrometheusClient(url=proxy.url) as client:
        assert await client.query_range("up", window=empty, step_seconds=1) == ((), False)
    await asyncio.sleep(0)
    assert proxy.seen == []
