"""The Modbus poller: one schedule per device, on the grid of its interval, never stalled.

Each device is a task that sleeps until its next tick, reads its register map through its line
and hands the canonical reading to the pipeline, the same reading an MQTT device would publish.
Ticks are `anchor + k * interval` (a slow answer does not push the next poll later; a poll that
overran skips the ticks it missed), with a per-device phase so a fleet polled every 2 s does
not ask all at once. A failing device backs off (jittered, 1 s doubling to a cap, always landing
on a tick) and after `offline_after` failures in a row reports itself `offline`, as an MQTT
device's last will would; the next good poll reports `online` and its reading.
"""

import asyncio
import collections
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from gridwatch.adapters.modbus.lines import FailureReason, ModbusLine, PollError
from gridwatch.adapters.modbus.plan import (
    CounterTracker,
    Decoded,
    ReadBlock,
    RegisterMap,
    decode_poll,
)
from gridwatch.adapters.modbus.registers import RegisterValueError, Scalar
from gridwatch.domain import Channel
from gridwatch.domain.backoff import Backoff
from gridwatch.domain.sensors import ModbusProtocol, ModbusTransport

log = logging.getLogger("gridwatch.modbus")

BACKOFF_BASE_S: Final = 1.0
DEFAULT_BACKOFF_MAX_S: Final = 60.0
DEFAULT_OFFLINE_AFTER: Final = 3
# Readings handed to the pipeline in one call, and calls whose durability may be pending: the
# same bounds as the MQTT source, so a stalled store slows polling instead of filling memory.
MAX_BATCH: Final = 1000
MAX_PENDING_BATCHES: Final = 64
_QUEUE_LIMIT: Final = 10 * MAX_BATCH


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    """A sensor to poll: how to reach it and its register map."""

    sensor_id: str
    protocol: ModbusProtocol
    register_map: RegisterMap


@dataclass(frozen=True, slots=True)
class PolledReading:
    """A canonical reading produced by a poll, for the pipeline (`ts`: when the answer came)."""

    sensor_id: str
    channel: Channel
    values: dict[str, Scalar]
    ts: datetime


@dataclass(frozen=True, slots=True)
class PollFailure:
    """A poll that produced no reading, with what the device did answer (if anything)."""

    sensor_id: str
    line: str
    unit: int
    reason: FailureReason
    detail: str
    registers: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Probe:
    """One poll done by hand (commissioning): the raw answers and what they decode to."""

    registers: dict[str, list[int]]
    readings: tuple[PolledReading, ...]
    failure: PollFailure | None


class PollObserver(Protocol):
    """Where the poller reports what it did (metrics, set-aside log)."""

    def polled(self, *, sensor_id: str, latency_s: float, lag_s: float) -> None:
        """A poll succeeded: its duration and how late it started against its tick."""

    def failed(self, failure: PollFailure) -> None:
        """A poll failed, or its answer could not be decoded."""


ReadingHandler = Callable[[Sequence[PolledReading]], Awaitable[Awaitable[object]]]
"""Takes a batch; returns, once its alarms are applied, an awaitable of its durability."""


class ModbusPoller:
    """Polls every device it is given; `update` starts, moves and stops pollers live."""

    def __init__(
        self,
        *,
        handler: ReadingHandler,
        observer: PollObserver,
        offline_after: int = DEFAULT_OFFLINE_AFTER,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
    ) -> None:
        if offline_after < 1:
            raise ValueError(f"offline_after must be at least 1, not {offline_after}")
        self._handler = handler
        self._observer = observer
        self._offline_after = offline_after
        self._backoff_max_s = backoff_max_s
        self._devices: dict[str, ModbusDevice] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lines: dict[str, ModbusLine] = {}
        self._queue: asyncio.Queue[PolledReading] = asyncio.Queue(_QUEUE_LIMIT)
        self._group: asyncio.TaskGroup | None = None

    def __len__(self) -> int:
        return len(self._devices)

    def update(self, devices: Iterable[ModbusDevice]) -> None:
        """Poll exactly these devices: new ones start, changed ones restart, gone ones stop."""
        wanted = {device.sensor_id: device for device in devices}
        for sensor_id in [s for s in self._devices if wanted.get(s) != self._devices[s]]:
            self._stop(sensor_id)
        for sensor_id, device in wanted.items():
            if sensor_id not in self._devices:
                self._devices[sensor_id] = device
                self._start(device)

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for device in self._devices.values():
                    self._start(device)
                group.create_task(self._feed(), name="modbus-feed")
        finally:
            self._group = None
            self._tasks.clear()
            for line in self._lines.values():
                line.close()
            self._lines.clear()

    async def probe(self, device: ModbusDevice) -> Probe:
        """Poll a device once, through its line if it is already polled (commissioning)."""
        line = self._lines.get(device.protocol.line)
        temporary = line is None
        if line is None:
            line = ModbusLine(device.protocol)
        try:
            answers: dict[str, list[int]] = {}
            try:
                decoded = await _read(line, device, answers)
            except PollError as err:
                failure = _failure(device, err, answers)
                return Probe(answers, (), failure)
            readings = _readings(device, decoded, CounterTracker(device.register_map.points), 0)
            return Probe(answers, readings, None)
        finally:
            if temporary:
                line.close()

    def _start(self, device: ModbusDevice) -> None:
        if self._group is None:
            return
        line = self._lines.get(device.protocol.line)
        if line is None:
            line = self._lines[device.protocol.line] = ModbusLine(device.protocol)
        line.devices += 1
        self._tasks[device.sensor_id] = self._group.create_task(
            self._poll_forever(device, line), name=f"modbus-{device.sensor_id}"
        )

    def _stop(self, sensor_id: str) -> None:
        device = self._devices.pop(sensor_id)
        task = self._tasks.pop(sensor_id, None)
        if task is None:
            return
        task.cancel()
        line = self._lines[device.protocol.line]
        line.devices -= 1
        if line.devices == 0:
            del self._lines[device.protocol.line]
            line.close()

    async def _poll_forever(self, device: ModbusDevice, line: ModbusLine) -> None:
        loop = asyncio.get_running_loop()
        interval = device.protocol.interval_s
        schedule = _Schedule(interval, _phase(device.sensor_id, interval), loop.time())
        backoff = Backoff(base_s=BACKOFF_BASE_S, max_s=self._backoff_max_s)
        counters = CounterTracker(device.register_map.points)
        last_fault: int | None = None
        offline = False
        tick = schedule.next_after(loop.time())
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for (pymodbus awaits every answer with it) can return a
                # result that raced a cancellation and drop the cancellation (gh-86296).
                raise asyncio.CancelledError
            await asyncio.sleep(max(0.0, tick - loop.time()))
            # uvloop's clock and sleeps are in whole milliseconds: a task can wake just before
            # its tick, and must neither count negative lag nor take the same tick twice.
            started = max(loop.time(), tick)
            began = time.perf_counter()
            answers: dict[str, list[int]] = {}
            try:
                decoded = await _read(line, device, answers)
            except PollError as err:
                failure = _failure(device, err, answers)
                self._observer.failed(failure)
                if err.reason is FailureReason.BAD_VALUE:
                    # The device answered: it is alive, only this answer is set aside.
                    tick = schedule.next_after(started)
                    continue
                if err.reason is FailureReason.TIMEOUT and _alone_on_tcp(device, line):
                    line.close()  # a peer that rebooted leaves a half-open connection
                if backoff.failures + 1 == self._offline_after and not offline:
                    offline = True
                    log.warning("modbus device offline sensor=%s: %s", device.sensor_id, err)
                    await self._emit(_status(device, "offline"))
                tick = schedule.next_after(loop.time() + backoff.next_delay())
                continue
            self._observer.polled(
                sensor_id=device.sensor_id,
                latency_s=time.perf_counter() - began,
                lag_s=started - tick,
            )
            backoff.reset()
            if offline:
                offline = False
                log.info("modbus device back online sensor=%s", device.sensor_id)
                await self._emit(_status(device, "online"))
            for reading in _readings(device, decoded, counters, last_fault):
                await self._emit(reading)
            last_fault = decoded.fault_code
            tick = schedule.next_after(started)

    async def _emit(self, reading: PolledReading) -> None:
        await self._queue.put(reading)

    async def _feed(self) -> None:
        pending: collections.deque[Awaitable[object]] = collections.deque()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            with contextlib.suppress(asyncio.QueueEmpty):
                while len(batch) < MAX_BATCH:
                    batch.append(queue.get_nowait())
            pending.append(await self._handler(batch))
            while len(pending) > MAX_PENDING_BATCHES:
                await pending.popleft()
            while pending and _done(pending[0]):
                await pending.popleft()


class _Schedule:
    """Ticks at anchor + phase + k * interval on the event loop's clock, each handed out once."""

    def __init__(self, interval: float, phase: float, now: float) -> None:
        self.interval = interval
        self.anchor = math.floor(now / interval) * interval + phase
        self._last = -1

    def next_after(self, t: float) -> float:
        """The first tick after `t` that has not been handed out yet."""
        # Tracking the tick's index, not comparing floats: anchor + k * interval divided back
        # by the interval can come out a hair under k and hand out the same tick twice.
        k = max(math.floor((t - self.anchor) / self.interval) + 1, self._last + 1)
        self._last = k
        return self.anchor + k * self.interval


def _phase(sensor_id: str, interval: float) -> float:
    # Stable per device, spread evenly: 2,000 boards on a 2 s interval ask one per millisecond.
    return zlib.crc32(sensor_id.encode()) / 2**32 * interval


def _done(awaitable: Awaitable[object]) -> bool:
    return isinstance(awaitable, asyncio.Future) and awaitable.done()


def _alone_on_tcp(device: ModbusDevice, line: ModbusLine) -> bool:
    return device.protocol.transport is not ModbusTransport.RTU and line.devices == 1


async def _read(line: ModbusLine, device: ModbusDevice, answers: dict[str, list[int]]) -> Decoded:
    """Read every block of the device's map (recording the raw answers) and decode them."""
    register_map = device.register_map
    results: list[list[int]] = []
    for block in register_map.blocks:
        words = await line.read(
            unit=device.protocol.unit, block=block, timeout_s=device.protocol.timeout_s
        )
        answers[_block_name(block)] = words
        results.append(words)
    try:
        return decode_poll(register_map, results)
    except RegisterValueError as err:
        raise PollError(FailureReason.BAD_VALUE, str(err)) from err


def _block_name(block: ReadBlock) -> str:
    return f"{block.table.value}:{block.address}+{block.count}"


def _failure(device: ModbusDevice, err: PollError, answers: dict[str, list[int]]) -> PollFailure:
    return PollFailure(
        sensor_id=device.sensor_id,
        line=device.protocol.line,
        unit=device.protocol.unit,
        reason=err.reason,
        detail=err.detail,
        registers=answers,
    )


def _readings(
    device: ModbusDevice, decoded: Decoded, counters: CounterTracker, last_fault: int | None
) -> tuple[PolledReading, ...]:
    now = datetime.now(UTC)
    values = decoded.values | counters.values(decoded.counters)
    readings = [PolledReading(device.sensor_id, Channel.TELEMETRY, values, now)]
    code = decoded.fault_code
    # A fault register holds its code while the fault lasts: only a new code is a new event.
    if code and code != last_fault:
        fault = device.register_map.fault_codes[str(code)]
        event: dict[str, Scalar] = {"fault": fault, "code": str(code)}
        readings.append(PolledReading(device.sensor_id, Channel.EVENT, event, now))
    return tuple(readings)


def _status(device: ModbusDevice, status: str) -> PolledReading:
    return PolledReading(device.sensor_id, Channel.STATUS, {"status": status}, datetime.now(UTC))
