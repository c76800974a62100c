"""``ContextReader`` over the Kubernetes API: the objects behind incidents' targets, read in rounds.

Cost: a mass outage opens its incidents together, and reading each one's context on its own
would be four lists per incident. Reads of one namespace that arrive within ``gather_for`` of
each other form a round: one list each of pods, ReplicaSets, EndpointSlices and Warning
Events for the namespace (matched to each target here), plus one get per distinct target for
its selector. 100 incidents of one namespace cost about 104 requests, not 500.

Bodies are read as the API server's JSON (``*_without_preload_content``): the domain reads
plain dicts, and building the client's models for every pod of a namespace would cost more
than the requests. A 403 or 404 is recorded in the context (``unreadable``, the target's
``problem``): retrying cannot change it, and the context must say what it could not see.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from downtime_operator.adapters.kube.resources import HTTP_FORBIDDEN, HTTP_NOT_FOUND, LIST_PAGE
from downtime_operator.domain.kube_context import (
    TARGET_NOT_FOUND,
    NamespaceObjects,
    TargetKind,
    TargetObject,
    TargetRef,
)

Read = Callable[..., Awaitable[Any]]
TargetKey = tuple[TargetKind, str]
Round = tuple[dict[TargetKey, TargetObject], NamespaceObjects]

FORBIDDEN = "forbidden"


def _problem(exc: ApiException) -> str | None:
    """What a 403 or 404 means for the context; None for what a retry may fix."""
    if exc.status == HTTP_FORBIDDEN:
        return FORBIDDEN
    if exc.status == HTTP_NOT_FOUND:
        return TARGET_NOT_FOUND
    return None


@dataclass
class _Gathering:
    targets: set[TargetKey] = field(default_factory=set)
    task: asyncio.Task[Round] | None = None


class KubeContextReader:
    def __init__(self, api_client: client.ApiClient, *, gather_for: float = 0.2) -> None:
        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        discovery = client.DiscoveryV1Api(api_client)
        self._lists: dict[str, tuple[Read, dict[str, str]]] = {
            "pods": (core.list_namespaced_pod_without_preload_content, {}),
            "replicasets": (apps.list_namespaced_replica_set_without_preload_content, {}),
            "endpointslices": (
                discovery.list_namespaced_endpoint_slice_without_preload_content,
                {},
            ),
            # Normal events are most of a namespace's events and never a cause.
            "events": (
                core.list_namespaced_event_without_preload_content,
                {"field_selector": "type=Warning"},
            ),
        }
        self._gets: dict[TargetKind, Read] = {
            TargetKind.SERVICE: core.read_namespaced_service_without_preload_content,
            TargetKind.DEPLOYMENT: apps.read_namespaced_deployment_without_preload_content,
            TargetKind.STATEFULSET: apps.read_namespaced_stateful_set_without_preload_content,
        }
        self._gather_for = gather_for
        self._gathering: dict[str, _Gathering] = {}
        self.requests = 0
        """API requests made so far (the cost the benchmark counts)."""

    async def read_context(self, target: TargetRef) -> tuple[TargetObject, NamespaceObjects]:
        gathering = self._gathering.get(target.namespace)
        if gathering is None:
            gathering = self._gathering[target.namespace] = _Gathering()
            gathering.task = asyncio.create_task(
                self._round(target.namespace, gathering), name=f"context {target.namespace}"
            )
        key = (target.kind, target.name)
        gathering.targets.add(key)
        assert gathering.task is not None
        # Shielded: one reader giving up (its sink stopping) must not cancel the others' round.
        found, objects = await asyncio.shield(gathering.task)
        return found[key], objects

    async def _round(self, namespace: str, gathering: _Gathering) -> Round:
        await asyncio.sleep(self._gather_for)
        # Closed: a read from now on starts the next round.
        del self._gathering[namespace]
        targets = sorted(gathering.targets)
        listed, found = await asyncio.gather(
            asyncio.gather(*(self._list(namespace, kind) for kind in self._lists)),
            asyncio.gather(*(self._get(namespace, target) for target in targets)),
        )
        read = dict(zip(self._lists, listed, strict=True))
        unreadable = {kind: why for kind, (_, why) in read.items() if why}
        items = {kind: found_items for kind, (found_items, _) in read.items()}
        objects = NamespaceObjects(
            pods=items["pods"],
            replicasets=items["replicasets"],
            endpointslices=items["endpointslices"],
            events=items["events"],
            unreadable=unreadable,
        )
        return dict(zip(targets, found, strict=True)), objects

    async def _list(self, namespace: str, kind: str) -> tuple[list[dict[str, Any]], str | None]:
        """Every item (paged), or none and why (403, 404)."""
        read, options = self._lists[kind]
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            try:
                page = await self._json(
                    read,
                    namespace,
                    limit=LIST_PAGE,
                    **options,
                    **({"_continue": token} if token else {}),
                )
            except ApiException as exc:
                problem = _problem(exc)
                if problem is None:
                    raise
                return [], problem
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, None

    async def _get(self, namespace: str, target: TargetKey) -> TargetObject:
        kind, name = target
        try:
            return TargetObject(body=await self._json(self._gets[kind], name, namespace))
        except ApiException as exc:
            problem = _problem(exc)
            if problem is None:
                raise
            return TargetObject(problem=problem)

    async def _json(self, read: Read, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests += 1
        response = await read(*args, **kwargs)
        try:
            body = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason)
        found: dict[str, Any] = json.loads(body)
        return found
