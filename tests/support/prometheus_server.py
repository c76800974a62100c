"""The real Prometheus server (built from Go modules by scripts/build-prometheus.sh) for tests,
scraping a gauge exporter the test controls, every second.

    with GaugeExporter("app_queue_depth") as exporter, PrometheusServer(
        binary, tmp_path, targets=[exporter.target]
    ) as prometheus:
        exporter.set(5)
        prometheus.wait_for_value("app_queue_depth", 5)
        prometheus.url                       # http://127.0.0.1:<port>
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.e2e.controlplane import free_port
from tests.support.go_binaries import REPO, go_binary

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> Path:
    return go_binary("PROMETHEUS", REPO / "scripts" / "build-prometheus.sh")


class GaugeExporter:
    """``/metrics`` on 127.0.0.1 with one gauge, one series per ``series`` label."""

    def __init__(self, name: str, *, help_text: str = "set by the test") -> None:
        self._registry = CollectorRegistry()
        self._gauge = Gauge(name, help_text, ["series"], registry=self._registry)
        self.port = free_port()
        self._server: Any = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, value: float, *, series: str = "main") -> None:
        self._gauge.labels(series=series).set(value)

    def __enter__(self) -> Self:
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self._registry)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


class PrometheusServer:
    def __init__(self, binary: Path, directory: Path, *, targets: list[str]) -> None:
        self._binary = binary
        self._directory = directory
        self._targets = targets
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = directory / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._directory.mkdir(parents=True, exist_ok=True)
        config = self._directory / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": SCRAPE_INTERVAL},
                    "scrape_configs": [
                        {"job_name": "app", "static_configs": [{"targets": self._targets}]}
                    ],
                }
            )
        )
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(self._binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self._directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        return self

    def _wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self._proc is not None and self._proc.poll() is None, self.log_tail()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus not ready in {within:g}s:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_value(self, promql: str, value: float, *, within: float = 30.0) -> None:
        """Until the newest sample of ``promql`` is ``value`` (scraped, and queryable)."""
        deadline = time.monotonic() + within
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.query(promql)
            if any(float(item["value"][1]) == value for item in seen):
                return
            time.sleep(0.3)
        raise TimeoutError(f"{promql} never became {value:g}; last {seen}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
