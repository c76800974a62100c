"""The notification transport: one message over one channel, rendered by the domain and sent
by the sender of the channel's type."""

from __future__ import annotations

import email.message
import time
from collections.abc import Mapping, Sequence

import aiohttp

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.pagerduty import PAGERDUTY_EVENTS_URL, send_pagerduty
from downtime_operator.adapters.notify.resend import RESEND_API_URL, send_resend
from downtime_operator.adapters.notify.slack import send_slack
from downtime_operator.adapters.notify.smtp import SmtpConfig, send_smtp
from downtime_operator.adapters.notify.webhook import send_webhook
from downtime_operator.domain.notifications.channel import ChannelType, SecretKeyRef
from downtime_operator.domain.notifications.notice import Notice
from downtime_operator.domain.notifications.render import (
    EmailContent,
    delivery_id,
    email_content,
    pagerduty_event,
    resend_body,
    slack_message,
    webhook_body,
)
from downtime_operator.services.notifications.ports import Channel

REQUEST_TIMEOUT = 15.0


class HttpChannelTransport:
    """Owns one HTTP session for every channel (started and closed with the engine)."""

    def __init__(
        self,
        *,
        api_url: str | None = None,
        resend_url: str = RESEND_API_URL,
        pagerduty_url: str = PAGERDUTY_EVENTS_URL,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._api_url = api_url
        self._resend_url = resend_url
        self._pagerduty_url = pagerduty_url
        self._timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=20)
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(
        self, *, channel: Channel, secrets: Mapping[SecretKeyRef, str], notices: Sequence[Notice]
    ) -> SendOutcome:
        await self.start()
        assert self._session is not None
        session = self._session
        spec = channel.spec
        if spec.type is ChannelType.SLACK and spec.slack is not None:
            return await send_slack(
                session,
                webhook_url=secrets[spec.slack.webhook_url_from],
                payload=slack_message(notices, api_url=self._api_url),
                timeout=self._timeout,
            )
        if spec.type is ChannelType.PAGERDUTY and spec.pagerduty is not None:
            # Never grouped: each incident is its own alert, acted on by its dedup_key.
            [notice] = notices
            return await send_pagerduty(
                session,
                events_url=self._pagerduty_url,
                event=pagerduty_event(
                    notice,
                    routing_key=secrets[spec.pagerduty.routing_key_from],
                    severity_map=spec.pagerduty.severity_map,
                    api_url=self._api_url,
                ),
                timeout=self._timeout,
            )
        if spec.type is ChannelType.WEBHOOK and spec.webhook is not None:
            return await send_webhook(
                session,
                url=spec.webhook.url,
                secret=secrets[spec.webhook.secret_from],
                msg_id=delivery_id(notices),
                body=webhook_body(notices, api_url=self._api_url),
                timeout=self._timeout,
                now=time.time,
            )
        if spec.type is ChannelType.EMAIL and spec.email is not None:
            content = email_content(
                notices, sender=spec.email.sender, to=spec.email.to, api_url=self._api_url
            )
            if spec.email.resend is not None:
                return await send_resend(
                    session,
                    api_url=self._resend_url,
                    api_key=secrets[spec.email.resend.api_key_from],
                    email=resend_body(content),
                    idempotency_key=delivery_id(notices),
                    timeout=self._timeout,
                )
            if spec.email.smtp is not None:
                smtp = spec.email.smtp
                config = SmtpConfig(
                    host=smtp.host,
                    port=smtp.port,
                    tls=smtp.tls.value,
                    username=secrets[smtp.username_from] if smtp.username_from else None,
                    password=secrets[smtp.password_from] if smtp.password_from else None,
                    timeout=self._timeout,
                    ca_file=channel.ca_file,
                )
                return await send_smtp(config, _mime(content))
        return SendOutcome(
            delivered=False,
            status=None,
            retry_after=None,
            provider_id=None,
            error=f"channel type {spec.type.value} has no settings",
            transient=False,
        )


def _mime(content: EmailContent) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = content.sender
    message["To"] = ", ".join(content.to)
    message["Subject"] = content.subject
    for name, value in content.headers.items():
        message[name] = value
    if "Message-ID" not in message:
        message["Message-ID"] = content.message_id
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message
