"""A Loki ``query_range`` server for tests, written from Loki's documented HTTP API.

What it implements, as Loki documents it (docs/sources/reference/loki-http-api.md):

- ``GET /loki/api/v1/query_range`` with ``query`` (a stream selector ``{k="v", k=~"re", k!="v",
  k!~"re"}`` plus line filters ``|= != |~ !~``), ``start`` (inclusive) and ``end`` (exclusive) as
  nanosecond integers, float seconds (rounded to the millisecond, as Loki does) or RFC 3339,
  ``limit`` (default 100) and ``direction`` (default ``backward``).
- ``limit`` above the configured ``max_entries`` (Loki's ``max_entries_limit_per_query``,
  default 5000) is refused with a 400; so are bad LogQL and ``end <= start``. Error bodies are
  plain text, like Loki's.
- Answers ``{"status": "success", "data": {"resultType": "streams", "result": [...]}}``; with the
  ``X-Loki-Response-Encoding-Flags: categorize-labels`` request header, structured metadata comes
  as a third value element ``{"structuredMetadata": {...}}``; without it, it is merged into the
  stream labels (one stream per distinct label set), as Loki 3 does.
- Optional basic auth and ``X-Scope-OrgID`` tenant (401 otherwise).

For tests: several streams, entries sharing a timestamp, injectable faults (``inject("429",
"500", "400:text", "slow:2.5")`` for the next requests, ``fail_always`` for every request) and
a record of every request. It runs in its OWN thread and event loop (like ``target.py``), so it
answers while a test blocks its loop. As a process, for benchmarks (no GIL shared with them)::

    python -m tests.support.loki_server --lines 12000 [--port 0]   # prints its URL
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import json
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from types import FrameType, TracebackType

from aiohttp import web

HOST = "127.0.0.1"
PATH = "/loki/api/v1/query_range"
DEFAULT_LIMIT = 100
NS = 1_000_000_000
_UNIX_SECONDS_DIGITS = 10

_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_LINE_FILTER = re.compile(r'\s*(\|=|!=|\|~|!~)\s*"((?:[^"\\]|\\.)*)"')


class QueryError(ValueError):
    """A request Loki would answer with 400; the message is the plain-text body."""


@dataclass(frozen=True)
class Selector:
    matchers: tuple[tuple[str, str, str], ...]
    line_filters: tuple[tuple[str, str], ...]

    def matches_stream(self, labels: Mapping[str, str]) -> bool:
        for name, op, value in self.matchers:
            actual = labels.get(name, "")
            ok = {
                "=": actual == value,
                "!=": actual != value,
                "=~": re.fullmatch(value, actual) is not None,
                "!~": re.fullmatch(value, actual) is None,
            }[op]
            if not ok:
                return False
        return True

    def matches_line(self, line: str) -> bool:
        for op, value in self.line_filters:
            ok = {
                "|=": value in line,
                "!=": value not in line,
                "|~": re.search(value, line) is not None,
                "!~": re.search(value, line) is None,
            }[op]
            if not ok:
                return False
        return True


def parse_query(text: str) -> Selector:
    """The subset of LogQL a capture uses; anything else is a Loki-style parse error."""
    rest = text.strip()
    if not rest.startswith("{"):
        raise QueryError(
            'parse error at line 1, col 1: syntax error: unexpected IDENTIFIER, expecting "{"'
        )
    position = 1
    matchers: list[tuple[str, str, str]] = []
    while True:
        found = _MATCHER.match(rest, position)
        if found is None:
            raise QueryError(f"parse error at line 1, col {position + 1}: syntax error")
        name, op, raw, end = found.groups()
        value = raw.replace('\\"', '"').replace("\\\\", "\\")
        matchers.append((name, op, value))
        position = found.end()
        if end == "}":
            break
    if not any(op in ("=", "=~") and value for _, op, value in matchers):
        raise QueryError(
            "parse error : queries require at least one regexp or equality matcher that does"
            " not have an empty-compatible value"
        )
    filters: list[tuple[str, str]] = []
    while position < len(rest):
        found = _LINE_FILTER.match(rest, position)
        if found is None:
            if rest[position:].strip() == "":
                break
            raise QueryError(f"parse error at line 1, col {position + 1}: syntax error")
        op, raw = found.groups()
        filters.append((op, raw.replace('\\"', '"').replace("\\\\", "\\")))
        position = found.end()
    return Selector(matchers=tuple(matchers), line_filters=tuple(filters))


def parse_timestamp(value: str | None, default: int) -> int:
    """Loki's own rule: '.' -> float seconds (ms precision); <= 10 digits -> seconds; else ns."""
    if value is None or value == "":
        return default
    if "." in value:
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            whole = math.floor(seconds)
            fraction = round((seconds - whole) * 1000) / 1000
            return whole * NS + round(fraction * NS)
    try:
        number = int(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(f'invalid timestamp "{value}"') from None
        return int(moment.timestamp()) * NS + moment.microsecond * 1000
    return number * NS if len(value.lstrip("-")) <= _UNIX_SECONDS_DIGITS else number


@dataclass(frozen=True)
class Entry:
    ts: int
    stream: int
    line: str
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RecordedQuery:
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    at: float  # time.time()
    returned: int  # entries in the answer


class LokiServer:
    """The test Loki; a context manager that starts and stops its thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        max_entries: int = 5000,
        username: str | None = None,
        password: str | None = None,
        tenant: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.max_entries = max_entries
        self._credentials = f"{username}:{password or ''}" if username is not None else None
        self._tenant = tenant
        self._retry_after = retry_after
        self._port = port
        self._lock = threading.Lock()
        self._streams: list[dict[str, str]] = []
        self._entries: list[Entry] = []  # kept sorted by (ts, stream)
        self._keys: list[tuple[int, int]] = []
        self._faults: collections.deque[str] = collections.deque()
        self._fail_always: str | None = None
        self._requests: list[RecordedQuery] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()

    # -- data -----------------------------------------------------------------------------------

    def push(
        self,
        labels: Mapping[str, str],
        values: Iterable[tuple[int, str] | tuple[int, str, Mapping[str, str]]],
    ) -> None:
        """Add entries (ns timestamp, line[, structured metadata]) to the stream ``labels``."""
        with self._lock:
            stream = self._stream_index(dict(labels))
            for value in values:
                metadata = value[2] if len(value) > 2 else None
                entry = Entry(ts=int(value[0]), stream=stream, line=value[1], metadata=metadata)
                key = (entry.ts, stream)
                at = bisect.bisect_right(self._keys, key)
                self._keys.insert(at, key)
                self._entries.insert(at, entry)

    def push_sorted(self, labels: Mapping[str, str], values: list[tuple[int, str]]) -> None:
        """Bulk ``push`` for many entries (benchmarks): appends, then sorts once."""
        with self._lock:
            stream = self._stream_index(dict(labels))
            self._entries.extend(Entry(ts=ts, stream=stream, line=line) for ts, line in values)
            self._entries.sort(key=lambda e: (e.ts, e.stream))
            self._keys = [(e.ts, e.stream) for e in self._entries]

    def _stream_index(self, labels: dict[str, str]) -> int:
        if labels not in self._streams:
            self._streams.append(labels)
        return self._streams.index(labels)

    # -- faults and what happened -------------------------------------------------------------

    def inject(self, *faults: str) -> None:
        """Faults for the next requests, in order: "429", "500", "503", "400:<text>",
        "slow:<seconds>" (answers normally after that delay)."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def fail_always(self) -> str | None:
        return self._fail_always

    @fail_always.setter
    def fail_always(self, fault: str | None) -> None:
        """A fault for every request until set back to None (e.g. "500")."""
        self._fail_always = fault

    @property
    def requests(self) -> list[RecordedQuery]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, as ``LOKI_QUERY_URL`` takes it."""
        return f"http://{HOST}:{self._port}"

    def start(self) -> LokiServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port))
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock),), name="loki-server", daemon=True
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

    def __enter__(self) -> LokiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            app = web.Application()
            app.router.add_get(PATH, self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException as exc:
            self._ready.set_exception(exc)
            raise
        self._ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- the endpoint ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        with self._lock:
            fault = self._faults.popleft() if self._faults else self._fail_always
        status, body, returned = await self._answer(request, fault)
        with self._lock:
            self._requests.append(
                RecordedQuery(
                    params=dict(request.query),
                    headers=dict(request.headers),
                    status=status,
                    at=time.time(),
                    returned=returned,
                )
            )
        if status != 200:
            headers = {}
            if status == 429 and self._retry_after is not None:
                headers["Retry-After"] = f"{self._retry_after:g}"
            return web.Response(status=status, text=body + "\n", headers=headers)
        return web.Response(status=200, text=body, content_type="application/json")

    async def _answer(self, request: web.Request, fault: str | None) -> tuple[int, str, int]:
        kind, _, arg = (fault or "").partition(":")
        if kind == "slow":
            await asyncio.sleep(float(arg))
        elif kind == "429":
            return 429, "too many outstanding requests", 0
        elif kind.isdigit():
            return int(kind), arg or f"{kind} injected failure", 0
        denied = self._denied(request)
        if denied is not None:
            return 401, denied, 0
        try:
            streams, returned = self._select(request)
        except QueryError as exc:
            return 400, str(exc), 0
        categorize = "categorize-labels" in request.headers.get(
            "X-Loki-Response-Encoding-Flags", ""
        )
        data: dict[str, object] = {
            "resultType": "streams",
            "result": _encode(streams, self._streams, categorize=categorize),
            "stats": {"summary": {"totalEntriesReturned": returned}},
        }
        if categorize:
            data["encodingFlags"] = ["categorize-labels"]
        return 200, json.dumps({"status": "success", "data": data}), returned

    def _denied(self, request: web.Request) -> str | None:
        if self._credentials is not None:
            expected = base64.b64encode(self._credentials.encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return "unauthorized"
        if self._tenant is not None and request.headers.get("X-Scope-OrgID") != self._tenant:
            return "no org id"
        return None

    def _select(self, request: web.Request) -> tuple[list[Entry], int]:
        query = request.query
        if "query" not in query:
            raise QueryError("query parameter is required")
        selector = parse_query(query["query"])
        now = time.time_ns()
        end = parse_timestamp(query.get("end"), now)
        start = parse_timestamp(query.get("start"), end - 3600 * NS)
        if end <= start:
            raise QueryError("end timestamp must not be before or equal to start time")
        try:
            limit = int(query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise QueryError(f"invalid limit {query.get('limit')!r}") from None
        if limit <= 0:
            raise QueryError("limit must be a positive value")
        if limit > self.max_entries:
            raise QueryError(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query"
                f" ({limit} > {self.max_entries})"
            )
        direction = query.get("direction", "backward")
        if direction not in ("forward", "backward"):
            raise QueryError(f"invalid direction {direction!r}")
        with self._lock:
            low = bisect.bisect_left(self._keys, (start, -1))
            high = bisect.bisect_left(self._keys, (end, -1))
            span = self._entries[low:high]
            wanted = [selector.matches_stream(labels) for labels in self._streams]
        ordered = span if direction == "forward" else reversed(span)
        picked: list[Entry] = []
        for entry in ordered:
            if wanted[entry.stream] and selector.matches_line(entry.line):
                picked.append(entry)
                if len(picked) == limit:
                    break
        return picked, len(picked)


def _encode(
    entries: list[Entry], streams: list[dict[str, str]], *, categorize: bool
) -> list[dict[str, object]]:
    """Group picked entries by stream (label set), keeping the direction's order in each."""
    grouped: dict[str, tuple[dict[str, str], list[list[object]]]] = {}
    for entry in entries:
        labels = dict(streams[entry.stream])
        value: list[object] = [str(entry.ts), entry.line]
        if entry.metadata:
            if categorize:
                value.append({"structuredMetadata": dict(entry.metadata)})
            else:
                labels.update(entry.metadata)
        key = json.dumps(labels, sort_keys=True)
        grouped.setdefault(key, (labels, []))[1].append(value)
    return [{"stream": labels, "values": values} for labels, values in grouped.values()]


def synthetic_lines(count: int, *, start_ns: int, step_ns: int) -> list[tuple[int, str]]:
    """``count`` varied application log lines (JSON, logfmt, plain), one every ``step_ns``."""
    shapes = (
        '{{"level":"error","logger":"app.db","message":"query {i} failed: '
        'ConnectionError: connection to 10.0.{a}.{b}:5432 refused"}}',
        'level=warn logger=app.http msg="slow request {i}" duration={i}ms',
        '{{"level":"info","logger":"app.http","message":"GET /v1/items/{i} 200"}}',
        "2026-01-01T00:00:00Z INFO request {i} served",
    )
    return [
        (
            start_ns + i * step_ns,
            shapes[i % len(shapes)].format(i=i, a=i % 250, b=(i * 7) % 250),
        )
        for i in range(count)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lines", type=int, default=0, help="synthetic lines to serve")
    parser.add_argument("--start-ns", type=int, default=1_767_225_600 * NS)
    parser.add_argument("--step-ns", type=int, default=1_000_000)
    parser.add_argument("--max-entries", type=int, default=5000)
    args = parser.parse_args(argv)
    done = threading.Event()

    def finish(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with LokiServer(port=args.port, max_entries=args.max_entries) as server:
        server.push_sorted(
            {"app": "bench"},
            synthetic_lines(args.lines, start_ns=args.start_ns, step_ns=args.step_ns),
        )
        print(server.url, flush=True)
        while not done.wait(1.0):  # runs until SIGTERM/SIGINT
            pass


if __name__ == "__main__":
    main()
