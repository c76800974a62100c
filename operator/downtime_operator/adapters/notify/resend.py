"""Resend: ``POST {api_url}/emails`` with a bearer API key and an ``Idempotency-Key``.

Resend answers 200 ``{"id": ...}``. Errors are ``{"statusCode", "name", "message"}``:
400 ``validation_error``/``invalid_idempotency_key``, 401 ``missing_api_key``, 403
``invalid_api_key``/``validation_error`` (unverified domain), 409
``invalid_idempotent_request`` (the key was used with another body: permanent) or
``concurrent_idempotent_requests`` (the first request is still in flight: retry), 422
``missing_required_field``/``validation_error``, 429 ``rate_limit_exceeded`` (2 requests a
second by default, with ``retry-after``) or ``daily_quota_exceeded``, 5xx its own trouble.

The same key with the same body within 24 h returns the first email's id without sending it
again, so a retry after a lost answer cannot send twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.transport import (
    HttpAnswer,
    failed,
    is_success,
    json_object,
    post,
)

PROVIDER = "resend"
RESEND_API_URL = "https://api.resend.com"
EMAILS_PATH = "/emails"
_RETRYABLE_NAMES = frozenset({"concurrent_idempotent_requests"})


def emails_url(api_url: str) -> str:
    """The send endpoint under a base URL (``RESEND_API_URL`` may end in a slash)."""
    return api_url.rstrip("/") + EMAILS_PATH


async def send_resend(
    session: aiohttp.ClientSession,
    *,
    api_url: str = RESEND_API_URL,
    api_key: str,
    email: Mapping[str, Any],
    idempotency_key: str,
    timeout: float,  # noqa: ASYNC109 - the request's own limit; its expiry is an outcome
) -> SendOutcome:
    """Send one email (``from``, ``to``, ``subject``, ``text``/``html``, ``headers``, ...)."""
    answer = await post(
        session,
        emails_url(api_url),
        provider=PROVIDER,
        body=json.dumps(email).encode(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Idempotency-Key": idempotency_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        timeout=timeout,
    )
    if not isinstance(answer, HttpAnswer):
        return answer
    document = json_object(answer.text)
    if is_success(answer.status):
        email_id = document.get("id")
        return SendOutcome(
            delivered=True,
            status=answer.status,
            retry_after=None,
            provider_id=email_id if isinstance(email_id, str) else None,
            error=None,
        )
    name = document.get("name")
    message = document.get("message")
    if isinstance(name, str) and isinstance(message, str):
        transient = True if name in _RETRYABLE_NAMES else None
        return failed(PROVIDER, answer, f"{name}: {message}", transient=transient)
    return failed(PROVIDER, answer, answer.text)
