"""The notification sink: which events become outbox rows, for which channels, how often."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from downtime_operator.adapters.notify.env_channels import StaticChannelDirectory
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import Severity
from downtime_operator.domain.notifications.channel import parse_channel_spec
from downtime_operator.services.notifications.ports import Channel
from downtime_operator.services.notifications.sink import NotificationSink
from tests.contract.stores import T0, make_incident
from tests.unit.fake_outbox import MemoryOutbox
from tests.unit.fakes import FakeClock

HOOK = {
    "type": "webhook",
    "webhook": {"url": "https://h.example", "secretFrom": {"name": "s", "key": "k"}},
}


def sink_over(
    *channels: tuple[str, dict[str, Any]],
) -> tuple[NotificationSink, MemoryOutbox, FakeClock]:
    outbox, clock = MemoryOutbox(), FakeClock(T0 + timedelta(minutes=1))
    directory = StaticChannelDirectory(
        [Channel(key=f"default/{name}", spec=parse_channel_spec(spec)) for name, spec in channels]
    )
    return NotificationSink(outbox=outbox, directory=directory, clock=clock), outbox, clock


def event(kind: IncidentEventKind, *channels: str, **incident: Any) -> IncidentEvent:
    return IncidentEvent(kind=kind, incident=make_incident(**incident), channels=channels)


async def rows(outbox: MemoryOutbox) -> list[tuple[str, str]]:
    return sorted((s.row.channel, s.row.event) for s in outbox.rows.values())


async def test_each_listed_channel_gets_the_events_it_subscribes_to() -> None:
    quiet = {**HOOK, "events": ["resolved"], "minSeverity": "critical"}
    sink, outbox, _ = sink_over(("hook", HOOK), ("quiet", quiet))
    opened = event(IncidentEventKind.OPENED, "hook", "quiet", "unknown")
    await sink.apply(opened)
    await sink.apply(opened)  # a repeat is dropped by the outbox's key
    assert await rows(outbox) == [("default/hook", "opened"), ("default/unknown", "opened")]
    await sink.apply(event(IncidentEventKind.OPENED, severity=Severity.HIGH))  # no channels
    assert len(outbox.rows) == 2


async def test_an_incident_carried_on_after_a_restart_is_said_opened_once() -> None:
    sink, outbox, _ = sink_over(("hook", HOOK))
    incident = make_incident()
    for kind in (IncidentEventKind.OPENED, IncidentEventKind.RESUMED, IncidentEventKind.RESTORED):
        await sink.apply(IncidentEvent(kind=kind, incident=incident, channels=("hook",)))
    assert await rows(outbox) == [("default/hook", "opened")]


async def test_a_resolve_by_a_person_elsewhere_is_told_as_resolved() -> None:
    sink, outbox, _ = sink_over(("hook", HOOK))
    incident = make_incident()
    await sink.apply(
        IncidentEvent(kind=IncidentEventKind.OPENED, incident=incident, channels=("hook",))
    )
    await sink.apply(
        IncidentEvent(kind=IncidentEventKind.RELEASED, incident=incident, channels=("hook",))
    )
    assert await rows(outbox) == [("default/hook", "opened"), ("default/hook", "resolved")]


async def test_reminders_are_due_once_per_period_while_the_checks_go_on() -> None:
    reminding = {**HOOK, "events": ["opened", "reminder"], "reminderEvery": "5m"}
    sink, outbox, clock = sink_over(("hook", reminding))
    incident = make_incident()  # detected at T0 + 20 s
    refreshed = IncidentEvent(
        kind=IncidentEventKind.CHECKS_REFRESHED, incident=incident, channels=("hook",)
    )
    for minutes in (1, 4, 6, 7, 9, 11, 16):
        clock.current = T0 + timedelta(minutes=minutes)
        await sink.apply(refreshed)
    assert await rows(outbox) == [
        ("default/hook", "reminder:1"),
        ("default/hook", "reminder:2"),
        ("default/hook", "reminder:3"),
    ]
