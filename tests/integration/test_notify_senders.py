"""The notification senders against receivers that answer as the real services do
(tests/support/receivers) and against a real SMTP server (tests/support/smtp_server.py).

Each sender makes one attempt; these tests check what it makes of every kind of answer:
success, 429 with Retry-After, 5xx, the provider's own 4xx reasons, 410, no answer at all;
and that no outcome ever carries a secret (the Slack webhook URL, keys, passwords).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiohttp
import pytest
from standardwebhooks import Webhook
from tests.support.receivers import (
    PagerDutyReceiver,
    ResendReceiver,
    SlackReceiver,
    WebhookReceiver,
    new_secret,
)
from tests.support.smtp_server import PASSWORD, USERNAME, SmtpServer, TlsFiles, make_tls_files

from downtime_operator.adapters.notify.outcome import SendOutcome
from downtime_operator.adapters.notify.pagerduty import send_pagerduty
from downtime_operator.adapters.notify.resend import send_resend
from downtime_operator.adapters.notify.slack import send_slack
from downtime_operator.adapters.notify.smtp import SmtpConfig, parse_smtp_url, send_smtp
from downtime_operator.adapters.notify.transport import parse_retry_after
from downtime_operator.adapters.notify.webhook import secret_key, send_webhook, sign

pytestmark = pytest.mark.filterwarnings(
    # aiosmtpd's own warnings about the test server: AUTH under implicit TLS (which it cannot
    # see as TLS) and its deprecated login_data, which it sets itself.
    "ignore:Requiring AUTH while not requiring TLS:UserWarning",
    "ignore:Session.login_data is deprecated:DeprecationWarning",
)

TIMEOUT = 5.0
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefghijkl"
INCIDENT = "inc-2026-03-01-0001"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyReceiver]:
    with PagerDutyReceiver() as receiver:
        yield receiver


@pytest.fixture
def resend() -> Iterator[ResendReceiver]:
    with ResendReceiver() as receiver:
        yield receiver


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_starttls(tls_files: TlsFiles) -> Iterator[SmtpServer]:
    with SmtpServer(mode="starttls", tls_files=tls_files) as server:
        yield server


def trigger(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": INCIDENT,
        "payload": {
            "summary": "api-health is down: 503 Service Unavailable",
            "source": "https://api.example.test/health",
            "severity": "critical",
            "timestamp": "2026-03-01T12:00:00.000+00:00",
            "custom_details": {"monitor": "default/api-health"},
        },
    }
    return event | changes


def email_body(**changes: object) -> dict[str, object]:
    email: dict[str, object] = {
        "from": "Downtime <downtime@example.test>",
        "to": ["oncall@example.test"],
        "subject": "[opened] api-health is down",
        "text": "api-health is down since 12:00:00 UTC",
        "headers": {"Message-ID": f"<{INCIDENT}.opened@downtime.example.test>"},
    }
    return email | changes


def mail(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Downtime <downtime@example.test>"
    message["To"] = "oncall@example.test, lead@example.test"
    message["Subject"] = "[opened] api-health is down"
    message["Message-ID"] = f"<{INCIDENT}.opened@downtime.example.test>"
    for name, value in headers.items():
        message.replace_header(name, value)
    message.set_content("api-health is down since 12:00:00 UTC")
    return message


def assert_failed(outcome: SendOutcome, *, status: int | None, retryable: bool) -> str:
    assert not outcome.delivered
    assert outcome.status == status
    assert outcome.retryable is retryable
    assert outcome.error
    return outcome.error


# -- Retry-After and the outcome's verdict --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        (format_datetime(datetime.fromtimestamp(1_000_030, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(999_000, UTC), usegmt=True), 0.0),
        ("Sat, 01 Jan 2000 00:00:10 -0000", 10.0),
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    now = 946_684_800.0 if value and value.endswith("-0000") else 1_000_000.0
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("status", "transient", "retryable"),
    [
        (None, None, True),
        (429, None, True),
        (500, None, True),
        (503, None, True),
        (400, None, False),
        (404, None, False),
        (410, None, False),
        (409, True, True),
        (451, True, True),
        (535, False, False),
        (None, False, False),
    ],
)
def test_retryable_follows_http_unless_the_sender_says_otherwise(
    status: int | None, transient: bool | None, retryable: bool
) -> None:
    outcome = SendOutcome(
        delivered=False,
        status=status,
        retry_after=None,
        provider_id=None,
        error="x",
        transient=transient,
    )
    assert outcome.retryable is retryable


# -- Slack ----------------------------------------------------------------------------------------


async def test_slack_message_is_delivered(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    payload = {"text": "api-health is down", "blocks": [{"type": "section", "text": {}}]}
    outcome = await send_slack(
        session, webhook_url=slack.webhook_url, payload=payload, timeout=TIMEOUT
    )
    assert outcome == SendOutcome(
        delivered=True, status=200, retry_after=None, provider_id=None, error=None
    )
    assert slack.messages == [payload]
    assert slack.attempts[0].headers["content-type"] == "application/json"


async def test_slack_refuses_a_message_without_text_with_its_reason(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    outcome = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"username": "x"}, timeout=TIMEOUT
    )
    assert assert_failed(outcome, status=400, retryable=False) == "slack answered 400: no_text"
    assert slack.messages == []


async def test_slack_archived_channel_is_a_permanent_410(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    slack.fail_next(410)
    outcome = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"text": "x"}, timeout=TIMEOUT
    )
    error = assert_failed(outcome, status=410, retryable=False)
    assert error == "slack answered 410: channel_is_archived"


async def test_slack_removed_webhook_is_404_and_the_url_stays_secret(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    removed = slack.webhook_url[:-4] + "0000"
    outcome = await send_slack(session, webhook_url=removed, payload={"text": "x"}, timeout=TIMEOUT)
    error = assert_failed(outcome, status=404, retryable=False)
    assert error == "slack answered 404: no_service"
    assert removed.rsplit("/", 1)[1] not in error


async def test_slack_rate_limit_answers_429_with_retry_after(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    """One message a second with a burst of 3 (the receiver's defaults): the 4th is refused."""
    outcomes = [
        await send_slack(
            session, webhook_url=slack.webhook_url, payload={"text": f"{i}"}, timeout=TIMEOUT
        )
        for i in range(4)
    ]
    assert [o.delivered for o in outcomes] == [True, True, True, False]
    assert (
        assert_failed(outcomes[3], status=429, retryable=True) == "slack answered 429: rate_limited"
    )
    assert outcomes[3].retry_after == 1.0
    assert len(slack.messages) == 3


async def test_slack_scripted_429_surfaces_its_retry_after(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    slack.fail_next(429, retry_after=2)
    outcome = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"text": "x"}, timeout=TIMEOUT
    )
    assert_failed(outcome, status=429, retryable=True)
    assert outcome.retry_after == 2.0


async def test_slack_outage_is_retryable_and_passes(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    slack.fail_with(503, for_seconds=0.3)
    during = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"text": "x"}, timeout=TIMEOUT
    )
    assert_failed(during, status=503, retryable=True)
    await asyncio.sleep(0.35)  # the outage ends
    after = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"text": "x"}, timeout=TIMEOUT
    )
    assert after.delivered
    assert [a.status for a in slack.attempts] == [503, 200]


async def test_connection_refused_has_no_status_and_no_secret(
    session: aiohttp.ClientSession, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/services/T0/B0/SECRETTOKEN"
    outcome = await send_slack(session, webhook_url=url, payload={"text": "x"}, timeout=TIMEOUT)
    error = assert_failed(outcome, status=None, retryable=True)
    assert error.startswith(f"slack: cannot connect to 127.0.0.1:{closed_port}")
    assert "SECRETTOKEN" not in error


async def test_no_answer_within_the_timeout_is_retryable(
    session: aiohttp.ClientSession, slack: SlackReceiver
) -> None:
    slack.stall_next(1.0)
    outcome = await send_slack(
        session, webhook_url=slack.webhook_url, payload={"text": "x"}, timeout=0.2
    )
    assert assert_failed(outcome, status=None, retryable=True) == "slack: no answer within 0.2 s"


async def test_an_invalid_url_is_permanent_and_not_quoted(session: aiohttp.ClientSession) -> None:
    outcome = await send_slack(
        session, webhook_url="hooks.example.test/SECRETTOKEN", payload={"text": "x"}, timeout=1
    )
    error = assert_failed(outcome, status=None, retryable=False)
    assert "SECRETTOKEN" not in error


# -- PagerDuty ------------------------------------------------------------------------------------


async def test_pagerduty_trigger_and_resolve_share_the_dedup_key(
    session: aiohttp.ClientSession, pagerduty: PagerDutyReceiver
) -> None:
    opened = await send_pagerduty(
        session, events_url=pagerduty.events_url, event=trigger(), timeout=TIMEOUT
    )
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": INCIDENT}
    resolved = await send_pagerduty(
        session, events_url=pagerduty.events_url + "/", event=resolve, timeout=TIMEOUT
    )
    assert opened == SendOutcome(
        delivered=True, status=202, retry_after=None, provider_id=INCIDENT, error=None
    )
    assert resolved.delivered and resolved.provider_id == INCIDENT
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]
    assert pagerduty.events[0]["payload"]["severity"] == "critical"
    assert pagerduty.count(dedup_key=INCIDENT, action="trigger") == 1


async def test_pagerduty_counts_a_resent_event_under_its_dedup_key(
    session: aiohttp.ClientSession, pagerduty: PagerDutyReceiver
) -> None:
    for _ in range(2):
        outcome = await send_pagerduty(
            session, events_url=pagerduty.events_url, event=trigger(), timeout=TIMEOUT
        )
        assert outcome.delivered
    assert pagerduty.count(dedup_key=INCIDENT, action="trigger") == 2


async def test_pagerduty_names_every_invalid_field_and_no_key(
    session: aiohttp.ClientSession, pagerduty: PagerDutyReceiver
) -> None:
    short_key = ROUTING_KEY[:31]
    event = trigger(routing_key=short_key)
    event["payload"] = {"summary": "x" * 1025, "source": "api", "severity": "fatal"}
    outcome = await send_pagerduty(
        session, events_url=pagerduty.events_url, event=event, timeout=TIMEOUT
    )
    error = assert_failed(outcome, status=400, retryable=False)
    assert error.startswith("pagerduty answered 400: Event object is invalid: ")
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in error
    assert "'payload.summary'" in error and "'payload.severity'" in error
    assert short_key not in error
    assert pagerduty.events == []


async def test_pagerduty_resolve_without_dedup_key_is_invalid(
    session: aiohttp.ClientSession, pagerduty: PagerDutyReceiver
) -> None:
    event = {"routing_key": ROUTING_KEY, "event_action": "resolve"}
    outcome = await send_pagerduty(
        session, events_url=pagerduty.events_url, event=event, timeout=TIMEOUT
    )
    assert "'dedup_key' is missing or blank" in assert_failed(outcome, status=400, retryable=False)


async def test_pagerduty_rate_limit_is_per_routing_key(session: aiohttp.ClientSession) -> None:
    with PagerDutyReceiver(limit=3, window=60.0) as pagerduty:
        outcomes = [
            await send_pagerduty(
                session,
                events_url=pagerduty.events_url,
                event=trigger(dedup_key=f"inc-{i}"),
                timeout=TIMEOUT,
            )
            for i in range(4)
        ]
        other_key = await send_pagerduty(
            session,
            events_url=pagerduty.events_url,
            event=trigger(routing_key="K" * 32),
            timeout=TIMEOUT,
        )
    assert [o.status for o in outcomes] == [202, 202, 202, 429]
    assert assert_failed(outcomes[3], status=429, retryable=True) == "pagerduty answered 429"
    assert other_key.delivered


async def test_pagerduty_server_error_is_retryable(
    session: aiohttp.ClientSession, pagerduty: PagerDutyReceiver
) -> None:
    pagerduty.fail_next(502)
    outcome = await send_pagerduty(
        session, events_url=pagerduty.events_url, event=trigger(), timeout=TIMEOUT
    )
    error = assert_failed(outcome, status=502, retryable=True)
    assert error == "pagerduty answered 502: Bad Gateway"


# -- Resend ---------------------------------------------------------------------------------------


async def test_resend_sends_with_bearer_key_and_idempotency_key(
    session: aiohttp.ClientSession, resend: ResendReceiver
) -> None:
    outcome = await send_resend(
        session,
        api_url=resend.api_url,
        api_key=resend.api_key,
        email=email_body(),
        idempotency_key="ntf-1",
        timeout=TIMEOUT,
    )
    assert outcome.delivered and outcome.status == 200
    [sent] = resend.emails
    assert outcome.provider_id == sent["id"]
    assert sent["idempotency_key"] == "ntf-1"
    assert sent["subject"] == "[opened] api-health is down"
    assert resend.attempts[0].headers["authorization"] == f"Bearer {resend.api_key}"


async def test_resend_same_idempotency_key_sends_one_email(session: aiohttp.ClientSession) -> None:
    with ResendReceiver(limit=100) as resend:
        first, again = [
            await send_resend(
                session,
                api_url=resend.api_url,
                api_key=resend.api_key,
                email=email_body(),
                idempotency_key="ntf-1",
                timeout=TIMEOUT,
            )
            for _ in range(2)
        ]
        other_body = await send_resend(
            session,
            api_url=resend.api_url,
            api_key=resend.api_key,
            email=email_body(subject="changed"),
            idempotency_key="ntf-1",
            timeout=TIMEOUT,
        )
        assert len(resend.emails) == 1
    assert first.delivered and again.delivered
    assert first.provider_id == again.provider_id
    error = assert_failed(other_body, status=409, retryable=False)
    assert error.startswith("resend answered 409: invalid_idempotent_request: ")


async def test_resend_wrong_key_is_403_without_the_key(
    session: aiohttp.ClientSession, resend: ResendReceiver
) -> None:
    outcome = await send_resend(
        session,
        api_url=resend.api_url,
        api_key="re_wrong_key_value",
        email=email_body(),
        idempotency_key="ntf-1",
        timeout=TIMEOUT,
    )
    error = assert_failed(outcome, status=403, retryable=False)
    assert error == "resend answered 403: invalid_api_key: API key is invalid"
    assert "re_wrong_key_value" not in error


async def test_resend_names_the_missing_field(
    session: aiohttp.ClientSession, resend: ResendReceiver
) -> None:
    body = email_body()
    del body["subject"]
    outcome = await send_resend(
        session,
        api_url=resend.api_url,
        api_key=resend.api_key,
        email=body,
        idempotency_key="ntf-1",
        timeout=TIMEOUT,
    )
    error = assert_failed(outcome, status=422, retryable=False)
    assert error == "resend answered 422: missing_required_field: Missing `subject` field."


async def test_resend_rate_limit_of_two_a_second_answers_429_with_retry_after(
    session: aiohttp.ClientSession, resend: ResendReceiver
) -> None:
    outcomes = [
        await send_resend(
            session,
            api_url=resend.api_url,
            api_key=resend.api_key,
            email=email_body(),
            idempotency_key=f"ntf-{i}",
            timeout=TIMEOUT,
        )
        for i in range(3)
    ]
    assert [o.status for o in outcomes] == [200, 200, 429]
    error = assert_failed(outcomes[2], status=429, retryable=True)
    assert error.startswith("resend answered 429: rate_limit_exceeded: ")
    assert outcomes[2].retry_after == 1.0
    assert resend.attempts[2].status == 429


async def test_resend_server_error_is_retryable(
    session: aiohttp.ClientSession, resend: ResendReceiver
) -> None:
    resend.fail_next(500)
    outcome = await send_resend(
        session,
        api_url=resend.api_url,
        api_key=resend.api_key,
        email=email_body(),
        idempotency_key="ntf-1",
        timeout=TIMEOUT,
    )
    assert "application_error" in assert_failed(outcome, status=500, retryable=True)


# -- Standard Webhooks ----------------------------------------------------------------------------


def test_signature_matches_the_reference_library() -> None:
    secret = new_secret()
    body = json.dumps({"event": "opened", "incident": {"id": INCIDENT}}).encode()
    ours = sign(secret, msg_id="ntf_1", timestamp=1_767_225_600, body=body)
    reference = Webhook(secret).sign(
        "ntf_1", datetime.fromtimestamp(1_767_225_600, UTC), body.decode()
    )
    assert ours == reference
    # The prefix is optional and padding may be left off, as the reference libraries allow.
    bare = secret.removeprefix("whsec_").rstrip("=")
    assert sign(bare, msg_id="ntf_1", timestamp=1_767_225_600, body=body) == reference


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_an_unusable_secret_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret") as caught:
        secret_key(secret)
    if secret.removeprefix("whsec_"):
        assert secret.removeprefix("whsec_") not in str(caught.value)


async def test_webhook_is_verified_by_standardwebhooks(
    session: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    body = json.dumps({"event": "opened", "incident": {"id": INCIDENT}}).encode()
    outcomes = [
        await send_webhook(
            session,
            url=webhook.url,
            secret=webhook.secret,
            msg_id="ntf_1",
            body=body,
            timeout=TIMEOUT,
            now=time.time,
        )
        for _ in range(2)
    ]
    assert [o.delivered for o in outcomes] == [True, True]
    assert outcomes[0] == SendOutcome(
        delivered=True, status=204, retry_after=None, provider_id="ntf_1", error=None
    )
    assert webhook.messages[0].payload == {"event": "opened", "incident": {"id": INCIDENT}}
    assert webhook.count("ntf_1") == 2  # a retry keeps its webhook-id: the receiver can dedupe
    assert webhook.attempts[0].headers["content-type"] == "application/json"


async def test_webhook_with_the_wrong_secret_is_refused(
    session: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    outcome = await send_webhook(
        session,
        url=webhook.url,
        secret=new_secret(),
        msg_id="ntf_1",
        body=b"{}",
        timeout=TIMEOUT,
        now=time.time,
    )
    error = assert_failed(outcome, status=401, retryable=False)
    assert "No matching signature found" in error
    assert webhook.messages == []


async def test_webhook_timestamp_is_taken_per_attempt(
    session: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    """A clock 10 minutes behind makes a stale message, which the library refuses."""
    outcome = await send_webhook(
        session,
        url=webhook.url,
        secret=webhook.secret,
        msg_id="ntf_1",
        body=b"{}",
        timeout=TIMEOUT,
        now=lambda: time.time() - 600,
    )
    assert "Message timestamp too old" in assert_failed(outcome, status=401, retryable=False)


async def test_webhook_with_an_unusable_secret_fails_permanently(
    session: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    outcome = await send_webhook(
        session,
        url=webhook.url,
        secret="whsec_%%%",
        msg_id="ntf_1",
        body=b"{}",
        timeout=TIMEOUT,
        now=time.time,
    )
    error = assert_failed(outcome, status=None, retryable=False)
    assert error.startswith("webhook: the webhook secret is not valid base64")
    assert webhook.attempts == []


async def test_webhook_gone_and_redirect_are_permanent_and_outage_retryable(
    session: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    webhook.fail_next(410)
    webhook.fail_next(503, retry_after=7)
    webhook.fail_next(308)
    gone, down, moved = [
        await send_webhook(
            session,
            url=webhook.url,
            secret=webhook.secret,
            msg_id="ntf_1",
            body=b"{}",
            timeout=TIMEOUT,
            now=time.time,
        )
        for _ in range(3)
    ]
    assert assert_failed(gone, status=410, retryable=False) == "webhook answered 410: Gone"
    assert assert_failed(down, status=503, retryable=True)
    assert down.retry_after == 7.0
    error = assert_failed(moved, status=308, retryable=False)
    assert error.startswith("webhook answered 308: a redirect, not followed")


# -- SMTP -----------------------------------------------------------------------------------------


async def test_smtp_starttls_and_auth(smtp_starttls: SmtpServer) -> None:
    config = parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT)
    outcome = await send_smtp(config, mail())
    assert outcome.delivered and outcome.status == 250 and outcome.error is None
    assert outcome.provider_id == "2.0.0 Ok: queued as TEST00001"
    [received] = smtp_starttls.messages
    assert received.tls and received.authenticated_as == USERNAME
    assert received.rcpt_tos == ["oncall@example.test", "lead@example.test"]
    assert received.message["Message-ID"] == f"<{INCIDENT}.opened@downtime.example.test>"
    assert received.message.get_content().strip() == "api-health is down since 12:00:00 UTC"


async def test_smtp_implicit_tls(tls_files: TlsFiles) -> None:
    with SmtpServer(mode="implicit", tls_files=tls_files) as server:
        config = parse_smtp_url(server.url, timeout=TIMEOUT)
        assert config.tls == "implicit"
        outcome = await send_smtp(config, mail())
        assert outcome.delivered
        [received] = server.messages
    assert received.tls and received.authenticated_as == USERNAME


async def test_smtp_in_clear_to_a_relay() -> None:
    with SmtpServer(mode="none") as server:
        outcome = await send_smtp(parse_smtp_url(server.url, timeout=TIMEOUT), mail())
        assert outcome.delivered
        [received] = server.messages
    assert not received.tls and received.authenticated_as is None


async def test_smtp_wrong_password_is_permanent(smtp_starttls: SmtpServer) -> None:
    config = dataclasses.replace(
        parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT), password="wrong"
    )
    outcome = await send_smtp(config, mail())
    error = assert_failed(outcome, status=535, retryable=False)
    assert error.startswith("smtp: authentication failed: 535")
    assert "wrong" not in error and PASSWORD not in error
    assert smtp_starttls.messages == []


async def test_smtp_4xx_is_transient_and_5xx_permanent(smtp_starttls: SmtpServer) -> None:
    config = parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT)
    smtp_starttls.reject_next("451 4.3.0 Try again later")
    later = await send_smtp(config, mail())
    assert assert_failed(later, status=451, retryable=True).endswith("451 4.3.0 Try again later")
    smtp_starttls.reject_next("554 5.7.1 Message rejected")
    never = await send_smtp(config, mail())
    assert_failed(never, status=554, retryable=False)


async def test_smtp_recipients_refused(smtp_starttls: SmtpServer) -> None:
    config = parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT)
    smtp_starttls.reject_next("550 5.1.1 No such user", at="rcpt")
    partly = await send_smtp(config, mail())
    assert partly.delivered
    assert partly.error == "some recipients refused: oncall@example.test (550 5.1.1 No such user)"
    smtp_starttls.reject_next("550 5.1.1 No such user", at="rcpt")
    smtp_starttls.reject_next("450 4.2.1 Mailbox busy", at="rcpt")
    nobody = await send_smtp(config, mail())
    error = assert_failed(nobody, status=550, retryable=False)
    assert error.startswith("smtp: every recipient refused: oncall@example.test (550")
    assert [m.rcpt_tos for m in smtp_starttls.messages] == [["lead@example.test"]]


async def test_smtp_untrusted_certificate_is_permanent(smtp_starttls: SmtpServer) -> None:
    config = dataclasses.replace(parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT), ca_file=None)
    outcome = await send_smtp(config, mail())
    assert "TLS certificate is not trusted" in assert_failed(outcome, status=None, retryable=False)


async def test_smtp_clear_text_auth_against_a_starttls_server_is_permanent(
    smtp_starttls: SmtpServer,
) -> None:
    config = dataclasses.replace(parse_smtp_url(smtp_starttls.url, timeout=TIMEOUT), tls="none")
    outcome = await send_smtp(config, mail())
    error = assert_failed(outcome, status=None, retryable=False)
    assert "AUTH extension is not supported" in error


async def test_smtp_connection_refused_is_transient(closed_port: int) -> None:
    config = SmtpConfig(host="127.0.0.1", port=closed_port, tls="none", timeout=TIMEOUT)
    outcome = await send_smtp(config, mail())
    assert assert_failed(outcome, status=None, retryable=True).startswith("smtp: connection failed")


def test_smtp_config_keeps_the_password_out_of_repr() -> None:
    config = parse_smtp_url("smtp://user:hunter2@mail.example.test")
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://user%40example.test:p%40ss%2Fword@mail.example.test:2525?tls=starttls",
            SmtpConfig(
                host="mail.example.test",
                port=2525,
                tls="starttls",
                username="user@example.test",
                password="p@ss/word",
            ),
        ),
        (
            "smtp://mail.example.test",
            SmtpConfig(host="mail.example.test", port=587, tls="starttls"),
        ),
        (
            "smtps://mail.example.test",
            SmtpConfig(host="mail.example.test", port=465, tls="implicit"),
        ),
        (
            "SMTP://relay.internal/?tls=none",
            SmtpConfig(host="relay.internal", port=25, tls="none"),
        ),
        (
            "smtp://u:p@[::1]:1025?tls=none&ca_file=/etc/ca.pem",
            SmtpConfig(
                host="::1", port=1025, tls="none", username="u", password="p", ca_file="/etc/ca.pem"
            ),
        ),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpConfig) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://user:hunter2@mail.example.test",
            "the scheme must be smtp:// or smtps://, not 'http'",
        ),
        ("mail.example.test:587", "the scheme must be smtp:// or smtps://"),
        ("smtp://user:hunter2@:587", "no host"),
        ("smtp://user:hunter2@mail.example.test:99999", "the port is not a number from 1 to 65535"),
        ("smtp://user:hunter2@mail.example.test:abc", "the port is not a number"),
        (
            "smtp://user:hunter2@mail.example.test?tls=ssl",
            "tls must be one of starttls, implicit, none",
        ),
        ("smtps://user:hunter2@mail.example.test?tls=starttls", "smtps:// is implicit TLS"),
        ("smtp://user:hunter2@mail.example.test?timeout=3", "unknown parameter(s) timeout"),
        ("smtp://user:hunter2@mail.example.test?tls=none&tls=starttls", "given twice: tls"),
        ("smtp://user:hunter2@mail.example.test/inbox", "takes no path"),
        ("smtp://user@mail.example.test", "a user but no password"),
        ("smtp://:hunter2@mail.example.test", "a password but no user"),
    ],
)
def test_parse_smtp_url_names_the_problem_and_never_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^SMTP URL: ") as caught:
        parse_smtp_url(url)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
