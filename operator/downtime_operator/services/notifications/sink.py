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

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.notifications.channel import DEFAULT_EVENTS
from downtime_operator.domain.notifications.notice import notice_for, wanted
from downtime_operator.services.notifications.ports import Channel, ChannelDirectory
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
        now = self._clock.now()
        notice = notice_for(event, at=now)
        if notice is None:
            return
        namespace = event.incident.monitor.namespace
        rows = []
        for name in event.channels:
            key = f"{namespace}/{name}"
            channel = self._directory.lookup(key)
            # A channel not (yet) known, or unusable for now, gets what the defaults give: the
            # delivery loop holds it until the channel is fixed or the notice ages out, which
            # is better than deciding today that it wanted nothing.
            if isinstance(channel, Channel):
                if not wanted(channel.spec, notice):
                    continue
            elif notice.event not in DEFAULT_EVENTS:
                continue
            rows.append(
                NewNotification(
                    incident_id=notice.incident_id,
                    channel=key,
                    event=notice.event_key,
                    payload=notice.to_payload(),
                    created_at=now,
                )
            )
        if rows and await self._outbox.enqueue(rows):
            self._wake()
