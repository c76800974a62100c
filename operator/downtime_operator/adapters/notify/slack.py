"""Slack incoming webhooks: ``POST`` the message as JSON to the webhook URL.

Slack answers 200 with the body ``ok``; failures carry a short reason as plain text:
400 ``invalid_payload``/``no_text``/``invalid_blocks``, 403 ``action_prohibited``/
``invalid_token``, 404 ``channel_not_found``/``no_service`` (the webhook was removed),
410 ``channel_is_archived``, 500 ``rollup_error``, and 429 with ``Retry-After`` above about
one message a second. The URL is the credential, so it never appears in an outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.transport import HttpAnswer, failed, is_success, post

PROVIDER = "slack"


async def send_slack(
    session: aiohttp.ClientSession,
    *,
    webhook_url: str,
    payload: Mapping[str, Any],
    timeout: float,  # noqa: ASYNC109 - the request's own limit; its expiry is an outcome
) -> SendOutcome:
    """Post one message (``text`` and/or ``blocks``) to an incoming webhook."""
    answer = await post(
        session,
        webhook_url,
        provider=PROVIDER,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
    if not isinstance(answer, HttpAnswer):
        return answer
    if is_success(answer.status):
        return SendOutcome(
            delivered=True, status=answer.status, retry_after=None, provider_id=None, error=None
        )
    return failed(PROVIDER, answer, answer.text)
