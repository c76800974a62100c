"""Resend's ``POST /emails``, written from its public API reference.

- Auth: ``Authorization: Bearer re_...``; none is 401 ``missing_api_key``, another key 403
  ``invalid_api_key``.
- Rate limit: ``limit`` requests in any ``window`` seconds per team (2 a second); above it,
  429 ``rate_limit_exceeded`` with ``retry-after``. Every answer to an authenticated request
  carries ``ratelimit-limit``, ``ratelimit-remaining`` and ``ratelimit-reset``.
- ``Idempotency-Key`` (1-256 characters, else 400 ``invalid_idempotency_key``): the same key
  with the same body returns the first answer (same ``id``) and sends nothing; the same key
  with another body is 409 ``invalid_idempotent_request``.
- Body: ``from``, ``to`` and ``subject`` are required (422 ``missing_required_field``); ``to``
  is an address or a list of 1-50, addresses are ``a@b.c`` or ``Name <a@b.c>``, and ``html``
  or ``text`` is needed (422 ``validation_error``); a body that is not a JSON object is 400
  ``validation_error``.
- Success is 200 ``{"id": "<uuid>"}``; errors are ``{"statusCode", "name", "message"}``.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from aiohttp import web

from tests.support.receivers.base import (
    Receiver,
    SlidingWindow,
    json_response,
    retry_after_value,
    whole_seconds,
)

DEFAULT_API_KEY = "re_test_0123456789abcdefghijklmnop"
DEFAULT_LIMIT = 2
DEFAULT_WINDOW = 1.0
MAX_RECIPIENTS = 50
MAX_IDEMPOTENCY_KEY = 256
_TEAM = "team"
_ADDRESS = re.compile(r"(?:[^<>]*<)?[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>?")
_NAMES = {
    400: ("validation_error", "We found an error with one or more fields in the request."),
    401: ("missing_api_key", "Missing API key in the authorization header."),
    403: ("invalid_api_key", "API key is invalid"),
    404: ("not_found", "The requested endpoint does not exist."),
    409: (
        "invalid_idempotent_request",
        "Same idempotency key used with a different request payload.",
    ),
    422: ("validation_error", "We found an error with one or more fields in the request."),
    429: ("rate_limit_exceeded", "Too many requests. You can only make 2 requests per second."),
}
_SERVER_ERROR = ("application_error", "An unexpected error occurred.")


class ResendReceiver(Receiver):
    name = "resend-receiver"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self._limiter = SlidingWindow(limit=limit, window=window)
        self._emails: list[dict[str, Any]] = []
        self._idempotent: dict[str, tuple[Any, str]] = {}

    @property
    def api_url(self) -> str:
        """The base URL (``RESEND_API_URL``)."""
        return self.base_url

    @property
    def emails(self) -> list[dict[str, Any]]:
        """The emails sent (each once, whatever the retries), with ``id`` and
        ``idempotency_key`` added."""
        with self._lock:
            return list(self._emails)

    def routes(self) -> list[str]:
        return ["/emails"]

    def handle(self, request: web.Request, body: bytes, now: float) -> web.Response:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return self.error_response(401)
        if key != self.api_key:
            return self.error_response(403)
        wait = self._limiter.admit(_TEAM, now)
        if wait is not None:
            return self.error_response(429, retry_after=whole_seconds(wait))
        headers = self._rate_headers(now)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            return _error(
                400,
                "invalid_idempotency_key",
                "The key must be between 1-256 chars.",
                headers,
            )
        try:
            email = json.loads(body)
        except ValueError:
            email = None
        if not isinstance(email, dict):
            return _error(400, "validation_error", "Invalid JSON body.", headers)
        if idempotency_key is not None and idempotency_key in self._idempotent:
            first_email, email_id = self._idempotent[idempotency_key]
            if first_email != email:
                return _error(409, *_NAMES[409], headers)
            return json_response({"id": email_id}, status=200, headers=headers)
        problem = _problem(email)
        if problem is not None:
            return _error(422, *problem, headers)
        email_id = str(uuid.uuid4())
        if idempotency_key is not None:
            self._idempotent[idempotency_key] = (email, email_id)
        self._emails.append({**email, "id": email_id, "idempotency_key": idempotency_key})
        return json_response({"id": email_id}, status=200, headers=headers)

    def error_response(self, status: int, *, retry_after: float | None = None) -> web.Response:
        name, message = _NAMES.get(status, _SERVER_ERROR)
        headers = {"retry-after": retry_after_value(retry_after)} if retry_after else {}
        if status == 429:
            headers |= {
                "ratelimit-limit": str(self._limiter.limit),
                "ratelimit-remaining": "0",
                "ratelimit-reset": retry_after_value(retry_after or self._limiter.window),
            }
        return _error(status, name, message, headers)

    def _rate_headers(self, now: float) -> dict[str, str]:
        return {
            "ratelimit-limit": str(self._limiter.limit),
            "ratelimit-remaining": str(self._limiter.remaining(_TEAM, now)),
            "ratelimit-reset": retry_after_value(whole_seconds(self._limiter.window)),
        }


def _error(status: int, name: str, message: str, headers: dict[str, str]) -> web.Response:
    return json_response(
        {"statusCode": status, "name": name, "message": message}, status=status, headers=headers
    )


def _problem(email: dict[str, Any]) -> tuple[str, str] | None:
    """(name, message) of the first thing Resend would refuse in ``email``, or None."""
    for field in ("from", "to", "subject"):
        if email.get(field) in (None, "", []):
            return "missing_required_field", f"Missing `{field}` field."
    recipients = email["to"] if isinstance(email["to"], list) else [email["to"]]
    if len(recipients) > MAX_RECIPIENTS:
        return "validation_error", f"Too many recipients in `to`: the maximum is {MAX_RECIPIENTS}."
    for field, addresses in (("from", [email["from"]]), ("to", recipients)):
        if not all(isinstance(a, str) and _ADDRESS.fullmatch(a.strip()) for a in addresses):
            return (
                "validation_error",
                f"Invalid `{field}` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
            )
    if not isinstance(email["subject"], str):
        return "validation_error", "Invalid `subject` field: a string is expected."
    if not email.get("html") and not email.get("text"):
        return "validation_error", "Missing `html` or `text` field."
    headers = email.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return "validation_error", "Invalid `headers` field: an object of strings is expected."
    return None
