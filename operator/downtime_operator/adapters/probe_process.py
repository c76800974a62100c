"""The ``Prober`` that runs checks in a worker process, so they get a core of their own.

At 10,000 monitors the checks are a thousand HTTP exchanges a second; on the operator's event
loop they took most of a core, and a mass outage's incident writes had to fit in what was left
(a 1,000-incident burst took minutes on two cores). In a worker (``probe_worker``, its own
interpreter and loop) they cost the operator only a pickled request and reply each, batched
per loop turn, and neither side's load delays the other.

A check is never lost or invented by the split: while the worker is down (it died, or could
not start), checks run in the operator process with the same ``HttpProber`` options, the
checks it had in flight are run again there, and a new worker is started with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.probe_frames import FrameWriter, Request, read_frame
from downtime_operator.domain.models import CheckResult, MonitorSpec
from downtime_operator.services.ports import Clock
from downtime_operator.services.stop import cancelled

logger = logging.getLogger(__name__)

WORKER_MODULE = "downtime_operator.adapters.probe_worker"


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    out: FrameWriter[Request]
    started: float
    reading: asyncio.Task[None] | None = None
    pending: dict[int, tuple[asyncio.Future[CheckResult], Request]] = field(default_factory=dict)


class ProcessProber:
    """Implements ``Prober``: checks go to the worker; ``start()``/``close()`` own it."""

    def __init__(
        self,
        clock: Clock,
        *,
        options: dict[str, Any] | None = None,
        worker: Sequence[str] | None = None,
        restart_after: float = 1.0,
        restart_at_most: float = 60.0,
    ) -> None:
        self._options = options or {}
        self._command = tuple(worker or (sys.executable, "-m", WORKER_MODULE))
        """The worker's argv, to which the options are appended as JSON."""
        self._local = HttpProber(clock, **self._options)
        self._worker: _Worker | None = None
        self._ids = itertools.count()
        self._restart_after = restart_after
        self._restart_at_most = restart_at_most
        self._restarting: asyncio.Task[None] | None = None
        self._delay = restart_after / 2
        """The wait before the next restart; doubles while workers die young."""
        self._closing = False
        self._failed_over: set[asyncio.Task[CheckResult]] = set()

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.process.pid

    async def start(self) -> None:
        await self._local.start()
        if self._worker is None:
            try:
                self._worker = await self._spawn()
            except OSError as exc:
                logger.error("check worker could not start (%r); checking in-process", exc)
                self._restart_later(self._restart_after)

    async def check(self, spec: MonitorSpec, *, evidence: bool = False) -> CheckResult:
        worker = self._worker
        if worker is None:
            return await self._local.check(spec, evidence=evidence)
        check_id = next(self._ids)
        request: Request = (check_id, spec, evidence)
        future: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
        worker.pending[check_id] = (future, request)
        worker.out.send(request)
        try:
            return await future
        finally:
            worker.pending.pop(check_id, None)

    async def close(self) -> None:
        self._closing = True
        await cancelled(self._restarting)
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.out.close()  # the worker's stdin closes: it finishes and exits
            try:
                async with asyncio.timeout(10):
                    await worker.process.wait()
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            await cancelled(worker.reading)
            for future, _ in worker.pending.values():
                future.cancel()
        await self._local.close()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *self._command,
            json.dumps(self._options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        worker = _Worker(
            process=process,
            out=FrameWriter(process.stdin.transport),
            started=asyncio.get_running_loop().time(),
        )
        worker.reading = asyncio.create_task(
            self._read(worker, process.stdout), name="check-worker-replies"
        )
        return worker

    async def _read(self, worker: _Worker, stdout: asyncio.StreamReader) -> None:
        try:
            while (replies := await read_frame(stdout)) is not None:
                for check_id, result in replies:
                    waiting = worker.pending.pop(check_id, None)
                    if waiting is not None and not waiting[0].done():
                        waiting[0].set_result(result)
        except (asyncio.IncompleteReadError, OSError, ValueError) as exc:
            logger.error("check worker's replies unreadable (%r)", exc)
        if self._closing or self._worker is not worker:
            return
        self._worker = None
        self._fail_over(worker)
        logger.error(
            "check worker exited (code %s); checking in-process until it is restarted",
            await worker.process.wait(),
        )
        # A worker that dies soon after its start would die again: back off until one lives.
        lived = asyncio.get_running_loop().time() - worker.started
        self._delay = (
            self._restart_after
            if lived > self._restart_at_most
            else min(self._delay * 2, self._restart_at_most)
        )
        self._restart_later(self._delay)

    def _fail_over(self, worker: _Worker) -> None:
        """Run in this process the checks the worker took and never answered."""
        for future, (_, spec, evidence) in list(worker.pending.values()):
            if not future.done():
                task = asyncio.create_task(self._local.check(spec, evidence=evidence))
                self._failed_over.add(task)
                task.add_done_callback(self._failed_over.discard)
                task.add_done_callback(functools.partial(_settle, future))
        worker.pending.clear()

    def _restart_later(self, delay: float) -> None:
        if not self._closing:
            self._restarting = asyncio.create_task(self._restart(delay), name="check-worker-start")

    async def _restart(self, delay: float) -> None:
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                self._worker = await self._spawn()
            except OSError as exc:
                logger.error("check worker could not start (%r); checking in-process", exc)
                delay = min(delay * 2, self._restart_at_most)
                continue
            logger.info("check worker started again (pid %d)", self._worker.process.pid)
            return


def _settle(future: asyncio.Future[CheckResult], done: asyncio.Task[CheckResult]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (exc := done.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(done.result())
