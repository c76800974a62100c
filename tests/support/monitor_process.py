"""``downtime-operator monitor`` as a process for the integration tests, and its fixtures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.support.target import TargetServer

# Variables the monitor reads; the tests set the ones they mean, nothing leaks in from outside.
_MONITOR_ENV = (
    "DATABASE_URL",
    "SUPABASE_DB_URL",
    "GATEWAYZ_URL",
    "HEALTH_CHECK_INTERVAL",
    "HEALTH_CHECK_TIMEOUT",
    "LOKI_ENABLED",
    "LOKI_QUERY_URL",
    "GRAFANA_LOKI_USERNAME",
    "GRAFANA_LOKI_API_KEY",
    "LOG_LEVEL",
    "LOKI_QUERY",
    "LOG_FILES_DIR",
    "ADMIN_API_KEYS",
    "ADMIN_API_KEYS_FILE",
    "API_HOST",
)


def monitor_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _MONITOR_ENV}
    return {**env, **extra}


class MonitorProcess:
    """One ``python -m downtime_operator monitor`` process; its output goes to ``monitor.log``."""

    def __init__(self, *, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.args = args
        self.env = env
        self.log_path = cwd / "monitor.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "downtime_operator", "monitor", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def terminate(self, *, within: float = 15.0) -> int:
        """SIGTERM, then the exit status; a monitor that does not stop in time fails the test."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, within)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


@pytest.fixture
def processes() -> Iterator[list[MonitorProcess]]:
    """Every monitor a test starts is killed at its end, whatever happened."""
    started: list[MonitorProcess] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def start_monitor(tmp_path: Path, processes: list[MonitorProcess]) -> Callable[..., MonitorProcess]:
    def start(*args: str, env: dict[str, str] | None = None) -> MonitorProcess:
        process = MonitorProcess(cwd=tmp_path, args=list(args), env=env or monitor_env())
        processes.append(process)
        process.start()
        return process

    return start
