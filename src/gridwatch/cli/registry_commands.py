"""Installer commands: sensors, API keys (and, with the registry's data files, grid and ACLs)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.keys import create_key, list_keys, revoke_key
from gridwatch.api.roles import Role
from gridwatch.cli.app import ConfigOption, app, console, database, load, run, user_errors
from gridwatch.domain import Sensor, SensorKind, SensorStatus
from gridwatch.gateway.settings import Settings
from gridwatch.registry import importer, service
from gridwatch.registry.catalog import device_profiles, profile_kinds
from gridwatch.registry.service import SensorFilter

sensors_app = typer.Typer(help="Register and manage sensors.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and their roles.", no_args_is_help=True)
app.add_typer(sensors_app, name="sensors")
app.add_typer(keys_app, name="keys")

IMPORT_CHUNK = 500


@sensors_app.command("add")
def add_sensor(
    sensor_id: Annotated[str, typer.Option("--id", help="Sensor id, as on the MQTT topic.")],
    kind: Annotated[SensorKind, typer.Option(help="Sensor kind.")],
    grid: Annotated[str, typer.Option(help="15-digit unit-grid code.")],
    lat: Annotated[float | None, typer.Option(help="Latitude.")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude.")] = None,
    address: Annotated[str, typer.Option(help="Where it is mounted.")] = "",
    model: Annotated[str, typer.Option(help="Device model.")] = "generic",
    owner: Annotated[str | None, typer.Option(help="Asset owner or maintainer.")] = None,
    interval_s: Annotated[float, typer.Option(help="Expected reporting interval.")] = 300.0,
    status: Annotated[SensorStatus, typer.Option(help="Lifecycle status.")] = SensorStatus.DRAFT,
    config: ConfigOption = None,
) -> None:
    """Register one sensor."""
    settings = load(config)
    raw: dict[str, object] = {
        "id": sensor_id, "kind": kind.value, "grid": grid, "model": model, "owner": owner,
        "interval_s": interval_s, "status": status.value,
    }  # fmt: skip
    if lat is not None and lon is not None:
        raw["location"] = {"lat": lat, "lon": lon, "address": address}
    with user_errors():
        (sensor,) = importer.validate_rows([(1, raw)])

    async def add() -> None:
        async with database(settings) as sessions, sessions() as session, session.begin():
            references = await _references(settings, session)
            await service.create_sensor(session=session, sensor=sensor, references=references)

    run(add())
    console.print(f"registered {sensor.id} ({sensor.kind}, {sensor.status}) in grid {sensor.grid}")


@sensors_app.command("import")
def import_sensors(
    file: Annotated[Path, typer.Argument(help="CSV (with header) or JSON file.", exists=True)],
    config: ConfigOption = None,
) -> None:
    """Register up to 10,000 sensors from a file, all or nothing."""
    settings = load(config)
    content_type = "text/csv" if file.suffix.lower() == ".csv" else "application/json"
    with user_errors():
        rows = importer.parse_rows(file.read_bytes(), content_type=content_type)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        checking = progress.add_task("validating", total=len(rows))
        sensors = []
        for start in range(0, len(rows), IMPORT_CHUNK):
            chunk = rows[start : start + IMPORT_CHUNK]
            with user_errors():
                sensors += importer.validate_rows(chunk)
            progress.advance(checking, len(chunk))
        writing = progress.add_task("registering", total=len(sensors))

        async def write() -> int:
            async with database(settings) as sessions, sessions() as session, session.begin():
                references = await _references(settings, session)
                return await service.import_sensors(
                    session=session,
                    sensors=sensors,
                    references=references,
                    on_progress=lambda done: progress.update(writing, completed=done),
                )

        imported = run(write())
    console.print(f"imported {imported} sensors from {file}")


@sensors_app.command("list")
def list_sensors(
    status: Annotated[SensorStatus | None, typer.Option(help="Only this status.")] = None,
    kind: Annotated[SensorKind | None, typer.Option(help="Only this kind.")] = None,
    grid: Annotated[str | None, typer.Option(help="Only this grid unit.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    config: ConfigOption = None,
) -> None:
    """List registered sensors."""
    settings = load(config)

    async def fetch() -> tuple[list[Sensor], int]:
        async with database(settings) as sessions, sessions() as session:
            return await service.list_sensors(
                session=session,
                sensor_filter=SensorFilter(status=status, kind=kind, grid=grid),
                limit=limit,
                offset=0,
            )

    sensors, total = run(fetch())
    table = Table("id", "kind", "model", "grid", "status", "address", title=f"{total} sensors")
    for sensor in sensors:
        address = sensor.location.address if sensor.location else ""
        table.add_row(sensor.id, sensor.kind, sensor.model, sensor.grid, sensor.status, address)
    console.print(table)


@sensors_app.command("show")
def show_sensor(sensor_id: str, config: ConfigOption = None) -> None:
    """Show one sensor as JSON."""
    settings = load(config)

    async def fetch() -> Sensor:
        async with database(settings) as sessions, sessions() as session:
            return (await service.get_sensor(session=session, sensor_id=sensor_id)).to_sensor()

    console.print_json(run(fetch()).model_dump_json())


@sensors_app.command("retire")
def retire_sensor(sensor_id: str, config: ConfigOption = None) -> None:
    """Retire a sensor: its readings are refused from now on, its history stays."""
    settings = load(config)

    async def retire() -> None:
        async with database(settings) as sessions, sessions() as session, session.begin():
            references = await _references(settings, session)
            await service.update_sensor(
                session=session,
                sensor_id=sensor_id,
                changes={"status": SensorStatus.RETIRED.value},
                references=references,
            )

    run(retire())
    console.print(f"retired {sensor_id}")


@keys_app.command("create")
def create_api_key(
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "",
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it once; only its digest is stored."""
    settings = load(config)

    async def create() -> tuple[str, str]:
        async with database(settings) as sessions, sessions() as session, session.begin():
            row, key = await create_key(session=session, role=role, name=name or role.value)
            return row.id, key

    key_id, key = run(create())
    console.print(f"created {key_id} with role {role}; store this key now, it is not shown again:")
    print(key)  # noqa: T201 - bare, so scripts can capture exactly the key


@keys_app.command("list")
def list_api_keys(config: ConfigOption = None) -> None:
    """List API keys (never the keys themselves)."""
    settings = load(config)

    async def fetch() -> list[tuple[str, str, str, str, str]]:
        async with database(settings) as sessions, sessions() as session:
            return [
                (k.id, k.name, k.role, k.created_at.isoformat(timespec="seconds"),
                 "revoked" if k.revoked_at else "active")
                for k in await list_keys(session=session)
            ]  # fmt: skip

    table = Table("id", "name", "role", "created", "state")
    for row in run(fetch()):
        table.add_row(*row)
    console.print(table)


@keys_app.command("revoke")
def revoke_api_key(key_id: str, config: ConfigOption = None) -> None:
    """Revoke an API key at once."""
    settings = load(config)

    async def revoke() -> bool:
        async with database(settings) as sessions, sessions() as session, session.begin():
            return await revoke_key(session=session, key_id=key_id)

    if not run(revoke()):
        console.print(f"no active key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


async def _references(settings: Settings, session: AsyncSession) -> service.References:
    with user_errors():
        kinds = profile_kinds(device_profiles(settings.profiles_dir))
    return await service.load_references(
        session=session, profiles=kinds, strict_location=settings.strict_location
    )
