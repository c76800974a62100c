"""The installed package's version: in the OpenAPI document and in each incident's server info."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("downtime-operator")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"
