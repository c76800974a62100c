"""``budgetBurn`` notifications: a burn-rate rule that started firing, told to the monitor's
NotificationChannels through the notification outbox (delivered like incident messages).

A rule is announced once per crossing (``BurnWatch``); the write is made in the background, so
a slow store never holds up a check, and retried a few times, backing off, if it fails: the
outbox row's identity (crossing, channel) makes a repeated write harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from downtime_operator.domain.burn_alerts import BurnAlert
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.notifications.notice import burn_notice
from downtime_operator.services.outbox import NewNotification, NotificationOutbox
from downtime_operator.services.ports import Clock

logger = logging.getLogger(__name__)

ATTEMPTS = 5


class BurnNotifier:
    def __init__(
        self,
        *,
        outbox: NotificationOutbox,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
        retry_base: float = 1.0,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._wake = wake
        self._retry_base = retry_base
        self._writing: set[asyncio.Task[None]] = set()

    def announce(
        self,
        *,
        monitor: MonitorRef,
        channels: Sequence[str],
        url: str,
        environment: str,
        alert: BurnAlert,
    ) -> None:
        """Queue the alert for each of the monitor's channels (names in its namespace)."""
        if not channels:
            return
        now = self._clock.now()
        notice = burn_notice(monitor=monitor, url=url, environment=environment, alert=alert, at=now)
        rows = [
            NewNotification(
                incident_id=notice.incident_id,
                channel=f"{monitor.namespace}/{name}",
                event=notice.event_key,
                payload=notice.to_payload(),
                created_at=now,
            )
            for name in channels
        ]
        task = asyncio.create_task(self._write(rows), name=f"budget burn of {monitor}")
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, rows: list[NewNotification]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                if await self._outbox.enqueue(rows):
                    self._wake()
                return
            except Exception as exc:
                if attempt + 1 == ATTEMPTS:
                    logger.warning("budget burn notification not queued: %s", exc)
                    return
                await self._clock.sleep(self._retry_base * 2**attempt)
