"""Signed webhooks per the Standard Webhooks specification (standardwebhooks.com).

Each request carries ``webhook-id`` (the same on every retry of one message, so the receiver
can drop duplicates), ``webhook-timestamp`` (Unix seconds; receivers refuse stale ones, which
stops replays) and ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.
The secret is ``whsec_`` followed by the base64 key (the prefix is optional, as in the
reference libraries). Any 2xx is a delivery; 410 Gone means the endpoint wants no more
messages, which the delivery loop turns into a disabled channel.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable

import aiohttp

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.transport import HttpAnswer, failed, is_success, post

PROVIDER = "webhook"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError (never quoting it) if unusable."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    try:
        # The reference libraries accept unpadded base64; so does this.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the webhook secret is not valid base64 after the {SECRET_PREFIX!r} prefix"
        ) from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, "sha256")
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


async def send_webhook(
    session: aiohttp.ClientSession,
    *,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timeout: float,  # noqa: ASYNC109 - the request's own limit; its expiry is an outcome
    now: Callable[[], float],
) -> SendOutcome:
    """POST the JSON ``body`` signed with ``secret``; ``msg_id`` stays the same across retries.

    The timestamp is taken at each attempt (``now``, Unix seconds), as the spec asks: a retry
    hours later must not look like a replay to the receiver's tolerance check. ``provider_id``
    of a delivery is ``msg_id``: the key the receiver deduplicates by. An unusable secret is a
    permanent failure, not an exception.
    """
    timestamp = int(now())
    try:
        signature = sign(secret, msg_id=msg_id, timestamp=timestamp, body=body)
    except ValueError as exc:
        # The secret comes from a Secret someone typed: a configuration to fix, not a crash.
        return SendOutcome(
            delivered=False,
            status=None,
            retry_after=None,
            provider_id=None,
            error=f"{PROVIDER}: {exc}",
            transient=False,
        )
    answer = await post(
        session,
        url,
        provider=PROVIDER,
        body=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        },
        timeout=timeout,
    )
    if not isinstance(answer, HttpAnswer):
        return answer
    if is_success(answer.status):
        return SendOutcome(
            delivered=True,
            status=answer.status,
            retry_after=None,
            provider_id=msg_id,
            error=None,
        )
    return failed(PROVIDER, answer, answer.text)
