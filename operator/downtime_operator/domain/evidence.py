"""An incident's own evidence: the server that failed, and the monitor's checks around the outage.

Both are stored with the incident as JSON (``server_info``, ``metrics_snapshot``) and shown in
the admin API's incident detail, so whoever reads the incident later sees what the operator saw:

- ``ServerInfo``: what the check that opened the incident learned about the server (addresses,
  HTTP version, TLS certificate, a few response headers) and which operator instance saw it.
- ``MetricsSnapshot``: the monitor's last ``CHECKS_BEFORE`` checks before the outage, their
  latency percentiles over ``LATENCY_WINDOW`` before it, and the checks during it (counted,
  with the first and last ``SAMPLES_DURING`` kept). Taken at detection, completed at resolution.

Pure shapes and arithmetic: the prober collects the server's facts, the runner keeps the check
history (``check_history``).
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

CHECKS_BEFORE = 20
LATENCY_WINDOW = timedelta(minutes=10)
SAMPLES_DURING = 20
"""Checks kept from each end of an outage: a long one keeps its onset and its recovery."""

SHOWN_HEADERS = ("Server", "Via", "X-Request-Id", "Retry-After")
"""Response headers that say which server (or proxy) answered, and when to ask again."""
HEADER_VALUE_CHARS = 256


class SnapshotStage(enum.StrEnum):
    DETECTION = "detection"
    """Written when the incident opened: the checks during it are those of the failing streak."""
    RESOLUTION = "resolution"
    """Completed when the runner resolved it (recovery or deleted monitor)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSample:
    """One check as the snapshot shows it (latency rounded to 0.01 ms)."""

    at: datetime
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Nearest-rank percentiles of the answered checks of the window before the outage."""

    window_seconds: float
    samples: int
    since: datetime | None
    """The oldest check counted: later than the window's start when fewer checks were kept
    (short intervals: the history is bounded by count too)."""
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksDuring:
    """The checks from the first failed one on; ``checks - len(first) - len(last)`` left out."""

    checks: int
    failures: int
    first: tuple[CheckSample, ...] = ()
    last: tuple[CheckSample, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    stage: SnapshotStage
    checks_before: tuple[CheckSample, ...]
    """Oldest first."""
    latency_before: LatencySummary
    during: ChecksDuring


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """The TLS certificate the server presented, read even when it failed verification."""

    subject: str
    issuer: str
    not_after: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """What a failed check learned about the server of the monitor's URL."""

    addresses: tuple[str, ...] = ()
    """The URL host's addresses as resolved when the check failed."""
    http_version: str | None = None
    """Of the answer, when there was one (``HTTP/1.1``)."""
    certificate: Certificate | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """The ``SHOWN_HEADERS`` the answer had."""
    operator_instance: str | None = None
    """The operator that saw it: its pod's name (hostname) and package version."""
    operator_version: str | None = None
    problems: tuple[str, ...] = ()
    """Why a part is missing (the address lookup or the certificate's handshake failed)."""


def sample_at(
    *,
    at: datetime,
    ok: bool,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
) -> CheckSample:
    return CheckSample(
        at=at,
        ok=ok,
        status_code=status_code,
        latency_ms=None if latency_ms is None else round(latency_ms, 2),
        # The same reason ("connection refused") kept once, however many checks and monitors.
        error=None if ok or error is None else sys.intern(error),
    )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below."""
    if not ordered:
        raise ValueError("no values")
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def latency_summary(
    samples: Iterable[CheckSample], *, until: datetime, window: timedelta = LATENCY_WINDOW
) -> LatencySummary:
    """p50/p95 of the answered checks in ``[until - window, until)``."""
    start = until - window
    counted = [s for s in samples if start <= s.at < until and s.latency_ms is not None]
    ordered = sorted(s.latency_ms for s in counted if s.latency_ms is not None)
    return LatencySummary(
        window_seconds=window.total_seconds(),
        samples=len(ordered),
        since=min((s.at for s in counted), default=None),
        p50_ms=percentile(ordered, 0.50) if ordered else None,
        p95_ms=percentile(ordered, 0.95) if ordered else None,
    )


def detection_snapshot(
    samples: Sequence[CheckSample], *, started_at: datetime, during: ChecksDuring
) -> MetricsSnapshot:
    """The snapshot as the incident opens; ``samples`` oldest first, ``during`` already counted."""
    before = [s for s in samples if s.at < started_at]
    return MetricsSnapshot(
        stage=SnapshotStage.DETECTION,
        checks_before=tuple(before[-CHECKS_BEFORE:]),
        latency_before=latency_summary(before, until=started_at),
        during=during,
    )


def resolution_snapshot(
    snapshot: MetricsSnapshot | None, *, during: ChecksDuring, started_at: datetime
) -> MetricsSnapshot:
    """The detection snapshot completed with every check of the outage.

    Without one (an incident carried on from its DowntimeIncident after its row was lost), the
    checks before it are unknown and shown as none.
    """
    if snapshot is None:
        snapshot = detection_snapshot((), started_at=started_at, during=during)
    return replace(snapshot, stage=SnapshotStage.RESOLUTION, during=during)


def shown_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``SHOWN_HEADERS`` among ``headers``, by their usual spelling; repeats joined."""
    wanted = {name.lower(): name for name in SHOWN_HEADERS}
    shown: dict[str, str] = {}
    for name, value in headers:
        canonical = wanted.get(name.lower())
        if canonical is not None:
            joined = f"{shown[canonical]}, {value}" if canonical in shown else value
            shown[canonical] = joined[:HEADER_VALUE_CHARS]
    return shown


# -- JSON, as the stores keep them ---------------------------------------------------------------

_SNAPSHOT: TypeAdapter[MetricsSnapshot] = TypeAdapter(MetricsSnapshot)
_SERVER: TypeAdapter[ServerInfo] = TypeAdapter(ServerInfo)


def snapshot_json(snapshot: MetricsSnapshot) -> dict[str, Any]:
    return _SNAPSHOT.dump_python(snapshot, mode="json")  # type: ignore[no-any-return]


def server_info_json(info: ServerInfo) -> dict[str, Any]:
    return _SERVER.dump_python(info, mode="json")  # type: ignore[no-any-return]


def snapshot_from_json(text: str | None) -> MetricsSnapshot | None:
    """The stored snapshot; None when absent or not in this shape (written by someone else)."""
    if text is None:
        return None
    try:
        return _SNAPSHOT.validate_json(text)
    except ValidationError:
        return None


def server_info_from_json(text: str | None) -> ServerInfo | None:
    """The stored server info; None when absent or not in this shape."""
    if text is None:
        return None
    try:
        return _SERVER.validate_json(text)
    except ValidationError:
        return None
