import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from downtime_operator.domain.evidence import ServerInfo, SnapshotStage
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.pipeline import IncidentPipeline, IncidentSink, monitor_lane
from downtime_operator.services.ports import SecretUnavailableError
from tests.unit.engine_kit import EngineKit
from tests.unit.fakes import ClockStop, FakeClock, MemoryStore, RecordingResources, ScriptedProber

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = MonitorRef(namespace="default", name="api")
SPEC: dict[str, Any] = {
    "url": "http://127.0.0.1:1/health",
    "interval": "60s",
    "timeout": "5s",
    "retryInterval": "10s",
    "failureThreshold": 3,
    "severity": "high",
}


class World:
    def __init__(
        self, down: Callable[[datetime], bool], spec: dict[str, Any] | None = None
    ) -> None:
        self.clock = FakeClock(T0)
        self.prober = ScriptedProber(self.clock, down)
        self.store = MemoryStore()
        self.resources = RecordingResources()
        self.spec = dict(spec or SPEC)
        self.kit = EngineKit(
            prober=self.prober,
            store=self.store,
            captures=self.store,
            resources=self.resources,
            clock=self.clock,
        )
        self.deps = self.kit.deps

    @property
    def pipeline(self) -> IncidentPipeline:
        return self.kit.pipeline

    def add_sinks(self, *sinks: IncidentSink) -> None:
        self.kit.add_sinks(*sinks)

    async def run(self, *, seconds: float, runner: MonitorRunner | None = None) -> MonitorRunner:
        runner = runner or MonitorRunner(ref=REF, deps=self.deps)
        self.kit.start()
        stop = ClockStop(self.clock, self.clock.now() + timedelta(seconds=seconds))
        await runner.run(read_spec=lambda: SpecSnapshot(spec=self.spec, generation=1), stop=stop)
        await self.settle()
        return runner

    async def settle(self) -> None:
        """Apply every event and status handed over so far."""
        await self.kit.settle()

    def failures(self, sink: str) -> int:
        return self.kit.failures(sink)


def outage(start: float, end: float) -> Callable[[datetime], bool]:
    return lambda now: start <= (now - T0).total_seconds() < end


class Recorder:
    """A sink that keeps every event it is given."""

    name = "recorder"
    permanent = ()
    lane = staticmethod(monitor_lane)

    def __init__(self) -> None:
        self.events: list[IncidentEvent] = []

    async def apply(self, event: IncidentEvent) -> None:
        self.events.append(event)

    def incident(self, kind: IncidentEventKind) -> Incident:
        [incident] = [e.incident for e in self.events if e.kind is kind]
        return incident


async def test_healthy_monitor_opens_nothing_and_writes_status_rarely() -> None:
    world = World(lambda now: False, spec={**SPEC, "interval": "1s", "timeout": "500ms"})
    await world.run(seconds=120)
    assert world.store.rows == {}
    assert len(world.prober.checks) == 120
    assert world.resources.status_patches[0]["state"] == "Up"
    assert len(world.resources.status_patches) <= 3


async def test_outage_is_one_incident_with_exact_times() -> None:
    world = World(outage(100, 200))
    await world.run(seconds=400)
    [incident] = world.store.rows.values()
    assert incident.started_at == T0 + timedelta(seconds=120)
    assert incident.detected_at == T0 + timedelta(seconds=140)
    assert incident.ended_at == T0 + timedelta(seconds=200)
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.duration_seconds == 80
    assert incident.error_message == "HTTP 503"
    cr = world.resources.incidents[incident.k8s_name]
    assert cr.status is IncidentStatus.RESOLVED
    assert [reason for reason, _ in world.resources.events] == [
        "IncidentOpened",
        "IncidentResolved",
    ]


async def test_escalation_raises_severity_in_store_and_resource() -> None:
    spec = {**SPEC, "escalation": [{"after": "2m", "severity": "critical"}]}
    world = World(outage(0, 1000), spec=spec)
    await world.run(seconds=300)
    [incident] = world.store.rows.values()
    assert incident.severity is Severity.CRITICAL
    assert world.resources.incidents[incident.k8s_name].severity is Severity.CRITICAL
    assert "IncidentEscalated" in [reason for reason, _ in world.resources.events]
    # Recorded once, at the first check two minutes after the first failed one.
    assert world.store.captures[incident.incident_id].severity_changes == [
        {"at": "2026-01-01T00:02:00+00:00", "from": "high", "to": "critical"}
    ]


async def test_the_playbook_of_the_monitor_goes_with_its_incident() -> None:
    world = World(outage(0, 1000), spec={**SPEC, "playbook": "https://runbooks/api"})
    runner = await world.run(seconds=60)
    [incident] = world.store.rows.values()
    assert incident.playbook == "https://runbooks/api"
    assert world.resources.incidents[incident.k8s_name].playbook == "https://runbooks/api"
    # The one that applied when it opened: a later edit is for the next incident.
    world.spec = {**SPEC, "playbook": "https://runbooks/api-v2"}
    await world.run(seconds=60, runner=runner)
    assert world.store.rows[incident.incident_id].playbook == "https://runbooks/api"


async def test_a_long_outage_shows_its_failed_checks_once_per_sync_period() -> None:
    world = World(outage(0, 10_000))
    await world.run(seconds=600)
    [incident] = world.store.rows.values()
    assert incident.is_open
    failed = len(world.prober.checks)  # every check of this run failed
    assert incident.failed_checks >= failed - 6  # written at most one sync period (60 s) ago
    assert world.resources.incidents[incident.k8s_name].failed_checks == incident.failed_checks
    updates = [w for w in world.store.writes if w.startswith("update")]
    assert 8 <= len(updates) <= 10  # ~580 s of outage / 60 s, not one per check (58)


async def test_store_outage_delays_writes_in_order_and_checks_go_on() -> None:
    world = World(outage(0, 100))
    world.store.available = False

    def down_and_store_back_at_150(now: datetime) -> bool:
        if now >= T0 + timedelta(seconds=150):
            world.store.available = True
        return outage(0, 100)(now)

    world.prober.down = down_and_store_back_at_150
    await world.run(seconds=300)
    [incident] = world.store.rows.values()
    assert incident.status is IncidentStatus.RESOLVED
    # plan: the log capture, after the row and before it is resolved; update: the failed-check
    # count one sync period after detection, then at resolution.
    writes = [w.split()[0] for w in world.store.writes]
    assert writes == ["create", "plan", "update", "update", "resolve"]
    assert world.failures("store") > 0
    assert len(world.prober.checks) == 14  # every check happened while the store was down


async def test_restart_during_outage_continues_the_same_incident() -> None:
    world = World(outage(0, 500))
    await world.run(seconds=100)
    [first] = world.store.rows.values()
    assert first.is_open
    fresh = MonitorRunner(ref=REF, deps=world.deps)
    await world.run(seconds=600, runner=fresh)
    assert len(world.store.rows) == 1
    [incident] = world.store.rows.values()
    assert incident.incident_id == first.incident_id
    assert incident.status is IncidentStatus.RESOLVED


async def test_restart_with_store_down_reloads_from_the_resource() -> None:
    world = World(outage(0, 500))
    await world.run(seconds=100)
    world.store.available = False
    world.deps.reload_timeout = 0.01
    fresh = MonitorRunner(ref=REF, deps=world.deps)
    stop = ClockStop(world.clock, world.clock.now() + timedelta(seconds=5))
    await fresh.run(read_spec=lambda: SpecSnapshot(spec=world.spec), stop=stop)
    assert fresh.incident is not None
    assert fresh.incident.incident_id == next(iter(world.store.rows))


async def test_a_row_lost_with_the_process_is_written_again_from_its_cr() -> None:
    """Killed while the store was down: the queued row died with the process, the CR did not.
    The next start continues that incident and writes its row, rather than opening another."""
    world = World(outage(0, 500))
    await world.run(seconds=100)
    [first] = world.store.rows.values()
    world.store.rows.clear()  # what kill -9 with a queued create leaves behind
    fresh = MonitorRunner(ref=REF, deps=world.deps)
    await world.run(seconds=600, runner=fresh)
    [incident] = world.store.rows.values()
    assert incident.incident_id == first.incident_id
    assert incident.started_at == first.started_at
    assert incident.status is IncidentStatus.RESOLVED
    assert world.resources.incidents[first.k8s_name].status is IncidentStatus.RESOLVED
    assert [reason for reason, _ in world.resources.events].count("IncidentOpened") == 1


async def test_a_cr_left_open_after_the_row_was_resolved_is_brought_up_to_date() -> None:
    """Killed while the API server was down: the row says resolved, the CR still ongoing."""
    world = World(outage(0, 100))
    await world.run(seconds=300)
    [incident] = world.store.rows.values()
    assert incident.status is IncidentStatus.RESOLVED
    stale = dataclasses.replace(incident, status=IncidentStatus.ONGOING, ended_at=None)
    world.resources.incidents[incident.k8s_name] = stale
    fresh = MonitorRunner(ref=REF, deps=world.deps)
    await world.run(seconds=60, runner=fresh)
    assert fresh.incident is None
    assert world.resources.incidents[incident.k8s_name].status is IncidentStatus.RESOLVED
    assert len(world.store.rows) == 1


async def test_deleting_the_monitor_resolves_with_a_note() -> None:
    world = World(outage(0, 1000))
    runner = await world.run(seconds=100)
    runner.resolve_for_deletion()
    world.kit.start()
    await world.settle()
    [incident] = world.store.rows.values()
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.notes is not None and "deleted" in incident.notes


async def test_invalid_spec_is_reported_not_raised() -> None:
    world = World(lambda now: False, spec={"url": "ftp://nope"})
    await world.run(seconds=100)
    assert world.prober.checks == []
    assert world.resources.events[0][0] == "InvalidSpec"
    condition = world.resources.status_patches[-1]["conditions"][0]
    assert condition["reason"] == "InvalidSpec"
    assert "spec.url" in condition["message"]


async def test_paused_monitor_does_not_check() -> None:
    world = World(lambda now: True, spec={**SPEC, "paused": True})
    await world.run(seconds=600)
    assert world.prober.checks == []
    assert world.resources.status_patches[-1]["state"] == "Paused"


async def test_a_failure_after_a_manual_resolve_opens_a_new_incident() -> None:
    world = World(outage(0, 1000))
    runner = await world.run(seconds=60)
    [first] = world.store.rows.values()
    now = world.clock.now()
    await world.store.resolve_incident(first.incident_id, ended_at=now, notes="by hand")
    runner.resolved_elsewhere(first.incident_id)
    await world.run(seconds=60, runner=runner)
    assert len(world.store.rows) == 2
    second = next(i for i in world.store.rows.values() if i.incident_id != first.incident_id)
    assert second.is_open
    assert second.started_at > first.started_at


async def test_api_server_errors_are_retried_and_nothing_is_lost() -> None:
    world = World(outage(0, 100))
    original = world.resources.upsert_incident
    failures = iter([True, True, True])

    async def flaky_upsert(incident: Incident) -> None:
        if next(failures, False):
            raise RuntimeError("500 Internal Server Error")
        await original(incident)

    world.resources.upsert_incident = flaky_upsert  # type: ignore[method-assign]
    await world.run(seconds=300)
    [incident] = world.resources.incidents.values()
    assert incident.status is IncidentStatus.RESOLVED
    assert world.failures("kubernetes") == 3


async def test_a_paused_replica_forgets_an_incident_the_other_one_resolved() -> None:
    world = World(outage(0, 100))
    runner = await world.run(seconds=50)
    [incident] = world.store.rows.values()
    assert runner.incident is not None
    # The other replica saw the recovery and resolved it while this one was paused.
    now = world.clock.now() + timedelta(seconds=100)
    await world.store.resolve_incident(incident.incident_id, ended_at=now)
    resolved = world.store.rows[incident.incident_id]
    await world.resources.upsert_incident(resolved)
    world.clock.current = now
    await world.run(seconds=60, runner=runner)
    assert runner.incident is None
    assert len(world.store.rows) == 1
    assert len(world.resources.events) == 1  # only the opening; no second resolution


async def test_an_acknowledged_incident_stays_investigating_when_it_escalates() -> None:
    spec = {**SPEC, "escalation": [{"after": "2m", "severity": "critical"}]}
    world = World(outage(0, 1000), spec=spec)
    runner = await world.run(seconds=60)
    [incident] = world.store.rows.values()
    await world.store.update_incident(incident.incident_id, {"status": "investigating"})
    runner.acknowledged_elsewhere(incident.incident_id)
    await world.run(seconds=120, runner=runner)
    cr = world.resources.incidents[incident.k8s_name]
    assert cr.severity is Severity.CRITICAL
    assert cr.status is IncidentStatus.INVESTIGATING


class FakeSecrets:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}

    async def secret_value(self, *, namespace: str, name: str, key: str) -> str:
        try:
            return self.values[(namespace, name, key)]
        except KeyError:
            raise SecretUnavailableError(f"Secret {namespace}/{name} not found") from None


HEADER_SPEC = {
    **SPEC,
    "headers": {"X-Team": "sre"},
    "headersFrom": [{"name": "Authorization", "secretKeyRef": {"name": "api-token", "key": "t"}}],
}


async def test_headers_from_secrets_are_sent_with_each_check() -> None:
    world = World(lambda now: False, spec=HEADER_SPEC)
    secrets = FakeSecrets()
    secrets.values[("default", "api-token", "t")] = "Bearer s3cret"
    world.deps.secrets = secrets
    await world.run(seconds=120)
    assert world.prober.headers[-1] == (("X-Team", "sre"), ("Authorization", "Bearer s3cret"))


async def test_a_missing_secret_is_reported_and_no_check_is_made() -> None:
    """Probing without the header would get a 401 and invent an outage: report, do not check."""
    world = World(lambda now: False, spec=HEADER_SPEC)
    secrets = FakeSecrets()
    world.deps.secrets = secrets
    world.deps.invalid_spec_retry = 10
    runner = await world.run(seconds=25)
    assert world.prober.checks == [] and world.store.rows == {}
    assert world.resources.events == [
        (
            "SecretUnavailable",
            "spec.headersFrom[0].secretKeyRef: Secret default/api-token not found",
        )
    ]
    condition = world.resources.status_patches[-1]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "SpecValid",
        "False",
        "SecretUnavailable",
    )
    assert world.resources.status_patches[-1]["state"] == "Unknown"

    secrets.values[("default", "api-token", "t")] = "Bearer s3cret"  # the Secret is created
    await world.run(seconds=30, runner=runner)
    assert world.prober.checks and world.store.rows == {}
    assert world.resources.status_patches[-1]["state"] == "Up"


async def test_headers_from_outside_kubernetes_is_reported() -> None:
    world = World(lambda now: False, spec=HEADER_SPEC)
    await world.run(seconds=20)
    assert world.prober.checks == []
    assert "Secrets cannot be read outside Kubernetes" in world.resources.events[0][1]


async def test_events_name_the_monitors_notification_channels() -> None:
    """The notification sink learns from each event which channels to tell."""
    spec = {**SPEC, "notifications": [{"channel": "oncall"}, {"channel": "mail"}]}
    world = World(outage(100, 200), spec=spec)
    recorder = Recorder()
    world.add_sinks(recorder)
    await world.run(seconds=400)
    kinds = {event.kind: event.channels for event in recorder.events}
    assert kinds[IncidentEventKind.OPENED] == ("oncall", "mail")
    assert kinds[IncidentEventKind.RESOLVED] == ("oncall", "mail")
    conditions = {c["type"] for c in world.resources.status_patches[-1]["conditions"]}
    assert conditions == {"SpecValid"}


async def test_without_notification_channels_there_is_no_notifications_condition() -> None:
    world = World(lambda now: False)
    await world.run(seconds=120)
    [condition] = world.resources.status_patches[-1]["conditions"]
    assert condition["type"] == "SpecValid"
    assert world.resources.events == []


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_the_incident_carries_its_evidence_from_detection_to_resolution() -> None:
    """Healthy at 60 s for 30 minutes, then down for 5 minutes (re-checked every 10 s)."""
    server = ServerInfo(addresses=("10.1.2.3",), http_version="HTTP/1.1", operator_instance="op")
    world = World(outage(1800, 2100))
    world.prober.server = server
    recorder = Recorder()
    world.add_sinks(recorder)
    await world.run(seconds=2400)

    # Only the check whose failure opened the incident was asked to describe the server.
    assert world.prober.evidence == [at(1820)]
    opened = recorder.incident(IncidentEventKind.OPENED)
    assert opened.server_info == server
    snapshot = opened.metrics_snapshot
    assert snapshot is not None and snapshot.stage is SnapshotStage.DETECTION
    assert [c.at for c in snapshot.checks_before] == [at(60 * i) for i in range(10, 30)]
    assert all(c.ok and c.latency_ms == 3.0 for c in snapshot.checks_before)
    latency = snapshot.latency_before
    assert (latency.samples, latency.since, latency.p50_ms, latency.p95_ms) == (
        10,
        at(1200),
        3.0,
        3.0,
    )
    assert (snapshot.during.checks, snapshot.during.failures) == (3, 3)
    assert [c.at for c in snapshot.during.first] == [at(1800), at(1810), at(1820)]

    [stored] = world.store.rows.values()
    assert stored.status is IncidentStatus.RESOLVED and stored.server_info == server
    final = stored.metrics_snapshot
    assert final is not None and final.stage is SnapshotStage.RESOLUTION
    assert final.checks_before == snapshot.checks_before
    # 30 failed checks (1800 .. 2090) and the one that resolved it (2100).
    assert (final.during.checks, final.during.failures) == (31, 30)
    assert [c.at for c in final.during.first] == [at(1800 + 10 * i) for i in range(20)]
    assert [c.at for c in final.during.last] == [at(2000 + 10 * i) for i in range(11)]
    assert final.during.last[-1].ok and not final.during.first[0].ok
    assert world.resources.incidents[stored.k8s_name].server_info == server


async def test_a_restarted_runner_completes_the_snapshot_it_reloaded() -> None:
    world = World(outage(0, 500))
    await world.run(seconds=100)
    [row] = world.store.rows.values()
    opened = row.metrics_snapshot  # as written at detection (the row changes in place)
    fresh = MonitorRunner(ref=REF, deps=world.deps)
    await world.run(seconds=600, runner=fresh)
    final = row.metrics_snapshot
    assert opened is not None and final is not None
    assert final.stage is SnapshotStage.RESOLUTION
    assert final.during.first[:3] == opened.during.first
    # Every failed check is counted, also those seen between detection and the restart.
    assert final.during.failures == row.failed_checks > opened.during.failures
    assert final.during.checks == final.during.failures + 1  # and the one that resolved it
