"""Modbus RTU on a serial line: two slaves on one line through a pty null modem, one dead."""

import asyncio
import contextlib
import functools
import os
import pty
import tty
from collections.abc import AsyncIterator

import pytest
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gridwatch.adapters.modbus import FailureReason, ModbusDevice
from gridwatch.domain.sensors import ModbusProtocol
from gridwatch.registry.profiles import SHIPPED_PROFILES_DIR, load_profiles
from gridwatch.service.modbus import register_map
from tests.adapters.test_modbus_poller import Recorder, polling

PROFILES = load_profiles(SHIPPED_PROFILES_DIR)
F32 = ModbusClientMixin.DATATYPE.FLOAT32


@contextlib.asynccontextmanager
async def null_modem(*, dead_unit: int) -> AsyncIterator[tuple[str, str]]:
    """Two serial devices wired to each other, like two ports and a null-modem cable.

    Requests to `dead_unit` reach no one, as if that slave were cut off the line: an RTU
    request is one write of a few bytes, its first byte the unit.
    """
    loop = asyncio.get_running_loop()
    ends = [pty.openpty() for _ in range(2)]
    for _, follower in ends:
        tty.setraw(follower)  # no echo, no CR/LF translation: Modbus RTU is binary
    (a_master, _), (b_master, _) = ends

    def relay(source: int, target: int, *, requests: bool) -> None:
        with contextlib.suppress(OSError):
            data = os.read(source, 4096)
            if not (requests and data[:1] == bytes([dead_unit])):
                os.write(target, data)

    loop.add_reader(a_master, functools.partial(relay, a_master, b_master, requests=True))
    loop.add_reader(b_master, functools.partial(relay, b_master, a_master, requests=False))
    try:
        yield os.ttyname(ends[0][1]), os.ttyname(ends[1][1])
    finally:
        loop.remove_reader(a_master)
        loop.remove_reader(b_master)
        for master, follower in ends:
            os.close(master)
            os.close(follower)


def inclinometer(unit: int, x_deg: float) -> SimDevice:
    """An inclinometer slave: tilt x and y as word-swapped float32, wind in tenths of m/s."""
    words = [
        *ModbusClientMixin.convert_to_registers(x_deg, F32, word_order="little"),
        *ModbusClientMixin.convert_to_registers(-0.25, F32, word_order="little"),
        123,
    ]
    registers = [SimData(0, values=words, datatype=DataType.REGISTERS)]
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(id=unit, simdata=(bits, list(bits), registers, list(registers)))


@pytest.fixture
async def serial_line() -> AsyncIterator[str]:
    """Slaves 1 and 2 on one line; slave 2 is dead (cut off the line)."""
    async with null_modem(dead_unit=2) as (gateway_end, devices_end):
        slaves = [inclinometer(1, 1.5), inclinometer(2, 2.5)]
        server = ModbusSerialServer(slaves, port=devices_end, baudrate=115200)
        await server.serve_forever(background=True)
        try:
            yield gateway_end
        finally:
            await server.shutdown()


def device(sensor_id: str, port: str, unit: int) -> ModbusDevice:
    protocol = ModbusProtocol(
        type="modbus",
        transport="rtu",
        serial_port=port,
        baudrate=115200,
        unit=unit,
        profile="inclinometer-2axis",
        interval_s=0.5,
        timeout_s=0.2,
    )
    return ModbusDevice(sensor_id, protocol, register_map(PROFILES[protocol.profile]))


async def test_two_slaves_on_one_serial_line_are_served_in_turn_with_one_dead(serial_line):
    recorder = Recorder()
    live, dead = device("BB-LIVE", serial_line, 1), device("BB-DEAD", serial_line, 2)
    assert live.protocol.line == dead.protocol.line == f"rtu:{serial_line}"
    async with polling([live, dead], recorder):
        await asyncio.sleep(3.0)
    readings = recorder.telemetry("BB-LIVE")
    assert len(readings) >= 4
    assert readings[0] == {
        "tilt_x_deg": pytest.approx(1.5),
        "tilt_y_deg": pytest.approx(-0.25),
        "wind_ms": pytest.approx(12.3),
    }
    # The live slave waits at most one timeout of the dead one on the shared line.
    assert max(recorder.lags["BB-LIVE"]) < 0.2 + 0.1
    assert not recorder.failures["BB-LIVE"]
    assert set(recorder.reasons("BB-DEAD")) == {FailureReason.TIMEOUT}
