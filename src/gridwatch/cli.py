"""The `gridwatch` command: run the service, run the demo, drive simulators."""

import asyncio
import logging
import math
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gridwatch.gateway.registry import SensorFileError
from gridwatch.gateway.settings import Settings, SettingsError, load_settings
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


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the service against the configured broker and database until SIGINT or SIGTERM."""
    from gridwatch.service import Service

    settings = _settings(config)
    _run_until_signal(lambda stop: Service(settings).run(stop))


@app.command()
def demo(
    config: ConfigOption = None,
    speed: Annotated[float, typer.Option(help="Simulation speed: 1, 10, 100 ...")] = 1.0,
    embedded_broker: Annotated[
        bool, typer.Option(help="Use the embedded broker even when Mosquitto is reachable.")
    ] = False,
) -> None:
    """Run broker, gateway, API and simulators together on embedded defaults (Ctrl-C stops)."""
    # Imported here so `gridwatch --help` does not load the whole service.
    from gridwatch.service.demo_runner import run_demo

    settings = _settings(config)
    _run_until_signal(
        lambda stop: run_demo(
            settings, speed=speed, stop=stop, console=console, embedded_broker=embedded_broker
        )
    )


@app.command()
def simulate(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario name or a YAML file.")],
    mqtt_url: Annotated[str, typer.Option(help="Broker URL.")] = "mqtt://127.0.0.1:1883",
    prefix: Annotated[str, typer.Option(help="MQTT topic prefix.")] = "gridwatch",
    speed: Annotated[float, typer.Option(help="1, 10, 100 ...; 0 for full speed.")] = 1.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many scenario seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for repeatable feeds.")] = 0,
) -> None:
    """Publish a scenario's simulated devices to a broker."""
    from gridwatch.simulators import RunStats, load_scenario, run_scenario

    loaded = load_scenario(scenario)
    stats = RunStats()

    async def simulate_until(stop: asyncio.Event) -> None:
        publishing = asyncio.create_task(
            run_scenario(
                loaded,
                mqtt_url=mqtt_url,
                topic_prefix=prefix,
                speed=math.inf if speed <= 0 else speed,
                duration_s=duration,
                seed=seed,
                stats=stats,
            )
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({publishing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        console.print(f"simulation finished: {stats}")

    _run_until_signal(simulate_until)


def _settings(config: Path | None) -> Settings:
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
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.log_level))
        )
    return settings


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except (SettingsError, SensorFileError, RuleFileError) as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from err


def main() -> None:
    """Console-script entry point."""
    app()
