"""The check worker: a child process that runs the HTTP checks the operator sends it.

``python -m downtime_operator.adapters.probe_worker '<HttpProber options as JSON>'`` reads
batches of checks from stdin and writes batches of results to stdout (``probe_frames``), until
stdin closes: the operator closed it, or died, and a worker never outlives its operator.
Checks run concurrently on the worker's own event loop with one ``HttpProber``; replies are
batched per loop turn, so a thousand checks a second cost a few dozen pipe writes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from typing import Any

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.probe_frames import FrameWriter, Reply, Request, read_frame


async def serve(
    reader: asyncio.StreamReader, out: FrameWriter[Reply], *, options: dict[str, Any]
) -> None:
    async with HttpProber(SystemClock(), **options) as prober:
        running: set[asyncio.Task[None]] = set()

        async def run(check_id: int, request: Request) -> None:
            _, spec, evidence = request
            out.send((check_id, await prober.check(spec, evidence=evidence)))

        try:
            while (batch := await read_frame(reader)) is not None:
                for request in batch:
                    task = asyncio.create_task(run(request[0], request))
                    running.add(task)
                    task.add_done_callback(running.discard)
            # The operator is closing: the checks it sent are answered (each within its
            # deadline) before the worker exits.
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await out.close()


async def _main(options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    # Frames only on the real stdout: anything a library prints goes to stderr instead.
    frames_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        functools.partial(asyncio.StreamReaderProtocol, reader), os.fdopen(sys.stdin.fileno(), "rb")
    )
    out: FrameWriter[Reply] = await FrameWriter.to_pipe(os.fdopen(frames_fd, "wb"))
    await serve(reader, out, options=options)


def main() -> None:
    # The operator decides when its worker stops (it closes stdin): a Ctrl-C or a SIGTERM sent
    # to the whole process group must not end the checks before the operator has flushed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))


if __name__ == "__main__":
    main()
