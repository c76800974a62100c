"""The README's demo (``bash scripts/demo.sh``) runs and shows the whole product."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.go_binaries import REPO


def test_the_demo_shows_the_incident_its_logs_the_api_and_the_notifications() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "VENV": sys.prefix},
    )
    out = proc.stdout
    print(out[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    assert "incident open: demo-api-" in out
    assert "incident resolved: demo-api-" in out
    captured = re.search(r"LOGS captured: (\d+) lines", out)
    assert captured and int(captured.group(1)) > 0
    assert "top error: 'database unavailable: connection refused'" in out
    assert re.search(r'"total_incidents": 1\b', out)  # the statistics and the list agree
    assert '"uptime_percent"' in out
    assert "incident.opened: demo-api-" in out
    assert "incident.resolved: demo-api-" in out
    assert "operator exited with 0" in out
