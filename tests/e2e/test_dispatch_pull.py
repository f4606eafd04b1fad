"""End to end: `gridwatch run`, a consumer long-polling the dispatch queue, and receipts back."""

import concurrent.futures
import time

import httpx
import pytest

from tests.e2e.process import ADMIN_KEY, GridwatchProcess, service_env
from tests.e2e.publish import publish_all

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SENSORS = """
sensors:
  - {id: RG-1, kind: rain_gauge, grid: "110101001001001", interval_s: 5}
"""
RULES = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm ({severity})"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2, yellow: 3, red: 8}, clear: 0.5}
"""


@pytest.fixture
def gridwatch(tmp_path, mosquitto, database_url, webhook_receiver, webhook_secret):
    (tmp_path / "sensors.yaml").write_text(SENSORS)
    env = service_env(
        tmp_path,
        mqtt_url=mosquitto.url,
        database_url=database_url,
        rules=RULES,
        GRIDWATCH_SENSORS_FILE=str(tmp_path / "sensors.yaml"),
        GRIDWATCH_WEBHOOK_URL=webhook_receiver.url,
        GRIDWATCH_WEBHOOK_SECRET=webhook_secret,
    )
    with GridwatchProcess(["run"], env=env, log_path=tmp_path / "gridwatch.log") as process:
        yield process
        assert process.stop() == 0, process.output()


def _pull(process, *, after=None, wait=0.0):
    params = {"wait": wait} | ({"after": after} if after else {})
    response = httpx.get(
        process.api + "/api/v1/dispatch/events", params=params, headers=AUTH, timeout=wait + 10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_long_poll_gets_each_event_the_webhook_gets_and_receipts_drive_the_case(
    gridwatch, mosquitto, webhook_receiver
):
    start = _pull(gridwatch)["next_cursor"]
    topic = f"{gridwatch.env['GRIDWATCH_MQTT_TOPIC_PREFIX']}/RG-1/telemetry"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_pull, gridwatch, after=start, wait=20)
        time.sleep(0.5)
        assert not waiting.done()
        publish_all(mosquitto.host, mosquitto.port, [(topic, {"rain_mm": 4.5})])
        first = waiting.result(timeout=30)

    (opened,) = [item["event"] for item in first["events"]]
    assert opened["type"] == "gridwatch.case.opened"
    (delivered,) = webhook_receiver.wait_for(1)
    assert (delivered.event_id, delivered.json) == (opened["id"], opened)
    case_id = opened["subject"]
    dispatched = httpx.post(
        f"{gridwatch.api}/api/v1/cases/{case_id}/transitions",
        json={"action": "dispatch", "unit": "water-bureau"},
        headers=AUTH | {"If-Match": '"1"'},
    )
    assert dispatched.status_code == 200, dispatched.text
    receipt = {"receipt_id": "dsp-77", "type": "accepted", "note": "crew 3"}
    url = f"{gridwatch.api}/api/v1/cases/{case_id}/receipts"
    accepted = httpx.post(url, json=receipt, headers=AUTH)
    again = httpx.post(url, json=receipt, headers=AUTH)

    assert accepted.status_code == again.status_code == 201, accepted.text
    assert accepted.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    rest = _pull(gridwatch, after=first["next_cursor"], wait=5)["events"]
    assert [item["event"]["type"] for item in rest] == [
        "gridwatch.case.dispatched",
        "gridwatch.case.accepted",
    ]
    assert rest[-1]["event"]["id"] == accepted.json()["event_id"]


def test_a_pending_long_poll_does_not_hold_the_stop_up(gridwatch):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_pull, gridwatch, wait=30)
        time.sleep(0.5)
        started = time.monotonic()
        assert gridwatch.stop() == 0, gridwatch.output()
        stopped = time.monotonic() - started
        page = waiting.result(timeout=5)
    assert page["events"] == []
    assert stopped < 10
