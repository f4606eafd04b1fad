"""`gridwatch demo`: broker, service and simulators in one process tree, on embedded defaults."""

import asyncio
import contextlib
import math
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

import httpx
import yaml
from pydantic import SecretStr
from rich.console import Console

from gridwatch.broker import EmbeddedBroker
from gridwatch.cases.routing import DEMO_ROUTING_PATH
from gridwatch.gateway.settings import Settings
from gridwatch.registry.grid import DEMO_GRID_PATH
from gridwatch.rules import DEFAULT_PACK_DIR
from gridwatch.service.runtime import Service
from gridwatch.simulators import (
    ModbusDevice,
    ModbusDeviceServer,
    load_scenario,
    parse_scenario,
    run_scenario,
)

DEMO_DATA = Path(__file__).parent / "demo"
MOSQUITTO_HOST, MOSQUITTO_PORT = "127.0.0.1", 1883
CASE_POLL_S = 1.0
# Two devices the gateway polls over Modbus TCP, served by the simulators on free ports.
MODBUS_SCENARIO = """
devices:
  - {id: BB-M01, kind: tilt, interval_s: 2, baseline_x_deg: 0.31, baseline_y_deg: 0.08,
     wind_ms: 4.0}
  - {id: LIFT-M01, kind: elevator, interval_s: 2, lowest_floor: -1, highest_floor: 18}
"""
MODBUS_SENSORS = {
    "BB-M01": {
        "kind": "tilt", "model": "inclinometer-2axis", "grid": "110101001001002",
        "location": {"lat": 39.9318, "lon": 116.4183, "address": "Dongsi North St. 12, signboard"},
        "calibration": {"baseline_x_deg": 0.31, "baseline_y_deg": 0.08},
    },
    "LIFT-M01": {
        "kind": "elevator", "model": "elevator-board", "grid": "110101001002001",
        "location": {"lat": 39.9277, "lon": 116.4153, "address": "Chaoyangmen block 5, unit 1"},
    },
}  # fmt: skip
MODBUS_POLL_S = 2.0


async def run_demo(
    settings: Settings,
    *,
    speed: float,
    stop: asyncio.Event,
    console: Console,
    embedded_broker: bool = False,
) -> None:
    """Run the demo until `stop` is set."""
    data_dir = settings.data_dir / "demo"
    # The demo starts fresh each time, so its first case is always a new one.
    shutil.rmtree(data_dir, ignore_errors=True)
    admin_key = (
        settings.admin_key.get_secret_value() if settings.admin_key else secrets.token_urlsafe(24)
    )
    async with contextlib.AsyncExitStack() as stack:
        mqtt_url, broker_name = await _choose_broker(settings, stack, embedded=embedded_broker)
        modbus = await stack.enter_async_context(
            ModbusDeviceServer(
                parse_scenario(MODBUS_SCENARIO), speed=speed if math.isfinite(speed) else 1.0
            )
        )
        demo_settings = settings.model_copy(
            update={
                "data_dir": data_dir,
                "database_url": None,
                "mqtt_url": mqtt_url,
                "mqtt_client_id": "gridwatch-demo",
                "sensors_file": _demo_sensors(data_dir, modbus.devices),
                "grid_file": DEMO_GRID_PATH,
                # Cases of the demo's grid are dispatched to their units as they open.
                "routing_file": settings.routing_file or DEMO_ROUTING_PATH,
                "rules_dir": _demo_rules(data_dir),
                "admin_key": SecretStr(admin_key),
            }
        )
        service = Service(demo_settings)
        api = f"http://{demo_settings.http_host}:{demo_settings.http_port}"
        async with asyncio.TaskGroup() as group:
            running = group.create_task(service.run(stop), name="service")
            started = group.create_task(service.started.wait())
            await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                started.cancel()
                return
            _banner(console, api=api, admin_key=admin_key, broker=broker_name, speed=speed)
            helpers = [
                group.create_task(
                    run_scenario(
                        load_scenario("demo"),
                        mqtt_url=mqtt_url,
                        topic_prefix=demo_settings.mqtt_topic_prefix,
                        speed=speed,
                    ),
                    name="simulators",
                ),
                group.create_task(_watch_cases(console, api, admin_key), name="case-watcher"),
            ]
            await stop.wait()
            for helper in helpers:
                helper.cancel()
        console.print("[bold]gridwatch demo stopped.[/]")


def _demo_sensors(data_dir: Path, modbus: Sequence[ModbusDevice]) -> Path:
    # The MQTT devices of the sensors file, plus the Modbus ones at the ports they got.
    document = yaml.safe_load((DEMO_DATA / "sensors.yaml").read_text(encoding="utf-8"))
    for device in modbus:
        protocol = device.protocol() | {"interval_s": MODBUS_POLL_S}
        sensor = {"id": device.device_id, **MODBUS_SENSORS[device.device_id]}
        document["sensors"].append(sensor | {"interval_s": MODBUS_POLL_S, "protocol": protocol})
    path = data_dir / "sensors.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _demo_rules(data_dir: Path) -> Path:
    # The whole default pack, plus a rule that reacts within seconds so a case shows quickly.
    rules = data_dir / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for source in [*sorted(DEFAULT_PACK_DIR.glob("*.yaml")), DEMO_DATA / "rain_burst.yaml"]:
        shutil.copyfile(source, rules / source.name)
    return rules


async def _choose_broker(
    settings: Settings, stack: contextlib.AsyncExitStack, *, embedded: bool
) -> tuple[str, str]:
    """A configured broker, else a reachable local Mosquitto, else the embedded broker."""
    if settings.mqtt_url and not embedded:
        return settings.mqtt_url, f"configured broker {settings.mqtt_url}"
    if not embedded and await _accepts(MOSQUITTO_HOST, MOSQUITTO_PORT):
        return f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}", "Mosquitto on 127.0.0.1:1883"
    broker = await stack.enter_async_context(EmbeddedBroker(host=MOSQUITTO_HOST, port=0))
    return broker.url, f"embedded broker on {broker.url}"


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _banner(console: Console, *, api: str, admin_key: str, broker: str, speed: float) -> None:
    console.rule("[bold green]gridwatch demo")
    console.print(f"MQTT      {broker}")
    console.print(f"API       {api}/api/v1/cases   (OpenAPI: {api}/docs)")
    console.print(f"Admin key {admin_key}")
    console.print(f"Try       curl -H 'Authorization: Bearer {admin_key}' {api}/api/v1/cases")
    console.print(
        f"Simulating RG-001 (rain), BB-001 (billboard tilt), EL-001 (elevator), CAM-001 (camera) "
        f"at {speed:g}x over MQTT, and polls BB-M01 (inclinometer) and LIFT-M01 (elevator "
        f"board) over Modbus TCP every {MODBUS_POLL_S:g} s; heavy rain on RG-001 opens a case "
        f"within a minute. Ctrl-C stops."
    )
    console.rule()


async def _watch_cases(console: Console, api: str, admin_key: str) -> None:
    seen: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=5.0) as client:
        while True:
            await asyncio.sleep(CASE_POLL_S)
            try:
                response = await client.get("/api/v1/cases", params={"limit": 50})
                response.raise_for_status()
            except httpx.HTTPError as err:
                console.print(f"[dim]case watcher: {err}[/]")
                continue
            for case in response.json()["items"]:
                previous = seen.get(case["id"])
                if previous == case["version"]:
                    continue
                seen[case["id"]] = case["version"]
                label = "NEW CASE" if previous is None else "case update"
                console.print(
                    f"[bold {_COLOURS.get(case['severity'], 'white')}]{label}[/] {case['id']} "
                    f"[{case['severity']}] {case['title']} (x{case['occurrences']}) "
                    f"-> {api}/api/v1/cases/{case['id']}"
                )


_COLOURS = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}
