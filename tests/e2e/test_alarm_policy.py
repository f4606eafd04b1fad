"""End to end: which sensors raise what. Maintenance and retired sensors go silent in peace."""

import time
from typing import Any

import httpx
import pytest

from tests.e2e.process import ADMIN_KEY, GridwatchProcess, service_env, wait_until
from tests.e2e.publish import publish_all

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
RULES = """
rules:
  - id: sensor_offline
    title: "Sensor {sensor_id} offline: {why}"
    category: "maintenance:offline"
    maintenance: true
    condition: {type: deadman, intervals: 3, offline_status: true, severity: yellow}
"""
# Three gauges reporting every 2 s: silent for 6 s, an active one is offline.
GAUGES = ("RG-LIVE", "RG-SERVICE", "RG-GONE")
INTERVAL_S = 2


@pytest.fixture
def gridwatch(tmp_path, mosquitto, database_url):
    env = service_env(tmp_path, mqtt_url=mosquitto.url, database_url=database_url, rules=RULES)
    with GridwatchProcess(["run"], env=env, log_path=tmp_path / "gridwatch.log") as process:
        yield process
        assert process.stop() == 0, process.output()


def _send(process: GridwatchProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, process.api + path, json=body, headers=AUTH, timeout=10.0)


def _offline_cases(process: GridwatchProcess) -> set[str]:
    page = _send(process, "GET", "/api/v1/cases?queue=maintenance&limit=50").json()
    return {case["sensor_id"] for case in page["items"]}


def test_only_the_active_sensor_that_falls_silent_gets_an_offline_case(gridwatch, mosquitto):
    prefix = gridwatch.env["GRIDWATCH_MQTT_TOPIC_PREFIX"]
    for sensor_id in GAUGES:
        sensor = {"id": sensor_id, "kind": "rain_gauge", "grid": "110101001001001",
                  "interval_s": INTERVAL_S, "status": "active"}  # fmt: skip
        assert _send(gridwatch, "POST", "/api/v1/sensors", sensor).status_code == 201
    readings: list[tuple[str, object]] = [
        (f"{prefix}/{sensor_id}/telemetry", {"rain_mm": 0.1}) for sensor_id in GAUGES
    ]
    publish_all(mosquitto.host, mosquitto.port, readings)
    # Each gauge's silence is being timed from its reading on...
    for sensor_id in GAUGES:
        wait_until(lambda s=sensor_id: _rows(gridwatch, s), what=f"{sensor_id}'s reading")
    # ...when one goes into maintenance and one is retired, before the silence is long enough.
    for sensor_id, status in (("RG-SERVICE", "maintenance"), ("RG-GONE", "retired")):
        changed = _send(gridwatch, "PATCH", f"/api/v1/sensors/{sensor_id}", {"status": status})
        assert changed.is_success, changed.text
    wait_until(lambda: "RG-LIVE" in _offline_cases(gridwatch), what="the live gauge's case")
    time.sleep(2.0)  # two more ticks: the others would have fired with it, or just after
    assert _offline_cases(gridwatch) == {"RG-LIVE"}


def _rows(process: GridwatchProcess, sensor_id: str) -> list[Any]:
    window = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    response = httpx.get(
        f"{process.api}/api/v1/sensors/{sensor_id}/readings", params=window, headers=AUTH
    )
    return response.json()["rows"]  # type: ignore[no-any-return]
