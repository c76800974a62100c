"""The container image, built from the repository's Dockerfile and run as the chart runs it.

``scripts/build-image.sh`` builds it with podman on a stand-in base (Docker Hub is out of
reach), without network, and caches it by the hash of what it is built from. Every container
here runs as the chart's pod does: user 10001, read-only root filesystem, no capabilities, no
privilege escalation, ``/tmp`` and the data directory as volumes; the host network lets it reach
the targets, PostgreSQL and the API server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor, resolved_rows
from tests.e2e.operator_process import OperatorProcess
from tests.support.go_binaries import REPO
from tests.support.target import TargetServer

PODMAN = ["podman", "--runtime", "runc"]
"""crun fails on this machine's cgroups; runc works."""
AS_THE_CHART_RUNS_IT = [
    "--rm",
    "--network=host",
    # podman's default ulimits are refused here.
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=4096:4096",
    "--user=10001:10001",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--tmpfs=/tmp:rw,size=64m",
]


LOG_FILES = "/var/lib/downtime-operator/logs"
"""Where the chart mounts the log files volume (values.yaml ``logFiles.mountPath``)."""


@pytest.fixture(scope="module")
def image() -> str:
    explicit = os.environ.get("IMAGE")
    if explicit:
        return explicit
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert proc.returncode == 0, f"build-image.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    [tag] = [
        line.split("=", 1)[1] for line in proc.stdout.splitlines() if line.startswith("IMAGE=")
    ]
    return tag


def podman(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    assert proc.returncode == 0, f"podman {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def shell_in(image: str, script: str) -> str:
    """``sh -c script`` in the image as root (to look where user 10001 may not)."""
    return podman(
        "run",
        "--rm",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=4096:4096",
        "--user=0",
        "--entrypoint=sh",
        image,
        "-c",
        script,
    )


def test_the_image_is_small_runs_as_10001_and_ships_no_build_tools(
    image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    [info] = json.loads(podman("image", "inspect", image))
    size_mib = info["Size"] / 2**20
    with capsys.disabled():  # shown in every run's output, not only on failure
        print(f"\nimage {image}: {size_mib:.0f} MiB")
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["downtime-operator"]
    found = shell_in(
        image,
        "for tool in gcc cc c++ make; do command -v $tool; done;"
        " ls -d /root/.cache/pip /home/downtime/.cache /src /tmp/dist /dist 2>/dev/null;"
        " find / -xdev -path '*site-packages/tests' 2>/dev/null;"
        " find / -xdev -name 'test_*.py' -path '*downtime_operator*' 2>/dev/null;"
        " echo done",
    )
    with capsys.disabled():
        print(f"compilers, pip caches, build leftovers, our tests in it: {found.split()[:-1]}")
    assert found.split() == ["done"]
    version = podman(
        "run", *AS_THE_CHART_RUNS_IT, image, "--help", timeout=60
    )  # the console script starts as user 10001 on a read-only root
    assert "monitor" in version and "run" in version


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory user 10001 in the container can write (the chart's volume)."""
    path = tmp_path / "data"
    path.mkdir()
    path.chmod(0o777)
    return path


def incidents_in(db: Path) -> list[tuple[str, float | None, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(
                "SELECT status, duration_seconds, error_message FROM downtime_incidents"
            ).fetchall()
        except sqlite3.OperationalError:  # the schema is still being created
            return []
    return [(str(s), d, e) for s, d, e in rows]


class Container:
    """One ``podman run`` in the background, output to ``log``; stopped like a pod is."""

    def __init__(self, args: list[str], *, log: Path) -> None:
        self.name = f"downtime-test-{os.getpid()}-{time.monotonic_ns()}"
        self._log = log.open("wb")
        self.log = log
        self.process = subprocess.Popen(
            [*PODMAN, "run", *AS_THE_CHART_RUNS_IT, f"--name={self.name}", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def terminate(self, *, within: float = 30) -> int:
        """SIGTERM (podman passes it to the container), then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(within)

    def close(self) -> None:
        if self.process.poll() is None:
            subprocess.run([*PODMAN, "kill", self.name], capture_output=True, check=False)
            self.process.wait(timeout=30)
        self._log.close()
        print(self.log.read_text()[-3000:])


async def test_the_standalone_monitor_records_an_outage_in_the_container(
    image: str, data_dir: Path, target: TargetServer
) -> None:
    container = Container(
        [
            f"--volume={data_dir}:/data",
            "--workdir=/data",
            image,
            "monitor",
            "--url",
            target.base_url,
            "--interval",
            "1",
            "--timeout",
            "0.5",
        ],
        log=data_dir.parent / "monitor.log",
    )
    try:
        await eventually(lambda: target.requests >= 2, within=60, what="checks from the container")
        target.set_mode("failing")
        await asyncio.sleep(5)
        target.set_mode("healthy")

        def resolved() -> list[tuple[str, float | None, str | None]] | None:
            rows = incidents_in(data_dir / "downtime.db")
            return rows if rows and rows[0][0] == "resolved" else None

        [(_, duration, error)] = await eventually(
            resolved, within=20, what="a resolved incident in /data/downtime.db"
        )
        assert error == "HTTP 503 Service Unavailable"
        assert duration is not None and 4.0 <= duration <= 7.0
        assert await asyncio.to_thread(container.terminate) == 0
    finally:
        container.close()


def in_container(image: str, *, kubeconfig: Path) -> Callable[[dict[str, str]], list[str]]:
    """The argv that runs ``downtime-operator run`` in the image with the operator's settings."""
    passed = ("DATABASE_URL", "WATCH_NAMESPACES", "LOG_LEVEL", "METRICS_PORT", "METRICS_HOST")

    def argv(env: dict[str, str]) -> list[str]:
        settings = [f"--env={key}={env[key]}" for key in passed if key in env]
        return [
            *PODMAN,
            "run",
            *AS_THE_CHART_RUNS_IT,
            f"--volume={kubeconfig}:/etc/downtime/kubeconfig:ro",
            "--env=KUBECONFIG=/etc/downtime/kubeconfig",
            # The chart's log-files volume (an emptyDir unless persistence is on).
            f"--tmpfs={LOG_FILES}:rw,mode=1777",
            f"--env=LOG_FILES_DIR={LOG_FILES}",
            *settings,
            image,
            "run",
        ]

    return argv


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
async def database(make_database: DatabaseFactory) -> str:
    return await make_database()


async def test_the_operator_records_an_outage_from_the_container(
    image: str, control_plane: ControlPlane, namespace: str, database: str, tmp_path: Path
) -> None:
    dsn = database
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(control_plane.kubeconfig.read_bytes())
    kubeconfig.chmod(0o644)  # user 10001 reads it
    op = OperatorProcess(
        control_plane,
        database_url=dsn,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        extra_env={"METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"},
        command=in_container(image, kubeconfig=kubeconfig),
    )
    op.start()
    env = Env(control_plane, namespace, dsn, op)
    base = f"http://127.0.0.1:{port}"
    target = TargetServer().start()
    try:
        await eventually(lambda: get(f"{base}/readyz")[0] == 200, within=90, what="/readyz")
        assert get(f"{base}/healthz")[0] == 200
        env.apply(monitor("api", target.url))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up"
        )
        target.set_mode("failing")
        [incident] = await eventually(env.opened_incidents, within=30, what="a DowntimeIncident")
        assert incident["status"]["errorMessage"].startswith("HTTP 503")
        [row] = await eventually(env.rows, within=30, what="the PostgreSQL row")
        assert str(row["incident_id"]) == incident["spec"]["incidentId"]
        status, metrics = get(f"{base}/metrics")
        assert status == 200 and "gatewayz_downtime_incidents_ongoing" in metrics
        target.set_mode("healthy")
        [done] = await eventually(
            lambda: resolved_rows(env), within=30, what="the resolution in PostgreSQL"
        )
        assert done["duration_seconds"] > 0
        assert op.stop() == 0
    finally:
        target.stop()
        op.stop()
        print(f"--- operator log ---\n{op.log_tail(80)}")
