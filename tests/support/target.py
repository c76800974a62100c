"""A switchable HTTP target on 127.0.0.1: the "application" that tests watch go down and come back.

It runs in its OWN thread with its own event loop, so it keeps answering while a test blocks its
loop (``subprocess.run(["kubectl", ...])``, a synchronous sleep). Used by the probe's integration
tests, the e2e tests, benchmarks and demos. pytest puts ``tests/`` on sys.path (there is no
``tests/__init__.py``), so tests import it as ``from support.target import TargetServer``::

    with TargetServer() as target:           # listens on 127.0.0.1:<free port>
        target.url                           # http://127.0.0.1:<port>/health
        target.set_mode("failing")           # returns once the new mode is in effect
        target.requests                      # requests received so far

Modes (``set_mode``; unknown modes raise ValueError):

- ``healthy``         200 ``ok``
- ``failing``         503 ``down``
- ``slow``            holds the request until the mode changes (or ``slow_seconds``), then 200
- ``delay:<ms>``      200 ``ok`` after that many milliseconds
- ``slow-body``       200 headers and ``o`` at once, the ``k`` only when ``slow`` would answer
- ``unreachable``     stops listening (connections are refused) and drops open connections;
                      any other mode re-binds the SAME port
- ``huge``            200 with ``Content-Length: huge_bytes`` (1 GiB) streamed until the client goes
- ``endless``         200 chunked, streamed until the client goes (capped at ``huge_bytes`` too)
- ``redirect-loop``   302 to the same URL, forever
- ``redirect:<n>``    a chain of n 302 redirects, then 200 ``ok``
- ``reset``           resets the TCP connection (RST) without answering
- ``status:<code>``   that status, body ``status <code>``
- ``body:<text>``     200 with that body

As a process, for demos (mode switching over HTTP has to work while the target is unreachable, so
it lives on a SEPARATE control port)::

    python -m tests.support.target --port 8081 --control-port 8082 [--mode healthy]
    curl -X POST http://127.0.0.1:8082/mode/failing      # or /mode/status:500, /mode/unreachable
    curl http://127.0.0.1:8082/mode                      # {"mode": ..., "requests": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import socket
import struct
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from types import FrameType, TracebackType

from aiohttp import web

HOST = "127.0.0.1"
_SIMPLE_MODES = frozenset(
    {
        "healthy",
        "failing",
        "slow",
        "slow-body",
        "unreachable",
        "huge",
        "endless",
        "redirect-loop",
        "reset",
    }
)
_STREAM_CHUNK = b"x" * (64 * 1024)


def validate_mode(mode: str) -> str:
    """Return ``mode`` if it is one the server understands, else raise ValueError."""
    kind, _, arg = mode.partition(":")
    if mode in _SIMPLE_MODES or kind == "body":
        return mode
    if kind == "status" and arg.isdigit() and 100 <= int(arg) <= 599:
        return mode
    if kind in ("redirect", "delay") and arg.isdigit():
        return mode
    raise ValueError(f"unknown target mode {mode!r}")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()


class TargetServer:
    """The switchable target; a context manager that starts and stops its thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        path: str = "/health",
        mode: str = "healthy",
        control_port: int | None = None,  # 0: any free port; see control_url
        slow_seconds: float = 30.0,
        huge_bytes: int = 1 << 30,
    ) -> None:
        self._path = path
        self._mode = validate_mode(mode)
        self._control_port = control_port
        self._slow_seconds = slow_seconds
        self._huge_bytes = huge_bytes
        self._port = port
        self._lock = threading.Lock()
        self._requests = 0
        self._times: list[float] = []
        self._times_by_path: collections.defaultdict[str, list[float]] = collections.defaultdict(
            list
        )
        self._first_seen: dict[str, float] = {}
        self._by_mode: collections.Counter[str] = collections.Counter()
        self._peers: set[object] = set()
        self._last: RecordedRequest | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: Future[None] = Future()
        # Loop-side state, created in the server thread.
        self._stop: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None

    # -- lifecycle (caller's thread) ----------------------------------------------------------

    def start(self) -> TargetServer:
        first = self._bind(self._port)  # bind here so .port is known (and taken) before we return
        self._port = first.getsockname()[1]
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(first),), name="target-server", daemon=True
        )
        self._thread.start()
        self._ready.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> TargetServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests use -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def url(self) -> str:
        return self.base_url + self._path

    @property
    def control_url(self) -> str | None:
        if self._control_port is None:
            return None
        return f"http://{HOST}:{self._control_port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch mode; returns when it is in effect (e.g. the port is closed or re-bound)."""
        validate_mode(mode)
        if self._loop is None:
            raise RuntimeError("TargetServer is not running")
        asyncio.run_coroutine_threadsafe(self._apply(mode), self._loop).result(timeout=10)

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def request_times(self) -> list[float]:
        """Wall-clock times (``time.time()``) of the requests received, oldest first."""
        with self._lock:
            return list(self._times)

    def times_by_path(self) -> dict[str, list[float]]:
        """Request times per path, for several monitors answered by one target."""
        with self._lock:
            return {path: list(times) for path, times in self._times_by_path.items()}

    @property
    def requests_by_mode(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_mode)

    @property
    def connections(self) -> int:
        """Distinct TCP connections (client address:port) that carried at least one request."""
        with self._lock:
            return len(self._peers)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._last

    def reset_counts(self) -> None:
        with self._lock:
            self._requests = 0
            self._times.clear()
            self._times_by_path.clear()
            self._first_seen.clear()
            self._by_mode.clear()
            self._peers.clear()
            self._last = None

    # -- server thread ------------------------------------------------------------------------

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        return sock

    async def _serve(self, first: socket.socket) -> None:
        control: web.AppRunner | None = None
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._changed = asyncio.Event()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            # handler_cancellation: a handler streaming to a client that left stops at once.
            self._runner = web.AppRunner(
                app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
            )
            await self._runner.setup()
            await self._listen(first)
            if self._mode == "unreachable":
                await self._apply("unreachable")
            if self._control_port is not None:
                control = await self._start_control()
        except BaseException as exc:
            self._ready.set_exception(exc)
            raise
        self._ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            self._changed.set()  # wake slow handlers so shutdown is quick
            await self._runner.cleanup()
            if control is not None:
                await control.cleanup()

    async def _listen(self, sock: socket.socket) -> None:
        assert self._runner is not None
        self._site = web.SockSite(self._runner, sock, backlog=1024)
        await self._site.start()

    async def _apply(self, mode: str) -> None:
        assert self._runner is not None and self._runner.server is not None
        if mode == "unreachable" and self._site is not None:
            await self._site.stop()
            self._site = None
            for connection in self._runner.server.connections:
                connection.force_close()
        elif mode != "unreachable" and self._site is None:
            await self._listen(self._bind(self._port))
        self._mode = mode
        if self._changed is not None:
            self._changed.set()  # releases requests held by "slow"
        self._changed = asyncio.Event()

    async def _start_control(self) -> web.AppRunner:
        async def show(_: web.Request) -> web.Response:
            return web.json_response(
                {"mode": self._mode, "requests": self.requests, "connections": self.connections}
            )

        async def switch(request: web.Request) -> web.Response:
            mode = request.match_info["mode"]
            try:
                validate_mode(mode)
            except ValueError as exc:
                return web.Response(status=400, text=str(exc))
            await self._apply(mode)
            return await show(request)

        async def first_seen(request: web.Request) -> web.Response:
            # When each distinct URL (path and query) was first asked for: with one URL per
            # monitor, how long a start took to check every monitor once. ``contains`` keeps
            # only the monitors' URLs (not a baseline's).
            part = request.query.get("contains", "")
            with self._lock:
                times = [t for url, t in self._first_seen.items() if part in url]
            return web.json_response(
                {
                    "distinct": len(times),
                    "first": min(times, default=None),
                    "last": max(times, default=None),
                }
            )

        async def forget_seen(_: web.Request) -> web.Response:
            with self._lock:
                self._first_seen.clear()
            return web.json_response({"distinct": 0})

        app = web.Application()
        app.router.add_get("/mode", show)
        app.router.add_get("/first-seen", first_seen)
        app.router.add_post("/first-seen/reset", forget_seen)
        app.router.add_post("/mode/{mode:.+}", switch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = self._bind(self._control_port or 0)
        self._control_port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        return runner

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self._mode
        changed = self._changed
        assert changed is not None
        await self._record(request, mode)
        kind, _, arg = mode.partition(":")
        if mode == "healthy":
            return web.Response(text="ok")
        if mode == "failing":
            return web.Response(status=503, text="down")
        if mode == "slow":
            await self._hold(changed)
            return web.Response(text="ok")
        if kind == "delay":
            await asyncio.sleep(int(arg) / 1000)
            return web.Response(text="ok")
        if mode == "slow-body":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"o")
            await self._hold(changed)
            await response.write(b"k")
            await response.write_eof()
            return response
        if mode in ("huge", "endless"):
            return await self._stream(request, sized=mode == "huge")
        if mode == "redirect-loop":
            raise web.HTTPFound(request.path_qs)
        if kind == "redirect":
            hop = int(request.query.get("hop", "0"))
            if hop < int(arg):
                raise web.HTTPFound(f"{request.path}?hop={hop + 1}")
            return web.Response(text="ok")
        if kind == "status":
            return web.Response(status=int(arg), text=f"status {arg}")
        if kind == "body":
            return web.Response(text=arg)
        # "reset", or "unreachable" reached over a connection opened just before the switch.
        self._reset(request)
        return web.Response()  # goes nowhere: the connection is gone

    async def _record(self, request: web.Request, mode: str) -> None:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path_qs=request.path_qs,
            headers=dict(request.headers),
            body=body,
            at=time.time(),
        )
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self._requests += 1
            self._times.append(recorded.at)
            self._times_by_path[request.path].append(recorded.at)
            self._first_seen.setdefault(request.path_qs, recorded.at)
            self._by_mode[mode] += 1
            self._peers.add(peer)
            self._last = recorded

    async def _hold(self, changed: asyncio.Event) -> None:
        """Wait until the mode changes or the server stops, at most ``slow_seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), self._slow_seconds)

    async def _stream(self, request: web.Request, *, sized: bool) -> web.StreamResponse:
        """Stream ``huge_bytes`` at most; a client that disconnects ends it early."""
        assert self._stop is not None
        response = web.StreamResponse()
        if sized:
            response.content_length = self._huge_bytes
        await response.prepare(request)
        sent = 0
        while sent < self._huge_bytes and not self._stop.is_set():
            chunk = _STREAM_CHUNK[: self._huge_bytes - sent]
            try:
                await response.write(chunk)
            except ConnectionError:
                return response
            sent += len(chunk)
        await response.write_eof()
        return response

    @staticmethod
    def _reset(request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--control-port", type=int, default=8082)
    parser.add_argument("--path", default="/health")
    parser.add_argument("--mode", default="healthy")
    args = parser.parse_args(argv)
    done = threading.Event()

    def finish(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with TargetServer(
        port=args.port, path=args.path, mode=args.mode, control_port=args.control_port
    ) as target:
        print(f"target {target.url} (mode {target.mode}); control {target.control_url}/mode")
        while not done.wait(1.0):  # runs until SIGTERM/SIGINT
            pass


if __name__ == "__main__":
    main()
