"""Which API server errors the Kubernetes adapter reports as refused for good (dropped from the
ordered write queue) and which it leaves to be retried."""

from __future__ import annotations

import json

import pytest
from kubernetes.aio.client.exceptions import ApiException

from downtime_operator.adapters.kube.resources import refused_for_good


def error(status: int, message: str, kind: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="refused")
    body: dict[str, object] = {"kind": "Status", "message": message, "code": status}
    if kind is not None:
        body["details"] = {"name": "x", "kind": kind}
    exc.body = json.dumps(body)
    return exc


TERMINATING = "unable to create new content in namespace x because it is being terminated"


@pytest.mark.parametrize(
    ("exc", "for_good"),
    [
        (error(422, 'DowntimeIncident "a" is invalid: spec.healthEndpoint: Too long'), True),
        (error(400, "bad request"), True),
        (error(403, TERMINATING), True),
        (error(404, 'namespaces "x" not found', kind="namespaces"), True),
        (error(403, 'cannot create resource "events" (RBAC)'), False),
        (error(404, 'downtimeincidents "a" not found', kind="downtimeincidents"), False),
        (error(409, "already exists"), False),
        (error(500, "etcd timeout"), False),
        (ApiException(status=503, reason="no body"), False),
    ],
)
def test_refused_for_good_or_retried(exc: ApiException, for_good: bool) -> None:
    assert refused_for_good(exc) is for_good
