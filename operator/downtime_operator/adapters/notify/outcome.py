"""What one delivery attempt came to, in terms the delivery loop can act on."""

from __future__ import annotations

from dataclasses import dataclass

_HTTP_TOO_MANY_REQUESTS = 429
_HTTP_SERVER_ERROR = 500


@dataclass(frozen=True, kw_only=True)
class SendOutcome:
    """One attempt's result.

    ``status`` is the provider's HTTP status, or the SMTP reply code for email over SMTP; None
    when no answer came (connection refused, reset, TLS failure, timeout). ``error`` is a short
    message naming the provider's reason; it never holds a secret or a URL (a Slack webhook URL
    is itself the secret). ``retry_after`` is the provider's ``Retry-After`` in seconds.

    ``transient`` overrides the HTTP reading of ``status`` for protocols whose codes mean
    something else (SMTP: 4xx transient, 5xx permanent; the opposite of HTTP's 4xx) and for
    provider answers whose meaning the status alone does not carry (Resend's 409 for an
    idempotent request still in progress). None: judge by the HTTP status.
    """

    delivered: bool
    status: int | None
    retry_after: float | None
    provider_id: str | None
    error: str | None
    transient: bool | None = None

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed: 429, 5xx and no answer, unless overridden.

        Other statuses (400, 401, 403, 404, 410, ...) will fail the same way every time, so
        the delivery loop should give up at once.
        """
        if self.delivered:
            return False
        if self.transient is not None:
            return self.transient
        return (
            self.status is None
            or self.status == _HTTP_TOO_MANY_REQUESTS
            or self.status >= _HTTP_SERVER_ERROR
        )
