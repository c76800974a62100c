"""The start-up reload: one store read and one list per namespace for every monitor starting."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from downtime_operator.domain.models import Incident, MonitorRef
from downtime_operator.services.open_incidents import FRESH_FOR, OpenIncidents
from tests.contract.stores import T0, make_incident
from tests.unit.fakes import FakeClock, MemoryStore, RecordingResources


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.bulk_reads = 0
        self.single_reads = 0

    async def get_ongoing_incidents(self) -> list[Incident]:
        self.bulk_reads += 1
        await asyncio.sleep(0)  # every runner asks before the read answers
        return await super().get_ongoing_incidents()

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        self.single_reads += 1
        return await super().get_open_incident(monitor)


REFS = [MonitorRef(namespace=ns, name=f"m{i}") for ns in ("a", "b") for i in range(3)]


async def world() -> tuple[OpenIncidents, CountingStore, RecordingResources, FakeClock]:
    store, resources, clock = CountingStore(), RecordingResources(), FakeClock(T0)
    in_store = make_incident("m1", namespace="a")
    await store.create_incident(in_store)
    only_cr = make_incident("m2", namespace="b")
    resources.incidents[only_cr.k8s_name] = only_cr
    return OpenIncidents(store=store, resources=resources, clock=clock), store, resources, clock


async def test_monitors_starting_together_share_one_read_of_each_kind() -> None:
    index, store, resources, _ = await world()
    in_store = await asyncio.gather(*(index.in_store(ref) for ref in REFS))
    in_crs = await asyncio.gather(*(index.in_resources(ref) for ref in REFS))
    assert [i.monitor.name if i else None for i in in_store] == [None, "m1", None, None, None, None]
    assert [i.monitor.name if i else None for i in in_crs] == [None, None, None, None, None, "m2"]
    assert (store.bulk_reads, store.single_reads) == (1, 0)
    assert resources.open_lists == 2  # one per namespace


async def test_a_runner_starting_again_or_late_asks_for_itself() -> None:
    index, store, _, clock = await world()
    await index.in_store(REFS[0])
    await index.in_store(REFS[0])  # the same monitor again: its incidents may have changed
    assert store.single_reads == 1
    clock.current += FRESH_FOR + timedelta(seconds=1)
    await index.in_store(REFS[1])  # a monitor created long after the start
    assert (store.bulk_reads, store.single_reads) == (1, 2)


async def test_a_store_down_at_start_fails_each_caller_who_then_asks_the_crs() -> None:
    index, store, _, _ = await world()
    store.available = False
    for ref in REFS[:2]:
        with pytest.raises(ConnectionRefusedError, match="store down"):
            await index.in_store(ref)
