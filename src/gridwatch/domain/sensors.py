"""The registered sensor as the gateway and rules see it."""

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
    """The sensor publishes on gridwatch's MQTT topics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["mqtt"] = "mqtt"


class Sensor(BaseModel):
    """A registered device, in the sensor JSON shape of DESIGN.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: SensorId
    kind: SensorKind
    model: str = "generic"
    grid: GridCode
    location: Location | None = None
    protocol: MqttProtocol = MqttProtocol()
    interval_s: float = Field(default=300.0, gt=0)
    owner: str | None = None
    calibration: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    status: SensorStatus = SensorStatus.ACTIVE
    tags: dict[str, str] = Field(default_factory=dict)
