"""``downtime-operator report INCIDENT_ID`` as a real process, on the SQLite file and on
PostgreSQL: the same Markdown as the admin API's report route."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.contract.stores import T0, make_incident, ports_for
from tests.support.commands import open_command_store, run_command

from downtime_operator.domain.models import Incident

INCIDENT = make_incident("checkout", namespace="shop", error_message="HTTP 503")


@pytest.fixture
async def where(
    databases: DatabaseFactory | None, tmp_path: Path
) -> AsyncIterator[tuple[list[str], dict[str, str]]]:
    """The CLI arguments and environment that select one store, holding ``INCIDENT``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_DB_URL")}
    store, args, env = await open_command_store(databases, tmp_path, env)
    try:
        await store.create_incident(INCIDENT)
        await ports_for(store).queries.annotate_incident(
            INCIDENT.incident_id, root_cause="pool exhausted", note=None
        )
    finally:
        await store.close()
    yield args, env


def report(
    incident: Incident | str, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    wanted = incident if isinstance(incident, str) else str(incident.incident_id)
    return run_command("report", wanted, *args, env=env, cwd=cwd)


async def test_the_report_is_printed_as_markdown(
    where: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    args, env = where
    done = report(INCIDENT, args, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# Incident report: {INCIDENT.k8s_name}\n")
    assert "- Monitor: shop/checkout\n" in done.stdout
    assert f"| {T0:%Y-%m-%d %H:%M:%S} UTC | First failed check |" in done.stdout
    assert "## Root cause\n\n```text\npool exhausted\n```" in done.stdout


async def test_an_unknown_incident_exits_1(
    where: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    args, env = where
    missing = str(uuid.uuid4())
    done = report(missing, args, env, tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert f"no incident {missing}" in done.stderr


def test_bad_arguments_exit_2_naming_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_DB_URL")}
    not_an_id = report("12345", ["--db-path", str(tmp_path / "x.db")], env, tmp_path)
    assert not_an_id.returncode == 2 and "INCIDENT_ID:" in not_an_id.stderr
    no_file = report(str(uuid.uuid4()), ["--db-path", str(tmp_path / "x.db")], env, tmp_path)
    assert no_file.returncode == 2 and "--db-path: no such file" in no_file.stderr
    assert not (tmp_path / "x.db").exists()  # a report never creates a store
