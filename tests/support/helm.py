"""helm (built from Go modules by scripts/build-helm.sh, cached by version) over the chart.

``HELM`` in the environment (scripts/test.sh exports it) names the binary; otherwise the build
script is run, which is instant once the binary is cached.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.support.go_binaries import go_binary

if TYPE_CHECKING:
    from tests.e2e.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "manifests"
BUILD_SCRIPT = REPO / "scripts" / "build-helm.sh"
PEERING_CRDS = CHART / "crds" / "kopf-peering.yaml"

MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ha": {"replicas": 2, "podDisruptionBudget": {"enabled": True}},
}
"""The chart's install modes that acceptance names: defaults, namespaced, HA."""


def helm_binary() -> Path:
    return go_binary("HELM", BUILD_SCRIPT)


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str, values: dict[str, Any] | None = None) -> str:
        """``helm <args> [-f <values>]``; raises with helm's output when it fails."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            yaml.safe_dump(values or {}, file)
            file.flush()
            proc = subprocess.run(
                [str(self.binary), *args, *(["-f", file.name] if values is not None else [])],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                # No kubeconfig from the developer's environment leaks into these runs.
                env={**os.environ, "KUBECONFIG": os.devnull},
            )
        if proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def template_text(
        self,
        *,
        release: str,
        namespace: str,
        values: dict[str, Any] | None = None,
    ) -> str:
        return self.run(
            "template", release, str(CHART), "--namespace", namespace, values=values or {}
        )

    def template(
        self,
        *,
        release: str,
        namespace: str,
        values: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The rendered objects (empty documents dropped)."""
        text = self.template_text(release=release, namespace=namespace, values=values)
        return [doc for doc in yaml.safe_load_all(text) if doc]


def apply_peering_crds(cp: ControlPlane) -> None:
    """The chart's crds/ beyond the operator's own (which every ControlPlane applies)."""
    cp.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cp.kubectl(
        "wait",
        "--for",
        "condition=established",
        "--timeout",
        "60s",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/kopfpeerings.kopf.dev",
    )
