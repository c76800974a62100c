"""Mass outages: many incidents opening at once on one channel go out as one digest.

When a shared dependency fails, two hundred monitors go down within seconds; two hundred Slack
messages (at Slack's one per second) would bury the channel for minutes and arrive long after
the fact. So more than ``DIGEST_THRESHOLD`` ``opened`` notices within the channel's
``groupWindow`` become digests naming every incident. PagerDuty is never grouped: each incident
is its own alert (its dedup_key), which the later acknowledge and resolve act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from downtime_operator.domain.notifications.channel import ChannelType, NotificationEvent
from downtime_operator.domain.notifications.notice import Notice

DIGEST_THRESHOLD = 3
"""Up to this many openings in a window are told one by one; more make a digest."""
DIGEST_MAX = 100
"""Incidents per digest: enough for a mass outage in a handful of messages, small enough that
every incident's line fits one Slack message and one readable email."""

Message = tuple[Notice, ...]
"""One notice, or a digest of several."""


def group(
    notices: Sequence[Notice],
    *,
    channel_type: ChannelType,
    window: timedelta,
    recent_opened: int = 0,
) -> list[Message]:
    """Split one channel's claimed notices into the messages to send, earliest first.

    Openings are clustered from the earliest: a cluster holds the openings within ``window`` of
    its first. ``recent_opened`` counts openings this channel already sent within the last
    window: they count towards the earliest cluster, so after three single messages the fourth
    and later openings of the same outage join a digest. A zero window turns grouping off.
    Notices of other events go alone, and the order by time keeps each incident's events in
    order (its opening, in a digest or not, comes before its resolution).
    """
    if channel_type is ChannelType.PAGERDUTY or window <= timedelta(0):
        return [(notice,) for notice in notices]
    position = {id(notice): index for index, notice in enumerate(notices)}
    opened = sorted((n for n in notices if n.event is NotificationEvent.OPENED), key=lambda n: n.at)
    messages: list[Message] = [(n,) for n in notices if n.event is not NotificationEvent.OPENED]
    earlier = recent_opened
    for cluster in _clusters(opened, window=window):
        if len(cluster) + earlier > DIGEST_THRESHOLD:
            messages.extend(
                cluster[start : start + DIGEST_MAX] for start in range(0, len(cluster), DIGEST_MAX)
            )
        else:
            messages.extend((notice,) for notice in cluster)
        earlier = 0
    return sorted(messages, key=lambda m: (m[0].at, position[id(m[0])]))


def _clusters(opened: Sequence[Notice], *, window: timedelta) -> list[Message]:
    clusters: list[list[Notice]] = []
    for notice in opened:
        if clusters and notice.at - clusters[-1][0].at <= window:
            clusters[-1].append(notice)
        else:
            clusters.append([notice])
    return [tuple(cluster) for cluster in clusters]
