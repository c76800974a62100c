"""The standalone monitor's channels, built from its environment.

They are ordinary NotificationChannel specs (parsed by the same parser, delivered by the same
loop) whose Secret references point at values held in memory instead of Secrets, so the
standalone mode exercises exactly the operator's delivery path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from downtime_operator.adapters.notify.smtp import parse_smtp_url
from downtime_operator.domain.notifications.channel import SecretKeyRef, parse_channel_spec
from downtime_operator.domain.spec import InvalidSpecError
from downtime_operator.services.notifications.ports import Channel, ChannelProblem
from downtime_operator.settings.notify import ChannelEnvSettings
from downtime_operator.settings.sources import SettingsError

_HOLDER = "environment"
"""The stand-in Secret name of every environment value."""


class StaticChannelDirectory:
    """Channels fixed at start."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self._channels = {channel.key: channel for channel in channels}

    def lookup(self, key: str) -> Channel | ChannelProblem | None:
        return self._channels.get(key)

    def known(self) -> Sequence[str]:
        return list(self._channels)

    @property
    def names(self) -> list[str]:
        """The channels' names, as a monitor's ``spec.notifications`` lists them."""
        return [key.partition("/")[2] for key in self._channels]


def _ref(variable: str) -> dict[str, str]:
    return {"name": _HOLDER, "key": variable.lower().replace("_", "-")}


def channels_from_env(settings: ChannelEnvSettings, *, namespace: str) -> StaticChannelDirectory:
    """One channel per provider set in ``settings``; raises SettingsError naming a bad value."""
    built: list[Channel] = []

    def add(name: str, spec: dict[str, Any], values: Mapping[str, str], **extra: Any) -> None:
        try:
            parsed = parse_channel_spec(spec)
        except InvalidSpecError as exc:
            raise SettingsError(f"notification channel {name}: {exc}") from exc
        secrets = {SecretKeyRef(**_ref(variable)): value for variable, value in values.items()}
        built.append(Channel(key=f"{namespace}/{name}", spec=parsed, secrets=secrets, **extra))

    addresses = {"from": settings.email_from, "to": list(settings.email_to)}
    if settings.resend_api_key is not None:
        add(
            "email-resend",
            {"type": "email", "email": {**addresses, "resend": {"apiKeyFrom": _ref("RESEND")}}},
            {"RESEND": settings.resend_api_key.get_secret_value()},
        )
    if settings.smtp_url is not None:
        try:
            smtp = parse_smtp_url(settings.smtp_url.get_secret_value())
        except ValueError as exc:
            raise SettingsError(f"SMTP_URL: {exc}") from exc
        server: dict[str, Any] = {"host": smtp.host, "port": smtp.port, "tls": smtp.tls}
        values = {}
        if smtp.username is not None:
            server |= {"usernameFrom": _ref("SMTP_USER"), "passwordFrom": _ref("SMTP_PASSWORD")}
            values = {"SMTP_USER": smtp.username, "SMTP_PASSWORD": smtp.password or ""}
        add(
            "email-smtp",
            {"type": "email", "email": {**addresses, "smtp": server}},
            values,
            ca_file=smtp.ca_file,
        )
    if settings.slack_webhook_url is not None:
        add(
            "slack",
            {"type": "slack", "slack": {"webhookUrlFrom": _ref("SLACK")}},
            {"SLACK": settings.slack_webhook_url.get_secret_value()},
        )
    if settings.pagerduty_routing_key is not None:
        add(
            "pagerduty",
            {"type": "pagerduty", "pagerduty": {"routingKeyFrom": _ref("PAGERDUTY")}},
            {"PAGERDUTY": settings.pagerduty_routing_key.get_secret_value()},
        )
    if settings.webhook_url is not None and settings.webhook_secret is not None:
        add(
            "webhook",
            {
                "type": "webhook",
                "webhook": {"url": settings.webhook_url, "secretFrom": _ref("HOOK")},
            },
            {"HOOK": settings.webhook_secret.get_secret_value()},
        )
    return StaticChannelDirectory(built)
