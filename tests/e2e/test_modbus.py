"""End to end: `gridwatch run` polls simulated Modbus devices registered through the API."""

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest

from gridwatch.simulators import ModbusDeviceServer, parse_scenario
from tests.e2e.process import ADMIN_KEY, GridwatchProcess, service_env, wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
RULES = """
rules:
  - id: gale
    title: "Gale at {sensor_id}"
    category: "component:0307"
    applies_to: {kinds: [tilt]}
    condition: {type: threshold, field: wind_ms, levels: {blue: 13.9}, clear: 10.8}
  - id: sensor_offline
    title: "Sensor {sensor_id} offline: {why}"
    category: "maintenance:offline"
    maintenance: true
    condition: {type: deadman, intervals: 3, offline_status: true, severity: yellow}
"""
SCENARIO = """
devices:
  - {id: BB-M1, kind: tilt, interval_s: 600, baseline_x_deg: 0.4, baseline_y_deg: 0.1,
     wind_ms: 15.2, turbulence: 0}
"""


class SimulatorThread:
    """The simulated devices on an event loop of their own, as a separate device would be."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server = ModbusDeviceServer(parse_scenario(SCENARIO), speed=1.0)

    def call(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=10)

    def __enter__(self) -> "SimulatorThread":
        self._thread.start()
        self.call(self.server.__aenter__)
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(lambda: self.server.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def devices() -> Iterator[SimulatorThread]:
    with SimulatorThread() as simulator:
        yield simulator


@pytest.fixture
def gridwatch(tmp_path, mosquitto, database_url):
    env = service_env(
        tmp_path,
        mqtt_url=mosquitto.url,
        database_url=database_url,
        rules=RULES,
        GRIDWATCH_MODBUS_OFFLINE_AFTER="2",
        GRIDWATCH_MODBUS_BACKOFF_MAX_S="2",
    )
    with GridwatchProcess(["run"], env=env, log_path=tmp_path / "gridwatch.log") as process:
        yield process
        assert process.stop() == 0, process.output()


def _get(process: GridwatchProcess, path: str, **params: Any) -> Any:
    response = httpx.get(process.api + path, headers=AUTH, params=params, timeout=5.0)
    response.raise_for_status()
    return response.json()


def _send(process: GridwatchProcess, method: str, path: str, body: Any) -> httpx.Response:
    return httpx.request(method, process.api + path, json=body, headers=AUTH, timeout=20.0)


def _cases(process: GridwatchProcess, queue: str) -> list[dict[str, Any]]:
    return _get(process, "/api/v1/cases", queue=queue, status="reported")["items"]  # type: ignore[no-any-return]


def test_a_modbus_sensor_is_commissioned_polled_and_watched(gridwatch, devices):
    device = devices.server.device("BB-M1")
    protocol = device.protocol() | {"interval_s": 0.5, "timeout_s": 0.5}
    sensor = {"id": "BB-M1", "kind": "tilt", "grid": "110101001001002", "protocol": protocol}
    assert _send(gridwatch, "POST", "/api/v1/sensors", sensor).status_code == 201

    # Commissioning polls the device at the call and shows its raw registers.
    report = _send(gridwatch, "POST", "/api/v1/sensors/BB-M1/commission", {"wait_s": 5}).json()
    assert report["green"] is True, report
    assert report["poll_error"] is None
    assert list(report["registers"]) == ["input:0+5"]
    assert report["registers"]["input:0+5"][4] == 152  # wind in tenths of m/s
    assert report["reading"]["values"]["wind_ms"] == pytest.approx(15.2)
    assert [r["rule_id"] for r in report["rules"] if r["fires"]] == ["gale"]

    # Live: readings reach the store and the rules, as an MQTT device's would.
    assert _send(gridwatch, "PATCH", "/api/v1/sensors/BB-M1", {"status": "active"}).is_success
    window = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    rows = wait_until(
        lambda: len(_get(gridwatch, "/api/v1/sensors/BB-M1/readings", **window)["rows"]) >= 3,
        what="polled readings stored",
    )
    assert rows
    stored = _get(gridwatch, "/api/v1/sensors/BB-M1/readings", **window)["rows"][-1]["values"]
    assert stored["tilt_x_deg"] == pytest.approx(0.4, abs=0.05)
    gale = wait_until(lambda: _cases(gridwatch, "city"), what="the gale case")
    assert [(c["sensor_id"], c["rule_id"]) for c in gale] == [("BB-M1", "gale")]

    # The device goes away: one maintenance case; it comes back: the case's alarm clears.
    devices.call(lambda: devices.server.stop("BB-M1"))
    offline = wait_until(lambda: _cases(gridwatch, "maintenance"), timeout=20.0, what="offline")
    assert [(c["sensor_id"], c["rule_id"]) for c in offline] == [("BB-M1", "sensor_offline")]
    devices.call(lambda: devices.server.start("BB-M1"))

    def cleared() -> bool:
        case = _get(gridwatch, f"/api/v1/cases/{offline[0]['id']}")
        return any(entry["action"] == "alarm_cleared" for entry in case["history"])

    wait_until(cleared, timeout=20.0, what="the offline alarm cleared")
    assert len(_get(gridwatch, "/api/v1/cases", queue="maintenance")["items"]) == 1
    metrics = httpx.get(gridwatch.api + "/metrics", headers=AUTH, timeout=5.0).text
    assert 'gridwatch_modbus_poll_failures_total{reason="connect_failed"}' in metrics
    assert "gridwatch_modbus_devices 1.0" in metrics


def test_a_retired_modbus_sensor_is_no_longer_polled(gridwatch, devices):
    device = devices.server.device("BB-M1")
    protocol = device.protocol() | {"interval_s": 0.3}
    sensor = {"id": "BB-M1", "kind": "tilt", "grid": "110101001001002", "protocol": protocol}
    assert _send(gridwatch, "POST", "/api/v1/sensors", sensor | {"status": "active"}).is_success
    wait_until(lambda: "gridwatch_modbus_devices 1.0" in _metrics(gridwatch), what="polled")
    assert _send(gridwatch, "PATCH", "/api/v1/sensors/BB-M1", {"status": "retired"}).is_success
    wait_until(lambda: "gridwatch_modbus_devices 0.0" in _metrics(gridwatch), what="stopped")
    polls = _polls(gridwatch)
    time.sleep(1.5)  # five intervals: a poller still running would have polled again
    assert _polls(gridwatch) == polls


def _metrics(process: GridwatchProcess) -> str:
    return httpx.get(process.api + "/metrics", headers=AUTH, timeout=5.0).text


def _polls(process: GridwatchProcess) -> float:
    for line in _metrics(process).splitlines():
        if line.startswith("gridwatch_modbus_polls_total "):
            return float(line.split()[1])
    return 0.0
