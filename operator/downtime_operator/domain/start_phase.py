"""When a replica starts with thousands of monitors, their first checks are spread evenly.

Checking every existing monitor at the instant the operator starts is a burst of thousands of
requests and status writes, and it keeps them in lockstep ever after. A monitor that existed
before this process started waits for its phase instead: a stable point in the interval, from
a hash of its name, so each one is checked within one interval of its runner's start and the
checks are spread evenly. A phase that passed while the process was starting (the listing of
10,000 monitors and their open incidents takes seconds) comes round again one interval later:
checking all those monitors at once was a burst of thousands, and since each check keeps its
predecessor's schedule, the lump came back every interval for the life of the process. A
monitor created while the process runs is checked at once.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from downtime_operator.domain.models import MonitorRef


def phase(monitor: MonitorRef, interval: timedelta) -> timedelta:
    """A stable offset in ``[0, interval)`` for the monitor (the same on every replica)."""
    return interval * (zlib.crc32(str(monitor).encode()) / 2**32)


def first_check_delay(
    monitor: MonitorRef,
    *,
    interval: timedelta,
    created_at: datetime | None,
    started_at: datetime | None,
    now: datetime,
) -> timedelta:
    """How long to wait before the monitor's first check in this process (zero or more)."""
    if created_at is None or started_at is None or created_at >= started_at:
        return timedelta(0)
    return (started_at + phase(monitor, interval) - now) % interval
