"""The incident pipeline's notification sink: what each channel is owed goes to the outbox.

The sink only records; the delivery loop sends. So a channel that is slow, rate-limited or down
never holds up a check, an incident row or another channel, and what is owed survives a
restart. The outbox's unique key (incident, event, channel) makes every write here idempotent,
which is what lets the sink say "opened" again when an incident is carried on after a restart:
if the process died after the incident's row was written but before this write, the channels
are told now; if not, the repeat is ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from downtime_operator.domain.incident_events import (
    IncidentEvent,
    IncidentEventKind,
    ResolvedBy,
)
from downtime_operator.domain.notifications.channel import DEFAULT_EVENTS
from downtime_operator.domain.notifications.notice import (
    Notice,
    notice_for,
    reminder_notice,
    wanted,
)
from downtime_operator.services.notifications.ports import (
    Channel,
    ChannelDirectory,
    ChannelProblem,
)
from downtime_operator.services.outbox import NewNotification, NotificationOutbox
from downtime_operator.services.pipeline import monitor_lane
from downtime_operator.services.ports import Clock

_CARRIED_ON = (IncidentEventKind.RESUMED, IncidentEventKind.RESTORED)


class NotificationSink:
    name = "notifications"
    permanent: tuple[type[BaseException], ...] = ()
    lane = staticmethod(monitor_lane)

    def __init__(
        self,
        *,
        outbox: NotificationOutbox,
        directory: ChannelDirectory,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox = outbox
        self._directory = directory
        self._clock = clock
        self._wake = wake

    async def apply(self, event: IncidentEvent) -> None:
        if not event.channels:
            return
        if event.kind in _CARRIED_ON and event.incident.is_open:
            event = dataclasses.replace(event, kind=IncidentEventKind.OPENED)
        elif event.kind is IncidentEventKind.RELEASED:
            # A person resolved it through the admin API (maybe in another process, whose
            # pipeline has no channels): the channels must hear it ended, or a PagerDuty alert
            # would stay triggered.
            event = dataclasses.replace(
                event, kind=IncidentEventKind.RESOLVED, resolved_by=ResolvedBy.PERSON
            )
        now = self._clock.now()
        if event.kind is IncidentEventKind.CHECKS_REFRESHED:
            rows = self._reminders(event, now=now)
        else:
            rows = self._told(event, now=now)
        if rows and await self._outbox.enqueue(rows):
            self._wake()

    def _told(self, event: IncidentEvent, *, now: datetime) -> list[NewNotification]:
        notice = notice_for(event, at=now)
        if notice is None:
            return []
        rows = []
        for key, channel in self._channels(event):
            # A channel not (yet) known, or unusable for now, gets what the defaults give: the
            # delivery loop holds it until the channel is fixed or the notice ages out, which
            # is better than deciding today that it wanted nothing.
            if isinstance(channel, Channel):
                if not wanted(channel.spec, notice):
                    continue
            elif notice.event not in DEFAULT_EVENTS:
                continue
            rows.append(_row(key, notice, now=now))
        return rows

    def _reminders(self, event: IncidentEvent, *, now: datetime) -> list[NewNotification]:
        """While an incident stays open its checks are refreshed once per sync period: the
        moment to see whether a channel's next reminder is due (each number is sent once)."""
        rows = []
        for key, channel in self._channels(event):
            if not isinstance(channel, Channel) or channel.spec.reminder_every is None:
                continue
            notice = reminder_notice(event.incident, every=channel.spec.reminder_every, now=now)
            if notice is not None and wanted(channel.spec, notice):
                rows.append(_row(key, notice, now=now))
        return rows

    def _channels(self, event: IncidentEvent) -> list[tuple[str, Channel | ChannelProblem | None]]:
        namespace = event.incident.monitor.namespace
        keys = [f"{namespace}/{name}" for name in event.channels]
        return [(key, self._directory.lookup(key)) for key in keys]


def _row(key: str, notice: Notice, *, now: datetime) -> NewNotification:
    return NewNotification(
        incident_id=notice.incident_id,
        channel=key,
        event=notice.event_key,
        payload=notice.to_payload(),
        created_at=now,
    )
