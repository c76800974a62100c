"""PagerDuty Events API v2: ``POST {base}/v2/enqueue`` with one alert event.

PagerDuty answers 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}``;
400 ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`` for
an event it will never take (not retried); 429 when a routing key sends too fast (about 120
events a minute); 5xx for its own trouble. Duplicates are PagerDuty's to fold: events with the
same ``dedup_key`` concern the same alert, so a retried trigger does not page twice.
The routing key travels in the body and never appears in an outcome.
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

PROVIDER = "pagerduty"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com"
ENQUEUE_PATH = "/v2/enqueue"


def enqueue_url(events_url: str) -> str:
    """The enqueue endpoint under a base URL (``PAGERDUTY_EVENTS_URL`` may end in a slash)."""
    return events_url.rstrip("/") + ENQUEUE_PATH


async def send_pagerduty(
    session: aiohttp.ClientSession,
    *,
    events_url: str = PAGERDUTY_EVENTS_URL,
    event: Mapping[str, Any],
    timeout: float,  # noqa: ASYNC109 - the request's own limit; its expiry is an outcome
) -> SendOutcome:
    """Enqueue one trigger/acknowledge/resolve event; ``provider_id`` is PagerDuty's dedup_key."""
    answer = await post(
        session,
        enqueue_url(events_url),
        provider=PROVIDER,
        body=json.dumps(event).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        timeout=timeout,
    )
    if not isinstance(answer, HttpAnswer):
        return answer
    document = json_object(answer.text)
    if is_success(answer.status):
        dedup_key = document.get("dedup_key", event.get("dedup_key"))
        return SendOutcome(
            delivered=True,
            status=answer.status,
            retry_after=None,
            provider_id=dedup_key if isinstance(dedup_key, str) else None,
            error=None,
        )
    return failed(PROVIDER, answer, _reason(document, answer.text))


def _reason(document: Mapping[str, Any], text: str) -> str:
    """``message: error; error`` from PagerDuty's error document, else the raw body."""
    message = document.get("message")
    errors = document.get("errors")
    details = [str(e) for e in errors] if isinstance(errors, list) else []
    if isinstance(message, str):
        return f"{message}: {'; '.join(details)}" if details else message
    return text
