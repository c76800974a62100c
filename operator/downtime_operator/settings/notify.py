"""Notification settings: where the providers are (both modes) and, for the standalone monitor,
its channels, which come from the environment since it has no NotificationChannel resources."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from downtime_operator.settings.groups import CommaSeparated, Group
from downtime_operator.settings.sources import Source


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/") if value else value


class NotifySettings(Group):
    """The providers' addresses, and the admin API's for links in the messages."""

    public_api_url: Annotated[str | None, Source(env=("PUBLIC_API_URL",))] = Field(
        default=None,
        description="the admin API's public URL: messages link to"
        " `<url>/admin/downtime/incidents/<id>`",
    )
    resend_api_url: Annotated[str, Source(env=("RESEND_API_URL",))] = Field(
        default="https://api.resend.com",
        description="Resend's API base URL (for a proxy, or a test receiver)",
    )
    pagerduty_events_url: Annotated[str, Source(env=("PAGERDUTY_EVENTS_URL",))] = Field(
        default="https://events.pagerduty.com",
        description="PagerDuty's Events API base URL (`/v2/enqueue` is appended)",
    )

    @field_validator("public_api_url", "resend_api_url", "pagerduty_events_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value)


class ChannelEnvSettings(Group):
    """The standalone monitor's channels (``--enable-notifications``), one per provider set."""

    resend_api_key: Annotated[SecretStr | None, Source(env=("RESEND_API_KEY",))] = Field(
        default=None, description="email through Resend (with the two addresses below)"
    )
    smtp_url: Annotated[SecretStr | None, Source(env=("SMTP_URL",))] = Field(
        default=None,
        description="email over SMTP, `smtp://user:pass@host:587?tls=starttls` (`smtps://`:"
        " implicit TLS; `ca_file=` a private CA), with the two addresses below",
    )
    email_from: Annotated[str | None, Source(env=("NOTIFICATION_EMAIL_FROM",))] = Field(
        default=None, description="sender of the email notifications"
    )
    email_to: Annotated[tuple[str, ...], CommaSeparated, Source(env=("NOTIFICATION_EMAIL_TO",))] = (
        Field(default=(), description="comma-separated recipients of the email notifications")
    )
    slack_webhook_url: Annotated[SecretStr | None, Source(env=("SLACK_WEBHOOK_URL",))] = Field(
        default=None, description="a Slack incoming-webhook URL"
    )
    pagerduty_routing_key: Annotated[SecretStr | None, Source(env=("PAGERDUTY_ROUTING_KEY",))] = (
        Field(default=None, description="a PagerDuty Events API v2 routing key")
    )
    webhook_url: Annotated[str | None, Source(env=("WEBHOOK_URL",))] = Field(
        default=None, description="a webhook receiving signed JSON (with `WEBHOOK_SECRET`)"
    )
    webhook_secret: Annotated[SecretStr | None, Source(env=("WEBHOOK_SECRET",))] = Field(
        default=None, description="the webhook's Standard Webhooks signing secret (`whsec_...`)"
    )

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    def missing(self) -> list[str]:
        """What a half-configured channel lacks, by variable, and nothing when complete."""
        gaps: list[str] = []
        emails = self.resend_api_key is not None or self.smtp_url is not None
        if emails and not self.email_from:
            gaps.append("NOTIFICATION_EMAIL_FROM")
        if emails and not self.email_to:
            gaps.append("NOTIFICATION_EMAIL_TO")
        if (self.email_from or self.email_to) and not emails:
            gaps.append("RESEND_API_KEY or SMTP_URL")
        if (self.webhook_url is None) != (self.webhook_secret is None):
            gaps.append("WEBHOOK_SECRET" if self.webhook_secret is None else "WEBHOOK_URL")
        return gaps

    @property
    def any(self) -> bool:
        return any(
            value is not None and value != ()
            for value in (
                self.resend_api_key,
                self.smtp_url,
                self.slack_webhook_url,
                self.pagerduty_routing_key,
                self.webhook_url,
            )
        )
