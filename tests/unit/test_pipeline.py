"""The incident pipeline: each sink gets every event in order; a failing sink holds up no one."""

from __future__ import annotations

from datetime import datetime, timedelta

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import IncidentStatus, MonitorRef
from downtime_operator.services.pipeline import IncidentPipeline, SinkRoute, monitor_lane
from downtime_operator.services.sinks import ResourceSink
from tests.contract.stores import make_incident
from tests.unit.fakes import FakeClock, RecordingResources
from tests.unit.test_monitor_runner import T0, World, outage

Kind = IncidentEventKind


class RecordingSink:
    """Records (clock time, monitor, kind) of each event it applies; ``failing`` until a time."""

    permanent: tuple[type[BaseException], ...] = ()
    lane = staticmethod(monitor_lane)

    def __init__(self, name: str, clock: FakeClock, *, failing_until: datetime | None = None):
        self.name = name
        self.clock = clock
        self.failing_until = failing_until
        self.applied: list[tuple[datetime, MonitorRef, IncidentEventKind]] = []
        self.refusals = 0

    async def apply(self, event: IncidentEvent) -> None:
        now = self.clock.now()
        if self.failing_until is not None and now < self.failing_until:
            self.refusals += 1
            raise ConnectionError("sink down")
        self.applied.append((now, event.incident.monitor, event.kind))

    def kinds(self, monitor: MonitorRef | None = None) -> list[IncidentEventKind]:
        return [kind for _, ref, kind in self.applied if monitor is None or ref == monitor]


async def test_each_sink_gets_every_event_in_order_per_monitor() -> None:
    clock = FakeClock(T0)
    sinks = [RecordingSink(name, clock) for name in ("first", "second", "third")]
    pipeline = IncidentPipeline(
        [SinkRoute(sink=sinks[0], then=(sinks[1],)), SinkRoute(sink=sinks[2])],
        base_delay=0.001,
        max_delay=0.001,
    )
    api, web = make_incident("api"), make_incident("web")
    published = {
        api.monitor: [Kind.OPENED, Kind.CHECKS_REFRESHED, Kind.ESCALATED, Kind.RESOLVED],
        web.monitor: [Kind.OPENED, Kind.ACKNOWLEDGED, Kind.RESOLVED],
    }
    for step in range(4):
        for incident in (api, web):
            kinds = published[incident.monitor]
            if step < len(kinds):
                pipeline.publish(IncidentEvent(kind=kinds[step], incident=incident))
    pipeline.start()
    assert await pipeline.close(drain_timeout=5)
    for sink in sinks:
        for monitor, kinds in published.items():
            assert sink.kinds(monitor) == kinds, sink.name


async def test_a_sink_failing_for_60s_delays_neither_the_others_nor_the_checks() -> None:
    """The outage runs from 0 to 100 s (fake clock); one sink refuses everything for its first
    60 s. The checks, the store, the DowntimeIncident and another sink see each event exactly
    when they do in the same run without the failing sink; the failing sink catches up
    afterwards, in order."""
    undisturbed = World(outage(0, 100))
    reference = RecordingSink("healthy", undisturbed.clock)
    undisturbed.add_sinks(reference)
    await undisturbed.run(seconds=300)

    world = World(outage(0, 100))
    failing = RecordingSink("failing", world.clock, failing_until=T0 + timedelta(seconds=60))
    healthy = RecordingSink("healthy", world.clock)
    world.add_sinks(failing, healthy)
    await world.run(seconds=300)

    assert world.prober.checks == undisturbed.prober.checks
    assert [(at, kind) for at, _, kind in healthy.applied] == [
        (at, kind) for at, _, kind in reference.applied
    ]
    assert world.store.writes == [
        w.replace(str(next(iter(undisturbed.store.rows))), str(next(iter(world.store.rows))))
        for w in undisturbed.store.writes
    ]
    [incident] = world.store.rows.values()
    assert incident.status is IncidentStatus.RESOLVED
    assert world.resources.incidents[incident.k8s_name].status is IncidentStatus.RESOLVED
    opened_at = healthy.applied[0][0]
    assert opened_at < T0 + timedelta(seconds=60)  # while the failing sink was refusing
    assert failing.refusals > 0
    assert failing.applied[0][0] >= T0 + timedelta(seconds=60)
    assert failing.kinds() == healthy.kinds()
    assert healthy.kinds() == [Kind.OPENED, Kind.CHECKS_REFRESHED, Kind.RESOLVED]


async def test_only_a_persons_event_shows_the_root_cause() -> None:
    """The runner's copy of an incident may hold a root cause that a person has replaced since:
    its events leave ``status.rootCause`` as it is."""
    resources = RecordingResources()
    sink = ResourceSink(resources)
    incident = make_incident(root_cause="stale")
    await sink.apply(IncidentEvent(kind=IncidentEventKind.CHECKS_REFRESHED, incident=incident))
    assert resources.incidents[incident.k8s_name].root_cause is None
    await sink.apply(
        IncidentEvent(kind=IncidentEventKind.ANNOTATED, incident=incident, actor="ops")
    )
    assert resources.incidents[incident.k8s_name].root_cause == "stale"
    assert resources.events == []
