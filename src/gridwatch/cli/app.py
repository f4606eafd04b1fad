"""The typer application and the shared pieces every command uses."""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvloop
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases.routing import RoutingError
from gridwatch.gateway.db import create_engine, migrate, session_factory
from gridwatch.gateway.registry import SensorFileError
from gridwatch.gateway.settings import Settings, SettingsError, load_settings
from gridwatch.registry.catalog import ProfileConflictError
from gridwatch.registry.problems import RegistryError
from gridwatch.registry.profiles import ProfileError
from gridwatch.rules import RuleFileError

app = typer.Typer(
    name="gridwatch",
    help="IoT sensor gateway and case service for grid-based city management.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML settings file (also GRIDWATCH_CONFIG).", dir_okay=False),
]
T = TypeVar("T")


def load(config: Path | None) -> Settings:
    """Settings for a command, with logging set up; bad settings exit 2 naming the setting."""
    try:
        settings = load_settings(config)
    except SettingsError as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from err
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s %(message)s",
    )
    # Per-request and per-migration lines drown out gridwatch's own; their warnings still show.
    quiet = max(logging.WARNING, logging.getLevelName(settings.log_level))
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(quiet)
    # pymodbus logs every unanswered request as an error; the poller counts them and logs a
    # device going offline and coming back, once each.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    return settings


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on a fresh loop; SIGINT and SIGTERM set `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    with user_errors():
        # uvloop (installed with uvicorn[standard]) runs the event loop's own work in C; the
        # ingest path crosses it once per batch, the API once per request.
        uvloop.run(runner())


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user can fix are printed plainly, with every problem named, and exit 2."""
    try:
        yield
    except RegistryError as err:
        errors.print(f"[bold red]error:[/] {err.summary}")
        for problem in err.problems[1:20]:
            where = f"row {problem.row}: " if problem.row is not None else ""
            errors.print(f"  {where}{problem.field}: {problem.reason}")
        raise typer.Exit(2) from err
    except (
        SettingsError,
        SensorFileError,
        RuleFileError,
        RoutingError,
        ProfileError,
        ProfileConflictError,
    ) as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from err


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, reporting user errors plainly."""
    with user_errors():
        return asyncio.run(work)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the configured database, migrated to the newest schema."""
    engine = create_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


def main() -> None:
    """Console-script entry point."""
    # Importing the command modules registers their commands on `app`.
    from gridwatch.cli import (  # noqa: F401
        case_commands,
        grid_acl_commands,
        registry_commands,
        routing_commands,
        rules_commands,
        service_commands,
    )

    app()
