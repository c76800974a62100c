"""A Slack incoming-webhook endpoint, written from Slack's public documentation.

- ``POST /services/{team}/{bot}/{token}``: the one webhook this receiver serves is
  ``webhook_url``; any other hook path is 404 ``no_service`` (a removed or unknown webhook).
- Body: JSON. Unreadable JSON or a non-object is 400 ``invalid_payload``; no ``text``, ``blocks``
  nor ``attachments`` is 400 ``no_text``; ``blocks`` that are not a list of at most 50 objects
  with a ``type`` are 400 ``invalid_blocks``.
- Success is 200 with the plain-text body ``ok``; errors are plain-text reasons (400
  ``invalid_payload``, 403 ``action_prohibited``, 404 ``channel_not_found``/``no_service``,
  410 ``channel_is_archived``, 500 ``rollup_error``).
- Rate limit: about one message a second with short bursts allowed (a token bucket: ``rate``
  a second, ``burst`` deep); above it, 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import json
import secrets
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.support.receivers.base import (
    Receiver,
    TokenBucket,
    retry_after_value,
    whole_seconds,
)

MAX_BLOCKS = 50
DEFAULT_RATE = 1.0
DEFAULT_BURST = 3
_REASONS = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
}


class SlackReceiver(Receiver):
    name = "slack-receiver"

    def __init__(
        self, *, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, port: int = 0
    ) -> None:
        super().__init__(port=port)
        self._hook_path = f"/services/T{_token(8)}/B{_token(8)}/{_token(24)}"
        self._bucket = TokenBucket(rate=rate, burst=burst)
        self._messages: list[dict[str, Any]] = []

    @property
    def webhook_url(self) -> str:
        """The incoming-webhook URL (a secret, for Slack: it is the only credential)."""
        return self.base_url + self._hook_path

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The accepted messages (payloads), in order."""
        with self._lock:
            return list(self._messages)

    def routes(self) -> list[str]:
        return ["/services/{team}/{bot}/{token}"]

    def handle(self, request: web.Request, body: bytes, now: float) -> web.Response:
        if request.path != self._hook_path:
            return _text(404, "no_service")
        wait = self._bucket.admit(self._hook_path, now)
        if wait is not None:
            return self.error_response(429, retry_after=whole_seconds(wait))
        payload = _payload(body)
        if payload is None:
            return _text(400, "invalid_payload")
        problem = _problem(payload)
        if problem is not None:
            return _text(400, problem)
        self._messages.append(payload)
        return _text(200, "ok")

    def error_response(self, status: int, *, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": retry_after_value(retry_after)} if retry_after else None
        reason = _REASONS.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
        return web.Response(text=reason, status=status, headers=headers)


def _token(length: int) -> str:
    return secrets.token_hex(length)[:length].upper()


def _text(status: int, text: str) -> web.Response:
    return web.Response(text=text, status=status)


def _payload(body: bytes) -> dict[str, Any] | None:
    """The message object, or None where Slack answers ``invalid_payload``."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _problem(payload: dict[str, Any]) -> str | None:
    text = payload.get("text")
    blocks = payload.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    if blocks is not None and (
        not isinstance(blocks, list)
        or len(blocks) > MAX_BLOCKS
        or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        return "invalid_blocks"
    if not text and not blocks and not payload.get("attachments"):
        return "no_text"
    return None
