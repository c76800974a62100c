"""What a failed check learns about its server beyond the check itself (``ServerInfo``).

Asked for only by the check whose failure opens an incident, and run after that check's own
deadline, so it never changes the check's result and costs a healthy check nothing. Each step
is bounded and may fail on its own; the reason is kept in ``problems``. The addresses are the
URL host's, resolved now (a refused connection still names where it tried). The certificate is
read with a second handshake that does not verify it, because the one worth reading is often
the one that failed verification (self-signed, expired, wrong name).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509

from downtime_operator.domain.evidence import Certificate, ServerInfo

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ServerDescriber:
    def __init__(self, *, instance: str, version: str, timeout: float) -> None:
        self._instance = instance
        self._version = version
        self._timeout = timeout
        """Bound of each step (lookup, handshake), in seconds."""
        self._unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._unverified.check_hostname = False
        self._unverified.verify_mode = ssl.CERT_NONE

    async def describe(
        self, url: str, *, answered: ServerInfo | None, failure: BaseException | None
    ) -> ServerInfo:
        """``answered``: what the failed answer said (HTTP version, headers), None without one;
        ``failure``: why the check got no answer, None with one."""
        target = urlsplit(url)
        host = target.hostname
        port = target.port or _DEFAULT_PORTS.get(target.scheme)
        problems: list[str] = []
        addresses: tuple[str, ...] = ()
        certificate: Certificate | None = None
        # After a failed lookup there is nothing to resolve: the check's error says why.
        if host and port and not isinstance(failure, aiohttp.ClientConnectorDNSError):
            try:
                async with asyncio.timeout(self._timeout):
                    addresses = await _addresses(host, port)
            except Exception as exc:  # evidence is best effort; the incident opens regardless
                problems.append(f"address lookup failed: {self._reason(exc)}")
        if host and port and target.scheme == "https" and _reached_server(failure):
            try:
                async with asyncio.timeout(self._timeout):
                    certificate = await self._certificate(host, port)
            except Exception as exc:
                problems.append(f"certificate not read: {self._reason(exc)}")
        return dataclasses.replace(
            answered or ServerInfo(),
            addresses=addresses,
            certificate=certificate,
            operator_instance=self._instance,
            operator_version=self._version,
            problems=tuple(problems),
        )

    async def _certificate(self, host: str, port: int) -> Certificate:
        _, writer = await asyncio.open_connection(
            host, port, ssl=self._unverified, server_hostname=host
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not der:
            raise ValueError("the server presented no certificate")
        return parse_certificate(der)

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer within {self._timeout:g}s"
        return str(exc) or type(exc).__name__


def parse_certificate(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
    )


async def _addresses(host: str, port: int) -> tuple[str, ...]:
    with contextlib.suppress(ValueError):
        # An address already: no lookup (which runs in a thread; a mass outage makes many).
        return (str(ipaddress.ip_address(host)),)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))  # unique, resolver's order


def _reached_server(failure: BaseException | None) -> bool:
    """Whether a TLS handshake may tell something: not after a refused or unroutable connect."""
    if isinstance(failure, aiohttp.ClientSSLError):
        return True
    return not isinstance(failure, aiohttp.ClientConnectorError)
