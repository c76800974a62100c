"""Fixtures for the e2e tests: one real control plane per session, one namespace per test.

Imports: ``tests/`` and ``tests/e2e/`` are packages (empty ``__init__.py``), so pytest's default
("prepend") import mode puts the repository root on sys.path and names these modules
``tests.e2e.*``. Import the control plane absolutely or relatively::

    from tests.e2e.controlplane import ControlPlane, KubectlError
    from .controlplane import ControlPlane, KubectlError

(Shared helpers elsewhere are ``tests.support.*`` and ``tests.conftest``; a bare
``from support...`` does not resolve.)

Every test under tests/e2e is marked ``e2e``. Nothing is skipped: a missing binary, a failed
build or a control plane that does not start fails the tests loudly.

Fixtures:
  control_plane  session-scoped ControlPlane (etcd + kube-apiserver, CRDs established)
  namespace      a fresh namespace ``e2e-<test>-<random>`` (str); on teardown its
                 HealthMonitors and DowntimeIncidents are deleted (finalizers stripped, since
                 the operator may be gone) and the namespace deletion is requested without
                 waiting (no controller-manager, so it stays Terminating). When the test
                 failed, ``kubectl get downtime,events`` of the namespace is printed.
  make_namespace a factory ``() -> str`` of more such namespaces for the same test.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.harness import Env, running_operator
from tests.support.target import TargetServer

from .controlplane import ApiError, ControlPlane

HERE = Path(__file__).resolve().parent
GROUP_PATH = "/apis/monitoring.gatewayz.ai/v1"
CUSTOM_PLURALS = ("healthmonitors", "downtimeincidents", "notificationchannels")
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can see whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


def _namespace_name(test_name: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")
    short = short[:40].rstrip("-") or "test"
    return f"e2e-{short}-{secrets.token_hex(3)}"


def create_namespace(cp: ControlPlane, name: str) -> str:
    cp.api(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    return name


@pytest.fixture
def make_namespace(
    control_plane: ControlPlane, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """A factory of fresh namespaces for this test, all cleaned up like ``namespace``."""
    created: list[str] = []

    def make() -> str:
        created.append(create_namespace(control_plane, _namespace_name(request.node.name)))
        return created[-1]

    yield make
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    for name in created:
        if failed:
            shown = control_plane.kubectl(
                "get", "downtime,events", "-n", name, "-o", "wide", check=False
            )
            print(f"--- kubectl get downtime,events -n {name} ---\n{shown.stdout}{shown.stderr}")
        delete_namespace(control_plane, name)


@pytest.fixture
def namespace(make_namespace: Callable[[], str]) -> str:
    """A fresh namespace ``e2e-<test>-<random>`` for this test."""
    return make_namespace()


def delete_namespace(cp: ControlPlane, name: str) -> None:
    """Delete our custom resources in the namespace (stripping finalizers), then the namespace."""
    for plural in CUSTOM_PLURALS:
        path = f"{GROUP_PATH}/namespaces/{name}/{plural}"
        try:
            cp.api("DELETE", path)  # deletecollection
            remaining = cp.api("GET", path)["items"]
        except ApiError:
            continue
        for item in remaining:
            if item["metadata"].get("finalizers"):
                try:
                    cp.api(
                        "PATCH",
                        f"{path}/{item['metadata']['name']}",
                        {"metadata": {"finalizers": None}},
                        content_type="application/merge-patch+json",
                    )
                except ApiError as err:
                    if err.status != 404:
                        raise
    try:
        cp.api("DELETE", f"/api/v1/namespaces/{name}")
    except ApiError as err:
        if err.status != 404:
            raise


@pytest.fixture
async def env(
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    tmp_path: Path,
) -> AsyncIterator[Env]:
    """The operator as a process, watching this test's namespace, over a fresh database."""
    dsn = await make_database()
    with running_operator(
        control_plane, namespace, dsn=dsn, log_path=tmp_path / "operator.log"
    ) as env:
        yield env


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server
