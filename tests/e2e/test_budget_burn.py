"""Issue 15 on the real control plane, acceptance 4: a monitor with ``objective: "99.9"`` and
``window: 1d``, down long enough to burn its budget faster than 14.4x over both the 1h and the
5m windows, sends exactly one ``budgetBurn`` page per crossing to its NotificationChannel, and a
Warning Event ``BudgetBurn``.

Time is compressed a hundredfold (``SLO_BURN_TIME_SCALE=0.01``): the 1h window lasts 36 s, the
5m one 3 s. The other two rules are set out of reach so that only ``page-1h`` can fire.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import Env, eventually, monitor
from tests.e2e.test_maintenance import NOTIFY, slack_channel
from tests.support.receivers import SlackReceiver
from tests.support.target import TargetServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:Session.login_data is deprecated:DeprecationWarning",
)


def burns(slack: SlackReceiver) -> list[str]:
    return [m["text"] for m in slack.messages if m["text"].startswith("[BUDGET BURN]")]


async def test_one_page_per_crossing(env: Env, target: TargetServer) -> None:
    env.op.stop()
    env.op.env.update(
        STATUS_SYNC_PERIOD_SECONDS="1",
        SLO_BURN_TIME_SCALE="0.01",
        SLO_BURN_PAGE_SLOW="1000",
        SLO_BURN_TICKET="1000",
    )
    env.op.start()
    with SlackReceiver() as slack:
        for body in slack_channel(slack.webhook_url):
            env.apply(body)
        env.apply(
            monitor(
                "api", target.url, slo={"objective": "99.9", "window": "1d"}, notifications=NOTIFY
            )
        )
        await eventually(lambda: env.monitor_status("api").get("slo"), within=30, what="status.slo")

        target.set_mode("failing")
        [first] = await eventually(lambda: burns(slack), within=20, what="a budgetBurn page")
        assert "api" in first and "page: error budget burning" in first
        assert "over 36s" in first and "over 3s" in first and "(above 14.4x)" in first
        await asyncio.sleep(6)  # still burning, refreshed every second: nothing more
        assert len(burns(slack)) == 1

        target.set_mode("healthy")
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=20, what="Up"
        )
        await asyncio.sleep(6)  # the 3 s window is clean again: the rule stopped firing
        assert len(burns(slack)) == 1

        target.set_mode("failing")  # a second crossing: a second page
        await eventually(lambda: len(burns(slack)) == 2, within=20, what="a second page")
        await asyncio.sleep(4)
        assert len(burns(slack)) == 2

    events = env.cp.kubectl("get", "events", "-n", env.namespace).stdout
    assert "BudgetBurn" in events
    assert env.monitor_status("api")["slo"]["burnRates"]["h1"] > 0
