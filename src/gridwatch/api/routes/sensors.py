"""Sensors as registered, and their recent readings."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from gridwatch.api.deps import Authorized, ContextDep
from gridwatch.domain import Sensor, Value

router = APIRouter(prefix="/api/v1/sensors", tags=["sensors"], dependencies=[Authorized])


class SensorList(BaseModel):
    """Every registered sensor, ordered by id."""

    items: list[Sensor]
    total: int


class ReadingRead(BaseModel):
    """One stored reading."""

    ts: datetime
    received_at: datetime
    channel: str
    values: dict[str, Value]


@router.get("")
async def list_sensors(context: ContextDep) -> SensorList:
    """All sensors."""
    sensors = context.registry.all()
    return SensorList(items=sensors, total=len(sensors))


@router.get("/{sensor_id}")
async def get_sensor(sensor_id: str, context: ContextDep) -> Sensor:
    """One sensor."""
    sensor = context.registry.get(sensor_id)
    if sensor is None:
        raise HTTPException(404, f"no sensor {sensor_id!r}")
    return sensor


@router.get("/{sensor_id}/readings")
async def recent_readings(
    sensor_id: str, context: ContextDep, limit: Annotated[int, Query(ge=1, le=2000)] = 100
) -> list[ReadingRead]:
    """The sensor's newest readings from the telemetry store, oldest first."""
    if context.registry.get(sensor_id) is None:
        raise HTTPException(404, f"no sensor {sensor_id!r}")
    return [
        ReadingRead(ts=r.ts, received_at=r.received_at, channel=r.channel.value, values=r.values)
        for r in context.store.recent(sensor_id, limit)
    ]
