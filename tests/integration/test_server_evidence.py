"""``server_info`` of a failed check, against real servers on 127.0.0.1.

An https server with a self-signed certificate (made here with ``cryptography``), a closed port,
and the switchable TargetServer for answers that fail.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.support.target import TargetServer

from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.domain.models import MonitorSpec
from downtime_operator.version import package_version

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
NOT_AFTER = datetime(2031, 6, 30, 23, 59, 59, tzinfo=UTC)
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evidence Tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, "selfsigned.test"),
    ]
)


class FixedClock:
    def now(self) -> datetime:
        return T0

    async def sleep(self, seconds: float) -> None:
        """Never called by the prober."""


def spec_for(url: str) -> MonitorSpec:
    return MonitorSpec(url=url, timeout=timedelta(seconds=2))


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    async with HttpProber(FixedClock(), instance="operator-under-test") as probe:
        yield probe


@pytest.fixture(scope="module")
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a certificate that no client trusts (its own issuer)."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(SUBJECT)
        .issuer_name(SUBJECT)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[str]:
    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", healthy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/health"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_self_signed_certificate_is_named_by_its_issuer_and_expiry(
    prober: HttpProber, https_url: str
) -> None:
    result = await prober.check(spec_for(https_url), evidence=True)
    assert not result.ok
    assert result.error is not None and "certificate verify failed" in result.error, result
    server = result.server
    assert server is not None
    assert server.certificate is not None, server.problems
    assert server.certificate.not_after == NOT_AFTER
    # Self-signed: the issuer is the subject.
    assert server.certificate.issuer == "CN=selfsigned.test,O=Evidence Tests"
    assert server.certificate.subject == server.certificate.issuer
    assert server.addresses == ("127.0.0.1",)
    assert server.http_version is None  # no answer: the handshake failed
    assert (server.operator_instance, server.operator_version) == (
        "operator-under-test",
        package_version(),
    )
    assert server.problems == ()


async def test_a_refused_connection_records_the_resolved_address(prober: HttpProber) -> None:
    result = await prober.check(spec_for(f"http://127.0.0.1:{closed_port()}/health"), evidence=True)
    assert result.error == "connection refused"
    assert result.server is not None
    assert result.server.addresses == ("127.0.0.1",)
    assert (result.server.certificate, result.server.problems) == (None, ())


async def test_a_failed_answer_names_its_http_version_and_server(
    prober: HttpProber, target: TargetServer
) -> None:
    target.set_mode("failing")
    result = await prober.check(spec_for(target.url), evidence=True)
    assert result.status_code == 503
    server = result.server
    assert server is not None
    assert server.http_version == "HTTP/1.1"
    assert server.headers["Server"].startswith("Python/")  # aiohttp's own
    assert set(server.headers) <= {"Server", "Via", "X-Request-Id", "Retry-After"}
    assert server.addresses == ("127.0.0.1",)
    assert server.certificate is None  # plain http


async def test_only_a_failed_check_asked_for_evidence_describes_the_server(
    prober: HttpProber, target: TargetServer
) -> None:
    target.set_mode("healthy")
    healthy = await prober.check(spec_for(target.url), evidence=True)
    assert healthy.ok and healthy.server is None
    target.set_mode("failing")
    not_asked = await prober.check(spec_for(target.url))
    assert not not_asked.ok and not_asked.server is None
