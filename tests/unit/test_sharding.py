"""Sharding (issue 11): which replica checks a monitor, and how a replica learns its share."""

from __future__ import annotations

import collections
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.domain.models import CheckResult, MonitorRef, MonitorState
from downtime_operator.domain.sharding import Shard, shard_of
from downtime_operator.domain.status import StatusFacts, StatusSync
from downtime_operator.settings import OperatorSettings, SettingsError, load_settings

DSN = {"DATABASE_URL": "postgresql://u@h/db"}


def test_the_hash_is_fnv1a_and_stable_across_processes() -> None:
    # FNV-1a 32 of "a" is 0xe40c292c: the same function kube-state-metrics uses, and not
    # Python's hash(), which differs between processes.
    assert shard_of("a", shards=1 << 32) == 0xE40C292C
    uid = "0b6f2c1e-4d0a-4a59-9c55-6a1d3f0e2b77"
    assert {shard_of(uid, shards=7) for _ in range(3)} == {shard_of(uid, shards=7)}


def test_uids_spread_evenly_and_every_uid_has_exactly_one_shard() -> None:
    uids = [str(uuid.uuid4()) for _ in range(10_000)]
    shards = [Shard(index=i, count=4) for i in range(4)]
    owners = [[s.index for s in shards if s.owns(uid)] for uid in uids]
    assert all(len(o) == 1 for o in owners)
    counts = collections.Counter(o[0] for o in owners)
    assert all(2_300 < counts[i] < 2_700 for i in range(4)), counts


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_that_cannot_exist_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Shard(index=index, count=count)


def test_the_shard_and_its_peering_object_come_from_the_environment() -> None:
    settings = load_settings(
        OperatorSettings, {**DSN, "SHARD_COUNT": "3", "SHARD_INDEX": "2", "PEERING_NAME": "dto"}
    )
    shard = settings.kubernetes.shard
    assert shard == Shard(index=2, count=3)
    assert shard.peering_name("dto") == "dto-shard-2"
    assert load_settings(OperatorSettings, DSN).kubernetes.shard is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_COUNT": "2"}, "SHARD_INDEX: required when SHARD_COUNT is above 1"),
        ({"SHARD_COUNT": "2", "SHARD_INDEX": "2"}, "SHARD_INDEX: 2 is not below SHARD_COUNT"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_INDEX": "-1"}, "SHARD_INDEX"),
    ],
)
def test_bad_shard_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(OperatorSettings, {**DSN, **env})


def test_the_status_shows_the_shard() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    facts = StatusFacts(
        state=MonitorState.UP,
        consecutive_failures=0,
        current_incident=None,
        observed_generation=1,
        shard=1,
    )
    sync = StatusSync(sync_period=timedelta(seconds=60))
    patch = sync.patch_for(facts, last_check=CheckResult(at=now, ok=True), now=now)
    assert patch is not None and patch.body["shard"] == 1
    unsharded = StatusSync(sync_period=timedelta(seconds=60)).patch_for(
        StatusFacts(
            state=MonitorState.UP,
            consecutive_failures=0,
            current_incident=None,
            observed_generation=1,
        ),
        last_check=None,
        now=now,
    )
    assert unsharded is not None and "shard" not in unsharded.body


def test_every_series_of_a_sharded_replica_has_the_shard_label() -> None:
    metrics = OperatorMetrics(shard="1")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    metrics.check_observed(
        MonitorRef(namespace="a", name="api"),
        CheckResult(at=now, ok=True, status_code=200, latency_ms=3.0),
        0.001,
    )
    samples = [
        sample
        for family in text_string_to_metric_families(metrics.text().decode())
        for sample in family.samples
    ]
    assert samples and all(sample.labels.get("shard") == "1" for sample in samples)
    up = [s for s in samples if s.name == "gatewayz_health_check_up"]
    assert up[0].labels == {"monitor": "a/api", "shard": "1"}
