"""Delivers what the outbox holds: claimed under a lease, sent channel by channel, recorded.

One worker per channel, so a slow or rate-limited channel (Slack's one message a second, a
provider answering 503) delays only itself. The outbox hands out only the head of each
(incident, channel) queue, so an incident's events go out in order on every channel: the next
event of a queue is claimed once the outcome of the one ahead is recorded. When openings
would make a digest (more than ``DIGEST_THRESHOLD`` within the channel's ``groupWindow``, those
already told included), they are held for a few seconds and sent as one digest. Nothing here
touches a check or an incident: a failure is recorded on the outbox row, the channel's status
and an Event, and the loop goes on.

Outcomes are recorded in batches, every channel's together (``FLUSH_SECONDS``, ``FLUSH_ROWS``):
a transaction per message cost more than the message (on SQLite, a commit each). Delivery stays
at least once, as it always was between a send and its record: an outcome not yet recorded when
the process dies leaves its row leased, and the row is sent again once the lease runs out (the
next owner, or this process restarted, takes it over). The idempotency keys (webhook-id,
Resend's Idempotency-Key, PagerDuty's dedup_key, the Message-ID) let receivers drop the repeat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from downtime_operator.domain.notifications.channel import (
    ChannelType,
    NotificationEvent,
    SecretKeyRef,
    secret_refs,
)
from downtime_operator.domain.notifications.delivery import (
    DEFAULT_MAX_AGE,
    DisableChannel,
    Failed,
    Pacer,
    RetryAt,
    Sent,
    next_step,
    pacing_rate,
    transport,
)
from downtime_operator.domain.notifications.grouping import DIGEST_MAX, DIGEST_THRESHOLD, group
from downtime_operator.domain.notifications.notice import Notice, wanted
from downtime_operator.services.notifications.ports import (
    Channel,
    ChannelDirectory,
    ChannelHealth,
    ChannelProblem,
    ChannelReporter,
    ChannelTransport,
    Delivery,
    DeliveryObserver,
    SendResult,
)
from downtime_operator.services.outbox import NotificationOutbox, OutboxRow, Outcome
from downtime_operator.services.ports import (
    Clock,
    SecretUnavailableError,
    SecretValues,
    StopSignal,
)
from downtime_operator.services.stop import cancelled, set_within

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
"""Long enough for a claimed batch to wait for its channel's pacing; a replica that dies
holding rows gives them up after this."""
BATCH = 200
"""Rows claimed and not yet sent, at most."""
REFILL = BATCH // 2
"""The workers wake the claim loop only once this many rows or fewer are in flight (claimed,
not yet sent): a claim costs a scan of the pending rows whether it takes 5 rows or 200, so a
backlog is claimed in large batches, while the rows still in flight keep the workers busy."""
CHUNK = 50
"""Rows a worker takes from its queue per round (more while holding openings for a digest);
a channel with this many rows waiting is left out of claims (``_backlogged``)."""
FLUSH_SECONDS = 0.05
"""How long a sent message's outcome waits for others to be recorded with it, at most. It also
delays, by as much, the claim of the next event of the same incident on the same channel."""
FLUSH_ROWS = 100
"""Outcomes recorded at once without waiting for ``FLUSH_SECONDS``: a draining backlog writes
batches this large."""
POLL_SECONDS = 1.0
"""How often the outbox is asked when nothing woke the loop (another replica's rows, retries
coming due)."""
HOLD_RETRY = timedelta(seconds=15)
"""A channel that is missing, misconfigured or lacks its Secret is tried again this often."""
DIGEST_QUIET_SECONDS = 1.0
"""During a mass outage, a channel's worker holds openings for a digest until none arrived for
this long (or a full digest, ``DIGEST_MAX`` openings, is there): a fixed hold split a burst
that outlasted it into a digest and a stray remainder."""
DIGEST_HOLD_SECONDS = 15.0
"""The longest hold, for a trickle of openings that never pauses."""
DIGEST_HOLD_STEP_SECONDS = 0.25
REPORT_SECONDS = 5.0
STORE_BACKOFF_FIRST = 1.0
STORE_BACKOFF_MAX = 30.0


@dataclass(frozen=True, kw_only=True)
class _Unusable:
    reason: str
    message: str


class NotificationDelivery:
    def __init__(
        self,
        *,
        outbox: NotificationOutbox,
        directory: ChannelDirectory,
        transport: ChannelTransport,
        clock: Clock,
        owner: str,
        secrets: SecretValues | None = None,
        reporter: ChannelReporter | None = None,
        observer: DeliveryObserver | None = None,
        max_age: timedelta = DEFAULT_MAX_AGE,
        jitter: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._directory = directory
        self._transport = transport
        self._clock = clock
        self._owner = owner
        self._secrets = secrets
        self._reporter = reporter
        self._observer = observer
        self._max_age = max_age
        self._jitter = jitter
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        self._enqueued = False
        """``wake`` was called since the last claim: rows of any channel may be due."""
        self._queues: dict[str, asyncio.Queue[OutboxRow]] = {}
        self._queued: set[UUID] = set()
        """Rows claimed and not yet recorded. A row whose lease ran out while it waited in its
        channel's queue (a channel slower than ``BATCH`` rows per ``LEASE``) is claimed again:
        that claim renews its lease, and must not queue it a second time (a second send)."""
        self._done: list[_Done] = []
        """Outcomes waiting to be recorded."""
        self._unrecorded: set[UUID] = set()
        """Rows of ``_done`` and of the batch being recorded."""
        self._done_waiting = asyncio.Event()
        self._flush_now = asyncio.Event()
        """``FLUSH_ROWS`` outcomes are waiting, or the loop is stopping."""
        self._stopping = False
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._sent_off: dict[str, int] = {}
        """Rows of each channel's current round already sent (``_send_off``)."""
        self._holding = 0
        """Rows in flight that are held for a digest: they leave room for claims, or a paced
        channel's backlog and a growing digest would fill the batch and stop the claims that
        bring the digest's last openings."""
        self._pacers: dict[str, Pacer] = {}
        self._opened_sent: dict[str, collections.deque[datetime]] = {}
        self._disabled: dict[str, int | None] = {}
        """Channels whose endpoint answered 410, with the generation that did: a new spec
        (a fixed URL) enables them again."""
        self._unusable: dict[str, _Unusable] = {}
        self._last: dict[str, _Done] = {}
        """Each channel's last recorded delivery or failure, made a ``Delivery`` only when its
        status is written (every ``REPORT_SECONDS``), not once per message."""
        self._reported: dict[str, ChannelHealth] = {}

    def wake(self) -> None:
        """Something was enqueued: claim now rather than at the next poll."""
        self._enqueued = True
        self._wake.set()

    async def run(self, *, stop: StopSignal) -> None:
        reports = asyncio.create_task(self._report_loop(stop), name="notification-status")
        recorder = asyncio.create_task(self._record_loop(), name="notification-outcomes")
        try:
            await self._claim_loop(stop)
        finally:
            await cancelled(reports)
            for worker in self._workers:
                await cancelled(worker)
            # Rows still queued keep their lease until it runs out; the next owner (this
            # process after a restart, or another replica) takes them over then. What was
            # sent is recorded first: the recorder ends its batch, then writes what is left.
            self._stopping = True
            self._flush_now.set()
            self._done_waiting.set()
            await recorder

    async def _claim_loop(self, stop: StopSignal) -> None:
        failures = 0
        released = False
        # The first claim, and one after a poll's wait or a failure, may find rows of any
        # channel (retries come due, another replica's rows).
        polled = True
        while not stop.is_set():
            self._wake.clear()
            room = BATCH - self._in_flight + self._holding
            skip = self._backlogged()
            anywhere, self._enqueued = polled or self._enqueued, False
            rows: list[OutboxRow] = []
            # A claim that skips every channel with a queue can find only rows of channels not
            # seen yet, which an enqueue or a poll brings; otherwise it finds nothing, at the
            # cost of a scan of the pending rows (a wake left over from a claim that filled
            # the queues would ask for one).
            if room > 0 and (anywhere or len(skip) < len(self._queues)):
                try:
                    if not released:
                        freed = await self._outbox.release(owner=self._owner)
                        released = True
                        if freed:
                            logger.info("took back %d notifications held before a restart", freed)
                    rows = await self._outbox.claim(
                        owner=self._owner,
                        now=self._clock.now(),
                        lease=LEASE,
                        limit=room,
                        skip_channels=skip,
                    )
                    failures = 0
                except Exception as exc:  # the store is down: retried, never fatal
                    failures += 1
                    delay = min(STORE_BACKOFF_FIRST * 2 ** (failures - 1), STORE_BACKOFF_MAX)
                    if failures == 1:
                        logger.warning("notification outbox unavailable: %r; retrying", exc)
                    await stop.sleep(delay)
                    polled = True
                    continue
            for row in rows:
                self._dispatch(row)
            # A full claim may have left more due, but it is claimed at once only if there is
            # room for a large claim again: rows sent meanwhile would make many small ones.
            polled = False
            if len(rows) < room or self._in_flight > REFILL:
                polled = await self._idle()

    async def _idle(self) -> bool:
        """Wait for a wake; True if none came within ``POLL_SECONDS``."""
        try:
            async with asyncio.timeout(POLL_SECONDS):
                await self._wake.wait()
        except TimeoutError:
            return True
        return False

    def _backlogged(self) -> list[str]:
        """Channels with a round's worth of rows already waiting: claiming more of theirs
        would only fill the batch while other channels' rows wait (a paced PagerDuty backlog
        starving Slack in a mass outage)."""
        return [key for key, queue in self._queues.items() if queue.qsize() >= CHUNK]

    def _dispatch(self, row: OutboxRow) -> None:
        if row.id in self._queued:
            return
        self._queued.add(row.id)
        queue = self._queues.get(row.channel)
        if queue is None:
            queue = self._queues[row.channel] = asyncio.Queue()
            self._workers.append(
                asyncio.create_task(self._work(row.channel, queue), name=f"notify {row.channel}")
            )
        self._in_flight += 1
        queue.put_nowait(row)

    async def _work(self, key: str, queue: asyncio.Queue[OutboxRow]) -> None:
        while True:
            rows = [await queue.get()]
            rows += _drain(queue, limit=CHUNK - 1)
            opened = sum(1 for row in rows if _is_opened(row))
            if opened and self._mass_outage(key, opened=opened):
                rows += await self._gather(queue, held=len(rows), opened=opened)
            self._refill((key,))
            self._sent_off[key] = 0
            try:
                await self._deliver(key, rows)
            except Exception:
                # A bug: the leases of the rows left without an outcome run out and they are
                # claimed again; this worker goes on with the next ones.
                logger.exception("notifications for %s: delivery failed; retried later", key)
            finally:
                self._in_flight -= len(rows) - self._sent_off.pop(key)
                # A row with an outcome leaves ``_queued`` once the outcome is recorded.
                self._queued.difference_update(
                    row.id for row in rows if row.id not in self._unrecorded
                )
                self._refill((key,))

    def _send_off(self, key: str, count: int) -> None:
        """``count`` rows of the round of ``key`` were sent: they leave the in-flight count at
        once rather than when the round ends, so that the claim loop refills the queues while
        their workers still have rows to send. Counted at the end of a round, a worker that
        had sent its round waited for the rounds of the others to end: with 8 channels, each
        spent over a third of its time with an empty queue."""
        refilling = self._in_flight <= REFILL
        self._in_flight -= count
        self._sent_off[key] += count
        if not refilling:
            # Asked once, as the count falls to ``REFILL``: below it, that claim is under way
            # or found nothing, and one per message would each cost a scan.
            self._refill((key,))

    def _refill(self, keys: Collection[str]) -> None:
        """Wake the claim loop if a claim has room and would not skip all of ``keys``: the
        channels whose worker just took a round from its queue or sent one, or whose outcomes
        were just recorded (which makes the next event of their queues due). A claim that
        skips every channel with rows finds nothing, at the cost of a scan of the pending
        rows; one made while a worker sends its last queued round refills its queue in time."""
        if self._in_flight <= REFILL and any(self._queues[k].qsize() < CHUNK for k in keys):
            self._wake.set()

    def _mass_outage(self, key: str, *, opened: int) -> bool:
        """Whether ``opened`` openings, with those the channel told of within its window, make
        a digest, which is then worth holding to gather the rest of the outage: sent at once,
        a busy claim loop would split it into several small digests. Never for PagerDuty (not
        grouped) nor a zero ``groupWindow`` (grouping off), and only openings within the window
        count: a burst an hour ago does not delay today's first opening."""
        found = self._directory.lookup(key)
        if not isinstance(found, Channel):
            return False
        window = found.spec.group_window
        if found.spec.type is ChannelType.PAGERDUTY or window <= timedelta(0):
            return False
        recent = self._recent_opened(key, now=self._clock.now(), window=window)
        return recent + opened > DIGEST_THRESHOLD

    async def _gather(
        self, queue: asyncio.Queue[OutboxRow], *, held: int, opened: int
    ) -> list[OutboxRow]:
        """The rows that join the ``held`` ones (``opened`` of them openings) while a mass
        outage is held for a digest: until no opening arrived for ``DIGEST_QUIET_SECONDS`` (at
        most ``DIGEST_HOLD_SECONDS``), or a full digest's openings are there (it cannot grow
        further; waiting would only delay it). Never more rows than a digest holds, so that it
        is not split in two."""
        more: list[OutboxRow] = []
        quiet_steps = max(1, math.ceil(DIGEST_QUIET_SECONDS / DIGEST_HOLD_STEP_SECONDS))
        quiet = 0
        self._holding += held
        try:
            for _ in range(max(1, math.ceil(DIGEST_HOLD_SECONDS / DIGEST_HOLD_STEP_SECONDS))):
                if opened >= DIGEST_MAX or quiet >= quiet_steps:
                    break
                # The claim loop is woken only when few rows are in flight: without a claim
                # each step, the openings still arriving would look like a pause.
                self._wake.set()
                await self._clock.sleep(DIGEST_HOLD_STEP_SECONDS)
                arrived = _drain(queue, limit=DIGEST_MAX - opened)
                joined = sum(1 for row in arrived if _is_opened(row))
                quiet = 0 if joined else quiet + 1
                opened += joined
                more += arrived
                self._holding += len(arrived)
        finally:
            self._holding -= held + len(more)
        return more

    async def _deliver(self, key: str, rows: list[OutboxRow]) -> None:
        now = self._clock.now()
        found = self._directory.lookup(key)
        if not isinstance(found, Channel):
            why = (
                found.message
                if isinstance(found, ChannelProblem)
                else f"NotificationChannel {key} does not exist"
            )
            self._unusable[key] = _Unusable(reason="InvalidChannel", message=why)
            self._hold(rows, now=now, reason=why)
            return
        channel = found
        if key in self._disabled and self._disabled[key] == channel.generation:
            for row in rows:
                self._fail(channel, row, now=now, reason="channel disabled: endpoint gone")
            return
        self._disabled.pop(key, None)
        try:
            secrets = await self._secret_values(channel)
        except SecretUnavailableError as exc:
            self._unusable[key] = _Unusable(reason="SecretMissing", message=str(exc))
            self._hold(rows, now=now, reason=str(exc))
            return
        self._unusable.pop(key, None)
        notices: list[Notice] = []
        by_id: dict[str, OutboxRow] = {}
        for row in rows:
            notice = Notice.from_payload(row.payload, outbox_id=str(row.id))
            if wanted(channel.spec, notice):
                notices.append(notice)
                by_id[notice.outbox_id] = row
            else:
                reason = f"the channel no longer subscribes to {notice.event.value}"
                self._fail(channel, row, now=now, reason=reason, warn=False)
        recent = self._recent_opened(key, now=now, window=channel.spec.group_window)
        for message in group(
            notices,
            channel_type=channel.spec.type,
            window=channel.spec.group_window,
            recent_opened=recent,
        ):
            await self._pace(channel)
            result = await self._send(channel, secrets, message)
            self._record(channel, [(notice, by_id[notice.outbox_id]) for notice in message], result)
            self._send_off(key, len(message))

    async def _pace(self, channel: Channel) -> None:
        rate = pacing_rate(channel.spec)
        pacer = self._pacers.get(channel.key)
        if pacer is None or pacer.rate != rate:
            pacer = self._pacers[channel.key] = Pacer(rate=rate)
        wait = pacer.take(self._monotonic())
        if wait > 0:
            await self._clock.sleep(wait)

    async def _send(
        self, channel: Channel, secrets: Mapping[SecretKeyRef, str], message: Sequence[Notice]
    ) -> SendResult:
        try:
            return await self._transport.send(channel=channel, secrets=secrets, notices=message)
        except Exception as exc:  # a transport bug must not stop deliveries
            logger.exception("notifications for %s: transport raised", channel.key)
            return _Raised(error=f"{type(exc).__name__} while sending")

    def _record(
        self, channel: Channel, sent: list[tuple[Notice, OutboxRow]], result: SendResult
    ) -> None:
        now = self._clock.now()
        if result.delivered:
            # Counted when told, not when recorded: the next round's grouping must see them.
            opened = sum(1 for notice, _ in sent if notice.event is NotificationEvent.OPENED)
            if opened:
                self._opened_sent.setdefault(channel.key, collections.deque()).extend(
                    [now] * opened
                )
            # The common case, taken before the policy: its decision is known.
            for notice, row in sent:
                self._sent(channel, notice, row, now=now, result=result)
            return
        for notice, row in sent:
            step = next_step(
                status=result.status,
                retry_after=result.retry_after,
                attempts=row.attempts + 1,
                first_attempt_at=row.created_at,
                now=now,
                max_age=self._max_age,
                jitter=self._jitter(),
                retryable=result.retryable,
            )
            if isinstance(step, Sent):
                self._sent(channel, notice, row, now=now, result=result)
            elif isinstance(step, RetryAt):
                error = _joined(step.reason, result.error)
                outcome = Outcome.retry(row.id, at=now, next_attempt_at=step.at, error=error)
                self._later(_Done(outcome=outcome, row=row, channel=channel))
            elif isinstance(step, DisableChannel):
                self._disabled[channel.key] = channel.generation
                self._unusable[channel.key] = _Unusable(
                    reason="EndpointGone", message=_joined(step.reason, result.error)
                )
                self._fail(channel, row, now=now, reason=_joined(step.reason, result.error))
            else:
                assert isinstance(step, Failed)
                self._fail(channel, row, now=now, reason=_joined(step.reason, result.error))

    def _sent(
        self, channel: Channel, notice: Notice, row: OutboxRow, *, now: datetime, result: SendResult
    ) -> None:
        latency = max((now - notice.at).total_seconds(), 0.0)
        outcome = Outcome.sent(row.id, at=now, provider_id=result.provider_id)
        self._later(_Done(outcome=outcome, row=row, channel=channel, latency=latency))

    def _fail(
        self, channel: Channel, row: OutboxRow, *, now: datetime, reason: str, warn: bool = True
    ) -> None:
        outcome = Outcome.failed(row.id, at=now, error=reason)
        self._later(_Done(outcome=outcome, row=row, channel=channel, warn=warn))

    def _hold(self, rows: list[OutboxRow], *, now: datetime, reason: str) -> None:
        """Keep the rows pending until the channel can be used, or fail them once too old."""
        for row in rows:
            if now - row.created_at >= self._max_age:
                outcome = Outcome.failed(row.id, at=now, error=f"{reason}; gave up (max age)")
            else:
                outcome = Outcome.retry(
                    row.id, at=now, next_attempt_at=now + HOLD_RETRY, error=reason
                )
            self._later(_Done(outcome=outcome, row=row, channel=None))

    def _later(self, done: _Done) -> None:
        """Queue an outcome for the recorder."""
        self._done.append(done)
        self._unrecorded.add(done.outcome.id)
        self._done_waiting.set()
        if len(self._done) >= FLUSH_ROWS:
            self._flush_now.set()

    async def _record_loop(self) -> None:
        """Record outcomes ``FLUSH_SECONDS`` after the first of a batch came, or at once when
        ``FLUSH_ROWS`` wait; once stopping, the batch under way and then the rest."""
        stopping = False
        while not stopping:
            await self._done_waiting.wait()
            await set_within(self._flush_now, FLUSH_SECONDS)
            stopping = self._stopping
            try:
                await self._flush()
            except Exception:  # a bug telling of outcomes must not stop the recording
                logger.exception("notification outcomes: telling of them failed")

    async def _flush(self) -> None:
        batch, self._done = self._done, []
        self._done_waiting.clear()
        self._flush_now.clear()
        if not batch:
            return
        ids = {done.outcome.id for done in batch}
        try:
            recorded = await self._outbox.record(
                [done.outcome for done in batch], owner=self._owner
            )
        except Exception:
            # The store is down, or a bug: these rows keep their lease until it runs out, and
            # are claimed and sent again then (at least once, as after a crash).
            logger.exception("%d notification outcomes not recorded; sent again later", len(ids))
            recorded = set()
        finally:
            self._unrecorded -= ids
            self._queued -= ids
        self._refill({done.row.channel for done in batch})
        for done in batch:
            if done.outcome.id in recorded:
                await self._recorded(done)

    async def _recorded(self, done: _Done) -> None:
        """What a recorded outcome tells: metrics, the channel's last delivery, a failure's
        Warning. A row held back for its channel tells nothing: the channel's status does."""
        channel, row, outcome = done.channel, done.row, done.outcome
        if channel is None:
            return
        if outcome.state == "sent":
            self._observe(channel, "sent", done.latency)
            self._last[channel.key] = done
            return
        if outcome.state == "pending":
            self._observe(channel, "retried", None)
            return
        reason = outcome.error or ""
        self._observe(channel, "failed", None)
        self._last[channel.key] = done
        if done.warn and self._reporter is not None:
            message = f"{row.event} of incident {row.incident_id} not delivered: {reason}"
            with contextlib.suppress(Exception):
                await self._reporter.warn(
                    key=channel.key, reason="NotificationFailed", message=message
                )
        logger.warning("notification %s for %s failed: %s", row.event, channel.key, reason)

    async def _secret_values(self, channel: Channel) -> dict[SecretKeyRef, str]:
        values: dict[SecretKeyRef, str] = {}
        for ref in secret_refs(channel.spec):
            if ref in channel.secrets:
                values[ref] = channel.secrets[ref]
            elif self._secrets is None:
                raise SecretUnavailableError(f"Secret {ref.name} (key {ref.key}) is not available")
            else:
                values[ref] = await self._secrets.secret_value(
                    namespace=channel.namespace, name=ref.name, key=ref.key
                )
        return values

    def _recent_opened(self, key: str, *, now: datetime, window: timedelta) -> int:
        sent = self._opened_sent.get(key)
        if sent is None:
            return 0
        while sent and now - sent[0] > window:
            sent.popleft()
        return len(sent)

    def _observe(self, channel: Channel, outcome: str, latency: float | None) -> None:
        if self._observer is not None:
            self._observer.delivered(
                channel=channel.key,
                channel_type=transport(channel.spec),
                outcome=outcome,
                latency=latency,
            )

    async def _report_loop(self, stop: StopSignal) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await self.report()
            await stop.sleep(REPORT_SECONDS)

    async def report(self) -> None:
        """Each channel's status (written only when it changed) and the pending gauge."""
        pending = await self._outbox.pending_by_channel()
        failed = await self._outbox.failed_by_channel()
        if self._observer is not None:
            self._observer.pending(sum(pending.values()))
        if self._reporter is None:
            return
        for key in self._directory.known():
            health = await self._health(key, pending=pending.get(key, 0), failed=failed.get(key, 0))
            if health is None or self._reported.get(key) == health:
                continue
            await self._reporter.report(health)
            if not health.ready and (
                key not in self._reported or self._reported[key].reason != health.reason
            ):
                await self._reporter.warn(key=key, reason=health.reason, message=health.message)
            self._reported[key] = health

    async def _health(self, key: str, *, pending: int, failed: int) -> ChannelHealth | None:
        found = self._directory.lookup(key)
        generation = found.generation if isinstance(found, Channel) else None
        problem: _Unusable | None
        if isinstance(found, ChannelProblem):
            problem = _Unusable(reason="InvalidChannel", message=found.message)
        elif found is None:
            return None
        elif key in self._disabled and self._disabled[key] == generation:
            problem = self._unusable.get(key)
        else:
            try:
                await self._secret_values(found)
                problem = None
                self._unusable.pop(key, None)
            except SecretUnavailableError as exc:
                problem = _Unusable(reason="SecretMissing", message=str(exc))
        return ChannelHealth(
            key=key,
            ready=problem is None,
            reason="Ready" if problem is None else problem.reason,
            message="the channel can deliver" if problem is None else problem.message,
            pending=pending,
            failed=failed,
            last_delivery=_delivery(self._last[key]) if key in self._last else None,
            generation=generation,
        )


@dataclass(slots=True, kw_only=True)
class _Done:
    """An outcome waiting to be recorded, and what it tells once it is. Not frozen: one is made
    per message, and a frozen dataclass's ``__init__`` costs about three times a plain one's."""

    outcome: Outcome
    row: OutboxRow
    channel: Channel | None
    """None: the row was held back because its channel cannot be used."""
    latency: float | None = None
    """Of a delivery: seconds from the event to the send."""
    warn: bool = True
    """Of a failure: whether it is worth a Warning Event on the channel."""


@dataclass(frozen=True, kw_only=True)
class _Raised:
    """The result of a transport that raised instead of answering: retried like no answer."""

    error: str
    delivered: bool = False
    retryable: bool = True
    status: int | None = None
    retry_after: float | None = None
    provider_id: str | None = None


def _drain(queue: asyncio.Queue[OutboxRow], *, limit: int | None = None) -> list[OutboxRow]:
    rows: list[OutboxRow] = []
    while not queue.empty() and (limit is None or len(rows) < limit):
        rows.append(queue.get_nowait())
    return rows


def _is_opened(row: OutboxRow) -> bool:
    return row.event == NotificationEvent.OPENED.value


def _joined(reason: str, error: str | None) -> str:
    return f"{reason}: {error}" if error else reason


def _delivery(done: _Done) -> Delivery:
    """A recorded delivery or failure, as the channel's status shows it."""
    outcome = done.outcome
    return Delivery(
        at=outcome.at,
        event=done.row.event,
        incident=str(done.row.incident_id),
        outcome=outcome.state,
        error=outcome.error if outcome.state == "failed" else None,
    )
