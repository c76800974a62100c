"""The operator as a real process (``python -m downtime_operator run``) for e2e tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.e2e.controlplane import ControlPlane, tail


class OperatorProcess:
    def __init__(
        self,
        control_plane: ControlPlane,
        *,
        database_url: str,
        namespaces: list[str],
        log_path: Path,
        kubeconfig: Path | None = None,
        extra_env: dict[str, str] | None = None,
        command: Callable[[dict[str, str]], list[str]] | None = None,
    ) -> None:
        """``command`` builds the argv from the environment (for the operator in a container,
        tests/e2e/test_image.py); by default this interpreter runs the package."""
        self.control_plane = control_plane
        self._command = command or (lambda _: [sys.executable, "-m", "downtime_operator", "run"])
        self.log_path = log_path
        self.env = control_plane.env(
            DATABASE_URL=database_url,
            WATCH_NAMESPACES=",".join(namespaces),
            LOG_LEVEL="INFO",
            **(extra_env or {}),
        )
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            self._command(self.env),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(self.log_path.parent),
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)
