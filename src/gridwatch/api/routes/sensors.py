"""Sensors: register, read, change, retire, bulk-import, commission, and recent readings."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.commission import CommissionReport, commission
from gridwatch.api.context import ApiContext
from gridwatch.api.deps import ContextDep, SessionDep, permitted
from gridwatch.api.readings import ReadingsPage, ReadingsParams, page_of, readings_params
from gridwatch.api.roles import Permission
from gridwatch.domain import Sensor, SensorStatus
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.registry import importer, service
from gridwatch.registry.service import SensorFilter

router = APIRouter(prefix="/api/v1/sensors", tags=["sensors"])
READ = permitted(Permission.SENSORS_READ)
WRITE = permitted(Permission.SENSORS_WRITE)


class SensorCreate(Sensor):
    """A sensor to register; it starts as a draft unless a status is given."""

    status: SensorStatus = SensorStatus.DRAFT


class SensorRegistered(Sensor):
    """The registered sensor, with warnings such as coordinates outside its grid unit."""

    warnings: list[str] = Field(default_factory=list)


class SensorPage(BaseModel):
    """One page of sensors, ordered by id."""

    items: list[Sensor]
    total: int
    limit: int
    offset: int


class ImportResult(BaseModel):
    """How many sensors an import registered, and warnings by row."""

    imported: int
    warnings: list[dict[str, object]] = Field(default_factory=list)


class CommissionRequest(BaseModel):
    """How long to wait for the device's test reading."""

    wait_s: float = Field(default=0.0, ge=0, le=60)


@router.get("", **READ)
async def list_sensors(
    session: SessionDep,
    status: SensorStatus | None = None,
    kind: str | None = None,
    grid: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SensorPage:
    """Sensors matching every given filter."""
    sensors, total = await service.list_sensors(
        session=session,
        sensor_filter=SensorFilter(status=status, kind=kind, grid=grid),
        limit=limit,
        offset=offset,
    )
    return SensorPage(items=sensors, total=total, limit=limit, offset=offset)


@router.post("", status_code=201, **WRITE)
async def create_sensor(
    sensor: SensorCreate, context: ContextDep, session: SessionDep, response: Response
) -> SensorRegistered:
    """Register one sensor; coordinates outside its grid unit warn (or fail when strict)."""
    async with session.begin():
        references = await _references(context, session)
        row = await service.create_sensor(
            session=session,
            sensor=sensor,
            references=references,
        )
    await context.sensors_changed()
    response.headers["Location"] = f"/api/v1/sensors/{row.id}"
    registered = row.to_sensor()
    return SensorRegistered(
        **registered.model_dump(), warnings=service.location_warnings(registered, references)
    )


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": 'CSV with a header row, or JSON: a list of sensors or {"sensors": [...]}',
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


@router.post(
    "/import",
    status_code=201,
    dependencies=WRITE["dependencies"],
    openapi_extra=WRITE["openapi_extra"] | _IMPORT_BODY,
)
async def import_sensors(
    request: Request, context: ContextDep, session: SessionDep
) -> ImportResult:
    """Register up to 10,000 sensors at once, all or nothing; every bad row is reported."""
    body = await request.body()
    rows = importer.parse_rows(body, content_type=request.headers.get("content-type", ""))
    sensors = importer.validate_rows(rows)
    async with session.begin():
        references = await _references(context, session)
        imported = await service.import_sensors(
            session=session, sensors=sensors, references=references
        )
    await context.sensors_changed()
    warnings = [
        {"row": row, "id": sensor.id, "warning": warning}
        for row, sensor in enumerate(sensors, start=1)
        for warning in service.location_warnings(sensor, references)
    ]
    return ImportResult(imported=imported, warnings=warnings)


@router.get("/{sensor_id}", **READ)
async def get_sensor(sensor_id: str, session: SessionDep) -> Sensor:
    """One sensor."""
    return (await service.get_sensor(session=session, sensor_id=sensor_id)).to_sensor()


@router.patch("/{sensor_id}", **WRITE)
async def update_sensor(
    sensor_id: str,
    changes: Annotated[dict[str, Any], Body(description="Top-level fields to replace.")],
    context: ContextDep,
    session: SessionDep,
) -> Sensor:
    """Change fields of a sensor (not its id or kind); status moves along its lifecycle."""
    async with session.begin():
        references = await _references(context, session)
        row = await service.update_sensor(
            session=session, sensor_id=sensor_id, changes=changes, references=references
        )
    await context.sensors_changed()
    return row.to_sensor()


@router.delete("/{sensor_id}", status_code=204, **WRITE)
async def delete_sensor(sensor_id: str, context: ContextDep, session: SessionDep) -> None:
    """Delete a draft sensor (a sensor that has been live is retired instead)."""
    async with session.begin():
        await service.delete_sensor(session=session, sensor_id=sensor_id)
    await context.sensors_changed()


@router.post("/{sensor_id}/commission", **WRITE)
async def commission_sensor(
    sensor_id: str,
    context: ContextDep,
    session: SessionDep,
    request: Annotated[CommissionRequest, Body()] = CommissionRequest(),  # noqa: B008
) -> CommissionReport:
    """Put a sensor in commissioning and report its test reading and the rules it would fire."""
    return await commission(
        context=context, session=session, sensor_id=sensor_id, wait_s=request.wait_s
    )


@router.get("/{sensor_id}/readings", **READ)
async def readings(
    sensor_id: str,
    context: ContextDep,
    session: SessionDep,
    params: Annotated[ReadingsParams, Depends(readings_params)],
) -> ReadingsPage:
    """The sensor's stored readings, raw or aggregated per window, oldest first."""
    sensor = await service.get_sensor(session=session, sensor_id=sensor_id)
    query = params.to_query(sensor_id=sensor.id, kind=sensor.kind, now=datetime.now(UTC))
    try:
        rows = await context.telemetry.readings(query)
    except StoreUnavailable as err:
        raise HTTPException(503, f"telemetry store unavailable: {err}") from err
    except PointsRejected as err:
        raise HTTPException(502, f"telemetry store refused the query: {err.reason}") from err
    return page_of(query, params.every, rows)


async def _references(context: ApiContext, session: AsyncSession) -> service.References:
    return await service.load_references(
        session=session,
        profiles={name: profile.kind for name, profile in context.profiles.items()},
        strict_location=context.strict_location,
    )
