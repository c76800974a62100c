"""Grafana Loki ``query_range`` client: paged, de-duplicated, retried under one deadline.

Paging: Loki answers at most ``limit`` entries per request (``max_entries_limit_per_query``,
5000 by default; a larger ``limit`` is refused with a 400). With ``direction=forward`` the next
page starts at the last timestamp seen, not after it, because more entries may share that
nanosecond (several streams, or one burst); the entries already returned at that boundary are
recognised by (timestamp, stream labels, line) and dropped. Loki itself keeps one entry per
such key, so the key is exact.

Counting: after ``max_lines`` entries are kept, paging goes on (up to ``count_limit``) only to
count what the window held, so a truncated capture says how much it left out.

Errors: 429, 5xx, timeouts and connection errors are retried with exponential backoff and
jitter, all within one deadline per capture; anything else (400 bad LogQL or limit, 401, 404)
fails at once. Loki's error bodies are plain text and are kept as the error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr

from downtime_operator.adapters.client_session import SessionOwner
from downtime_operator.adapters.http_retry import (
    Retryable,
    RetryPolicy,
    body_text,
    is_retryable_status,
    send,
)
from downtime_operator.domain.log_capture import LogQuery
from downtime_operator.domain.log_entries import LogBatch, LogEntry, normalize_entry
from downtime_operator.services.ports import LogSourceError

logger = logging.getLogger(__name__)

QUERY_RANGE_PATH = "/loki/api/v1/query_range"
DEFAULT_PAGE_LIMIT = 5000
"""Loki's default ``max_entries_limit_per_query``."""
DEFAULT_COUNT_LIMIT = 100_000
ERROR_BODY_MAX_CHARS = 1024
_HTTP_OK = 200
# Ask Loki 3 to keep stream labels apart from structured metadata and parsed labels (the third
# element of each value), so an entry's stream is its real stream. Older versions ignore it.
_ENCODING_FLAGS = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}

_LabelsKey = tuple[tuple[str, str], ...]
_Value = tuple[int, _LabelsKey, str, dict[str, str], dict[str, str] | None]
"""(timestamp ns, stream labels as a sortable key, line, stream labels, metadata)"""


def query_range_url(base: str) -> str:
    """``LOKI_QUERY_URL`` may be Loki's base URL or already the query_range endpoint."""
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith(QUERY_RANGE_PATH) else trimmed + QUERY_RANGE_PATH


class LokiClient(SessionOwner):
    """Implements the ``LogSource`` port. ``start()`` (or ``async with``) before ``fetch``."""

    def __init__(
        self,
        *,
        url: str,
        username: str | None = None,
        api_key: str | None = None,
        tenant_id: str | None = None,
        page_limit: int = DEFAULT_PAGE_LIMIT,
        count_limit: int = DEFAULT_COUNT_LIMIT,
        request_timeout: float = 30.0,
        deadline: float = 120.0,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if page_limit < 1:
            raise ValueError("page_limit must be at least 1")
        self._url = query_range_url(url)
        self._headers = {"Accept": "application/json", **_ENCODING_FLAGS}
        if username:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(username, api_key or "")
        if tenant_id:
            self._headers["X-Scope-OrgID"] = tenant_id
        self._page_limit = page_limit
        self._count_limit = count_limit
        self._retry = RetryPolicy(
            service="Loki",
            deadline=deadline,
            request_timeout=request_timeout,
            base_delay=base_delay,
            max_delay=max_delay,
            rng=rng or random.Random(),
        )

    @property
    def deadline(self) -> float:
        """Seconds one ``fetch`` may take, retries included."""
        return self._retry.deadline

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),  # our own deadlines apply
            headers=self._headers,
            trust_env=False,
        )

    async def fetch(self, query: LogQuery) -> LogBatch:
        if query.window.is_empty:
            return LogBatch(entries=[], available=0, truncated=False)
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self._retry.deadline
        window = query.window
        count_limit = max(self._count_limit, query.max_lines)
        kept: list[tuple[int, _LabelsKey, str, LogEntry]] = []
        distinct = 0
        exact = True
        start = window.start_ns
        boundary_ts: int | None = None
        boundary: set[tuple[int, _LabelsKey, str]] = set()
        while True:  # bounded: every page moves `start` forward or adds entries, under a deadline
            try:
                values = await self._page(query.query, start, window.end_ns, deadline_at)
            except LogSourceError:
                if len(kept) < query.max_lines:
                    raise
                # Everything we keep is in hand; only the count is incomplete.
                exact = False
                break
            new = 0
            for ts, labels_key, line, labels, metadata in values:
                key = (ts, labels_key, line)
                if ts == boundary_ts and key in boundary:
                    continue  # returned by the previous page already
                if not window.contains(ts):
                    continue  # some Loki versions included `end`; the window is half-open
                new += 1
                if len(kept) < query.max_lines:
                    entry = normalize_entry(
                        timestamp_ns=ts, line=line, stream_labels=labels, metadata=metadata
                    )
                    kept.append((ts, labels_key, line, entry))
            distinct += new
            if len(values) < self._page_limit:
                break  # a short page: the window is exhausted
            last_ts = values[-1][0]
            at_last = {(ts, k, line) for ts, k, line, _, _ in values if ts == last_ts}
            if new == 0:
                # More than a page of entries share one nanosecond: moving `start` to it would
                # return the same page forever. Step past it; the rest of that instant is lost.
                logger.warning(
                    "Loki: more than %d entries at %d ns; some of them are skipped",
                    self._page_limit,
                    last_ts,
                )
                exact = False
                start, boundary_ts, boundary = last_ts + 1, None, set()
            else:
                boundary = boundary | at_last if last_ts == boundary_ts else at_last
                start, boundary_ts = last_ts, last_ts
            if len(kept) >= query.max_lines and distinct >= count_limit:
                exact = False
                break
        kept.sort(key=lambda item: (item[0], item[1], item[2]))
        return LogBatch(
            entries=[item[3] for item in kept],
            available=distinct if exact else None,
            truncated=distinct > len(kept) or not exact,
        )

    async def _page(
        self, query: str, start_ns: int, end_ns: int, deadline_at: float
    ) -> list[_Value]:
        """One page of entries in (time, labels, line) order, retried until the deadline."""
        params = {
            "query": query,
            "start": str(start_ns),
            "end": str(end_ns),
            "limit": str(self._page_limit),
            "direction": "forward",
        }
        return await self._retry.call(
            lambda seconds: self._request(params, seconds),
            deadline_at=deadline_at,
            error=LogSourceError,
        )

    async def _request(self, params: dict[str, str], seconds: float) -> list[_Value]:
        if self._session is None:
            raise RuntimeError("LokiClient.fetch() called before start()")
        answer = await send(self._session, "GET", self._url, seconds=seconds, params=params)
        if answer.status != _HTTP_OK:
            message = body_text(answer.status, answer.body, limit=ERROR_BODY_MAX_CHARS)
            if is_retryable_status(answer.status):
                raise Retryable(message, retry_after=answer.retry_after)
            raise LogSourceError(f"Loki refused the query: {message}")
        return _values(answer.body)


def _metadata(extra: Any) -> dict[str, str] | None:
    """The third element of a value: categorised ({structuredMetadata, parsed}) or flat."""
    if not isinstance(extra, dict) or not extra:
        return None
    if "structuredMetadata" in extra or "parsed" in extra:
        merged = {**(extra.get("structuredMetadata") or {}), **(extra.get("parsed") or {})}
    else:
        merged = extra
    return {str(k): str(v) for k, v in merged.items()} or None


def _values(body: bytes) -> list[_Value]:
    try:
        payload = json.loads(body)
        data = payload["data"]
        result_type = data.get("resultType")
        streams = data.get("result") or []
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LogSourceError(f"Loki answered something that is not a query result: {exc}") from exc
    if result_type != "streams":
        raise LogSourceError(
            f"the query returned {result_type!r}, not log lines: logCapture.query must be a log"
            " query (a stream selector with optional filters), not a metric query"
        )
    values: list[_Value] = []
    try:
        for stream in streams:
            labels = {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}
            labels_key = tuple(sorted(labels.items()))
            for value in stream.get("values") or []:
                metadata = _metadata(value[2]) if len(value) > 2 else None
                values.append((int(value[0]), labels_key, str(value[1]), labels, metadata))
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise LogSourceError(f"Loki answered a malformed stream: {exc}") from exc
    values.sort(key=lambda v: (v[0], v[1], v[2]))
    return values


class LokiAccess(Protocol):
    """Where Loki is and how to sign in: the ``loki`` group of the commands' settings."""

    @property
    def query_url(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def api_key(self) -> SecretStr | None: ...
    @property
    def tenant_id(self) -> str | None: ...


def loki_client_for(settings: LokiAccess) -> LokiClient | None:
    """A client for the configured Loki; None when no query URL is set."""
    if settings.query_url is None:
        return None
    return LokiClient(
        url=settings.query_url,
        username=settings.username,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        tenant_id=settings.tenant_id,
    )
