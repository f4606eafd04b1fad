"""The batched telemetry writer: points in, durable batches out, nothing lost.

A caller submits the points of a batch of messages and gets a future that resolves once those
points are durable: written to the store, or in the disk spool. Only then may the messages be
acknowledged to the broker.

Policy, owned here and nowhere else:
- a batch is sent when it holds `batch_size` points, when its oldest point has waited
  `max_age_s`, or as soon as the ingest side has nothing more waiting (`flush_now`), so a quiet
  stream is acknowledged at once and a busy one fills big batches;
- at most `max_in_flight` batches are written at once;
- a batch the store cannot take now (down, 5xx, timeout, 429) goes to the disk spool, where
  the spool task retries it with jittered backoff (Retry-After honoured); while the spool
  holds anything, new batches queue behind it, so the store sees points in arrival order;
- a batch the store refuses (a 4xx) is split in halves until the bad points are isolated; they
  are set aside with the store's reason and the good ones still land.
Without a spool (the embedded store) a failed batch is retried in place, holding its futures,
so the broker keeps the messages until the store takes them.
"""

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from gridwatch.domain.backoff import Backoff
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.schema import Point
from gridwatch.gateway.telemetry.spool import DiskSpool

log = logging.getLogger("gridwatch.telemetry")

Item = TypeVar("Item")

RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0


class Sink(Protocol[Item]):
    """A backend as the writer sees it: how to encode points and how to write them."""

    name: str

    def encode(self, points: Sequence[Point]) -> list[Item]:
        """Turn points into the items this backend writes (line-protocol lines, rows…)."""

    async def write(self, items: Sequence[Item]) -> None:
        """Write the items, or raise StoreUnavailable / PointsRejected."""

    def describe(self, item: Item) -> tuple[str, str]:
        """(sensor id, text) of one item, for the reject log."""


class SpoolableSink(Sink[Item], Protocol[Item]):
    """A remote backend whose batches can wait in the disk spool."""

    def pack(self, items: Sequence[Item]) -> bytes:
        """The items as bytes for the spool."""

    def unpack(self, body: bytes) -> list[Item]:
        """The items back from the spool."""


RejectedPoint = Callable[[str, str, str], None]  # sensor id, item text, reason


@dataclass(slots=True, eq=False)
class _Ticket:
    """One submit: resolved once every batch holding its points is durable."""

    future: asyncio.Future[None]
    batches: int = 0  # batches taken that hold (or may hold) its points, not yet durable
    sealed: bool = False  # no points of it are left in the pending buffer

    def batch_done(self) -> None:
        self.batches -= 1
        if self.sealed and self.batches == 0 and not self.future.done():
            self.future.set_result(None)


@dataclass(slots=True)
class _Pending(Generic[Item]):
    items: list[Item] = field(default_factory=list)
    # Each ticket with the index in `items` just past its last point.
    tickets: list[tuple[_Ticket, int]] = field(default_factory=list)
    since: float = 0.0


class TelemetryWriter(Generic[Item]):
    """Batches points into a sink, with the disk spool behind it when the sink is remote."""

    def __init__(
        self,
        *,
        sink: Sink[Item],
        metrics: Metrics,
        on_rejected: RejectedPoint,
        spool: DiskSpool | None = None,
        batch_size: int = 5_000,
        max_age_s: float = 1.0,
        max_in_flight: int = 2,
    ) -> None:
        if spool is not None and not hasattr(sink, "pack"):
            raise TypeError(f"the {sink.name} sink cannot use a spool")
        self._sink = sink
        self._metrics = metrics
        self._on_rejected = on_rejected
        self._spool = spool
        self._batch_size = batch_size
        self._max_age_s = max_age_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: _Pending[Item] = _Pending()
        self._wake = asyncio.Event()
        self._spool_wake = asyncio.Event()
        self._flush_requested = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._writing = 0  # batches being written (their tasks may not have finished yet)
        self.store_up = True
        self._update_spool_metrics()

    @property
    def sink_name(self) -> str:
        """Which backend this writer writes to."""
        return self._sink.name

    def submit(self, points: Sequence[Point]) -> asyncio.Future[None]:
        """Queue points; the future resolves when all of them are stored or spooled."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not points:
            future.set_result(None)
            return future
        pending = self._pending
        first = not pending.items
        if first:
            pending.since = time.monotonic()
        pending.items.extend(self._sink.encode(points))
        pending.tickets.append((_Ticket(future), len(pending.items)))
        # The first points start the age clock (or go at once if nothing is being written);
        # a full batch goes at once.
        if first or len(pending.items) >= self._batch_size:
            self._wake.set()
        return future

    def flush_now(self) -> None:
        """Nothing more is waiting upstream: send what is pending without waiting for age."""
        if self._pending.items:
            self._flush_requested = True
            self._wake.set()

    async def run(self) -> None:
        """Send batches until cancelled; then the caller should `drain()`."""
        async with asyncio.TaskGroup() as group:
            if self._spool is not None:
                group.create_task(self._replay_spool(), name="telemetry-spool")
            while True:
                await self._next_batch_due()
                await self._slots.acquire()
                batch = self._take_batch()
                if batch is None:
                    self._slots.release()
                    continue
                self._writing += 1
                task = group.create_task(self._send(batch), name="telemetry-write")
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def drain(self) -> None:
        """Write everything pending (used at shutdown, after ingest has stopped)."""
        while (batch := self._take_batch()) is not None:
            await self._send(batch, hold_slot=False)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _next_batch_due(self) -> None:
        while True:
            pending = self._pending
            if pending.items:
                # Group commit: with nothing being written, waiting only delays the
                # acknowledgements; while a write is in flight, the next batch fills up.
                if (
                    self._flush_requested
                    or not self._writing
                    or len(pending.items) >= self._batch_size
                ):
                    return
                wait = pending.since + self._max_age_s - time.monotonic()
                if wait <= 0:
                    return
            else:
                wait = None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                return

    def _take_batch(self) -> _Pending[Item] | None:
        pending = self._pending
        if not pending.items:
            self._flush_requested = False
            return None
        size = min(len(pending.items), self._batch_size)
        batch: _Pending[Item] = _Pending(items=pending.items[:size], since=pending.since)
        kept: list[tuple[_Ticket, int]] = []
        start = 0
        for ticket, end in pending.tickets:
            if start < size:
                ticket.batches += 1
                batch.tickets.append((ticket, end))
            if end <= size:
                ticket.sealed = True  # every point of it is in this batch or an earlier one
            else:
                kept.append((ticket, end - size))
            start = end
        pending.items = pending.items[size:]
        pending.tickets = kept
        if not pending.items:
            self._flush_requested = False
        else:
            pending.since = time.monotonic()
        return batch

    async def _send(self, batch: _Pending[Item], *, hold_slot: bool = True) -> None:
        try:
            await self._deliver(batch.items)
            for ticket, _end in batch.tickets:
                ticket.batch_done()
        finally:
            if hold_slot:
                self._writing -= 1
                self._slots.release()
            # A write finished: what waited behind it may go now.
            self._wake.set()

    async def _deliver(self, items: list[Item]) -> None:
        """Store or spool the items; returns only when they are durable."""
        backoff = Backoff(base_s=RETRY_BASE_S, max_s=RETRY_MAX_S)
        while True:
            if self._spool is not None and (not self.store_up or self._spool.batches):
                try:
                    await self._to_spool(items)
                except OSError as err:
                    # A full or failing disk: the batch stays in memory, its messages stay
                    # unacknowledged with the broker, and both the spool and the store are
                    # tried again after a while.
                    delay = backoff.next_delay()
                    log.error(  # noqa: TRY400 - an expected condition, named; no traceback
                        "telemetry spool cannot take a batch (%s); %d points wait, retry in %.1fs",
                        err, len(items), delay,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                    self.store_up = True  # let the next round try the store first
                    continue
                return
            started = time.perf_counter()
            try:
                await self._write_isolating_rejects(items)
            except StoreUnavailable as err:
                self._mark_down(err)
                if self._spool is not None:
                    continue
                delay = backoff.next_delay(retry_after=err.retry_after)
                log.warning(
                    "telemetry store %s unavailable (%s); %d points wait, retry %d in %.1fs",
                    self._sink.name, err, len(items), backoff.failures, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
            else:
                self._metrics.telemetry_batch_seconds.observe(time.perf_counter() - started)
                self._metrics.telemetry_points_written.inc(len(items))
                self._mark_up()
                return

    async def _write_isolating_rejects(self, items: Sequence[Item]) -> None:
        try:
            await self._sink.write(items)
        except PointsRejected as err:
            if len(items) == 1:
                sensor_id, text = self._sink.describe(items[0])
                self._metrics.telemetry_points_rejected.inc()
                self._on_rejected(sensor_id, text, err.reason)
                return
            middle = len(items) // 2
            await self._write_isolating_rejects(items[:middle])
            await self._write_isolating_rejects(items[middle:])

    async def _to_spool(self, items: list[Item]) -> None:
        spool = self._spool
        assert spool is not None
        sink = self._sink
        assert hasattr(sink, "pack")
        body: bytes = sink.pack(items)
        dropped = await asyncio.to_thread(spool.append, body, points=len(items))
        self._metrics.telemetry_points_spooled.inc(len(items))
        if dropped:
            self._metrics.telemetry_points_dropped.inc(dropped)
            log.error(
                "telemetry spool full: dropped the %d oldest points to keep %d new ones",
                dropped, len(items),
            )  # fmt: skip
        self._update_spool_metrics()
        self._spool_wake.set()

    async def _replay_spool(self) -> None:
        spool = self._spool
        assert spool is not None
        sink = self._sink
        assert hasattr(sink, "unpack")
        backoff = Backoff(base_s=RETRY_BASE_S, max_s=RETRY_MAX_S)
        while True:
            batch = await asyncio.to_thread(spool.peek)
            if batch is None:
                self._update_spool_metrics()
                self._spool_wake.clear()
                await self._spool_wake.wait()
                continue
            try:
                items: list[Item] = sink.unpack(batch.body)
            except (OSError, EOFError, ValueError, zlib.error):
                # A damaged file must not block every batch behind it; say what was lost.
                log.exception(
                    "telemetry spool batch %d is unreadable: %d points dropped",
                    batch.seq, batch.points,
                )  # fmt: skip
                self._metrics.telemetry_points_dropped.inc(batch.points)
                await asyncio.to_thread(spool.remove, batch)
                continue
            try:
                await self._write_isolating_rejects(items)
            except StoreUnavailable as err:
                self._mark_down(err)
                delay = backoff.next_delay(retry_after=err.retry_after)
                log.info(
                    "telemetry store %s still unavailable (%s); %d batches spooled, retry in %.1fs",
                    sink.name, err, spool.batches, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            await asyncio.to_thread(spool.remove, batch)
            backoff.reset()
            self._metrics.telemetry_points_written.inc(len(items))
            self._mark_up()
            self._update_spool_metrics()

    def _mark_down(self, err: StoreUnavailable) -> None:
        if self.store_up:
            log.warning("telemetry store %s unavailable: %s", self._sink.name, err)
        self.store_up = False
        self._metrics.telemetry_store_up.set(0)

    def _mark_up(self) -> None:
        if not self.store_up:
            log.info("telemetry store %s is back", self._sink.name)
        self.store_up = True
        self._metrics.telemetry_store_up.set(1)

    def _update_spool_metrics(self) -> None:
        spool = self._spool
        if spool is None:
            return
        self._metrics.telemetry_spool_bytes.set(spool.size_bytes)
        self._metrics.telemetry_spool_batches.set(spool.batches)
