"""Registry operations: create, read, update, retire and bulk-import sensors, all-or-nothing."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.domain import Sensor, SensorStatus
from gridwatch.domain.sensors import ModbusProtocol, can_move
from gridwatch.registry.grid import GridIndex, GridLevel, LocationStatus, check_location
from gridwatch.registry.grid_store import load_grid
from gridwatch.registry.models import SensorRow, sensor_columns
from gridwatch.registry.problems import (
    ConflictError,
    FieldProblem,
    NotFoundError,
    RegistryError,
    problems_from_validation,
)

# Fields PATCH may not change: the id names the device on the wire, the kind picks its codec.
IMMUTABLE_FIELDS = frozenset({"id", "kind"})


@dataclass(frozen=True, slots=True)
class References:
    """What sensors may refer to: device profiles (name → kind) and the grid."""

    profiles: Mapping[str, str]
    grid: GridIndex
    # Codes of the unit grids (the lowest level), the only units sensors may be placed in.
    grid_units: frozenset[str]
    strict_location: bool = False


@dataclass(frozen=True, slots=True)
class SensorFilter:
    """Filters for listing sensors; None means any."""

    status: SensorStatus | None = None
    kind: str | None = None
    grid: str | None = None


async def load_references(
    *, session: AsyncSession, profiles: Mapping[str, str], strict_location: bool = False
) -> References:
    """The profiles given and the grid in the database."""
    grid = await load_grid(session=session)
    units = frozenset(unit.code for unit in grid if unit.level is GridLevel.GRID)
    return References(
        profiles=profiles, grid=grid, grid_units=units, strict_location=strict_location
    )


def location_warnings(sensor: Sensor, references: References) -> list[str]:
    """Why the sensor's coordinates disagree with its grid unit's polygon, if they do."""
    if sensor.location is None or sensor.grid not in references.grid:
        return []
    check = check_location(references.grid, sensor.grid, sensor.location.lat, sensor.location.lon)
    return [check.message] if check.status is LocationStatus.OUTSIDE else []


def reference_problems(
    sensor: Sensor, references: References, *, row: int | None = None
) -> list[FieldProblem]:
    """Problems with what the sensor refers to (grid unit, device profile)."""
    problems = []
    # With no grid loaded yet, any well-formed code is accepted; once a grid exists, only its units.
    if references.grid_units and sensor.grid not in references.grid_units:
        problems.append(FieldProblem("grid", f"unknown grid unit {sensor.grid}", row))
    if references.strict_location:
        problems += [
            FieldProblem("location", warning, row)
            for warning in location_warnings(sensor, references)
        ]
    protocol = sensor.protocol
    profile = protocol.profile if isinstance(protocol, ModbusProtocol) else protocol.codec
    field = "protocol.profile" if isinstance(protocol, ModbusProtocol) else "protocol.codec"
    if profile is not None:
        kind = references.profiles.get(profile)
        if kind is None:
            problems.append(FieldProblem(field, f"unknown device profile {profile!r}", row))
        elif kind != sensor.kind:
            problems.append(
                FieldProblem(field, f"profile {profile!r} is for {kind}, not {sensor.kind}", row)
            )
    return problems


async def create_sensor(
    *, session: AsyncSession, sensor: Sensor, references: References
) -> SensorRow:
    """Register one sensor; a duplicate id or bad reference is a RegistryError."""
    problems = reference_problems(sensor, references)
    if await session.get(SensorRow, sensor.id) is not None:
        problems.insert(0, FieldProblem("id", f"sensor {sensor.id} is already registered"))
    if problems:
        raise RegistryError(problems)
    now = datetime.now(UTC)
    row = SensorRow(**sensor_columns(sensor), created_at=now, updated_at=now)
    session.add(row)
    return row


async def import_sensors(
    *,
    session: AsyncSession,
    sensors: Sequence[Sensor],
    references: References,
    first_row: int = 1,
    on_progress: Callable[[int], None] = lambda _done: None,
) -> int:
    """Register every sensor or none: all problems are collected before anything is written."""
    problems = [
        problem
        for row, sensor in enumerate(sensors, start=first_row)
        for problem in reference_problems(sensor, references, row=row)
    ]
    ids = [sensor.id for sensor in sensors]
    existing: set[str] = set()
    for start in range(0, len(ids), 1000):
        existing |= set(
            await session.scalars(
                select(SensorRow.id).where(SensorRow.id.in_(ids[start : start + 1000]))
            )
        )
    problems += [
        FieldProblem("id", f"sensor {sensor.id} is already registered", row)
        for row, sensor in enumerate(sensors, start=first_row)
        if sensor.id in existing
    ]
    if problems:
        raise RegistryError(sorted(problems, key=lambda p: (p.row or 0, p.field)))
    now = datetime.now(UTC)
    rows = [sensor_columns(sensor) | {"created_at": now, "updated_at": now} for sensor in sensors]
    for start in range(0, len(rows), 1000):
        await session.execute(insert(SensorRow), rows[start : start + 1000])
        on_progress(min(start + 1000, len(rows)))
    return len(rows)


async def upsert_sensors(*, session: AsyncSession, sensors: Sequence[Sensor]) -> int:
    """Create or overwrite sensors (a declarative sensors file); returns how many changed."""
    now = datetime.now(UTC)
    changed = 0
    for sensor in sensors:
        columns = sensor_columns(sensor)
        row = await session.get(SensorRow, sensor.id)
        if row is None:
            session.add(SensorRow(**columns, created_at=now, updated_at=now))
            changed += 1
        elif row.to_sensor() != sensor:
            for name, value in columns.items():
                setattr(row, name, value)
            row.updated_at = now
            changed += 1
    return changed


async def get_sensor(*, session: AsyncSession, sensor_id: str) -> SensorRow:
    """The sensor's row, or NotFoundError."""
    row = await session.get(SensorRow, sensor_id)
    if row is None:
        raise NotFoundError([FieldProblem("id", f"no sensor {sensor_id!r}")])
    return row


async def list_sensors(
    *, session: AsyncSession, sensor_filter: SensorFilter, limit: int, offset: int
) -> tuple[list[Sensor], int]:
    """A page of sensors ordered by id, and the total matching."""
    conditions = []
    if sensor_filter.status is not None:
        conditions.append(SensorRow.status == sensor_filter.status.value)
    if sensor_filter.kind is not None:
        conditions.append(SensorRow.kind == sensor_filter.kind)
    if sensor_filter.grid is not None:
        conditions.append(SensorRow.grid == sensor_filter.grid)
    rows = await session.scalars(
        select(SensorRow).where(*conditions).order_by(SensorRow.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(SensorRow).where(*conditions))
    return [row.to_sensor() for row in rows], int(total or 0)


async def update_sensor(
    *, session: AsyncSession, sensor_id: str, changes: Mapping[str, Any], references: References
) -> SensorRow:
    """Apply a partial update (JSON merge of top-level fields), checking the status lifecycle."""
    row = await get_sensor(session=session, sensor_id=sensor_id)
    current = row.to_sensor()
    frozen = sorted(IMMUTABLE_FIELDS & set(changes))
    if frozen:
        raise RegistryError([FieldProblem(name, "cannot be changed") for name in frozen])
    try:
        updated = Sensor.model_validate(current.model_dump(mode="json") | dict(changes))
    except ValidationError as err:
        raise RegistryError(problems_from_validation(err)) from err
    if not can_move(current.status, updated.status):
        raise ConflictError(
            [FieldProblem("status", f"a {current.status} sensor cannot become {updated.status}")]
        )
    problems = reference_problems(updated, references)
    if problems:
        raise RegistryError(problems)
    for name, value in sensor_columns(updated).items():
        setattr(row, name, value)
    row.updated_at = datetime.now(UTC)
    return row


async def delete_sensor(*, session: AsyncSession, sensor_id: str) -> None:
    """Delete a draft sensor; a sensor that has been live is retired instead, keeping history."""
    row = await get_sensor(session=session, sensor_id=sensor_id)
    if row.status != SensorStatus.DRAFT:
        raise ConflictError(
            [
                FieldProblem(
                    "status", f"only draft sensors can be deleted; retire this {row.status} one"
                )
            ]
        )
    await session.execute(delete(SensorRow).where(SensorRow.id == sensor_id))


async def load_all(*, session: AsyncSession) -> list[Sensor]:
    """Every registered sensor, for the gateway's in-memory index."""
    return [row.to_sensor() for row in await session.scalars(select(SensorRow))]


async def revision(*, session: AsyncSession) -> tuple[int, str | None]:
    """A cheap fingerprint of the table: (row count, newest update); changes when anything does."""
    count, newest = (
        await session.execute(select(func.count(), func.max(SensorRow.updated_at)))
    ).one()
    # SQLite hands max() of a datetime column back as text; compare, don't parse.
    return int(count), str(newest) if newest is not None else None
