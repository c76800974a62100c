"""A real SMTP server for the tests: ``aiosmtpd`` on 127.0.0.1, a random port, its own thread.

Modes, as a mail provider offers them:

- ``starttls`` (submission, port 587 style): STARTTLS is required before anything else, then
  AUTH (LOGIN or PLAIN) with the known user before MAIL;
- ``implicit`` (port 465 style): TLS from the first byte, then AUTH;
- ``none``: clear text, no AUTH (a local relay).

The certificate is self-signed for ``localhost`` and ``127.0.0.1``, made at test time with
``cryptography`` (``make_tls_files``); a client trusts it through ``cert`` (the ``ca_file`` of
``SmtpConfig``). Received messages are parsed into ``EmailMessage`` objects and kept with their
envelope, whether they came over TLS, and the user who authenticated. ``reject_next`` scripts
a reply code for the next RCPT or DATA (451 to see a transient failure, 550 a permanent one).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
USERNAME = "notify@example.test"
PASSWORD = "correct horse battery staple"
Mode = Literal["starttls", "implicit", "none"]
Stage = Literal["rcpt", "data"]


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated_as: str | None


def make_tls_files(directory: Path, *, hostname: str = "localhost") -> TlsFiles:
    """A self-signed certificate for ``hostname`` and 127.0.0.1, and its key, as PEM files.

    It is its own CA (basic constraints, key identifiers), so a client can trust it as a
    bundle and check the host name against it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(cert=directory / "smtp-cert.pem", key=directory / "smtp-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class _RandomPortController(Controller):
    """aiosmtpd's controller pokes its own port to see the server up, so port 0 needs the
    port the system picked to be known first."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it untyped


class SmtpServer:
    """The test SMTP server; a context manager that starts and stops its thread."""

    def __init__(
        self,
        *,
        mode: Mode = "starttls",
        tls_files: TlsFiles | None = None,
        username: str = USERNAME,
        password: str = PASSWORD,
    ) -> None:
        if mode != "none" and tls_files is None:
            raise ValueError(f"mode {mode!r} needs tls_files")
        self.mode = mode
        self.tls_files = tls_files
        self.username = username
        self.password = password
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._rejections: dict[Stage, collections.deque[str]] = {
            "rcpt": collections.deque(),
            "data": collections.deque(),
        }
        self._controller: Controller | None = None

    # -- scripting and what happened --------------------------------------------------------------

    def reject_next(self, reply: str, *, at: Stage = "data") -> None:
        """Answer the next RCPT or DATA with ``reply`` (e.g. "451 4.3.0 Try again later")."""
        with self._lock:
            self._rejections[at].append(reply)

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    # -- where it is ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the SMTP server is not running")
        return int(self._controller.port)

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        """``SMTP_URL`` for this server, with the user, the password and the CA to trust."""
        scheme = "smtps" if self.mode == "implicit" else "smtp"
        query: dict[str, str] = {"tls": self.mode}
        credentials = ""
        if self.mode != "none":
            assert self.tls_files is not None
            query["ca_file"] = str(self.tls_files.cert)
            user = urllib.parse.quote(self.username, safe="")
            password = urllib.parse.quote(self.password, safe="")
            credentials = f"{user}:{password}@"
        return f"{scheme}://{credentials}{HOST}:{self.port}?{urllib.parse.urlencode(query)}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        context = self._server_context()
        parameters: dict[str, Any] = {}
        if self.mode != "none":
            parameters = {
                "authenticator": self._authenticate,
                "auth_required": True,
                # Under implicit TLS the whole connection is encrypted, but aiosmtpd only
                # knows about STARTTLS; its own check would refuse AUTH.
                "auth_require_tls": self.mode == "starttls",
            }
        if self.mode == "starttls":
            parameters |= {"tls_context": context, "require_starttls": True}
        self._controller = _RandomPortController(
            _Handler(self),
            hostname=HOST,
            port=0,
            ssl_context=context if self.mode == "implicit" else None,
            **parameters,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _server_context(self) -> ssl.SSLContext | None:
        if self.tls_files is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_files.cert, self.tls_files.key)
        return context

    # -- server side ------------------------------------------------------------------------------

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _take_rejection(self, stage: Stage) -> str | None:
        with self._lock:
            queue = self._rejections[stage]
            return queue.popleft() if queue else None

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)


class _Handler:
    """aiosmtpd's handler hooks (looked up by name)."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner
        self._queued = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rejection = self._owner._take_rejection("rcpt")
        if rejection is not None:
            return rejection
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rejection = self._owner._take_rejection("data")
        if rejection is not None:
            return rejection
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = getattr(session.auth_data, "login", None)
        self._owner._record(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                authenticated_as=login.decode() if isinstance(login, bytes) else None,
            )
        )
        self._queued += 1
        return f"250 2.0.0 Ok: queued as TEST{self._queued:05d}"
