"""PagerDuty's Events API v2 endpoint, written from its public OpenAPI document and guides.

- ``POST /v2/enqueue`` with a JSON event: ``routing_key`` (32 characters), ``event_action``
  (``trigger``, ``acknowledge``, ``resolve``), ``dedup_key`` (at most 255 characters; required
  unless triggering), and for a trigger a ``payload`` with ``summary`` (at most 1024
  characters), ``source`` and ``severity`` (``critical``, ``error``, ``warning``, ``info``);
  ``payload.timestamp`` must be ISO 8601 when present.
- 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}`` (a trigger
  without a key gets a generated one); 400 ``{"status": "invalid event", "message": "Event
  object is invalid", "errors": [...]}``; a body that is not a JSON object is 400
  ``{"status": "Unrecognized object", ...}``.
- Rate limit: ``limit`` events per routing key in any ``window`` seconds (120 a minute);
  above it, 429 with an empty body, as the API reference shows it. The events refused do not
  count.
- PagerDuty folds events with the same ``dedup_key`` into one alert; ``count`` says how many
  times one (dedup_key, action) arrived, so a test can see duplicates.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.support.receivers.base import Receiver, SlidingWindow, json_response

ROUTING_KEY_LENGTH = 32
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_LIMIT = 120
DEFAULT_WINDOW = 60.0


class PagerDutyReceiver(Receiver):
    name = "pagerduty-receiver"

    def __init__(
        self, *, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW, port: int = 0
    ) -> None:
        super().__init__(port=port)
        self._limiter = SlidingWindow(limit=limit, window=window)
        self._events: list[dict[str, Any]] = []

    @property
    def events_url(self) -> str:
        """The base URL (``PAGERDUTY_EVENTS_URL``); events go to ``/v2/enqueue`` under it."""
        return self.base_url

    @property
    def events(self) -> list[dict[str, Any]]:
        """The accepted events, in order, each with the ``dedup_key`` PagerDuty answered."""
        with self._lock:
            return list(self._events)

    def count(self, *, dedup_key: str, action: str) -> int:
        """How many accepted events had this key and action (more than 1: a duplicate)."""
        with self._lock:
            return sum(
                1
                for e in self._events
                if e["dedup_key"] == dedup_key and e["event_action"] == action
            )

    def routes(self) -> list[str]:
        return ["/v2/enqueue"]

    def handle(self, request: web.Request, body: bytes, now: float) -> web.Response:
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return json_response(
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
                status=400,
            )
        errors = _errors(event)
        if errors:
            return _invalid(errors)
        if self._limiter.admit(event["routing_key"], now) is not None:
            return web.Response(status=429)
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        self._events.append({**event, "dedup_key": dedup_key})
        return json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )

    def error_response(self, status: int, *, retry_after: float | None = None) -> web.Response:
        if status == 400:
            return _invalid(["scripted failure"])
        if status == 429:
            return web.Response(status=429)
        phrase = HTTPStatus(status).phrase
        return json_response({"status": phrase, "message": phrase}, status=status)


def _invalid(errors: list[str]) -> web.Response:
    return json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        status=400,
    )


def _errors(event: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif dedup_key is not None and len(dedup_key) > MAX_DEDUP_KEY:
        errors.append("Length of 'dedup_key' is too long (should be at most 255 characters)")
    elif action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors.extend(_payload_errors(event.get("payload")))
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors: list[str] = []
    for field in ("summary", "source"):
        value = payload.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"'payload.{field}' is missing or blank")
    summary = payload.get("summary")
    if isinstance(summary, str) and len(summary) > MAX_SUMMARY:
        errors.append("Length of 'payload.summary' is too long (should be at most 1024 characters)")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    timestamp = payload.get("timestamp")
    if timestamp is not None and not _is_iso8601(timestamp):
        errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    return errors


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
