"""NotificationChannels on Kubernetes: the directory the operator's watch keeps, and the
channel status and Events that say how delivery goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio import client

from downtime_operator.adapters.kube.bodies import GROUP, VERSION, event_body
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.notifications.channel import parse_channel_spec
from downtime_operator.domain.spec import InvalidSpecError
from downtime_operator.services.notifications.ports import Channel, ChannelHealth, ChannelProblem

CHANNELS = "notificationchannels"


class KubeChannelDirectory:
    """Every NotificationChannel the watch has seen, parsed once per change.

    Fed by the kopf layer (``update``/``remove``); read by the notification sink and the
    delivery loop. A channel the parser refuses stays known as a problem, so its notifications
    wait (and its status says why) instead of being dropped as if it did not exist.
    """

    def __init__(self) -> None:
        self._channels: dict[str, Channel | ChannelProblem] = {}

    def update(
        self, *, namespace: str, name: str, spec: Mapping[str, Any], generation: int | None
    ) -> None:
        key = f"{namespace}/{name}"
        try:
            parsed = parse_channel_spec(spec)
        except InvalidSpecError as exc:
            self._channels[key] = ChannelProblem(key=key, message=str(exc))
            return
        self._channels[key] = Channel(key=key, spec=parsed, generation=generation)

    def remove(self, *, namespace: str, name: str) -> None:
        self._channels.pop(f"{namespace}/{name}", None)

    def lookup(self, key: str) -> Channel | ChannelProblem | None:
        return self._channels.get(key)

    def known(self) -> Sequence[str]:
        return list(self._channels)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def channel_status(health: ChannelHealth, *, since: datetime) -> dict[str, Any]:
    """The ``status`` of a NotificationChannel; ``since``: when Ready last changed."""
    ready: dict[str, Any] = {
        "type": "Ready",
        "status": "True" if health.ready else "False",
        "reason": health.reason,
        "message": health.message[:4096],
        "lastTransitionTime": _iso(since),
    }
    status: dict[str, Any] = {
        "conditions": [ready],
        "pending": health.pending,
        "failed": health.failed,
    }
    if health.generation is not None:
        ready["observedGeneration"] = health.generation
        status["observedGeneration"] = health.generation
    last = health.last_delivery
    if last is not None:
        delivery: dict[str, Any] = {
            "time": _iso(last.at),
            "event": last.event[:128],
            "incident": last.incident,
            "outcome": last.outcome,
        }
        if last.error:
            delivery["error"] = last.error[:1024]
        status["lastDelivery"] = delivery
    return status


class KubeChannelReporter:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._ready_since: dict[str, tuple[bool, str, datetime]] = {}

    async def report(self, health: ChannelHealth) -> None:
        now = datetime.now(UTC)
        previous = self._ready_since.get(health.key)
        if previous is None or previous[:2] != (health.ready, health.reason):
            previous = self._ready_since[health.key] = (health.ready, health.reason, now)
        namespace, _, name = health.key.partition("/")
        await self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            CHANNELS,
            name,
            {"status": channel_status(health, since=previous[2])},
        )

    async def warn(self, *, key: str, reason: str, message: str) -> None:
        namespace, _, name = key.partition("/")
        body = event_body(
            monitor=MonitorRef(namespace=namespace, name=name),
            monitor_uid=None,
            reason=reason,
            message=message,
            warning=True,
            now=datetime.now(UTC),
            kind="NotificationChannel",
        )
        # The client sends a dict body as the JSON it is (its stubs ask for a model).
        await self._core.create_namespaced_event(namespace, body)  # type: ignore[arg-type]
