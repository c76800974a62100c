"""The HTTP probe: one check of one endpoint, turned into a CheckResult that never lies.

Every way a check can go wrong becomes a failed result with a specific reason ("connection
refused", "timeout after 10s", "HTTP 503 Service Unavailable"...), because those reasons end up
in incidents and on-call people read them. Only cancellation escapes, so shutdown stays prompt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import socket
import ssl
from datetime import datetime, timedelta

import aiohttp

from downtime_operator.adapters.check_deadline import CheckDeadline, LoopStalls
from downtime_operator.adapters.client_session import SessionOwner
from downtime_operator.adapters.server_evidence import ServerDescriber
from downtime_operator.domain.durations import format_duration
from downtime_operator.domain.evidence import ServerInfo, shown_headers
from downtime_operator.domain.expectations import unmet_expectation
from downtime_operator.domain.models import CheckResult, MonitorSpec
from downtime_operator.services.ports import Clock
from downtime_operator.version import package_version

USER_AGENT = "downtime-operator/0.1 (+health check)"
EXCERPT_CHARS = 512
_CHUNK = 16 * 1024


class HttpProber(SessionOwner):
    """Implements the ``Prober`` port with ONE aiohttp session shared by every monitor.

    Sharing one connector keeps sockets and DNS lookups proportional to the number of hosts,
    not monitors. Use ``async with HttpProber(clock) as prober`` or ``start()``/``close()``.

    Bodies are read only up to ``max_body_bytes`` (a longer body is an "oversized body"
    failure and its connection is dropped, not pooled); only the first ``keep_body_bytes`` are
    kept in memory for ``bodyContains`` and the failure excerpt. A check that waits for a free
    connection counts that wait against its timeout, so ``limit_per_host`` must stay above the
    number of monitors that check one host at the same moment.

    A failed check asked for ``evidence`` also describes the server (``ServerDescriber``, each
    step within ``evidence_timeout`` seconds) as seen by ``instance`` (default: the hostname,
    which is the pod's name in Kubernetes).

    Deadlines and latencies leave out the time the event loop itself was stalled
    (``check_deadline``): an answer that waited for a busy operator is not the endpoint's fault.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_redirects: int = 5,
        keep_body_bytes: int = 64 * 1024,
        max_body_bytes: int = 1024 * 1024,
        limit: int = 1000,
        limit_per_host: int = 1000,
        dns_cache_seconds: int = 60,
        evidence_timeout: float = 2.0,
        instance: str | None = None,
    ) -> None:
        self._clock = clock
        self._max_redirects = max_redirects
        self._keep = keep_body_bytes
        self._max_body = max(max_body_bytes, keep_body_bytes)
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._dns_cache_seconds = dns_cache_seconds
        self._describer = ServerDescriber(
            instance=instance or socket.gethostname(),
            version=package_version(),
            timeout=evidence_timeout,
        )
        self._stalls = LoopStalls()

    async def start(self) -> None:
        await super().start()
        self._stalls.start()

    async def close(self) -> None:
        self._stalls.stop()
        await super().close()

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ttl_dns_cache=self._dns_cache_seconds,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Each check has its own deadline (asyncio.timeout below), not a session default.
            timeout=aiohttp.ClientTimeout(total=None),
            # Monitors must not leak cookies into each other through the shared session.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    async def check(self, spec: MonitorSpec, *, evidence: bool = False) -> CheckResult:
        """Probe ``spec.url`` once, within ``spec.timeout`` (connect, headers and body).

        With ``evidence``, a failed result also describes the server, after the deadline.
        """
        if self._session is None:
            raise RuntimeError("HttpProber.check() called before start()")
        at = self._clock.now()
        failure: Exception | None = None
        try:
            async with asyncio.timeout(None) as scope:
                deadline = CheckDeadline(
                    scope, timeout=spec.timeout.total_seconds(), stalls=self._stalls
                )
                try:
                    result = await self._exchange(
                        self._session, spec, at, deadline, evidence=evidence
                    )
                finally:
                    deadline.disarm()
        except Exception as exc:  # every failure is a result, by design
            failure = exc
            result = CheckResult(at=at, ok=False, error=describe_failure(exc, spec.timeout))
        if result.ok or not evidence:
            return result
        server = await self._describer.describe(spec.url, answered=result.server, failure=failure)
        return dataclasses.replace(result, server=server)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        spec: MonitorSpec,
        at: datetime,
        deadline: CheckDeadline,
        *,
        evidence: bool,
    ) -> CheckResult:
        data = spec.body.encode() if spec.body is not None else None
        async with session.request(
            spec.method,
            spec.url,
            headers=spec.headers,
            data=data,
            allow_redirects=True,
            # aiohttp raises on reaching its limit, so allow one more to follow max_redirects.
            max_redirects=self._max_redirects + 1,
        ) as response:
            kept, oversized = await self._read_body(response)
            if oversized:
                # Do not drain an endless body, and never pool a connection mid-body.
                response.close()
            latency = deadline.latency()
        error = unmet_expectation(
            spec.expect,
            status_code=response.status,
            reason=response.reason,
            body=kept,
            latency=timedelta(seconds=latency),
            body_over_limit=self._max_body if oversized else None,
        )
        return CheckResult(
            at=at,
            ok=error is None,
            status_code=response.status,
            latency_ms=latency * 1000,
            error=error,
            body_excerpt=_excerpt(kept, response.charset) if error and kept else None,
            server=_answered(response) if error and evidence else None,
        )

    async def _read_body(self, response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        """Read at most ``max_body_bytes``; keep the first ``keep_body_bytes`` of them.

        Returns the kept bytes and whether the body was longer than the limit.
        """
        kept = bytearray()
        total = 0
        while total <= self._max_body:
            chunk = await response.content.read(_CHUNK)
            if not chunk:
                return bytes(kept), False
            total += len(chunk)
            if len(kept) < self._keep:
                kept += chunk[: self._keep - len(kept)]
        return bytes(kept), True


def _answered(response: aiohttp.ClientResponse) -> ServerInfo:
    """What the failed answer says about its server (the last one, after redirects)."""
    version = response.version
    return ServerInfo(
        http_version=None if version is None else f"HTTP/{version.major}.{version.minor}",
        headers=shown_headers(response.headers.items()),
    )


def describe_failure(exc: Exception, timeout: timedelta) -> str:
    """A specific, human reason for a check that got no usable answer."""
    if isinstance(exc, TimeoutError):  # our deadline, or aiohttp's socket timeouts
        return f"timeout after {format_duration(timeout)}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        # The history holds every redirect answer, including the one past the limit.
        followed = max(len(exc.history) - 1, 0)
        last = exc.history[-1].url if exc.history else exc.request_info.real_url
        return f"too many redirects (more than {followed}, last {last})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for host {exc.host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS error: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return f"TLS error: {_os_reason(cause)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"connection to {exc.host}:{exc.port} failed: {_os_reason(exc.os_error)}"
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "connection reset"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection reset (server closed the connection without answering)"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _os_reason(error: BaseException) -> str:
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(reason)


def _excerpt(body: bytes, charset: str | None) -> str:
    head = body[: EXCERPT_CHARS * 4]  # enough bytes for 512 characters in any UTF-8 text
    try:
        text = head.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset named by the server
        text = head.decode("utf-8", errors="replace")
    return text[:EXCERPT_CHARS]
