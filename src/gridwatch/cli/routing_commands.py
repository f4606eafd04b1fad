"""The auto-dispatch routing table: show the one in force, store one from a file, or drop it.

Like `PUT` and `DELETE /api/v1/routing`, against the database: running services take the
change within a few seconds (their routing sync polls the stored version).
"""

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gridwatch.cases import routing_store
from gridwatch.cases.routing import (
    RoutingInForce,
    RoutingState,
    RoutingTable,
    StoredRouting,
    load_routing,
)
from gridwatch.cli.app import ConfigOption, app, console, database, errors, load, run, user_errors
from gridwatch.gateway.settings import Settings

routing_app = typer.Typer(
    help="The auto-dispatch routing table (stored in the database, else the routing file).",
    no_args_is_help=True,
)
app.add_typer(routing_app, name="routing")

VersionOption = Annotated[
    int | None, typer.Option(help="Change it only if the stored table is at this version.")
]


@routing_app.command("show")
def show(config: ConfigOption = None) -> None:
    """Print the table in force as a routing file, after a comment saying where it is from."""
    settings = load(config)
    routing = _routing(settings)

    async def fetch() -> RoutingState:
        async with database(settings) as sessions, sessions() as session:
            await routing_store.refresh(session=session, routing=routing)
        return routing.state

    state = run(fetch())
    line = f"# source: {state.source}, version {state.version}"
    if state.updated_at is not None:
        line += f", changed {state.updated_at.isoformat(timespec='seconds')} by {state.updated_by}"
    table = state.table or RoutingTable()
    document = table.model_dump(mode="json", exclude_none=True)
    # Plain text, not rich: the output is a routing file, and `[…]` in it is not markup.
    typer.echo(line)
    typer.echo(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), nl=False)


@routing_app.command("set")
def set_table(
    file: Annotated[Path, typer.Argument(help="A routing YAML file.", dir_okay=False)],
    version: VersionOption = None,
    config: ConfigOption = None,
) -> None:
    """Store the table in FILE; it replaces the routing file's in every gridwatch."""
    settings = load(config)
    with user_errors():
        table = load_routing(file)
    stored = _save(settings, table, version)
    console.print(f"routing table stored: version {stored.version}, {len(table.routes)} routes")


@routing_app.command("clear")
def clear(version: VersionOption = None, config: ConfigOption = None) -> None:
    """Drop the stored table: each gridwatch routes by its routing file again (or by hand)."""
    settings = load(config)
    stored = _save(settings, None, version)
    console.print(f"no routing table stored (version {stored.version}): the routing file rules")


def _routing(settings: Settings) -> RoutingInForce:
    with user_errors():
        file = settings.routing_file
        return RoutingInForce(None if file is None else load_routing(file))


def _save(settings: Settings, table: RoutingTable | None, version: int | None) -> StoredRouting:
    actor = f"cli:{getpass.getuser()}"

    async def save() -> StoredRouting:
        async with database(settings) as sessions, sessions() as session, session.begin():
            return await routing_store.save(
                session=session,
                table=table,
                versions=None if version is None else {version},
                actor=actor,
                at=datetime.now(UTC),
            )

    try:
        return run(save())
    except routing_store.StaleRoutingError as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(1) from err
