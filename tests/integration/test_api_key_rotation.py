"""Rotating the admin API's keys through a mounted Secret, without restarting anything."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.null_resources import LoggingResources
from downtime_operator.adapters.sqlite.backend import SqliteBackend
from downtime_operator.admin_server import serve_admin_api
from downtime_operator.settings import ApiSettings, load_settings

OLD = "old-key-0123456789abcdef"
NEW = "new-key-fedcba9876543210"


async def status_with(http: aiohttp.ClientSession, url: str, key: str) -> int:
    async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status


async def until(http: aiohttp.ClientSession, url: str, key: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while await status_with(http, url, key) != status:
        assert time.monotonic() < deadline, f"{key[:3]} never answered {status}"
        await asyncio.sleep(0.05)


async def test_a_rotated_secret_takes_effect_and_a_broken_one_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="downtime_operator.admin_server")
    secret = tmp_path / "keys"  # a Secret volume: one file per key name
    secret.mkdir()
    (secret / "ops").write_text(OLD)
    api = load_settings(
        ApiSettings,
        {
            "ADMIN_API_KEYS_FILE": str(secret),
            "ADMIN_API_KEYS_RELOAD_SECONDS": "0.1",
            "API_HOST": "127.0.0.1",
            "API_PORT": "0",
        },
    )
    backend = await SqliteBackend.open(tmp_path / "downtime.db")
    try:
        async with (
            serve_admin_api(
                api,
                backend=backend,
                resources=LoggingResources(),
                log_files_dir=tmp_path / "logs",
                clock=SystemClock(),
                source=None,
            ) as port,
            aiohttp.ClientSession() as http,
        ):
            url = f"http://127.0.0.1:{port}/admin/downtime/incidents"
            assert await status_with(http, url, OLD) == 200
            assert await status_with(http, url, NEW) == 401

            (secret / "ops-next").write_text(NEW)  # step 1: both keys work
            await until(http, url, NEW, 200)
            assert await status_with(http, url, OLD) == 200
            (secret / "ops").unlink()  # step 2: the old key is gone
            await until(http, url, OLD, 401)
            assert await status_with(http, url, NEW) == 200

            (secret / "broken").write_text("short")  # invalid: the keys in use stay
            await asyncio.sleep(0.5)
            assert await status_with(http, url, NEW) == 200
    finally:
        await backend.close()
    assert "admin API keys reloaded: ops, ops-next" in caplog.text
    assert caplog.text.count("admin API keys not reloaded, still using ['ops-next']") == 1
    assert OLD not in caplog.text and NEW not in caplog.text  # names only, never keys
