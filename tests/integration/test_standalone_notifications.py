"""Issue 12, acceptance 7: the standalone monitor over SQLite with ``--enable-notifications``.

One outage sends exactly one "opened" and one "resolved" email through the Resend receiver and
through a real SMTP server (STARTTLS + AUTH, ``SMTP_URL``), in that order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.test_standalone_monitor import FAST, outage, wait_for_checks
from tests.support.monitor_process import MonitorProcess, monitor_env
from tests.support.receivers import ResendReceiver
from tests.support.smtp_server import SmtpServer, make_tls_files
from tests.support.target import TargetServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:Session.login_data is deprecated:DeprecationWarning",
)


async def until(
    probe: Callable[[], bool], *, within: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; log:\n{log()}")
        await asyncio.sleep(0.2)


async def test_an_outage_emails_opened_then_resolved_through_resend_and_smtp(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    tmp_path: Path,
) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    with ResendReceiver() as resend, SmtpServer(mode="starttls", tls_files=tls) as smtp:
        env = monitor_env(
            RESEND_API_KEY=resend.api_key,
            RESEND_API_URL=resend.api_url,
            SMTP_URL=smtp.url,
            NOTIFICATION_EMAIL_FROM="Downtime <downtime@example.com>",
            NOTIFICATION_EMAIL_TO="oncall@example.com,sre@example.com",
        )
        monitor = start_monitor("--url", target.base_url, *FAST, "--enable-notifications", env=env)
        await wait_for_checks(target, 2, monitor)
        await outage(target, seconds=4)

        def both_told_twice() -> bool:
            return len(resend.emails) >= 2 and len(smtp.messages) >= 2

        await until(
            both_told_twice, within=30, what="two emails on each channel", log=lambda: monitor.log
        )
        await asyncio.sleep(2)  # nothing more arrives
        assert await monitor.terminate() == 0

    subjects = [email["subject"] for email in resend.emails]
    assert len(subjects) == 2, subjects
    assert "opened" in subjects[0].lower() or "down" in subjects[0].lower(), subjects
    assert "resolved" in subjects[1].lower() or "up" in subjects[1].lower(), subjects
    assert all(email["to"] == ["oncall@example.com", "sre@example.com"] for email in resend.emails)
    mails = smtp.messages
    assert len(mails) == 2
    assert all(mail.tls and mail.authenticated_as == smtp.username for mail in mails)
    assert [m.message["Subject"] for m in mails] == subjects
    message_ids = {m.message["Message-ID"] for m in mails}
    assert len(message_ids) == 2 and all(mid.endswith("@downtime-operator>") for mid in message_ids)
    assert f"{target.base_url}/health" in mails[0].message.get_body(("plain",)).get_content()
