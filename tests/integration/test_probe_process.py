"""ProcessProber: checks in a worker process against a real target on 127.0.0.1, and what
happens when that worker dies (nothing lost, nothing invented)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from tests.support.target import TargetServer

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.probe_process import ProcessProber
from downtime_operator.domain.models import Expectation, MonitorSpec


@pytest.fixture
async def prober() -> AsyncIterator[ProcessProber]:
    probe = ProcessProber(SystemClock(), options={"instance": "worker-test"}, restart_after=0.2)
    await probe.start()
    try:
        yield probe
    finally:
        await probe.close()


def spec(url: str, *, timeout: float = 3.0) -> MonitorSpec:
    return MonitorSpec(url=url, timeout=timedelta(seconds=timeout), expect=Expectation())


async def test_checks_run_in_the_worker_with_the_same_results(
    target: TargetServer, prober: ProcessProber
) -> None:
    assert prober.worker_pid not in (None, os.getpid())
    results = await asyncio.gather(*(prober.check(spec(target.url)) for _ in range(200)))
    assert all(r.ok and r.status_code == 200 for r in results)
    assert target.requests == 200
    target.set_mode("failing")
    failed = await prober.check(spec(target.url), evidence=True)
    assert (failed.ok, failed.status_code) == (False, 503)
    assert failed.error is not None and "503" in failed.error
    # The options reached the worker, and the evidence came back across the pipe.
    assert failed.server is not None and failed.server.operator_instance == "worker-test"


async def test_a_dead_worker_loses_no_check_and_is_restarted(
    target: TargetServer, prober: ProcessProber
) -> None:
    target.set_mode("slow")  # holds the checks: they are in the worker when it dies
    first_pid = prober.worker_pid
    assert first_pid is not None
    in_flight = [asyncio.create_task(prober.check(spec(target.url))) for _ in range(5)]
    await asyncio.sleep(0.5)
    os.kill(first_pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    target.set_mode("healthy")  # answers what is held, then every new check
    results = await asyncio.gather(*in_flight)
    # Run again in the operator process: answered, not turned into failures.
    assert all(r.ok for r in results), results
    async with asyncio.timeout(10):
        while prober.worker_pid in (None, first_pid):
            assert (await prober.check(spec(target.url))).ok  # in-process meanwhile
            await asyncio.sleep(0.05)
    assert (await prober.check(spec(target.url))).ok


async def test_close_ends_the_worker(target: TargetServer) -> None:
    probe = ProcessProber(SystemClock())
    await probe.start()
    pid = probe.worker_pid
    assert pid is not None
    assert (await probe.check(spec(target.url))).ok
    await probe.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_worker_that_dies_at_once_is_restarted_with_backoff(
    target: TargetServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="downtime_operator.adapters.probe_process")
    probe = ProcessProber(
        SystemClock(),
        worker=(sys.executable, "-c", "raise SystemExit(3)"),
        restart_after=0.1,
        restart_at_most=0.4,
    )
    await probe.start()
    try:
        checks = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.0
        while loop.time() < until:
            assert (await probe.check(spec(target.url))).ok  # in-process, never a failure
            checks += 1
            await asyncio.sleep(0.02)
    finally:
        await probe.close()
    exits = [r for r in caplog.records if "check worker exited (code 3)" in r.getMessage()]
    # Waits of 0.1, 0.2, 0.4, 0.4...: about 6 starts in 2 s, not 20.
    assert 3 <= len(exits) <= 8, len(exits)
    assert checks > 20
