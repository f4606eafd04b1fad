"""Installer commands for the grid and for the broker's per-device credentials."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from gridwatch.adapters.mqtt import MqttEndpoint
from gridwatch.cli.app import ConfigOption, app, console, database, load, run, user_errors
from gridwatch.domain import SensorStatus
from gridwatch.gateway.files import write_file_atomically
from gridwatch.registry.grid_store import parse_geojson, replace_grid
from gridwatch.registry.models import MqttCredentialRow, SensorRow
from gridwatch.registry.mqtt_acl import (
    generate_device_password,
    hash_password,
    render_acl,
    render_hashed_password_file,
)

grid_app = typer.Typer(help="The grid hierarchy (district → street → community → grid).")
acl_app = typer.Typer(help="Mosquitto password and ACL files for registered sensors.")
app.add_typer(grid_app, name="grid")
app.add_typer(acl_app, name="mqtt-acl")


@grid_app.command("import")
def import_grid(
    file: Annotated[Path, typer.Argument(help="A GeoJSON FeatureCollection.", exists=True)],
    config: ConfigOption = None,
) -> None:
    """Replace the grid with the units in a GeoJSON file (properties: code, name, level)."""
    settings = load(config)
    with user_errors():
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            console.print(f"[bold red]error:[/] {file} is not valid JSON: {err}")
            raise typer.Exit(2) from err
        units = parse_geojson(document)

    async def store() -> int:
        async with database(settings) as sessions, sessions() as session, session.begin():
            return await replace_grid(session=session, units=units)

    console.print(f"imported {run(store())} grid units from {file}")


@acl_app.command("export")
def export_acl(
    out: Annotated[Path, typer.Option(help="Folder for gridwatch.passwd and gridwatch.acl.")],
    gateway_user: Annotated[
        str | None, typer.Option(help="The gateway's MQTT user (default: from GRIDWATCH_MQTT_URL).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write Mosquitto files so each device may publish only under its own topics.

    Devices without a password get one; those are written once to new-credentials.csv for the
    installers. Passwords are stored only as Mosquitto hashes.
    """
    settings = load(config)
    endpoint = MqttEndpoint.parse(settings.mqtt_url or "mqtt://127.0.0.1:1883")
    user = gateway_user or endpoint.username or "gridwatch-gateway"
    gateway_password = endpoint.password if user == endpoint.username else None
    out.mkdir(parents=True, exist_ok=True)

    async def export() -> tuple[dict[str, str], dict[str, str]]:
        async with database(settings) as sessions, sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(SensorRow.id)
                    .where(SensorRow.status != SensorStatus.RETIRED.value)
                    .order_by(SensorRow.id)
                )
            )
            stored = {
                row.sensor_id: row.password_hash
                for row in await session.scalars(select(MqttCredentialRow))
            }
            created: dict[str, str] = {}
            for sensor_id in ids:
                if sensor_id not in stored:
                    created[sensor_id] = generate_device_password()
                    stored[sensor_id] = hash_password(created[sensor_id])
                    session.add(
                        MqttCredentialRow(
                            sensor_id=sensor_id,
                            password_hash=stored[sensor_id],
                            created_at=datetime.now(UTC),
                        )
                    )
            return {sensor_id: stored[sensor_id] for sensor_id in ids}, created

    hashes, created = run(export())
    new_gateway_password = None
    if gateway_password is None:
        new_gateway_password = generate_device_password()
        gateway_password = new_gateway_password
    with user_errors():
        acl = render_acl(hashes, prefix=settings.mqtt_topic_prefix, gateway_user=user)
    passwd = render_hashed_password_file(hashes | {user: hash_password(gateway_password)})
    write_file_atomically(out / "gridwatch.passwd", passwd)
    write_file_atomically(out / "gridwatch.acl", acl)
    if created:
        lines = ["sensor_id,password", *(f"{key},{value}" for key, value in created.items())]
        write_file_atomically(out / "new-credentials.csv", "\n".join(lines) + "\n", mode=0o600)
    console.print(
        f"wrote {out / 'gridwatch.passwd'} and {out / 'gridwatch.acl'} ({len(hashes)} devices)"
    )
    if created:
        console.print(f"{len(created)} new device passwords in {out / 'new-credentials.csv'}")
    if new_gateway_password is not None:
        console.print(
            f"gateway user {user!r} got a new password; set GRIDWATCH_MQTT_URL="
            f"mqtt://{user}:{new_gateway_password}@HOST:1883"
        )
