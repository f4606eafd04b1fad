"""Commands that run things: the service, the demo, the simulators."""

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from gridwatch.cli.app import ConfigOption, app, console, errors, load, run_until_signal

if TYPE_CHECKING:
    from gridwatch.simulators import ModbusDeviceServer


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
    modbus: Annotated[
        Literal["tcp", "rtu"] | None,
        typer.Option(
            help="Also serve the tilt, rain_gauge and elevator devices as Modbus servers: "
            "tcp (Modbus TCP) or rtu (RTU over TCP)."
        ),
    ] = None,
    modbus_host: Annotated[str, typer.Option(help="Loopback address to serve Modbus on.")] = (
        "127.0.0.1"
    ),
    modbus_base_port: Annotated[
        int, typer.Option(help="Device i listens on this port + i.", min=1, max=65535)
    ] = 1502,
    mqtt: Annotated[
        bool, typer.Option(help="Publish to the broker (--no-mqtt with --modbus: Modbus only).")
    ] = True,
) -> None:
    """Publish a scenario's simulated devices to a broker, or serve them over Modbus."""
    from gridwatch.simulators import (
        ModbusDeviceServer,
        ModbusServeError,
        RunStats,
        load_scenario,
        run_scenario,
    )

    if modbus is None and not mqtt:
        raise typer.BadParameter("--no-mqtt needs --modbus tcp|rtu", param_hint="--mqtt")
    loaded = load_scenario(scenario)
    stats = RunStats()
    full_speed = speed <= 0
    devices: ModbusDeviceServer | None = None
    if modbus is not None:
        try:
            devices = ModbusDeviceServer(
                loaded,
                framing=modbus,
                host=modbus_host,
                port=modbus_base_port,
                speed=math.inf if full_speed else speed,
                duration_s=duration,
                seed=seed,
            )
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--modbus") from err

    async def simulate_until(stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if devices is not None:
                await stack.enter_async_context(devices)
                console.print(_modbus_table(devices))
            # A broker run decides when a combined run is over; Modbus alone ends with the
            # scenario's duration (or never).
            running = asyncio.create_task(
                devices.wait_finished()
                if devices is not None and not mqtt
                else run_scenario(
                    loaded,
                    mqtt_url=mqtt_url,
                    topic_prefix=prefix,
                    speed=math.inf if full_speed else speed,
                    duration_s=duration,
                    seed=seed,
                    stats=stats,
                )
            )
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        if mqtt:
            console.print(f"simulation finished: {stats}")

    try:
        run_until_signal(simulate_until)
    except ModbusServeError as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(1) from err


def _modbus_table(devices: "ModbusDeviceServer") -> Table:
    table = Table("device id", "kind", "profile", "host", "port", "unit", title="Modbus devices")
    for device in devices.devices:
        table.add_row(
            device.device_id,
            device.kind,
            device.profile,
            device.host,
            str(device.port),
            str(device.unit),
        )
    return table
