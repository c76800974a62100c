"""Prometheus HTTP API client: ``query_range`` for the series around an outage.

Speaks the documented API (``POST /api/v1/query_range``, form-encoded ``query``, ``start``,
``end``, ``step``; a JSON envelope with ``status`` and, on failure, ``errorType`` and ``error``),
so Prometheus-compatible services (Thanos, Mimir, Grafana Cloud, VictoriaMetrics) work too:
``PROMETHEUS_URL`` may carry their path prefix, and basic auth, a bearer token and
``X-Scope-OrgID`` are sent when set. 429, 5xx, timeouts and connection errors are retried within
one deadline (``http_retry``); a bad query (400, 422) fails at once with Prometheus' own words.
"""

from __future__ import annotations

import asyncio
import json
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
from downtime_operator.domain.prometheus import Series, parse_matrix
from downtime_operator.domain.window import NS_PER_SECOND, CaptureWindow
from downtime_operator.services.metrics_capture import MetricsSourceError

QUERY_RANGE_PATH = "/api/v1/query_range"
ERROR_BODY_MAX_CHARS = 512
_HTTP_OK = 200
_NS_PER_MS = NS_PER_SECOND // 1000


def query_range_url(base: str) -> str:
    """``PROMETHEUS_URL`` may be the server's base URL (with a path prefix) or the endpoint."""
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith(QUERY_RANGE_PATH) else trimmed + QUERY_RANGE_PATH


class PrometheusClient(SessionOwner):
    """Implements the ``MetricsSource`` port. ``start()`` (or ``async with``) before use."""

    def __init__(
        self,
        *,
        url: str,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        org_id: str | None = None,
        request_timeout: float = 30.0,
        deadline: float = 60.0,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if username and bearer_token:
            raise ValueError("basic auth and a bearer token are exclusive")
        self._url = query_range_url(url)
        self._headers = {"Accept": "application/json"}
        if username:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(username, password or "")
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        if org_id:
            self._headers["X-Scope-OrgID"] = org_id
        self._retry = RetryPolicy(
            service="Prometheus",
            deadline=deadline,
            request_timeout=request_timeout,
            base_delay=base_delay,
            max_delay=max_delay,
            rng=rng or random.Random(),
        )

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),  # our own deadlines apply
            headers=self._headers,
            trust_env=False,
        )

    async def query_range(
        self, query: str, *, window: CaptureWindow, step_seconds: int
    ) -> tuple[tuple[Series, ...], bool]:
        if window.is_empty:
            return (), False
        form = {
            "query": query,
            # Prometheus reads milliseconds: the window is rounded inwards, so every point it
            # answers is inside the window the snapshot names.
            "start": _seconds(-(-window.start_ns // _NS_PER_MS)),
            "end": _seconds(window.end_ns // _NS_PER_MS),
            "step": str(step_seconds),
        }
        deadline_at = asyncio.get_running_loop().time() + self._retry.deadline
        body = await self._retry.call(
            lambda seconds: self._request(form, seconds),
            deadline_at=deadline_at,
            error=MetricsSourceError,
        )
        try:
            return parse_matrix(body)
        except (ValueError, TypeError, AttributeError) as exc:
            raise MetricsSourceError(f"Prometheus answered something unexpected: {exc}") from exc

    async def _request(self, form: dict[str, str], seconds: float) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("PrometheusClient.query_range() called before start()")
        answer = await send(self._session, "POST", self._url, seconds=seconds, data=form)
        body = _envelope(answer.body)
        if answer.status == _HTTP_OK and body is not None and body.get("status") == "success":
            return body
        message = _error_text(answer.status, answer.body, body)
        if is_retryable_status(answer.status):
            raise Retryable(message, retry_after=answer.retry_after)
        raise MetricsSourceError(f"Prometheus refused the query: {message}")


def _seconds(ms: int) -> str:
    whole, rest = divmod(ms, 1000)
    return f"{whole}.{rest:03d}"


def _envelope(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_text(status: int, raw: bytes, body: dict[str, Any] | None) -> str:
    """``HTTP 400 bad_data: <Prometheus' error>``, or the start of a body that is not JSON (a
    proxy's error page)."""
    if body is not None and body.get("error"):
        kind = f" {body['errorType']}" if body.get("errorType") else ""
        return f"HTTP {status}{kind}: {str(body['error'])[:ERROR_BODY_MAX_CHARS]}"
    return body_text(status, raw, limit=ERROR_BODY_MAX_CHARS)


class PrometheusAccess(Protocol):
    """Where Prometheus is and how to sign in: the ``prometheus`` settings group."""

    @property
    def url(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> SecretStr | None: ...
    @property
    def bearer_token(self) -> SecretStr | None: ...
    @property
    def org_id(self) -> str | None: ...


def prometheus_client_for(settings: PrometheusAccess) -> PrometheusClient | None:
    """A client for the configured Prometheus; None when no URL is set."""
    if settings.url is None:
        return None
    return PrometheusClient(
        url=settings.url,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        bearer_token=settings.bearer_token.get_secret_value() if settings.bearer_token else None,
        org_id=settings.org_id,
    )
