"""Commands that run things: the service, the demo, the simulators."""

import asyncio
import math
from typing import Annotated

import typer

from gridwatch.cli.app import ConfigOption, app, console, load, run_until_signal


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the service against the configured broker and database until SIGINT or SIGTERM."""
    from gridwatch.service import Service

    settings = load(config)
    run_until_signal(lambda stop: Service(settings).run(stop))


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

    settings = load(config)
    run_until_signal(
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

    run_until_signal(simulate_until)
