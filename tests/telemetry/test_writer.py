"""The batching writer's policy: size, age, idle flush, in-flight bound, spool, bad points.

The sink here is a scripted stand-in: these tests pin the writer's own policy. The same paths
run against a real InfluxDB in tests/telemetry/test_influx_path.py.
"""

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.schema import Point, Series
from gridwatch.gateway.telemetry.spool import DiskSpool
from gridwatch.gateway.telemetry.writer import TelemetryWriter

SERIES = Series(measurement="rain_gauge", sensor_id="RG-1", tags=(("sensor_id", "RG-1"),))


def points(count: int, *, start: int = 0) -> list[Point]:
    return [(SERIES, {"rain_mm": float(i)}, i) for i in range(start, start + count)]


class ScriptedSink:
    """Records writes; can be told to be down, to refuse some values, or to hold writes."""

    name = "scripted"

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.down = False
        self.refuse: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.concurrent = 0
        self.max_concurrent = 0

    def encode(self, pts: Sequence[Point]) -> list[str]:
        return [f"{fields['rain_mm']}" for _series, fields, _t in pts]

    async def write(self, items: Sequence[str]) -> None:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.gate is not None:
                await asyncio.wait_for(self.gate.wait(), timeout=5)
            if self.down:
                raise StoreUnavailable("scripted outage", retry_after=0.01)
            if self.refuse & set(items):
                raise PointsRejected(400, "field type conflict")
            self.writes.append(list(items))
        finally:
            self.concurrent -= 1

    def describe(self, item: str) -> tuple[str, str]:
        return ("RG-1", item)

    def pack(self, items: Sequence[str]) -> bytes:
        return gzip.compress("\n".join(items).encode())

    def unpack(self, body: bytes) -> list[str]:
        return gzip.decompress(body).decode().split("\n")

    def written(self) -> list[str]:
        return [item for write in self.writes for item in write]


@contextlib.asynccontextmanager
async def running(writer: TelemetryWriter[str]) -> AsyncIterator[TelemetryWriter[str]]:
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_writer(sink: ScriptedSink, spool: DiskSpool | None = None, **kwargs: object):
    rejected: list[tuple[str, str, str]] = []
    writer: TelemetryWriter[str] = TelemetryWriter(
        sink=sink,
        metrics=Metrics(),
        on_rejected=lambda *args: rejected.append(args),
        spool=spool,
        **kwargs,  # type: ignore[arg-type]
    )
    return writer, rejected


async def test_full_batches_go_at_once_and_the_rest_when_the_writes_finish():
    sink = ScriptedSink()
    writer, _ = make_writer(sink, batch_size=5_000, max_age_s=60)
    async with running(writer):
        done = writer.submit(points(12_000))
        await asyncio.wait_for(done, timeout=5)
    assert [len(w) for w in sink.writes] == [5_000, 5_000, 2_000]
    assert sink.written() == [str(float(i)) for i in range(12_000)]


async def test_while_a_write_is_in_flight_points_wait_for_it_or_for_max_age():
    sink = ScriptedSink()
    sink.gate = asyncio.Event()
    writer, _ = make_writer(sink, batch_size=5_000, max_age_s=0.2)
    async with running(writer):
        first = writer.submit(points(1))
        await asyncio.sleep(0.02)
        assert sink.concurrent == 1  # nothing was being written: it went at once
        second = writer.submit(points(2, start=1))
        await asyncio.sleep(0.05)
        assert sink.concurrent == 1  # it waits, filling the next batch
        await asyncio.sleep(0.25)
        assert sink.concurrent == 2  # until max age, with the first write still going
        sink.gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert sink.writes == [["0.0"], ["1.0", "2.0"]]


async def test_a_batch_waiting_behind_a_write_goes_when_it_finishes():
    sink = ScriptedSink()
    sink.gate = asyncio.Event()
    writer, _ = make_writer(sink, batch_size=5_000, max_age_s=60)
    async with running(writer):
        first = writer.submit(points(1))
        await asyncio.sleep(0.02)
        second = writer.submit(points(3, start=1))
        await asyncio.sleep(0.02)
        sink.gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert sink.writes == [["0.0"], ["1.0", "2.0", "3.0"]]


async def test_a_submit_is_durable_with_the_batches_holding_its_points_only():
    sink = ScriptedSink()
    sink.gate = asyncio.Event()
    writer, _ = make_writer(sink, batch_size=10, max_age_s=60, max_in_flight=1)
    async with running(writer):
        small = writer.submit(points(4))  # all in the first batch
        straddling = writer.submit(points(10, start=4))  # 6 in the first, 4 in the second
        await asyncio.sleep(0.02)
        sink.gate.set()
        await asyncio.wait_for(small, timeout=5)
        await asyncio.wait_for(straddling, timeout=5)
    assert [len(w) for w in sink.writes] == [10, 4]


async def test_no_more_than_max_in_flight_writes_at_once():
    sink = ScriptedSink()
    sink.gate = asyncio.Event()
    writer, _ = make_writer(sink, batch_size=10, max_in_flight=2)
    async with running(writer):
        done = writer.submit(points(60))
        await asyncio.sleep(0.05)
        assert sink.concurrent == 2
        sink.gate.set()
        writer.flush_now()
        await asyncio.wait_for(done, timeout=5)
    assert sink.max_concurrent == 2
    assert sorted(sink.written(), key=float) == [str(float(i)) for i in range(60)]


async def test_a_refused_point_is_isolated_and_the_others_land():
    sink = ScriptedSink()
    sink.refuse = {"37.0"}
    writer, rejected = make_writer(sink, batch_size=100)
    async with running(writer):
        done = writer.submit(points(100))
        writer.flush_now()
        await asyncio.wait_for(done, timeout=5)
    assert rejected == [("RG-1", "37.0", "field type conflict")]
    assert sorted(sink.written(), key=float) == [str(float(i)) for i in range(100) if i != 37]


async def test_store_down_spools_acknowledges_and_replays_in_order(tmp_path: Path):
    sink = ScriptedSink()
    sink.down = True
    spool = DiskSpool(tmp_path / "spool")
    writer, _ = make_writer(sink, spool, batch_size=10)
    async with running(writer):
        first = writer.submit(points(25))
        writer.flush_now()
        # Durable in the spool while the store is down: the messages may be acknowledged.
        await asyncio.wait_for(first, timeout=5)
        assert sink.writes == []
        assert spool.points == 25
        assert not writer.store_up
        second = writer.submit(points(5, start=25))
        writer.flush_now()
        await asyncio.wait_for(second, timeout=5)
        sink.down = False
        for _ in range(200):
            if spool.batches == 0 and len(sink.written()) == 30:
                break
            await asyncio.sleep(0.025)
    assert sink.written() == [str(float(i)) for i in range(30)]
    assert writer.store_up
    spool.close()


async def test_the_spool_survives_a_restart_and_is_replayed(tmp_path: Path):
    sink = ScriptedSink()
    sink.down = True
    spool = DiskSpool(tmp_path / "spool")
    writer, _ = make_writer(sink, spool, batch_size=10)
    async with running(writer):
        done = writer.submit(points(10))
        writer.flush_now()
        await asyncio.wait_for(done, timeout=5)
    spool.close()

    sink.down = False
    spool = DiskSpool(tmp_path / "spool")
    writer, _ = make_writer(sink, spool, batch_size=10)
    async with running(writer):
        for _ in range(200):
            if spool.batches == 0:
                break
            await asyncio.sleep(0.025)
    assert sink.written() == [str(float(i)) for i in range(10)]
    spool.close()


async def test_without_a_spool_the_batch_waits_and_is_retried(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("gridwatch.gateway.telemetry.writer.RETRY_BASE_S", 0.01)
    sink = ScriptedSink()
    sink.down = True
    writer, _ = make_writer(sink, batch_size=10)
    async with running(writer):
        done = writer.submit(points(3))
        writer.flush_now()
        await asyncio.sleep(0.1)
        # Not durable: the messages stay unacknowledged with the broker.
        assert not done.done()
        sink.down = False
        await asyncio.wait_for(done, timeout=5)
    assert sink.written() == ["0.0", "1.0", "2.0"]


async def test_points_submitted_to_an_idle_writer_go_after_max_age():
    sink = ScriptedSink()
    writer, _ = make_writer(sink, batch_size=5_000, max_age_s=0.05)
    async with running(writer):
        await asyncio.sleep(0.02)  # the writer is idle, waiting for work
        done = writer.submit(points(2))
        await asyncio.wait_for(done, timeout=5)
    assert sink.writes == [["0.0", "1.0"]]


async def test_a_spool_that_cannot_write_keeps_the_batch_until_the_store_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("gridwatch.gateway.telemetry.writer.RETRY_BASE_S", 0.01)
    sink = ScriptedSink()
    sink.down = True
    spool = DiskSpool(tmp_path / "spool")

    def disk_full(body: bytes, *, points: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool, "append", disk_full)
    writer, _ = make_writer(sink, spool, batch_size=10)
    async with running(writer):
        done = writer.submit(points(3))
        writer.flush_now()
        await asyncio.sleep(0.1)
        assert not done.done()  # neither stored nor spooled: not acknowledged
        sink.down = False
        await asyncio.wait_for(done, timeout=5)
    assert sink.written() == ["0.0", "1.0", "2.0"]
    spool.close()
