"""``downtime-operator api`` as a real process: migrates, serves on its port, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import free_port
from tests.support.api import KEYS

# Parsed, never contacted: GETs need no Kubernetes, and a resolve's CR update would be retried.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def api_env(dsn: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_API", "API_"))}
    return {
        **env,
        "DATABASE_URL": dsn,
        "KUBECONFIG": str(kubeconfig),
        "API_HOST": "127.0.0.1",
        **extra,
    }


async def test_the_api_command_serves_until_sigterm(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await make_database()  # empty: the command applies the migrations itself
    port = free_port()
    keys = ",".join(f"{name}={key}" for name, key in KEYS.items())
    log = (tmp_path / "api.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downtime_operator",
        "api",
        env=api_env(dsn, tmp_path, ADMIN_API_KEYS=keys, API_PORT=str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {KEYS['ci']}"}
        ) as session:
            for _ in range(100):  # bounded: up to ~20 s for start-up and migrations
                try:
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError((tmp_path / "api.log").read_text())
            async with session.get(f"{base}/admin/downtime/incidents") as response:
                assert response.status == 200
                assert (await response.json())["incidents"] == []
            unknown = uuid.uuid4()
            async with session.post(f"{base}/admin/downtime/incidents/{unknown}/resolve") as r:
                assert r.status == 404
        conn = await asyncpg.connect(dsn)
        try:
            audit = await conn.fetchrow("SELECT key_name, outcome FROM downtime_audit_log")
        finally:
            await conn.close()
        assert audit is not None
        assert (audit["key_name"], audit["outcome"]) == ("ci", "not_found")
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
        log.close()
    assert code == 0, (tmp_path / "api.log").read_text()
    output = (tmp_path / "api.log").read_text()
    assert "admin API listening on 127.0.0.1" in output
    for key in KEYS.values():
        assert key not in output


async def test_the_api_command_refuses_to_start_without_keys(
    postgres_dsn: str, tmp_path: Path
) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "downtime_operator", "api"],
        env=api_env(postgres_dsn, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ADMIN_API_KEYS" in result.stderr
