"""The admin API inside ``downtime-operator run``, against a real control plane.

Acknowledge and resolve through HTTP: the row, the DowntimeIncident and an Event on the monitor
follow, and the running monitor notices the manual resolve, so the outage that goes on becomes a
new incident rather than being folded into the resolved one. A root cause written through PATCH
is mirrored to the DowntimeIncident's ``status.rootCause``, beside the monitor's playbook.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor, running_operator
from tests.support.api import KEYS
from tests.support.target import TargetServer

AUTH = {"Authorization": f"Bearer {KEYS['ops']}"}
PLAYBOOK = "https://runbooks.example.com/api-down"


@pytest.fixture
async def api_env(
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    tmp_path: Path,
) -> AsyncIterator[tuple[Env, str]]:
    dsn = await make_database()
    with running_operator(
        control_plane, namespace, dsn=dsn, log_path=tmp_path / "operator.log", api_port=free_port()
    ) as env:
        assert env.api_url is not None
        yield env, env.api_url


def events(env: Env, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = env.cp.kubectl_json("get", "events", "-n", env.namespace)["items"]
    return [e for e in items if e.get("reason") == reason]


async def test_acknowledge_and_resolve_through_the_api(
    api_env: tuple[Env, str], target: TargetServer
) -> None:
    env, base = api_env
    target.set_mode("failing")
    env.apply(monitor("api", target.url))
    [incident] = await eventually(env.opened_incidents, within=30, what="the first incident")
    incident_id = incident["spec"]["incidentId"]
    name = incident["metadata"]["name"]
    await eventually(env.rows, within=20, what="its row")

    def cr_status() -> str:
        found = [i for i in env.incidents() if i["metadata"]["name"] == name]
        return str(found[0]["status"]["status"]) if found else ""

    async with aiohttp.ClientSession(headers=AUTH) as session:
        url = f"{base}/admin/downtime/incidents/{incident_id}"
        async with session.post(f"{url}/acknowledge", params={"notes": "on it"}) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["incident"]["status"] == "investigating"
        await eventually(lambda: cr_status() == "investigating", within=20, what="CR investigating")
        await eventually(lambda: events(env, "IncidentAcknowledged"), within=20, what="event")

        async with session.post(f"{url}/resolve", params={"notes": "fixed by hand"}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["incident"]["status"] == "resolved"
        assert body["incident"]["notes"] == "on it\nfixed by hand"
        await eventually(lambda: cr_status() == "resolved", within=20, what="CR resolved")
        [event] = await eventually(
            lambda: events(env, "IncidentResolvedManually"), within=20, what="resolve event"
        )
        assert "resolved by ops" in event["message"]
        assert event["involvedObject"]["name"] == "api"

        # Still failing: the runner forgot the resolved incident, so this is a new outage.
        items = await eventually(
            lambda: len(env.incidents()) == 2 and env.incidents(),
            within=30,
            what="a second incident",
        )
        assert sorted(i["status"]["status"] for i in items) == ["ongoing", "resolved"]

        async with session.post(f"{url}/resolve") as response:
            assert response.status == 409
        async with session.get(f"{base}/admin/downtime/incidents/ongoing") as response:
            ongoing = (await response.json())["incidents"]
        assert [i["incident_id"] for i in ongoing] != [incident_id]
        assert len(ongoing) == 1


async def test_the_root_cause_written_through_the_api_is_mirrored_to_the_cr(
    api_env: tuple[Env, str], target: TargetServer
) -> None:
    """PATCH root cause and a note: the DowntimeIncident shows them beside the playbook its
    monitor gave it, and keeps them when the runner resolves it afterwards."""
    env, base = api_env
    target.set_mode("failing")
    env.apply(monitor("api", target.url, playbook=PLAYBOOK))
    [incident] = await eventually(env.opened_incidents, within=30, what="the first incident")
    assert incident["status"]["playbook"] == PLAYBOOK
    incident_id = incident["spec"]["incidentId"]
    name = incident["metadata"]["name"]
    await eventually(env.rows, within=20, what="its row")

    def cr_status() -> dict[str, Any]:
        return dict(env.cp.kubectl_json("get", "dti", name, "-n", env.namespace)["status"])

    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.patch(
            f"{base}/admin/downtime/incidents/{incident_id}",
            json={"root_cause": "Connection pool exhausted", "notes": "raised the pool to 50"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        detail = (await response.json())["incident"]
    assert detail["root_cause"] == "Connection pool exhausted"
    assert detail["playbook"] == PLAYBOOK
    status = await eventually(
        lambda: "rootCause" in (found := cr_status()) and found,
        within=20,
        what="status.rootCause",
    )
    assert status["rootCause"] == "Connection pool exhausted"
    assert status["notes"].endswith("ops] raised the pool to 50")

    # The runner's own writes (here: the resolution) never take the person's words away.
    target.set_mode("healthy")
    status = await eventually(
        lambda: (found := cr_status())["status"] == "resolved" and found,
        within=20,
        what="the resolution",
    )
    assert (status["rootCause"], status["playbook"]) == ("Connection pool exhausted", PLAYBOOK)
