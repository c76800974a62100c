"""Test stand-ins for the notification services, each written from the service's public API
documentation: status codes, error bodies, body validation and rate limits as the real one
answers them, plus scripted failures (``fail_next``, ``fail_with``, ``stall_next``).

Each is a context manager running its own thread::

    with SlackReceiver() as slack:
        ...  # send to slack.webhook_url; read slack.messages / slack.attempts
"""

from tests.support.receivers.base import Attempt, Receiver
from tests.support.receivers.pagerduty import PagerDutyReceiver
from tests.support.receivers.resend import ResendReceiver
from tests.support.receivers.slack import SlackReceiver
from tests.support.receivers.webhook import VerifiedMessage, WebhookReceiver, new_secret

__all__ = [
    "Attempt",
    "PagerDutyReceiver",
    "Receiver",
    "ResendReceiver",
    "SlackReceiver",
    "VerifiedMessage",
    "WebhookReceiver",
    "new_secret",
]
