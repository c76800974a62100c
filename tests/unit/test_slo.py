"""SLO figures and burn-rate alerts against a brute-force second-by-second count (acceptance 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downtime_operator.domain.burn_alerts import BurnFactors, crossings, firing, rule_windows
from downtime_operator.domain.models import MonitorRef, Severity
from downtime_operator.domain.notifications.channel import SeverityMap
from downtime_operator.domain.notifications.notice import Notice, burn_notice
from downtime_operator.domain.notifications.render import (
    email_content,
    pagerduty_event,
    slack_message,
    webhook_body,
)
from downtime_operator.domain.slo import (
    SloSpec,
    Span,
    Timeline,
    parse_objective,
    parse_window,
    slo_figures,
)
from downtime_operator.domain.statistics import DowntimeSpan

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HORIZON = 4000
"""Seconds of the generated history; ``now`` is at its end."""
NOW = T0 + timedelta(seconds=HORIZON)


def at(second: int) -> datetime:
    return T0 + timedelta(seconds=second)


@st.composite
def spans(draw: st.DrawFn, *, open_allowed: bool) -> list[tuple[int, int | None]]:
    found: list[tuple[int, int | None]] = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(st.integers(-500, HORIZON + 100))
        if open_allowed and draw(st.booleans()) and draw(st.booleans()):
            found.append((start, None))
        else:
            found.append((start, start + draw(st.integers(0, 1500))))
    return found


def brute_force(
    *,
    incidents: list[tuple[int, int | None]],
    maintenance: list[tuple[int, int | None]],
    created: int | None,
    window: int,
) -> tuple[int, int]:
    """(judged seconds, down seconds) of the window ending at NOW, one second at a time."""
    judged = down = 0
    for second in range(HORIZON - window, HORIZON):
        if created is not None and second < created:
            continue
        if any(s <= second < e for s, e in maintenance if e is not None):
            continue
        judged += 1
        if any(s <= second and (e is None or second < e) for s, e in incidents):
            down += 1
    return judged, down


def timeline(
    incidents: list[tuple[int, int | None]],
    maintenance: list[tuple[int, int | None]],
    created: int | None,
) -> Timeline:
    found: list[DowntimeSpan] = [(at(s), None if e is None else at(e)) for s, e in incidents]
    kept: list[Span] = [(at(s), at(e)) for s, e in maintenance if e is not None]
    return Timeline(
        incidents=found,
        maintenance=kept,
        created_at=None if created is None else at(created),
        now=NOW,
    )


@settings(max_examples=150, deadline=None)
@given(
    incidents=spans(open_allowed=True),
    maintenance=spans(open_allowed=False),
    created=st.none() | st.integers(-1000, HORIZON + 10),
    window=st.integers(1, HORIZON),
    objective=st.sampled_from(["50", "90", "99", "99.5", "99.9", "99.99"]),
    burn=st.integers(1, HORIZON),
)
def test_figures_equal_a_second_by_second_count(
    *,
    incidents: list[tuple[int, int | None]],
    maintenance: list[tuple[int, int | None]],
    created: int | None,
    window: int,
    objective: str,
    burn: int,
) -> None:
    line = timeline(incidents, maintenance, created)
    target = parse_objective(objective)
    spec = SloSpec(target=target, window=timedelta(seconds=window))
    got = slo_figures(spec, timeline=line, burn_windows={"b": timedelta(seconds=burn)})

    judged, down = brute_force(
        incidents=incidents, maintenance=maintenance, created=created, window=window
    )
    assert got.window.judged_seconds == judged
    assert got.window.downtime_seconds == down
    allowed = float(1 - target) * judged
    assert got.availability == pytest.approx(1 - down / judged if judged else 1.0)
    assert got.budget_remaining_seconds == pytest.approx(allowed - down)
    assert got.budget_remaining_ratio == pytest.approx(
        (allowed - down) / allowed if allowed else 1.0
    )
    burn_judged, burn_down = brute_force(
        incidents=incidents, maintenance=maintenance, created=created, window=burn
    )
    expected_burn = (burn_down / burn_judged if burn_judged else 0.0) / float(1 - target)
    assert got.burn_rates["b"] == pytest.approx(expected_burn)


def test_a_monitor_created_yesterday_is_judged_on_one_day() -> None:
    line = Timeline(
        incidents=[(NOW - timedelta(hours=1), NOW - timedelta(minutes=30))],
        maintenance=[],
        created_at=NOW - timedelta(days=1),
        now=NOW,
    )
    got = slo_figures(SloSpec.parse(objective="99", window="30d"), timeline=line)
    assert got.window.judged_seconds == 86400
    assert got.availability == pytest.approx(1 - 1800 / 86400)
    assert got.budget_remaining_seconds == pytest.approx(864 - 1800)
    assert got.status_view()["budgetRemaining"] == pytest.approx(100 * (864 - 1800) / 864, 1e-3)


def test_a_monitor_not_created_yet_spends_nothing() -> None:
    line = Timeline(incidents=[], maintenance=[], created_at=NOW, now=NOW)
    got = slo_figures(SloSpec.parse(objective="99.9"), timeline=line)
    assert (got.availability, got.budget_remaining_ratio) == (1.0, 1.0)
    assert got.burn_rates == {"h1": 0.0, "h6": 0.0, "d3": 0.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("99.9", Fraction(999, 1000)),
        ("50", Fraction(1, 2)),
        ("99.999999", Fraction(99999999, 10**8)),
    ],
)
def test_objectives_are_exact(text: str, expected: Fraction) -> None:
    assert parse_objective(text) == expected


@pytest.mark.parametrize("text", ["100", "49.99", "abc", "", "99.", "-5", "1e2", "99.9999999"])
def test_bad_objectives_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        parse_objective(text)


@pytest.mark.parametrize("text", ["0d", "91d", "30", "1h", "d", "100d"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(text)


def test_window_bounds_are_admitted() -> None:
    assert parse_window("1d") == timedelta(days=1)
    assert parse_window("90d") == timedelta(days=90)


def outage_rates(down_since: datetime, now: datetime) -> Timeline:
    return Timeline(incidents=[(down_since, None)], maintenance=[], created_at=None, now=now)


def test_a_page_fires_once_per_crossing_and_again_after_it_stopped() -> None:
    """Time compressed a thousandfold: the 1 h window lasts 3.6 s, the 5 m one 0.3 s."""
    target = parse_objective("99.9")
    rules = BurnFactors(time_scale=0.001).rules()
    assert rule_windows(rules) == {timedelta(seconds=s) for s in (3.6, 0.3, 21.6, 1.8, 259.2)}
    remembered: frozenset[str] = frozenset()
    announced: list[tuple[str, float]] = []
    outage = (T0 + timedelta(seconds=100), T0 + timedelta(seconds=130))
    for tenth in range(1000, 1600):
        now = T0 + timedelta(seconds=tenth / 10)
        line = Timeline(incidents=[outage], maintenance=[], created_at=T0, now=now)
        remembered, new = crossings(
            firing_before=remembered,
            firing_now=firing(rules, lambda w, line=line: line.burn_rate(w, target=target)),
        )
        announced += [(a.rule.name, (now - T0).total_seconds()) for a in new]
    names = [name for name, _ in announced]
    # 1 h at 14.4x of a 0.1 % budget: down 5.2 % of 3.6 s, crossed within a second of going down.
    assert names.count("page-1h") == 1
    assert names.count("page-6h") == 1
    assert names.count("ticket-3d") == 1
    first = dict(announced)
    assert 100 < first["page-1h"] < 101
    # The short window stops the page soon after recovery; a second outage pages again.
    second = (T0 + timedelta(seconds=200), None)
    remembered_again = remembered
    for tenth in range(1600, 2100):
        now = T0 + timedelta(seconds=tenth / 10)
        line = Timeline(incidents=[outage, second], maintenance=[], created_at=T0, now=now)
        remembered_again, new = crossings(
            firing_before=remembered_again,
            firing_now=firing(rules, lambda w, line=line: line.burn_rate(w, target=target)),
        )
        announced += [(a.rule.name, (now - T0).total_seconds()) for a in new]
    assert [name for name, _ in announced].count("page-1h") == 2


def test_maintenance_is_neither_downtime_nor_judged() -> None:
    line = Timeline(
        incidents=[(NOW - timedelta(hours=2), NOW - timedelta(hours=1))],
        maintenance=[(NOW - timedelta(hours=2), NOW - timedelta(minutes=90))],
        created_at=None,
        now=NOW,
    )
    figures = line.figures(timedelta(hours=4))
    assert figures.maintenance_seconds == 1800
    assert figures.judged_seconds == 4 * 3600 - 1800
    assert figures.downtime_seconds == 1800


def test_a_burn_alert_renders_for_every_kind_of_channel() -> None:
    """``budgetBurn`` names no incident: no kubectl hint for a DowntimeIncident, no thread."""
    [alert] = firing(
        BurnFactors().rules()[:1], lambda window: 20.0 if window.total_seconds() > 600 else 30.0
    )
    notice = burn_notice(
        monitor=MonitorRef(namespace="shop", name="api"),
        url="https://api.example/health",
        environment="production",
        alert=alert,
        at=NOW,
    )
    assert Notice.from_payload(notice.to_payload()) == notice
    assert notice.severity is Severity.CRITICAL  # a page
    expected = "page: error budget burning 20.0x over 1h and 30.0x over 5m (above 14.4x)"
    assert notice.notes == expected
    slack = slack_message([notice], api_url=None)
    assert slack["text"].startswith(f"[BUDGET BURN] shop/api {expected}")
    assert "dti" not in json.dumps(slack)
    event = pagerduty_event(notice, routing_key="R" * 32, severity_map=SeverityMap())
    assert (event["event_action"], event["payload"]["severity"]) == ("trigger", "critical")
    mail = email_content([notice], sender="ops@example.com", to=["sre@example.com"], api_url=None)
    assert "References" not in mail.headers and expected in mail.text
    assert json.loads(webhook_body([notice]))["data"]["notes"] == expected
