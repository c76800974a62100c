"""Email over SMTP with ``aiosmtplib``: one connection, one message, then QUIT.

SMTP's reply codes read the other way round from HTTP's: 4xx is transient (421 service not
available, 450/451/452 try later, 454 temporary auth failure) and 5xx permanent (530 STARTTLS
required, 535 bad credentials, 550 mailbox unavailable, 554 rejected), so the outcome says which
with ``transient`` and ``status`` holds the SMTP code. No answer (refused, reset, timeout) is
``status`` None and transient; a certificate the client does not trust, or a server without
STARTTLS or AUTH when they are asked for, is permanent: it is a configuration to fix.

SMTP is at-least-once: a connection lost after the server took the message but before its
250 reached us makes a retry deliver a second copy (with the same ``Message-ID``).
"""

from __future__ import annotations

import email.message
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal, get_args

import aiosmtplib

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.transport import excerpt

TlsMode = Literal["starttls", "implicit", "none"]
TLS_MODES: tuple[TlsMode, ...] = get_args(TlsMode)
DEFAULT_PORTS: dict[TlsMode, int] = {"starttls": 587, "implicit": 465, "none": 25}
DEFAULT_TIMEOUT = 30.0
_SCHEME_TLS: dict[str, TlsMode] = {"smtp": "starttls", "smtps": "implicit"}
_URL_PARAMETERS = frozenset({"tls", "ca_file"})
_MAX_PORT = 65535
_SMTP_TRANSIENT_MIN = 400
_SMTP_PERMANENT_MIN = 500


@dataclass(frozen=True, kw_only=True)
class SmtpConfig:
    """Where and how to submit mail. ``ca_file``: a PEM bundle of a private CA (None: the
    system's trust store). The password is kept out of ``repr`` so a logged config leaks
    nothing."""

    host: str
    port: int
    tls: TlsMode
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("SMTP: the host is empty")
        if not 1 <= self.port <= _MAX_PORT:
            raise ValueError(f"SMTP: port {self.port} is not between 1 and {_MAX_PORT}")
        if self.tls not in TLS_MODES:
            raise ValueError(f"SMTP: tls must be one of {', '.join(TLS_MODES)}")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP: a username needs a password and a password a username")
        if self.timeout <= 0:
            raise ValueError("SMTP: the timeout must be positive")


def parse_smtp_url(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> SmtpConfig:
    """``smtp://user:pass@host:587?tls=starttls`` (``SMTP_URL``) as a config.

    ``smtp://`` defaults to STARTTLS and ``smtps://`` is implicit TLS; ``tls=none`` sends in
    clear (a local relay). The port defaults to 587, 465 or 25 by TLS mode. User and password
    are percent-decoded. ``ca_file=/path/ca.pem`` trusts a private CA. Errors name what is
    wrong and never quote the URL, which holds the password.
    """
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEME_TLS:
        raise ValueError(
            f"SMTP URL: the scheme must be smtp:// or smtps://, not {scheme or 'missing'!r}"
        )
    if not parts.hostname:
        raise ValueError("SMTP URL: no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("SMTP URL: takes no path or fragment, only smtp://user:pass@host:port")
    parameters = _query_parameters(parts.query)
    tls = _tls_mode(scheme, parameters.get("tls"))
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"SMTP URL: the port is not a number from 1 to {_MAX_PORT}") from None
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise ValueError("SMTP URL: a user but no password (smtp://user:password@host)")
    if not username and password is not None:
        raise ValueError("SMTP URL: a password but no user (smtp://user:password@host)")
    return SmtpConfig(
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PORTS[tls],
        tls=tls,
        username=username,
        password=password,
        timeout=timeout,
        ca_file=parameters.get("ca_file") or None,
    )


def _query_parameters(query: str) -> dict[str, str]:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    unknown = sorted(set(names) - _URL_PARAMETERS)
    if unknown:
        raise ValueError(
            f"SMTP URL: unknown parameter(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_URL_PARAMETERS))})"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"SMTP URL: parameter(s) given twice: {', '.join(repeated)}")
    return dict(pairs)


def _tls_mode(scheme: str, requested: str | None) -> TlsMode:
    implied = _SCHEME_TLS[scheme]
    if requested is None:
        return implied
    for mode in TLS_MODES:
        if requested.lower() == mode:
            if scheme == "smtps" and mode != "implicit":
                raise ValueError(f"SMTP URL: smtps:// is implicit TLS; tls={mode} contradicts it")
            return mode
    raise ValueError(f"SMTP URL: tls must be one of {', '.join(TLS_MODES)}, not {requested!r}")


async def send_smtp(config: SmtpConfig, message: email.message.EmailMessage) -> SendOutcome:
    """Submit ``message`` to its ``To``/``Cc``/``Bcc`` from its ``From`` (or ``Sender``).

    ``provider_id`` is the server's reply to the message (it usually names the queue id).
    Some recipients refused while others took it is a delivery whose ``error`` names the
    refused ones: retrying would send the accepted ones a second copy.
    """
    try:
        refused, reply = await aiosmtplib.send(
            message,
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.tls == "implicit",
            start_tls=config.tls == "starttls",
            timeout=config.timeout,
            cert_bundle=config.ca_file,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        return _failure(
            "every recipient refused: " + _refusals(exc.recipients),
            status=codes[0] if codes else None,
            transient=bool(codes) and all(_is_transient(code) for code in codes),
        )
    except aiosmtplib.SMTPResponseException as exc:
        return _failure(
            f"{_stage(exc)}: {exc.code} {exc.message}",
            status=exc.code,
            transient=_is_transient(exc.code),
        )
    except aiosmtplib.SMTPTimeoutError:
        return _failure(f"no answer within {config.timeout:g} s", transient=True)
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        return _failure(_connection_reason(exc), transient=not _untrusted(exc))
    except aiosmtplib.SMTPException as exc:
        # STARTTLS or AUTH asked for and not offered, and the like: a configuration to fix.
        return _failure(f"not possible with this server: {exc.message}", transient=False)
    return SendOutcome(
        delivered=True,
        status=250,
        retry_after=None,
        provider_id=excerpt(reply) or None,
        error=f"some recipients refused: {_refusals_by_address(refused)}" if refused else None,
    )


def _is_transient(code: int) -> bool:
    return _SMTP_TRANSIENT_MIN <= code < _SMTP_PERMANENT_MIN


def _stage(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "authentication failed"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return f"sender {exc.sender} refused"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return f"recipient {exc.recipient} refused"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message refused"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "the server refused the connection"
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return "greeting (EHLO) refused"
    return "the server answered"


def _refusals(refused: list[aiosmtplib.SMTPRecipientRefused]) -> str:
    return excerpt("; ".join(f"{r.recipient} ({r.code} {r.message})" for r in refused))


def _refusals_by_address(refused: dict[str, aiosmtplib.SMTPResponse]) -> str:
    return excerpt("; ".join(f"{address} ({r.code} {r.message})" for address, r in refused.items()))


def _untrusted(exc: BaseException) -> bool:
    """Whether the failure, or what caused it, is a certificate the client does not trust."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _connection_reason(exc: BaseException) -> str:
    if _untrusted(exc):
        return "the server's TLS certificate is not trusted (set ca_file for a private CA)"
    text = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
    return f"connection failed: {excerpt(text) or exc.__class__.__name__}"


def _failure(message: str, *, status: int | None = None, transient: bool) -> SendOutcome:
    return SendOutcome(
        delivered=False,
        status=status,
        retry_after=None,
        provider_id=None,
        error=f"smtp: {message}",
        transient=transient,
    )
