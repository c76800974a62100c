"""A Standard Webhooks consumer that checks every signature with the reference library.

Verification is the ``standardwebhooks`` package's own (``Webhook(secret).verify``), never the
project's signing code, so a signing bug cannot hide behind a matching verification bug. The
library refuses timestamps more than 5 minutes off and unknown signature versions.

- ``POST /hook``: a verified message is answered 204 and kept; a bad or missing signature is
  401 with the library's reason as plain text and is not kept.
- Messages are recorded by ``webhook-id``; ``count`` tells how many times one id was accepted
  (the sender's retries reuse it, so a consumer can drop the repeats).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.receivers.base import Receiver, retry_after_value

PATH = "/hook"


@dataclass(frozen=True, kw_only=True)
class VerifiedMessage:
    msg_id: str
    timestamp: int
    payload: Any


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, base64), as providers issue them."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookReceiver(Receiver):
    name = "webhook-receiver"

    def __init__(self, *, secret: str | None = None, port: int = 0) -> None:
        super().__init__(port=port)
        self.secret = secret or new_secret()
        self._verifier = Webhook(self.secret)
        self._messages: list[VerifiedMessage] = []

    @property
    def url(self) -> str:
        return self.base_url + PATH

    @property
    def messages(self) -> list[VerifiedMessage]:
        """The verified messages, in order (repeats of one ``webhook-id`` included)."""
        with self._lock:
            return list(self._messages)

    def count(self, msg_id: str) -> int:
        with self._lock:
            return sum(1 for m in self._messages if m.msg_id == msg_id)

    def routes(self) -> list[str]:
        return [PATH]

    def handle(self, request: web.Request, body: bytes, now: float) -> web.Response:
        headers = dict(request.headers)
        try:
            payload = self._verifier.verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            return web.Response(status=401, text=f"signature not verified: {exc}")
        self._messages.append(
            VerifiedMessage(
                msg_id=request.headers["webhook-id"],
                timestamp=int(request.headers["webhook-timestamp"]),
                payload=payload,
            )
        )
        return web.Response(status=204)

    def error_response(self, status: int, *, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": retry_after_value(retry_after)} if retry_after else None
        return web.Response(status=status, text=HTTPStatus(status).phrase, headers=headers)
