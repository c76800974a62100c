"""The operator's metrics, fed by a real runner over fakes and read back as Prometheus text."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.adapters.metrics_server import metrics_app
from downtime_operator.services.monitor_runner import MonitorRunner
from downtime_operator.services.retry_queue import OrderedRetryQueue
from tests.unit.test_monitor_runner import REF, SPEC, World, outage
from tests.unit.test_retry_queue import RefusedUntilOpened, recorder

MONITOR = f"{REF.namespace}/{REF.name}"


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels, parsed as a Prometheus server would."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for sample in family.samples
    }


def observed(world: World) -> OperatorMetrics:
    metrics = OperatorMetrics()
    world.deps.observer = metrics.check_observed
    world.add_sinks(metrics)
    return metrics


async def test_an_outage_counts_once_with_its_exact_downtime() -> None:
    world = World(outage(100, 200))
    metrics = observed(world)
    await world.run(seconds=400)
    [incident] = world.store.rows.values()
    got = samples(metrics)
    key = (("monitor", MONITOR), ("severity", "high"))
    assert got[("gatewayz_downtime_incidents_total", key)] == 1
    assert incident.duration_seconds == 80
    assert got[("gatewayz_downtime_duration_seconds_total", (("monitor", MONITOR),))] == 80
    assert got[("gatewayz_downtime_incidents_ongoing", (("monitor", MONITOR),))] == 0
    assert got[("gatewayz_health_check_up", (("monitor", MONITOR),))] == 1
    checks = len(world.prober.checks)
    count = ("gatewayz_health_check_duration_seconds_count", (("monitor", MONITOR),))
    assert got[count] == checks
    total = ("gatewayz_health_check_duration_seconds_sum", (("monitor", MONITOR),))
    assert got[total] == pytest.approx(checks * 0.003)


async def test_ongoing_and_down_while_the_outage_lasts() -> None:
    world = World(outage(0, 1000))
    metrics = observed(world)
    await world.run(seconds=100)
    got = samples(metrics)
    assert got[("gatewayz_downtime_incidents_ongoing", (("monitor", MONITOR),))] == 1
    assert got[("gatewayz_health_check_up", (("monitor", MONITOR),))] == 0
    assert ("gatewayz_downtime_duration_seconds_total", (("monitor", MONITOR),)) not in got


async def test_the_severity_series_follows_an_escalation_and_goes_at_the_end() -> None:
    spec = {**SPEC, "escalation": [{"after": "2m", "severity": "critical"}]}
    world = World(outage(0, 400), spec)
    metrics = observed(world)

    def severities() -> dict[str, float]:
        return {
            dict(labels)["severity"]: value
            for (name, labels), value in samples(metrics).items()
            if name == "gatewayz_downtime_incident_severity"
        }

    await world.run(seconds=60)
    assert severities() == {"high": 1}
    await world.run(seconds=200)
    assert severities() == {"critical": 1}  # moved, not added: an alert counts it once
    await world.run(seconds=600)
    assert severities() == {}


async def test_a_restarted_runner_resumes_without_counting_the_incident_again() -> None:
    world = World(outage(0, 500))
    await world.run(seconds=100)
    metrics = observed(world)
    await world.run(seconds=600, runner=MonitorRunner(ref=REF, deps=world.deps))
    [incident] = world.store.rows.values()
    got = samples(metrics)
    assert (
        "gatewayz_downtime_incidents_total",
        (("monitor", MONITOR), ("severity", "high")),
    ) not in got
    downtime = got[("gatewayz_downtime_duration_seconds_total", (("monitor", MONITOR),))]
    assert downtime == incident.duration_seconds


async def test_a_manual_resolve_releases_the_incident_without_inventing_its_duration() -> None:
    world = World(outage(0, 1000))
    metrics = observed(world)
    runner = await world.run(seconds=60)
    [incident] = world.store.rows.values()
    runner.resolved_elsewhere(incident.incident_id)
    world.kit.start()
    await world.settle()
    got = samples(metrics)
    assert got[("gatewayz_downtime_incidents_ongoing", (("monitor", MONITOR),))] == 0
    assert ("gatewayz_downtime_duration_seconds_total", (("monitor", MONITOR),)) not in got


async def test_a_stuck_lane_shows_in_the_pending_writes_gauge() -> None:
    store = OrderedRetryQueue(name="postgres", base_delay=0.001, max_delay=0.001)
    kube = OrderedRetryQueue(name="kubernetes", base_delay=0.001, max_delay=0.001)
    metrics = OperatorMetrics()
    metrics.watch_queues(store, kube)
    worker = asyncio.create_task(kube.run())
    forbidden = RefusedUntilOpened([], "team-a write", PermissionError("403 Forbidden"))
    kube.submit("team-a write", forbidden, lane="team-a")
    kube.submit("team-b write", recorder([], "team-b write"), lane="team-b")
    assert not await kube.drained(0.05)
    got = samples(metrics)
    pending = "gatewayz_operator_pending_writes"
    assert got[(pending, (("lane", "team-a"), ("queue", "kubernetes")))] == 1
    assert (pending, (("lane", "team-b"), ("queue", "kubernetes"))) not in got  # applied
    retries = got[("gatewayz_operator_write_retries_total", (("queue", "kubernetes"),))]
    assert retries >= 1
    assert got[("gatewayz_operator_write_retries_total", (("queue", "postgres"),))] == 0
    forbidden.opened = True
    assert await kube.drained(1)
    assert not [key for key in samples(metrics) if key[0] == pending]
    worker.cancel()


async def test_each_monitors_slo_is_shown_at_its_periodic_refresh() -> None:
    world = World(outage(0, 0), spec={**SPEC, "slo": {"objective": "99.9", "window": "1d"}})
    metrics = observed(world)
    world.deps.slo_observer = metrics.slo_observed
    await world.kit.uptime.refresh()
    await world.run(seconds=5)
    found = samples(metrics)
    assert found[("gatewayz_downtime_slo_availability", (("monitor", MONITOR),))] == 1.0
    budget = ("gatewayz_downtime_error_budget_remaining_ratio", (("monitor", MONITOR),))
    assert found[budget] == 1.0
    for window in ("h1", "h6", "d3"):
        key = ("gatewayz_downtime_burn_rate", (("monitor", MONITOR), ("window", window)))
        assert found[key] == 0.0


def test_each_process_has_its_own_registry() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    assert first.registry is not second.registry


async def test_the_metrics_server_serves_metrics_and_probes() -> None:
    metrics = OperatorMetrics()
    started = False
    app = metrics_app(metrics_text=metrics.text, ready=lambda: started)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        started = True
        assert (await client.get("/readyz")).status == 200
        response = await client.get("/metrics")
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "gatewayz_health_check_up" in await response.text()
