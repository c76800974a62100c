"""What the notification services need from outside: channels, their secrets, a transport,
and somewhere to report how delivery goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from downtime_operator.domain.notifications.channel import ChannelSpec, SecretKeyRef
from downtime_operator.domain.notifications.notice import Notice


@dataclass(frozen=True, kw_only=True)
class Channel:
    """A channel as configured: its key (``namespace/name``, or ``env:<type>`` standalone)."""

    key: str
    spec: ChannelSpec
    generation: int | None = None
    secrets: Mapping[SecretKeyRef, str] = field(default_factory=dict)
    """Values known without a lookup (standalone channels built from the environment)."""
    ca_file: str | None = None
    """A private CA for the channel's TLS (``SMTP_URL``'s ``ca_file``); None: the system's."""

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]


@dataclass(frozen=True, kw_only=True)
class ChannelProblem:
    """A channel that exists but cannot be used as written (a field the parser refused)."""

    key: str
    message: str


class ChannelDirectory(Protocol):
    def lookup(self, key: str) -> Channel | ChannelProblem | None:
        """The channel, why it is unusable, or None when no such channel exists (yet)."""
        ...

    def known(self) -> Sequence[str]:
        """Every channel known, for status reports."""
        ...


class SendResult(Protocol):
    """One attempt's answer (the adapters' ``SendOutcome`` has these fields)."""

    @property
    def delivered(self) -> bool: ...

    @property
    def retryable(self) -> bool:
        """Whether a later attempt may succeed (the transport knows its own codes)."""
        ...

    @property
    def status(self) -> int | None: ...

    @property
    def retry_after(self) -> float | None: ...

    @property
    def provider_id(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...


class ChannelTransport(Protocol):
    async def send(
        self, *, channel: Channel, secrets: Mapping[SecretKeyRef, str], notices: Sequence[Notice]
    ) -> SendResult:
        """Send one message (one notice, or a digest of several) over the channel."""
        ...


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """The last outcome on a channel, for its status."""

    at: datetime
    event: str
    incident: str
    outcome: str
    """``sent`` or ``failed``."""
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChannelHealth:
    """What a channel's status says: usable or not (and why), and its backlog."""

    key: str
    ready: bool
    reason: str
    message: str
    pending: int
    failed: int
    last_delivery: Delivery | None
    generation: int | None


class ChannelReporter(Protocol):
    async def report(self, health: ChannelHealth) -> None:
        """Write the channel's status (only called when it changed)."""
        ...

    async def warn(self, *, key: str, reason: str, message: str) -> None:
        """A Warning Event on the channel (failed, disabled, misconfigured)."""
        ...


class DeliveryObserver(Protocol):
    def delivered(
        self, *, channel: str, channel_type: str, outcome: str, latency: float | None
    ) -> None:
        """One notice's attempt ended (``sent``, ``retried``, ``failed``); ``latency`` is
        seconds from the event to its delivery, for sent ones."""
        ...

    def pending(self, count: int) -> None: ...
