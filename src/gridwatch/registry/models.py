"""Registry tables: sensors, grid units, MQTT device credentials."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from gridwatch.domain import Sensor
from gridwatch.gateway.db import Base, UTCDateTime


class SensorRow(Base):
    """A registered sensor; the columns mirror the sensor JSON shape."""

    __tablename__ = "sensors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(64))
    grid: Mapped[str] = mapped_column(String(15), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(300), default="")
    protocol: Mapped[dict[str, Any]] = mapped_column(JSON)
    interval_s: Mapped[float] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(200))
    calibration: Mapped[dict[str, float]] = mapped_column(JSON)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Indexed: the gateway polls max(updated_at) to pick up changes made by other processes.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    def to_sensor(self) -> Sensor:
        """The domain sensor the row stores."""
        location = None
        if self.lat is not None and self.lon is not None:
            location = {"lat": self.lat, "lon": self.lon, "address": self.address}
        return Sensor.model_validate(
            {
                "id": self.id,
                "kind": self.kind,
                "model": self.model,
                "grid": self.grid,
                "location": location,
                "protocol": self.protocol,
                "interval_s": self.interval_s,
                "owner": self.owner,
                "calibration": self.calibration,
                "thresholds": self.thresholds,
                "status": self.status,
                "tags": self.tags,
            }
        )


def sensor_columns(sensor: Sensor) -> dict[str, Any]:
    """Column values for a sensor row (without timestamps)."""
    location = sensor.location
    return {
        "id": sensor.id,
        "kind": sensor.kind.value,
        "model": sensor.model,
        "grid": sensor.grid,
        "lat": location.lat if location else None,
        "lon": location.lon if location else None,
        "address": location.address if location else "",
        "protocol": sensor.protocol.model_dump(mode="json"),
        "interval_s": sensor.interval_s,
        "owner": sensor.owner,
        "calibration": dict(sensor.calibration),
        "thresholds": dict(sensor.thresholds),
        "status": sensor.status.value,
        "tags": dict(sensor.tags),
    }


class GridUnitRow(Base):
    """One unit of the grid hierarchy (district, street, community or grid unit)."""

    __tablename__ = "grid_units"

    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent: Mapped[str | None] = mapped_column(String(15), index=True)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class MqttCredentialRow(Base):
    """A device's MQTT password as a Mosquitto password-file hash; shown in clear only once."""

    __tablename__ = "mqtt_credentials"

    sensor_id: Mapped[str] = mapped_column(
        ForeignKey("sensors.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
