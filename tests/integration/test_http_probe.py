"""HttpProber against real servers on 127.0.0.1 (the switchable TargetServer)."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from tests.support.target import TargetServer

from downtime_operator.adapters.check_deadline import STRETCH
from downtime_operator.adapters.http_probe import HttpProber, describe_failure
from downtime_operator.domain.models import Expectation, MonitorSpec

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return T0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def server() -> Iterator[TargetServer]:
    with TargetServer(slow_seconds=5) as target:
        yield target


@pytest.fixture
def target(server: TargetServer) -> TargetServer:
    server.set_mode("healthy")
    server.reset_counts()
    return server


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    async with HttpProber(FixedClock()) as probe:
        yield probe


def spec_for(
    url: str,
    *,
    timeout: timedelta = timedelta(seconds=2),
    expect: Expectation | None = None,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: str | None = None,
) -> MonitorSpec:
    return MonitorSpec(
        url=url,
        method=method,
        headers=headers,
        body=body,
        timeout=timeout,
        expect=expect or Expectation(),
    )


async def test_healthy(target: TargetServer, prober: HttpProber) -> None:
    result = await prober.check(spec_for(target.url))
    assert result.ok, result
    assert result.at == T0
    assert result.status_code == 200
    assert result.latency_ms is not None and 0 < result.latency_ms < 1000
    assert result.error is None and result.body_excerpt is None
    assert target.requests == 1


async def test_unexpected_status(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("failing")
    result = await prober.check(spec_for(target.url))
    assert not result.ok
    assert result.status_code == 503
    assert result.error is not None and result.error.startswith("HTTP 503")
    assert result.body_excerpt == "down"


async def test_expected_status_class_and_codes(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("failing")
    assert (await prober.check(spec_for(target.url, expect=Expectation(status=("5xx",))))).ok
    codes = Expectation(status=("200", "204"))
    target.set_mode("status:204")
    assert (await prober.check(spec_for(target.url, expect=codes))).ok
    target.set_mode("status:201")
    result = await prober.check(spec_for(target.url, expect=codes))
    assert (result.ok, result.status_code, result.error) == (False, 201, "HTTP 201 Created")


@pytest.mark.parametrize("mode", ["slow", "slow-body"])
async def test_timeout_covers_headers_and_body(
    target: TargetServer, prober: HttpProber, mode: str
) -> None:
    target.set_mode(mode)
    started = time.monotonic()
    result = await prober.check(spec_for(target.url, timeout=timedelta(milliseconds=500)))
    elapsed = time.monotonic() - started
    assert (result.ok, result.error) == (False, "timeout after 500ms")
    assert 0.45 < elapsed < 1.0  # the deadline, plus a margin for a busy machine


async def test_a_stalled_operator_is_not_the_endpoints_timeout(
    target: TargetServer, prober: HttpProber
) -> None:
    # The loop is blocked for 1 s right after the request goes out (a mass outage's writes):
    # the healthy answer waits in the socket, and neither the deadline nor the latency counts
    # that wait against the endpoint.
    loop = asyncio.get_running_loop()
    check = asyncio.create_task(
        prober.check(spec_for(target.url, timeout=timedelta(milliseconds=500)))
    )
    loop.call_soon(time.sleep, 1.0)
    result = await check
    assert result.ok, result
    assert result.latency_ms is not None and result.latency_ms < 500


async def test_a_hung_endpoint_times_out_even_while_the_operator_stalls(
    target: TargetServer, prober: HttpProber
) -> None:
    target.set_mode("slow")
    loop = asyncio.get_running_loop()

    def stall() -> None:
        time.sleep(0.2)
        blocker[0] = loop.call_later(0.02, stall)

    blocker = [loop.call_soon(stall)]
    started = time.monotonic()
    try:
        result = await prober.check(spec_for(target.url, timeout=timedelta(milliseconds=300)))
    finally:
        blocker[0].cancel()
    elapsed = time.monotonic() - started
    assert (result.ok, result.error) == (False, "timeout after 300ms")
    assert elapsed < 0.3 * STRETCH + 0.5  # stretched, but bounded


async def test_unreachable_then_back_on_the_same_port(
    target: TargetServer, prober: HttpProber
) -> None:
    spec = spec_for(target.url)
    assert (await prober.check(spec)).ok  # leaves a pooled keep-alive connection behind
    port = target.port
    target.set_mode("unreachable")
    result = await prober.check(spec)
    assert (result.ok, result.error, result.status_code) == (False, "connection refused", None)
    target.set_mode("healthy")
    assert target.port == port
    assert (await prober.check(spec)).ok


async def test_connection_reset(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("reset")
    result = await prober.check(spec_for(target.url))
    assert not result.ok
    assert result.error is not None and result.error.startswith("connection reset"), result


async def test_tls_error(target: TargetServer, prober: HttpProber) -> None:
    https = target.url.replace("http://", "https://")
    result = await prober.check(spec_for(https))
    assert not result.ok
    assert result.error is not None and result.error.startswith("TLS error: "), result


def test_dns_failure_is_named() -> None:
    key = ConnectionKey("nowhere.invalid", 443, True, True, None, None, None)
    exc = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    assert describe_failure(exc, timedelta(seconds=10)) == (
        "DNS lookup failed for host nowhere.invalid: Name or service not known"
    )
    assert describe_failure(TimeoutError(), timedelta(seconds=10)) == "timeout after 10s"
    assert describe_failure(ValueError("odd"), timedelta(seconds=1)) == "ValueError: odd"


async def test_body_contains(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode('body:{"status": "healthy"}')
    healthy = Expectation(body_contains="healthy")
    assert (await prober.check(spec_for(target.url, expect=healthy))).ok
    result = await prober.check(spec_for(target.url, expect=Expectation(body_contains="ok")))
    assert (result.ok, result.status_code) == (False, 200)
    assert result.error == "body did not contain 'ok'"
    assert result.body_excerpt == '{"status": "healthy"}'


async def test_body_contains_searches_only_the_kept_part(
    target: TargetServer, prober: HttpProber
) -> None:
    expect = Expectation(body_contains="needle")
    target.set_mode("body:needle" + "a" * 100_000)
    assert (await prober.check(spec_for(target.url, expect=expect))).ok
    target.set_mode("body:" + "a" * 100_000 + "needle")  # past the 64 KiB kept
    result = await prober.check(spec_for(target.url, expect=expect))
    assert result.error == "body did not contain 'needle'"
    assert result.body_excerpt == "a" * 512


async def test_max_latency(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("delay:300")
    expect = Expectation(max_latency=timedelta(milliseconds=100))
    result = await prober.check(spec_for(target.url, expect=expect))
    assert not result.ok and result.status_code == 200
    assert result.latency_ms is not None and result.latency_ms >= 300
    assert result.error == f"latency {round(result.latency_ms)}ms exceeded maxLatency 100ms"
    assert (await prober.check(spec_for(target.url, expect=Expectation()))).ok


@pytest.mark.parametrize("mode", ["huge", "endless"])
async def test_huge_body_is_cut_off_quickly_with_bounded_memory(
    target: TargetServer, prober: HttpProber, mode: str
) -> None:
    target.set_mode(mode)
    spec = spec_for(target.url, timeout=timedelta(seconds=5))
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = await prober.check(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 2
    assert peak < 5 * 1024 * 1024
    assert (result.ok, result.status_code) == (False, 200)
    assert result.error == "oversized body: more than 1 MiB"
    assert result.body_excerpt == "x" * 512
    target.set_mode("healthy")  # the cut-off connection was dropped, not pooled
    assert (await prober.check(spec)).ok


async def test_redirects_followed_up_to_the_bound(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("redirect:5")
    result = await prober.check(spec_for(target.url))
    assert result.ok, result
    target.set_mode("redirect:6")
    result = await prober.check(spec_for(target.url))
    assert result.error is not None
    assert result.error.startswith("too many redirects (more than 5, last http://127.0.0.1:")


async def test_redirect_loop(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("redirect-loop")
    result = await prober.check(spec_for(target.url))
    assert not result.ok
    assert result.error is not None and result.error.startswith("too many redirects (")
    assert target.requests == 6


async def test_post_sends_body_and_headers(target: TargetServer, prober: HttpProber) -> None:
    spec = spec_for(
        target.url,
        method="POST",
        headers=(("Content-Type", "application/json"), ("X-Probe", "downtime")),
        body='{"ping": 1}',
    )
    assert (await prober.check(spec)).ok
    seen = target.last_request
    assert seen is not None
    assert (seen.method, seen.path_qs, seen.body) == ("POST", "/health", b'{"ping": 1}')
    assert seen.headers["X-Probe"] == "downtime"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("downtime-operator/")


async def test_head(target: TargetServer, prober: HttpProber) -> None:
    result = await prober.check(spec_for(target.url, method="HEAD"))
    assert (result.ok, result.status_code) == (True, 200)
    assert target.last_request is not None and target.last_request.method == "HEAD"


async def test_checks_share_one_connection_pool(target: TargetServer) -> None:
    async with HttpProber(FixedClock(), limit_per_host=10) as probe:
        for _ in range(20):
            assert (await probe.check(spec_for(target.url))).ok
        assert target.connections == 1  # keep-alive: sequential checks reuse one connection
        results = await asyncio.gather(*(probe.check(spec_for(target.url)) for _ in range(200)))
        assert all(result.ok for result in results)
        assert target.requests == 220
        assert target.connections <= 10  # 200 parallel checks, one pool


async def test_cancellation_propagates(target: TargetServer, prober: HttpProber) -> None:
    target.set_mode("slow")
    task = asyncio.create_task(prober.check(spec_for(target.url)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_check_before_start_is_a_wiring_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        await HttpProber(FixedClock()).check(spec_for("http://127.0.0.1:9/"))


async def test_control_port_switches_modes_even_while_unreachable() -> None:
    with TargetServer(control_port=0) as target:
        assert target.control_url is not None
        async with HttpProber(FixedClock()) as probe, aiohttp.ClientSession() as control:
            async with control.post(f"{target.control_url}/mode/unreachable") as response:
                assert response.status == 200
            assert (await probe.check(spec_for(target.url))).error == "connection refused"
            async with control.post(f"{target.control_url}/mode/status:500") as response:
                assert (await response.json())["mode"] == "status:500"
            result = await probe.check(spec_for(target.url))
            assert result.error == "HTTP 500 Internal Server Error"
            async with control.post(f"{target.control_url}/mode/bogus") as response:
                assert response.status == 400
