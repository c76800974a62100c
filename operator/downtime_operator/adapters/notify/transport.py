"""The one HTTP POST every HTTP sender makes, and the parts of an answer they all read.

Failures without an answer are turned into a ``SendOutcome`` here, with a message that names
the cause but never the URL: a Slack incoming-webhook URL is a credential, and aiohttp's own
exception texts (``InvalidURL`` above all) carry the whole URL.

Redirects are not followed: a notification endpoint that redirects is misconfigured, and
following it would send a signed body or a bearer token to another place.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from downtime_operator.adapters.notify.outcome import SendOutcome

USER_AGENT = "downtime-operator"
MAX_BODY_BYTES = 64 * 1024
"""Enough for any provider's error document; a larger answer is cut, not read whole."""
ERROR_EXCERPT_CHARS = 300
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_HTTP_SUCCESS_MIN = 200
_HTTP_REDIRECT_MIN = 300
_HTTP_REDIRECT_MAX = 399


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    """The parts of a provider's answer the senders read."""

    status: int
    text: str
    retry_after: float | None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP-date (RFC 9110 10.2.3).

    A date in the past is 0; anything unreadable is None (the caller's own backoff applies).
    ``now`` is the Unix time an HTTP-date is measured from (default: the wall clock).
    """
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": no zone said; HTTP-dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def is_success(status: int) -> bool:
    """Any 2xx: Slack answers 200, PagerDuty 202, webhook receivers whatever 2xx they like."""
    return _HTTP_SUCCESS_MIN <= status < _HTTP_REDIRECT_MIN


def json_object(text: str) -> dict[str, Any]:
    """A provider's JSON document, or {} when the body is not a JSON object (a proxy's page)."""
    try:
        document = json.loads(text)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def excerpt(text: str, *, limit: int = ERROR_EXCERPT_CHARS) -> str:
    """One line of at most ``limit`` characters: provider errors go into logs and status."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - the request's own limit; its expiry is an outcome
) -> HttpAnswer | SendOutcome:
    """POST ``body``; the answer, or the outcome of an attempt that got none.

    ``provider`` names the service in error messages ("slack", "pagerduty", ...).
    """
    all_headers = {"User-Agent": USER_AGENT, **headers}
    try:
        async with session.post(
            url,
            data=body,
            headers=all_headers,
            timeout=_client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            raw = await _read_capped(response.content, MAX_BODY_BYTES)
            return HttpAnswer(
                status=response.status,
                text=raw.decode("utf-8", errors="replace"),
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
    except TimeoutError:
        return _no_answer(f"{provider}: no answer within {timeout:g} s")
    except aiohttp.ClientConnectorCertificateError as exc:
        # A certificate the system does not trust stays untrusted: retrying will not help.
        return _no_answer(
            f"{provider}: TLS certificate of {exc.host}:{exc.port} not trusted "
            f"({exc.certificate_error.__class__.__name__})",
            transient=False,
        )
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or exc.os_error.__class__.__name__
        return _no_answer(f"{provider}: cannot connect to {exc.host}:{exc.port}: {reason}")
    except aiohttp.InvalidURL:
        return _no_answer(
            f"{provider}: the configured URL is not a valid http(s) URL", transient=False
        )
    except aiohttp.ServerDisconnectedError:
        return _no_answer(f"{provider}: the server closed the connection without an answer")
    except aiohttp.ClientError as exc:
        return _no_answer(f"{provider}: request failed ({exc.__class__.__name__})")


@functools.lru_cache(maxsize=8)
def _client_timeout(total: float) -> aiohttp.ClientTimeout:
    """One immutable ``ClientTimeout`` per limit, not one per request."""
    return aiohttp.ClientTimeout(total=total)


async def _read_capped(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body (one ``read`` returns only what has arrived)."""
    data = bytearray()
    while len(data) < limit:
        chunk = await content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _no_answer(message: str, *, transient: bool | None = None) -> SendOutcome:
    return SendOutcome(
        delivered=False,
        status=None,
        retry_after=None,
        provider_id=None,
        error=message,
        transient=transient,
    )


def failed(
    provider: str, answer: HttpAnswer, reason: str, *, transient: bool | None = None
) -> SendOutcome:
    """The outcome of an answer that is not a success; ``reason`` is the provider's own."""
    if _HTTP_REDIRECT_MIN <= answer.status <= _HTTP_REDIRECT_MAX:
        reason = "a redirect, not followed: configure the endpoint's final URL"
    message = f"{provider} answered {answer.status}"
    return SendOutcome(
        delivered=False,
        status=answer.status,
        retry_after=answer.retry_after,
        provider_id=None,
        error=f"{message}: {excerpt(reason)}" if reason.strip() else message,
        transient=transient,
    )
