"""Register images of the simulated Modbus devices: canonical values in, 16-bit registers out.

This is the devices' firmware side of the gateway's device profiles (inclinometer-2axis,
tipping-bucket-0.2, elevator-board): one table row per kind, each a pure encoder. No I/O.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pymodbus.client.mixin import ModbusClientMixin

RegisterTable = Literal["holding", "input"]

_DATATYPE = ModbusClientMixin.DATATYPE
_to_registers = ModbusClientMixin.convert_to_registers

# The tipping-bucket-0.2 profile's bucket; a scenario gauge with another tip size is counted in
# these tips, since the register's scale is fixed by the profile.
GAUGE_TIP_MM: Final = 0.2
# The rain model simulates no battery; the gauge reports a healthy 12 V lead-acid pack.
GAUGE_BATTERY_V: Final = 12.6
_COUNTER_MODULUS: Final = 2**32
# Totals are sums of float tips; without slack 0.6 / 0.2 would count 2 tips. A thousandth of a
# tip is well above float error even near the 2**32 wrap (8.6e8 mm).
_TIP_EPS: Final = 1e-3

DIRECTION_CODES: Final[Mapping[str, int]] = {"none": 0, "up": 1, "down": 2}
MODE_CODES: Final[Mapping[str, int]] = {
    "normal": 0,
    "inspection": 1,
    "fire_return": 2,
    "firefighter": 3,
    "emergency_power": 4,
    "earthquake": 5,
    "stopped": 6,
    "unknown": 15,
}
FAULT_CODES: Final[Mapping[str, int]] = {
    "safety_circuit_open": 1,
    "door_close_fault": 2,
    "door_open_fault": 3,
    "stopped_outside_door_zone": 4,
    "unintended_movement": 5,
    "motor_runtime_limiter": 6,
    "floor_position_lost": 7,
    "cannot_restart": 8,
    "top_overrun": 9,
    "bottom_overrun": 10,
    "entrapment": 11,
    "overspeed": 12,
    "door_open_while_moving": 13,
    "alarm_button": 14,
    "power_loss": 15,
}


@dataclass(frozen=True, slots=True)
class ModbusProfile:
    """How one device kind lays out its registers (all in one table, from address 0)."""

    name: str
    table: RegisterTable
    size: int
    encode: Callable[[Mapping[str, Any]], list[int]]


def encode_tilt(values: Mapping[str, Any]) -> list[int]:
    """Input 0-1 tilt_x_deg, 2-3 tilt_y_deg (float32, low word first), 4 wind in 0.1 m/s."""
    return [
        *_to_registers(float(values["tilt_x_deg"]), _DATATYPE.FLOAT32, word_order="little"),
        *_to_registers(float(values["tilt_y_deg"]), _DATATYPE.FLOAT32, word_order="little"),
        round(values.get("wind_ms", 0.0) * 10),
    ]


def encode_rain_gauge(values: Mapping[str, Any]) -> list[int]:
    """Holding 0-1 tips since power-up (uint32, high word first, wrapping), 2 battery in 10 mV."""
    tips = math.floor(values["total_mm"] / GAUGE_TIP_MM + _TIP_EPS) % _COUNTER_MODULUS
    return [
        *_to_registers(tips, _DATATYPE.UINT32),
        round(values.get("battery_v", GAUGE_BATTERY_V) * 100),
    ]


def encode_elevator(values: Mapping[str, Any]) -> list[int]:
    """Input 0 floor (int16), 1 status bits, 2 speed in cm/s, 3 fault code (0 = none)."""
    status = (
        int(values["moving"])
        | DIRECTION_CODES[values["direction"]] << 1
        | int(values["door"] == "open") << 3
        | int(values["in_door_zone"]) << 4
        | int(values.get("occupied", False)) << 5
        | MODE_CODES[values["mode"]] << 8
    )
    fault = values.get("fault")
    return [
        *_to_registers(int(values["floor"]), _DATATYPE.INT16),
        status,
        round(values.get("speed_ms", 0.0) * 100),
        0 if fault is None else FAULT_CODES[fault],
    ]


PROFILES: Final[Mapping[str, ModbusProfile]] = {
    "tilt": ModbusProfile("inclinometer-2axis", "input", 5, encode_tilt),
    "rain_gauge": ModbusProfile("tipping-bucket-0.2", "holding", 3, encode_rain_gauge),
    "elevator": ModbusProfile("elevator-board", "input", 4, encode_elevator),
}


class DeviceRegisters:
    """The latest canonical values of one device and the register image they encode to."""

    def __init__(self, profile: ModbusProfile) -> None:
        self.profile = profile
        self._values: dict[str, Any] = {}
        self._reported = False
        # All zeros until the first report, as a device that has just booted.
        self._image = [0] * profile.size

    @property
    def image(self) -> list[int]:
        """The registers from address 0, as the device answers them now."""
        return list(self._image)

    def report(self, payload: Mapping[str, Any]) -> None:
        """Take a telemetry payload (extra keys such as `ts` are ignored by the encoder)."""
        self._values.update(payload)
        self._reported = True
        self._image = self.profile.encode(self._values)

    def set_fault(self, fault: str | None) -> None:
        """Raise an elevator fault by name, or clear it with None."""
        self._values["fault"] = fault
        # A fault before the first report waits for it: the other registers have no value yet.
        if self._reported:
            self._image = self.profile.encode(self._values)
