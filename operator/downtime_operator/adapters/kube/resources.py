"""IncidentResources over the official Kubernetes client's asyncio flavour (``kubernetes.aio``).

Every call is a coroutine on the event loop, over one aiohttp connection pool: no worker threads
for the calls to queue for. With the synchronous client, a handful of default-executor threads
carried every status refresh and every incident write, so at thousands of monitors an
incident's DowntimeIncident waited behind thousands of refreshes. Auth handling (kubeconfig,
in-cluster service-account tokens) is the client's, as kopf's is.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from downtime_operator.adapters.kube.bodies import (
    GROUP,
    INCIDENTS,
    MONITOR_LABEL,
    MONITORS,
    VERSION,
    event_body,
    incident_body,
    incident_status,
    log_capture_status,
)
from downtime_operator.adapters.kube.incident_from_cr import incident_from_resource
from downtime_operator.domain.log_capture import CaptureResult
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef
from downtime_operator.services.ports import WriteRefusedError

logger = logging.getLogger(__name__)

HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
REFUSED_FOR_GOOD = frozenset({400, 422})
"""Bad request and invalid (schema, CEL): the same body will be refused again. Not 403 in
general: RBAC is fixed by people, and then the queued writes should go through."""


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _message(exc: ApiException) -> str:
    """The API server's Status message (it names the field), or the reason phrase."""
    return str(_status_body(exc).get("message") or exc.reason)


def refused_for_good(exc: ApiException) -> bool:
    """Whether the same request can only be refused again, so retrying it must stop."""
    return exc.status in REFUSED_FOR_GOOD or _namespace_closed(exc)


def _namespace_closed(exc: ApiException) -> bool:
    """Nothing can be created in a namespace that is being deleted (403, for as long as its
    finalizers take) or is gone (404 on the namespace): retrying would hold up every write
    queued behind this one, for every other namespace too."""
    if exc.status == HTTP_FORBIDDEN:
        return "because it is being terminated" in _message(exc)
    if exc.status == HTTP_NOT_FOUND:
        return (_status_body(exc).get("details") or {}).get("kind") == "namespaces"
    return False


API_CONNECTIONS = 100
"""Concurrent requests to the API server per client: the sinks and the status writer bound
their own concurrency well below it."""


PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
"""Set in the environment, they make the Kubernetes client honour proxies (``trust_env``)."""


async def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG).

    The client holds an aiohttp session: ``await api_client.close()`` when done.
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = API_CONNECTIONS
    # With trust_env, aiohttp looks up the proxy variables and reads ~/.netrc, in a thread, for
    # every request: a sixth of the operator's CPU while a mass outage writes its incidents.
    # Only a process that has a proxy configured pays for it.
    configuration.client_session_kwargs = {"trust_env": _proxy_configured(os.environ)}
    return client.ApiClient(configuration)


def _proxy_configured(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in PROXY_VARIABLES)


LIST_PAGE = 500


def _open_ones(items: list[dict[str, Any]]) -> list[Incident]:
    return [
        incident_from_resource(item)
        for item in items
        if (item.get("status") or {}).get("status", "ongoing") != "resolved"
    ]


class KubeResources:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._uids: dict[MonitorRef, str | None] = {}

    async def close(self) -> None:
        """Close the client's connections (``KubeSecrets`` may share the client)."""
        await self.api_client.close()  # type: ignore[no-untyped-call]

    async def _call(self, fn: Callable[..., Awaitable[object]], *args: Any, **kwargs: Any) -> Any:
        # The client's return types are loose; callers read the JSON bodies they asked for.
        try:
            return await fn(*args, **kwargs)
        except ApiException as exc:
            if refused_for_good(exc):
                raise WriteRefusedError(
                    f"API server refused {getattr(fn, '__name__', 'the call')}:"
                    f" HTTP {exc.status} {_message(exc)}"
                ) from exc
            raise

    async def _monitor_uid(self, monitor: MonitorRef) -> str | None:
        if monitor not in self._uids:
            try:
                body = await self._call(
                    self._custom.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    monitor.namespace,
                    MONITORS,
                    monitor.name,
                )
            except ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise
                return None
            self._uids[monitor] = body["metadata"]["uid"]
        return self._uids[monitor]

    def forget_monitor(self, monitor: MonitorRef) -> None:
        self._uids.pop(monitor, None)

    async def upsert_incident(self, incident: Incident) -> None:
        namespace = incident.monitor.namespace
        created: dict[str, Any] | None = None
        try:
            created = await self._call(
                self._custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                INCIDENTS,
                incident_body(incident, monitor_uid=await self._monitor_uid(incident.monitor)),
            )
        except ApiException as exc:
            # Already there: a retry after a lost response, or a restart. The name is derived
            # from the outage start, so this is the same incident and only its status moves on.
            if exc.status != HTTP_CONFLICT:
                raise
        patch: dict[str, Any] = {"status": incident_status(incident)}
        if incident.is_open:
            # A write queued before someone resolved the incident (the admin API, another
            # replica) must not move the CR back to ongoing: resolved is final. The patch
            # carries the resourceVersion last seen, so a resolve in between makes it a
            # conflict (409, retried by the queue, which then reads "resolved" and stops here).
            # A CR this call created was seen in the create's answer: no read needed.
            current = created or await self._call(
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                INCIDENTS,
                incident.k8s_name,
            )
            if (current.get("status") or {}).get("status") == IncidentStatus.RESOLVED.value:
                logger.info(
                    "DowntimeIncident %s/%s is resolved; not moving it back to %s",
                    namespace,
                    incident.k8s_name,
                    incident.status,
                )
                return
            patch["metadata"] = {"resourceVersion": current["metadata"]["resourceVersion"]}
        await self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            INCIDENTS,
            incident.k8s_name,
            patch,
        )

    async def delete_incident(self, incident: Incident) -> None:
        try:
            await self._call(
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                incident.monitor.namespace,
                INCIDENTS,
                incident.k8s_name,
            )
        except ApiException as exc:
            # Already gone (deleted with its monitor, or by an earlier retention run).
            if exc.status != HTTP_NOT_FOUND:
                raise

    async def publish_log_capture(self, incident: Incident, result: CaptureResult) -> None:
        # Deleted (by a user, or with its monitor): the row in Postgres still has it all.
        if not await self._patch_incident_status(incident, log_capture_status(result)):
            logger.info("DowntimeIncident %s is gone; capture state not shown", incident.k8s_name)

    async def publish_kube_context(self, incident: Incident, summary: Mapping[str, Any]) -> bool:
        # Not there: not created yet (the resource sink is behind) or deleted; the sink decides.
        return await self._patch_incident_status(incident, {"context": dict(summary)})

    async def _patch_incident_status(self, incident: Incident, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the DowntimeIncident's; False when it does not exist."""
        try:
            await self._call(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                incident.monitor.namespace,
                INCIDENTS,
                incident.k8s_name,
                {"status": status},
            )
        except ApiException as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise
            return False
        return True

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        listing = await self._call(
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            monitor.namespace,
            INCIDENTS,
            label_selector=f"{MONITOR_LABEL}={monitor.name}",
        )
        return max(_open_ones(listing.get("items", [])), key=lambda i: i.started_at, default=None)

    async def find_open_incidents(self, namespace: str) -> list[Incident]:
        # Paged: a namespace keeps its resolved incidents for the retention period.
        return _open_ones(
            await self._list_all(self._custom.list_namespaced_custom_object, namespace, INCIDENTS)
        )

    async def list_monitors(self, *, namespaces: Sequence[str]) -> list[dict[str, Any]]:
        """Every HealthMonitor's body (all namespaces when ``namespaces`` is empty).

        Also remembers each monitor's UID, which every DowntimeIncident's owner reference
        needs: a mass outage then creates its CRs without first reading each monitor.
        """
        if namespaces:
            bodies = [
                body
                for namespace in namespaces
                for body in await self._list_all(
                    self._custom.list_namespaced_custom_object, namespace, MONITORS
                )
            ]
        else:
            bodies = await self._list_all(self._custom.list_cluster_custom_object, MONITORS)
        for body in bodies:
            meta = body.get("metadata") or {}
            if meta.get("uid"):
                self._uids[MonitorRef(namespace=meta["namespace"], name=meta["name"])] = meta["uid"]
        return bodies

    async def _list_all(
        self, list_fn: Callable[..., Awaitable[object]], *args: str
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            listing = await self._call(
                list_fn,
                GROUP,
                VERSION,
                *args,
                limit=LIST_PAGE,
                **({"_continue": token} if token else {}),
            )
            items += listing.get("items", [])
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def patch_monitor_status(self, monitor: MonitorRef, status: Mapping[str, Any]) -> None:
        await self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            monitor.namespace,
            MONITORS,
            monitor.name,
            {"status": dict(status)},
        )

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        body = event_body(
            monitor=monitor,
            monitor_uid=await self._monitor_uid(monitor),
            reason=reason,
            message=message,
            warning=warning,
            now=datetime.now(UTC),
        )
        await self._call(self._core.create_namespaced_event, monitor.namespace, body)
