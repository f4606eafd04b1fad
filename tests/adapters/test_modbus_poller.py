"""The Modbus poller against real pymodbus servers on loopback: schedules, faults, recovery."""

import asyncio
import contextlib
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import uvloop

from gridwatch.adapters.modbus import (
    FailureReason,
    ModbusDevice,
    ModbusPoller,
    PolledReading,
    PollFailure,
)
from gridwatch.domain import Channel
from gridwatch.domain.sensors import ModbusProtocol
from gridwatch.registry.profiles import SHIPPED_PROFILES_DIR, load_profiles
from gridwatch.service.modbus import register_map
from gridwatch.simulators import Fault, ModbusDeviceServer, parse_scenario
from gridwatch.simulators import ModbusDevice as SimulatedDevice

PROFILES = load_profiles(SHIPPED_PROFILES_DIR)
TIMEOUT_S = 0.3


class Recorder:
    """Collects what the poller hands over and reports, per device."""

    def __init__(self) -> None:
        self.readings: dict[str, list[PolledReading]] = defaultdict(list)
        self.lags: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, list[PollFailure]] = defaultdict(list)

    async def handler(self, batch: Sequence[PolledReading]) -> Awaitable[object]:
        for reading in batch:
            self.readings[reading.sensor_id].append(reading)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def polled(self, *, sensor_id: str, latency_s: float, lag_s: float) -> None:
        assert latency_s >= 0
        self.lags[sensor_id].append(lag_s)

    def failed(self, failure: PollFailure) -> None:
        self.failures[failure.sensor_id].append(failure)

    def telemetry(self, sensor_id: str) -> list[dict[str, Any]]:
        return [r.values for r in self.readings[sensor_id] if r.channel is Channel.TELEMETRY]

    def statuses(self, sensor_id: str) -> list[Any]:
        return [r.values["status"] for r in self.readings[sensor_id] if r.channel is Channel.STATUS]

    def reasons(self, sensor_id: str) -> Counter[FailureReason]:
        return Counter(failure.reason for failure in self.failures[sensor_id])


def device_for(
    simulated: SimulatedDevice, *, interval_s: float = 0.5, timeout_s: float = TIMEOUT_S
) -> ModbusDevice:
    protocol = ModbusProtocol.model_validate(
        simulated.protocol() | {"interval_s": interval_s, "timeout_s": timeout_s}
    )
    return ModbusDevice(simulated.device_id, protocol, register_map(PROFILES[protocol.profile]))


@contextlib.asynccontextmanager
async def polling(
    devices: Sequence[ModbusDevice], recorder: Recorder, **options: Any
) -> AsyncIterator[ModbusPoller]:
    poller = ModbusPoller(handler=recorder.handler, observer=recorder, **options)
    poller.update(devices)
    task = asyncio.create_task(poller.run())
    try:
        yield poller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def fleet(count: int, kind: str = "tilt", interval_s: int = 600) -> str:
    rows = "\n".join(
        f"  - {{id: D-{i:02d}, kind: {kind}, interval_s: {interval_s}}}" for i in range(count)
    )
    return f"devices:\n{rows}\n"


STEADY = parse_scenario(
    """
devices:
  - {id: BB-1, kind: tilt, interval_s: 600, baseline_x_deg: 1.25, baseline_y_deg: -0.5,
     noise_deg: 0, wind_ms: 13.9, turbulence: 0}
  - {id: RG-1, kind: rain_gauge, interval_s: 600, mode: total, initial_total_mm: 12.4}
  - {id: EL-1, kind: elevator, interval_s: 600, lowest_floor: -2, start_floor: -1}
timeline:
  - {at_s: 0, device: EL-1, action: fault, fault: entrapment}
"""
)


async def test_each_profile_polls_to_canonical_readings():
    recorder = Recorder()
    async with ModbusDeviceServer(STEADY, speed=1.0) as sim:
        devices = [device_for(d) for d in sim.devices]
        async with polling(devices, recorder):
            await until(lambda: all(recorder.telemetry(d.sensor_id) for d in devices), timeout_s=5)
            await until(lambda: len(recorder.telemetry("EL-1")) >= 2, timeout_s=5)
    tilt = recorder.telemetry("BB-1")[0]
    assert tilt["tilt_x_deg"] == pytest.approx(1.25, abs=1e-5)
    assert tilt["tilt_y_deg"] == pytest.approx(-0.5, abs=1e-5)
    assert tilt["wind_ms"] == pytest.approx(13.9, abs=0.05)
    assert recorder.telemetry("RG-1")[0]["total_mm"] == pytest.approx(12.4, abs=0.2)
    lift = recorder.telemetry("EL-1")[0]
    assert lift["floor"] == -1
    assert {lift["direction"], lift["door"], lift["mode"]} <= {
        "none", "up", "down", "open", "closed", "normal",
    }  # fmt: skip
    # The fault register holds its code across polls: one event, not one per poll.
    events = [r.values for r in recorder.readings["EL-1"] if r.channel is Channel.EVENT]
    assert events == [{"fault": "entrapment", "code": "11"}]
    assert not recorder.failures


async def test_dead_devices_never_hold_up_the_others():
    """50 devices at 1 s, five of them dead in different ways: the 45 stay on schedule."""
    recorder = Recorder()
    dead = {
        "D-00": Fault.SILENT,
        "D-01": Fault.SLOW,
        "D-02": Fault.BLACKHOLE,
        "D-03": Fault.EXCEPTION,
        "D-04": Fault.DROP,
    }
    async with ModbusDeviceServer(parse_scenario(fleet(50)), speed=1.0) as sim:
        for device_id, fault in dead.items():
            await sim.set_fault(device_id, fault, delay_s=5.0)
        await sim.stop("D-05")  # refused
        devices = [device_for(d, interval_s=1.0) for d in sim.devices]
        async with polling(devices, recorder):
            await asyncio.sleep(4.5)
    healthy = [d.sensor_id for d in devices[6:]]
    polls = [len(recorder.lags[s]) for s in healthy]
    lags = [lag for s in healthy for lag in recorder.lags[s]]
    assert min(polls) >= 3, polls
    assert max(lags) < 0.1, sorted(lags)[-5:]
    assert not any(recorder.failures[s] for s in healthy)
    assert set(recorder.reasons("D-00")) == {FailureReason.TIMEOUT}
    assert set(recorder.reasons("D-01")) == {FailureReason.TIMEOUT}
    assert set(recorder.reasons("D-03")) == {FailureReason.EXCEPTION}
    assert "DEVICE_FAILURE" in recorder.failures["D-03"][0].detail
    assert set(recorder.reasons("D-04")) <= {FailureReason.DISCONNECTED, FailureReason.TIMEOUT}
    assert set(recorder.reasons("D-05")) == {FailureReason.REFUSED}
    for sensor_id in dead:
        assert not recorder.telemetry(sensor_id)


async def test_backoff_spaces_the_attempts_at_a_dead_device():
    recorder = Recorder()
    async with ModbusDeviceServer(parse_scenario(fleet(1)), speed=1.0) as sim:
        await sim.stop("D-00")
        async with polling([device_for(sim.devices[0], interval_s=0.2)], recorder):
            await asyncio.sleep(4.0)
    # Polled every 0.2 s it would fail 20 times; backing off from 1 s doubling, at most 5.
    assert 2 <= len(recorder.failures["D-00"]) <= 5


async def test_a_device_that_goes_away_and_returns_resumes_by_itself():
    recorder = Recorder()
    async with ModbusDeviceServer(parse_scenario(fleet(1)), speed=1.0) as sim:
        device = device_for(sim.devices[0], interval_s=0.25)
        async with polling([device], recorder, offline_after=2, backoff_max_s=1.0):
            await until(lambda: len(recorder.telemetry("D-00")) >= 2, timeout_s=5)
            await sim.stop("D-00")
            await until(lambda: recorder.statuses("D-00") == ["offline"], timeout_s=8)
            seen = len(recorder.telemetry("D-00"))
            await sim.start("D-00")
            await until(lambda: len(recorder.telemetry("D-00")) > seen + 1, timeout_s=8)
    assert recorder.statuses("D-00") == ["offline", "online"]
    # online comes before the first reading after the return.
    channels = [r.channel for r in recorder.readings["D-00"]]
    back = channels.index(Channel.STATUS, channels.index(Channel.STATUS) + 1)
    assert channels[back + 1] is Channel.TELEMETRY


async def test_slow_answers_do_not_push_the_schedule():
    recorder = Recorder()
    async with ModbusDeviceServer(parse_scenario(fleet(1)), speed=1.0) as sim:
        await sim.set_fault("D-00", Fault.SLOW, delay_s=0.2)
        device = device_for(sim.devices[0], interval_s=0.5, timeout_s=1.0)
        async with polling([device], recorder):
            await asyncio.sleep(3.2)
    # 0.5 s ticks, 0.2 s answers: about six polls, each starting on its tick (not 0.7 s apart).
    assert len(recorder.lags["D-00"]) >= 5
    assert statistics.median(recorder.lags["D-00"]) < 0.05


async def test_two_slaves_on_one_rtu_line_are_served_in_turn_with_one_dead():
    recorder = Recorder()
    scenario = parse_scenario(fleet(2))
    async with ModbusDeviceServer(scenario, framing="rtu", shared_port=True, speed=1.0) as sim:
        await sim.set_fault("D-00", Fault.SILENT)
        devices = [device_for(d, interval_s=0.5, timeout_s=0.2) for d in sim.devices]
        assert devices[0].protocol.line == devices[1].protocol.line
        assert devices[0].protocol.transport.value == "rtu_over_tcp"
        async with polling(devices, recorder):
            await asyncio.sleep(3.0)
    assert len(recorder.telemetry("D-01")) >= 4
    # The live slave waits at most one timeout of the dead one.
    assert max(recorder.lags["D-01"]) < 0.2 + 0.1
    assert set(recorder.reasons("D-00")) == {FailureReason.TIMEOUT}
    assert not recorder.failures["D-01"]


async def test_a_bad_value_is_set_aside_and_the_device_stays_online():
    recorder = Recorder()
    async with ModbusDeviceServer(parse_scenario(fleet(1)), speed=1.0) as sim:
        # A map whose only point has a value table without the simulated sensor's wind (0).
        simulated = sim.devices[0]
        tilt = PROFILES["inclinometer-2axis"]
        wind = next(p for p in tilt.registers if p.key == "wind_ms")
        coded = wind.model_copy(update={"scale": 1.0, "values": {"1000": "gale"}})
        device = device_for(simulated, interval_s=0.25)
        device = ModbusDevice(device.sensor_id, device.protocol, register_map(tilt).build([coded]))
        async with polling([device], recorder, offline_after=1):
            await until(lambda: len(recorder.failures["D-00"]) >= 3, timeout_s=5)
    assert set(recorder.reasons("D-00")) == {FailureReason.BAD_VALUE}
    failure = recorder.failures["D-00"][0]
    assert "wind_ms: code" in failure.detail
    assert list(failure.registers) == ["input:4+1"]
    assert recorder.statuses("D-00") == []


async def test_registry_changes_start_move_and_stop_pollers():
    recorder = Recorder()
    async with ModbusDeviceServer(parse_scenario(fleet(2)), speed=1.0) as sim:
        first, second = (device_for(d, interval_s=0.25) for d in sim.devices)
        async with polling([first], recorder) as poller:
            await until(lambda: bool(recorder.telemetry("D-00")), timeout_s=5)
            # D-00 "moves" to D-01's address; D-01's server answers for it from now on.
            moved = ModbusDevice(first.sensor_id, second.protocol, first.register_map)
            poller.update([moved])
            await asyncio.sleep(0.6)
            assert len(poller) == 1
            poller.update([])
            stopped_at = len(recorder.readings["D-00"])
            await asyncio.sleep(0.6)
    assert len(recorder.readings["D-00"]) == stopped_at
    assert not recorder.failures["D-00"]


def test_offline_after_must_be_positive():
    async def handler(batch: Sequence[PolledReading]) -> Awaitable[object]:
        raise AssertionError

    with pytest.raises(ValueError, match="offline_after must be at least 1"):
        ModbusPoller(handler=handler, observer=Recorder(), offline_after=0)


def test_each_tick_is_polled_once_on_uvloop():
    """uvloop's millisecond clock wakes a task just before its tick: it must not poll twice."""
    recorder = Recorder()

    async def poll_for_two_seconds() -> None:
        async with ModbusDeviceServer(parse_scenario(fleet(20)), speed=1.0) as sim:
            devices = [device_for(d, interval_s=0.1) for d in sim.devices]
            async with polling(devices, recorder):
                await asyncio.sleep(2.0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(poll_for_two_seconds())
    polls = [len(lags) for lags in recorder.lags.values()]
    assert len(polls) == 20
    assert 15 <= min(polls) <= max(polls) <= 21, polls
    assert min(lag for lags in recorder.lags.values() for lag in lags) >= 0
