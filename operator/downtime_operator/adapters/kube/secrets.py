"""``SecretValues`` from the Kubernetes API: the values of ``headersFrom`` request headers.

Read per check, a Secret would cost an API request per check (2,000 monitors at 10 s: 200 a
second), so each Secret is kept for ``ttl``: a rotated token is used from the next read on, at
most ``ttl`` later. When the API server cannot answer, the last value read is used for up to
``stale_for`` more, so an API server outage does not stop authenticated checks; a Secret or
key that is gone, or that the operator may not read, is reported at once.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from downtime_operator.adapters.kube.resources import HTTP_FORBIDDEN, HTTP_NOT_FOUND
from downtime_operator.services.ports import SecretUnavailableError


class KubeSecrets:
    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        ttl: float = 60.0,
        stale_for: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._ttl = ttl
        self._stale_for = stale_for
        self._monotonic = monotonic
        self._cache: dict[tuple[str, str], tuple[float, Mapping[str, str]]] = {}

    async def secret_value(self, *, namespace: str, name: str, key: str) -> str:
        data = await self._data(namespace, name)
        if key not in data:
            raise SecretUnavailableError(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(data[key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise SecretUnavailableError(
                f"key {key!r} of Secret {namespace}/{name} is not UTF-8 text"
            ) from exc
        # A value written with `echo` ends in a newline, which no header may hold.
        value = value.strip()
        if "\r" in value or "\n" in value:
            raise SecretUnavailableError(
                f"key {key!r} of Secret {namespace}/{name} holds a line break, not a header value"
            )
        return value

    async def _data(self, namespace: str, name: str) -> Mapping[str, str]:
        cached = self._cache.get((namespace, name))
        now = self._monotonic()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            secret = await self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                self._cache.pop((namespace, name), None)
                raise SecretUnavailableError(f"Secret {namespace}/{name} not found") from exc
            if exc.status == HTTP_FORBIDDEN:
                raise SecretUnavailableError(
                    f"the operator may not read Secret {namespace}/{name} (RBAC: get secrets)"
                ) from exc
            return self._stale(namespace, name, cached, now, exc)
        except Exception as exc:  # connection trouble: the API server is away
            return self._stale(namespace, name, cached, now, exc)
        data = {k: str(v) for k, v in (secret.data or {}).items()}  # base64 text
        self._cache[(namespace, name)] = (now, data)
        return data

    def _stale(
        self,
        namespace: str,
        name: str,
        cached: tuple[float, Mapping[str, str]] | None,
        now: float,
        exc: Exception,
    ) -> Mapping[str, str]:
        if cached is not None and now - cached[0] < self._ttl + self._stale_for:
            return cached[1]
        raise SecretUnavailableError(
            f"cannot read Secret {namespace}/{name}: {type(exc).__name__}"
        ) from exc
