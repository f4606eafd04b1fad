"""Simulated Modbus devices, polled by a real pymodbus client on loopback, faults included."""

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType

from gridwatch.simulators import (
    Fault,
    ModbusDevice,
    ModbusDeviceServer,
    Scenario,
    iter_messages,
    parse_scenario,
)
from gridwatch.simulators._modbus_registers import encode_elevator

DATATYPE = ModbusClientMixin.DATATYPE
decode = ModbusClientMixin.convert_from_registers

# Long intervals: the registers keep the first reading for the whole test.
STEADY = parse_scenario(
    """
devices:
  - {id: BB-1, kind: tilt, interval_s: 600, baseline_x_deg: 1.25, baseline_y_deg: -0.5,
     wind_ms: 13.9}
  - {id: RG-1, kind: rain_gauge, interval_s: 600, mode: total, initial_total_mm: 12.4}
  - {id: EL-1, kind: elevator, interval_s: 600, lowest_floor: -2, start_floor: -1}
  - {id: CAM-1, kind: camera, interval_s: 600}
"""
)
# Read-input-registers 0..4 of unit 1 as a Modbus TCP frame, for tests below the client.
READ_FRAME = bytes.fromhex("000100000006010400000005")
# Short enough for a fast suite, long enough for a loaded CI machine to answer a healthy read.
TIMEOUT_S = 0.3


@asynccontextmanager
async def serving(scenario: Scenario = STEADY, **options: Any) -> AsyncIterator[ModbusDeviceServer]:
    async with ModbusDeviceServer(scenario, **options) as server:
        yield server


@asynccontextmanager
async def client(
    device: ModbusDevice, *, framer: FramerType = FramerType.SOCKET, timeout_s: float = TIMEOUT_S
) -> AsyncIterator[AsyncModbusTcpClient]:
    # reconnect_delay=0: a client that lost its connection stays down instead of retrying.
    modbus = AsyncModbusTcpClient(
        device.host,
        port=device.port,
        framer=framer,
        timeout=timeout_s,
        retries=0,
        reconnect_delay=0,
    )
    try:
        assert await modbus.connect()
        yield modbus
    finally:
        modbus.close()


async def read(modbus: AsyncModbusTcpClient, device: ModbusDevice) -> list[int]:
    table = {
        "inclinometer-2axis": (modbus.read_input_registers, 5),
        "tipping-bucket-0.2": (modbus.read_holding_registers, 3),
        "elevator-board": (modbus.read_input_registers, 4),
    }
    method, count = table[device.profile]
    response = await method(0, count=count, device_id=device.unit)
    assert not response.isError(), response
    return list(response.registers)


def first_telemetry(scenario: Scenario, device_id: str) -> dict[str, Any]:
    return next(
        message.payload
        for message in iter_messages(scenario, until_s=0)
        if message.sensor_id == device_id and message.suffix == "telemetry"
    )


def decode_tilt(registers: list[int]) -> dict[str, Any]:
    return {
        "tilt_x_deg": decode(registers[0:2], DATATYPE.FLOAT32, word_order="little"),
        "tilt_y_deg": decode(registers[2:4], DATATYPE.FLOAT32, word_order="little"),
        "wind_ms": registers[4] / 10,
    }


def decode_rain(registers: list[int]) -> dict[str, Any]:
    tips = decode(registers[0:2], DATATYPE.UINT32)
    assert isinstance(tips, int)
    return {"total_mm": tips * 0.2, "battery_v": registers[2] / 100}


def decode_elevator(registers: list[int]) -> dict[str, Any]:
    status = registers[1]
    return {
        "floor": decode(registers[0:1], DATATYPE.INT16),
        "moving": bool(status & 1),
        "direction": ["none", "up", "down"][status >> 1 & 0b11],
        "door": ["closed", "open"][status >> 3 & 1],
        "in_door_zone": bool(status >> 4 & 1),
        "occupied": bool(status >> 5 & 1),
        "mode": {0: "normal", 1: "inspection", 6: "stopped"}[status >> 8 & 0xF],
        "speed_ms": registers[2] / 100,
        "fault": registers[3],
    }


@pytest.mark.parametrize(
    ("device_id", "decoder", "extra"),
    [
        ("BB-1", decode_tilt, {}),
        ("RG-1", decode_rain, {"battery_v": 12.6}),
        ("EL-1", decode_elevator, {"fault": 0}),
    ],
)
async def test_registers_decode_to_the_model_reading(
    device_id: str, decoder: Callable[[list[int]], dict[str, Any]], extra: dict[str, Any]
):
    payload = first_telemetry(STEADY, device_id)
    async with serving() as server:
        device = server.device(device_id)
        async with client(device) as modbus:
            decoded = decoder(await read(modbus, device))
    expected = {key: payload[key] for key in decoded if key in payload} | extra
    assert decoded == pytest.approx(expected, abs=1e-5)


async def test_devices_list_the_modbus_kinds_with_their_addresses():
    async with serving(port=0) as server:
        rows = [(d.device_id, d.kind, d.profile, d.unit) for d in server.devices]
        ports = {d.port for d in server.devices}
        protocol = server.device("RG-1").protocol()
    assert rows == [
        ("BB-1", "tilt", "inclinometer-2axis", 1),
        ("RG-1", "rain_gauge", "tipping-bucket-0.2", 1),
        ("EL-1", "elevator", "elevator-board", 1),
    ]
    assert len(ports) == 3
    assert 0 not in ports
    assert protocol == {
        "type": "modbus",
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": protocol["port"],
        "unit": 1,
        "profile": "tipping-bucket-0.2",
        "interval_s": 600.0,
    }


async def test_tip_counter_follows_the_model_and_wraps_at_2_pow_32():
    # 5 tips per report, starting 12 tips below the wrap; 20x: a report every 50 ms.
    scenario = parse_scenario(
        f"""
devices:
  - {{id: RG-9, kind: rain_gauge, interval_s: 1, mode: total, mm_per_report: 1.0, jitter: 0,
     initial_total_mm: {(2**32 - 12) * 0.2}}}
"""
    )
    model_counts = {
        round(message.payload["total_mm"] / 0.2) % 2**32
        for message in iter_messages(scenario, until_s=60)
    }
    seen: list[int] = []
    async with serving(scenario, speed=20) as server:
        device = server.device("RG-9")
        async with client(device) as modbus, asyncio.timeout(3):
            while not seen or seen[-1] > 2**31:
                tips = decode((await read(modbus, device))[0:2], DATATYPE.UINT32)
                assert isinstance(tips, int)
                seen.append(tips)
                await asyncio.sleep(0.02)
    assert set(seen) <= model_counts
    assert seen[0] > 2**32 - 13
    assert seen[-1] < 100


async def test_elevator_fault_register_holds_the_code_until_cleared():
    scenario = parse_scenario(
        """
devices:
  - {id: EL-7, kind: elevator, interval_s: 1}
timeline:
  - {at_s: 2, device: EL-7, action: fault, fault: entrapment}
  - {at_s: 4, device: EL-7, action: clear_fault}
"""
    )
    codes: list[int] = []
    async with serving(scenario, speed=20) as server:
        device = server.device("EL-7")
        async with client(device) as modbus, asyncio.timeout(3):
            while codes[-1:] != [0] or 11 not in codes:
                codes.append((await read(modbus, device))[3])
                await asyncio.sleep(0.01)
    # Sampled: "no fault, entrapment for a while, no fault", in that order.
    assert [code for code, _run in itertools.groupby(codes)] == [0, 11, 0]


async def test_scenario_offline_step_silences_the_device_until_online():
    scenario = parse_scenario(
        """
devices:
  - {id: BB-2, kind: tilt, interval_s: 1}
timeline:
  - {at_s: 2, device: BB-2, action: offline}
  - {at_s: 4, device: BB-2, action: online}
"""
    )
    answers: list[bool] = []
    async with serving(scenario, speed=5) as server:
        device = server.device("BB-2")
        # Raw frames: a client library would give up on the connection after a few timeouts.
        reader, writer = await asyncio.open_connection(device.host, device.port)
        async with asyncio.timeout(3):
            while answers[-1:] != [True] or False not in answers:
                writer.write(READ_FRAME)
                try:
                    answers.append(bool(await asyncio.wait_for(reader.read(100), 0.05)))
                except TimeoutError:
                    answers.append(False)
        writer.close()
    assert [answered for answered, _run in itertools.groupby(answers)] == [True, False, True]


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({"moving": True, "direction": "up", "door": "closed", "in_door_zone": False}, 0b000011),
        ({"moving": True, "direction": "down", "door": "closed", "in_door_zone": False}, 0b000101),
        ({"moving": False, "direction": "none", "door": "open", "in_door_zone": True}, 0b011000),
        ({"moving": False, "direction": "none", "door": "closed", "occupied": True}, 0b100000),
        ({"mode": "fire_return"}, 2 << 8),
        ({"mode": "unknown"}, 15 << 8),
    ],
)
def test_elevator_status_word_bits(values: dict[str, Any], status: int):
    idle = {
        "floor": 3,
        "moving": False,
        "direction": "none",
        "door": "closed",
        "in_door_zone": False,
        "mode": "normal",
    }
    assert encode_elevator(idle | values)[1] == status


async def test_silent_device_times_out_but_keeps_the_connection():
    async with serving() as server:
        device = server.device("BB-1")
        async with client(device) as modbus:
            await server.set_fault("BB-1", Fault.SILENT)
            with pytest.raises(ModbusIOException):
                await read(modbus, device)
            assert modbus.connected
            await server.set_fault("BB-1", Fault.NONE)
            assert len(await read(modbus, device)) == 5


async def test_slow_device_answers_after_the_delay():
    async with serving() as server:
        device = server.device("BB-1")
        await server.set_fault("BB-1", Fault.SLOW, delay_s=0.2)
        async with client(device, timeout_s=1.0) as modbus:
            started = time.monotonic()
            assert len(await read(modbus, device)) == 5
            assert time.monotonic() - started >= 0.2
        async with client(device, timeout_s=0.1) as impatient:
            with pytest.raises(ModbusIOException):
                await read(impatient, device)


@pytest.mark.parametrize(("options", "code"), [({}, 4), ({"exception_code": 2}, 2)])
async def test_exception_fault_answers_every_read_with_the_code(options: dict[str, int], code: int):
    async with serving() as server:
        device = server.device("RG-1")
        await server.set_fault("RG-1", Fault.EXCEPTION, **options)
        async with client(device) as modbus:
            response = await modbus.read_holding_registers(0, count=3, device_id=1)
    assert response.isError()
    assert response.exception_code == code


async def test_drop_closes_the_connection_on_each_request():
    async with serving() as server:
        device = server.device("BB-1")
        await server.set_fault("BB-1", Fault.DROP)
        async with asyncio.timeout(2):
            for _attempt in range(2):
                reader, writer = await asyncio.open_connection(device.host, device.port)
                writer.write(READ_FRAME)
                assert await reader.read() == b""
                writer.close()


async def test_blackhole_accepts_connections_and_never_answers():
    async with serving() as server:
        device = server.device("BB-1")
        await server.set_fault("BB-1", Fault.BLACKHOLE)
        async with client(device) as modbus:
            with pytest.raises(ModbusIOException):
                await read(modbus, device)
        await server.set_fault("BB-1", Fault.NONE)
        async with client(device) as modbus:
            assert len(await read(modbus, device)) == 5


async def test_stopped_device_refuses_connections_and_comes_back_on_the_same_port():
    async with serving() as server:
        device = server.device("EL-1")
        await server.stop("EL-1")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection(device.host, device.port), TIMEOUT_S)
        await server.start("EL-1")
        assert server.device("EL-1").port == device.port
        async with client(device) as modbus:
            assert len(await read(modbus, device)) == 4


async def test_rtu_over_tcp_framing():
    payload = first_telemetry(STEADY, "BB-1")
    async with serving(framing="rtu") as server:
        device = server.device("BB-1")
        async with client(device, framer=FramerType.RTU) as modbus:
            decoded = decode_tilt(await read(modbus, device))
    assert server.device("BB-1").protocol()["transport"] == "rtu_over_tcp"
    assert decoded["tilt_x_deg"] == pytest.approx(payload["tilt_x_deg"], abs=1e-5)


async def test_one_silent_unit_behind_a_shared_port_leaves_the_others_answering():
    async with serving(shared_port=True) as server:
        tilt, gauge = server.device("BB-1"), server.device("RG-1")
        await server.set_fault("BB-1", Fault.SILENT)
        async with client(tilt) as modbus:
            assert len(await read(modbus, gauge)) == 3
            with pytest.raises(ModbusIOException):
                await read(modbus, tilt)
            assert len(await read(modbus, gauge)) == 3
    assert (tilt.port, tilt.unit, gauge.unit) == (gauge.port, 1, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": "192.0.2.1"}, "loopback"),
        ({"speed": math.inf}, "full speed needs a duration"),
        ({"port": 65_534}, "outside 0..65535"),
        ({"framing": "ascii"}, "tcp or rtu"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        ModbusDeviceServer(STEADY, **options)
