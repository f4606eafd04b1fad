"""The registered sensor as the gateway and rules see it."""

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SENSOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)

SensorId = Annotated[str, StringConstraints(pattern=SENSOR_ID_PATTERN)]
# 15 digits is the common unit-grid code; older systems use 14.
GridCode = Annotated[str, StringConstraints(pattern=r"^\d{14,15}$")]


class SensorKind(StrEnum):
    """Kinds with a canonical payload codec."""

    RAIN_GAUGE = "rain_gauge"
    TILT = "tilt"
    ELEVATOR = "elevator"
    CAMERA = "camera"


class SensorStatus(StrEnum):
    """Lifecycle of a registered sensor; only active sensors raise city cases."""

    DRAFT = "draft"
    COMMISSIONING = "commissioning"
    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    RETIRED = "retired"


class Location(BaseModel):
    """Where the sensor is mounted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str = ""


class MqttProtocol(BaseModel):
    """The sensor publishes on gridwatch's MQTT topics, optionally through a vendor codec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["mqtt"] = "mqtt"
    codec: str | None = Field(default=None, description="A vendor codec profile name.")


class ModbusTransport(StrEnum):
    """How the gateway reaches a Modbus device."""

    TCP = "tcp"  # Modbus TCP (MBAP framing)
    RTU_OVER_TCP = "rtu_over_tcp"  # RTU frames through a serial device server's TCP port
    RTU = "rtu"  # RTU on a serial line of the gateway itself


class ModbusProtocol(BaseModel):
    """The gateway polls the sensor over Modbus with a device profile's register map.

    Devices that share a TCP endpoint (host and port) or a serial port share one line: their
    requests are sent one at a time, each with `timeout_s`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["modbus"]
    transport: ModbusTransport = ModbusTransport.TCP
    host: str | None = Field(default=None, min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = Field(default=None, min_length=1, max_length=200)
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = Field(default=1, ge=1, le=2)
    unit: int = Field(default=1, ge=0, le=255)
    profile: str = Field(min_length=1)
    interval_s: float = Field(default=10.0, gt=0, le=86400)
    timeout_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _addressed(self) -> "ModbusProtocol":
        if self.transport is ModbusTransport.RTU:
            if self.serial_port is None:
                raise FieldError("serial_port", "is required for transport rtu")
            if self.host is not None:
                raise FieldError("host", "applies to tcp transports, not rtu")
        else:
            if self.host is None:
                raise FieldError("host", f"is required for transport {self.transport}")
            if self.serial_port is not None:
                raise FieldError("serial_port", "applies to transport rtu only")
        return self

    @property
    def line(self) -> str:
        """The line the device is on: devices with the same line are polled one at a time."""
        if self.transport is ModbusTransport.RTU:
            return f"rtu:{self.serial_port}"
        return f"{self.transport.value}://{self.host}:{self.port}"


class FieldError(ValueError):
    """A problem found across fields by a model validator, naming the field it concerns."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


Protocol = Annotated[MqttProtocol | ModbusProtocol, Field(discriminator="type")]

# Allowed status changes: a retired sensor never comes back (register a new id instead), so
# its history stays unambiguous.
STATUS_TRANSITIONS: dict[SensorStatus, frozenset[SensorStatus]] = {
    SensorStatus.DRAFT: frozenset(
        {SensorStatus.COMMISSIONING, SensorStatus.ACTIVE, SensorStatus.RETIRED}
    ),
    SensorStatus.COMMISSIONING: frozenset(
        {SensorStatus.DRAFT, SensorStatus.ACTIVE, SensorStatus.RETIRED}
    ),
    SensorStatus.ACTIVE: frozenset({SensorStatus.MAINTENANCE, SensorStatus.RETIRED}),
    SensorStatus.MAINTENANCE: frozenset({SensorStatus.ACTIVE, SensorStatus.RETIRED}),
    SensorStatus.RETIRED: frozenset(),
}


def can_move(current: SensorStatus, target: SensorStatus) -> bool:
    """Whether the lifecycle allows going from `current` to `target` (staying put is allowed)."""
    return current == target or target in STATUS_TRANSITIONS[current]


class Sensor(BaseModel):
    """A registered device, in the sensor JSON shape of DESIGN.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: SensorId
    kind: SensorKind
    model: str = Field(default="generic", min_length=1, max_length=64)
    grid: GridCode
    location: Location | None = None
    protocol: Protocol = MqttProtocol()
    interval_s: float = Field(default=300.0, gt=0, le=7 * 86400)
    owner: str | None = Field(default=None, max_length=200)
    calibration: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    status: SensorStatus = SensorStatus.ACTIVE
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("calibration")
    @classmethod
    def _check_calibration(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        # A tilt sensor's deviation is measured against the baseline taken at installation.
        kind = info.data.get("kind")
        allowed = CALIBRATION_KEYS.get(kind, frozenset()) if kind else frozenset()
        unknown = set(value) - allowed
        if kind and unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)} for a {kind} sensor "
                f"(allowed: {sorted(allowed) or 'none'})"
            )
        return value


CALIBRATION_KEYS: dict[SensorKind, frozenset[str]] = {
    SensorKind.TILT: frozenset({"baseline_x_deg", "baseline_y_deg"}),
    SensorKind.RAIN_GAUGE: frozenset({"mm_per_tip"}),
}
