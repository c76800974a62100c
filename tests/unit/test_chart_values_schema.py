"""manifests/values.schema.json: a wrong value type, an unknown key or an impossible value is
refused by ``helm lint --strict`` and ``helm template`` with a message naming it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART, Helm, helm_binary

WRONG: list[tuple[str, dict[str, Any], str]] = [
    ("negative replicas", {"replicas": -1}, "replicas"),
    ("replicas as text", {"replicas": "two"}, "replicas"),
    ("unknown top-level key", {"replica": 2}, "replica"),
    ("unknown nested key", {"operator": {"logLevl": "DEBUG"}}, "logLevl"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ("log level not known", {"operator": {"logLevel": "VERBOSE"}}, "logLevel"),
    ("port out of range", {"metrics": {"port": 70000}}, "port"),
    ("boolean as text", {"peering": {"enabled": "yes"}}, "enabled"),
    ("no shards", {"sharding": {"shards": 0}}, "shards"),
    ("interval not a duration", {"serviceMonitor": {"interval": "soon"}}, "interval"),
    ("Loki URL without scheme", {"loki": {"queryUrl": "loki:3100"}}, "queryUrl"),
    ("service type unknown", {"service": {"type": "Ingress"}}, "type"),
]


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(helm_binary())


@pytest.mark.parametrize(
    ("values", "named"), [(v, n) for _, v, n in WRONG], ids=[w[0] for w in WRONG]
)
def test_a_wrong_value_is_refused_naming_it(helm: Helm, values: dict[str, Any], named: str) -> None:
    for command in (("lint", "--strict", str(CHART)), ("template", "x", str(CHART))):
        with pytest.raises(AssertionError) as refused:
            helm.run(*command, values=values)
        assert named in str(refused.value), (command, str(refused.value)[-800:])


def test_the_defaults_and_every_documented_value_pass_the_schema(helm: Helm) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    helm.run("lint", "--strict", str(CHART), values=defaults)


def test_the_schema_knows_every_key_of_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        properties = node.get("properties")
        if properties is None:
            return  # a free-form object (labels, affinity, security contexts)
        for key, value in values.items():
            assert key in properties, f"{path}{key} is in values.yaml but not in the schema"
            if isinstance(value, dict):
                walk(value, properties[key], f"{path}{key}.")

    walk(defaults, schema, "")
