"""docs/crds.md and docs/admin-api.md say what crds/ and the OpenAPI document say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.reference_docs import DOCS, rendered


@pytest.mark.parametrize("path", sorted(rendered()), ids=lambda p: p.name)
def test_the_reference_matches_its_source(path: Path) -> None:
    on_disk = path.read_text() if path.exists() else ""
    assert on_disk == rendered()[path], f"{path} is out of date: run scripts/generate-docs.sh"


def test_every_field_of_every_crd_is_listed() -> None:
    crds = rendered()[DOCS / "crds.md"]
    for field in ("spec.interval", "spec.failureThreshold", "status.state", "spec.incidentId"):
        assert f"`{field}`" in crds
