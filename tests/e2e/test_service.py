"""End to end: `gridwatch run` against a real Mosquitto, database and webhook receiver."""

import asyncio
import concurrent.futures
import math
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gridwatch.simulators import parse_scenario, run_scenario
from tests.e2e.process import ADMIN_KEY, GRIDWATCH, GridwatchProcess, service_env, wait_until
from tests.e2e.publish import publish_all

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SENSORS = """
sensors:
  - {id: RG-1, kind: rain_gauge, grid: "110101001001001", interval_s: 5}
  - {id: CAM-1, kind: camera, grid: "110101001001002", interval_s: 60}
"""
RULES = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm ({severity})"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2, yellow: 3, red: 8}, clear: 0.5}
"""
GALE = """
rules:
  - id: gale
    title: "Gale at {sensor_id}"
    category: "component:0307"
    applies_to: {kinds: [tilt]}
    condition: {type: threshold, field: wind_ms, levels: {blue: 13.9}, clear: 10.8}
"""
# Heavy rain for a minute of scenario time: 4.5 mm per 5 s report, a yellow alarm.
SCENARIO = """
devices:
  - {id: RG-1, kind: rain_gauge, interval_s: 5, tip_mm: 0.1, rate_mm_h: 2, jitter: 0.0}
timeline:
  - {at_s: 10, device: RG-1, action: set, params: {mm_per_report: 4.5}}
duration_s: 60
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


def _prefix(process):
    return process.env["GRIDWATCH_MQTT_TOPIC_PREFIX"]


def _get(process, path, **params):
    response = httpx.get(process.api + path, headers=AUTH, params=params, timeout=5.0)
    response.raise_for_status()
    return response.json()


def _rows(process, sensor_id, **params):
    # Simulated and stamped readings may lie far from now; look at all of time.
    window = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    page = _get(process, f"/api/v1/sensors/{sensor_id}/readings", **(window | params))
    return page["rows"]


def test_simulated_rain_opens_exactly_one_case_and_one_webhook_per_event(
    gridwatch, mosquitto, webhook_receiver
):
    stats = asyncio.run(
        run_scenario(
            parse_scenario(SCENARIO),
            mqtt_url=mosquitto.url,
            topic_prefix=_prefix(gridwatch),
            speed=math.inf,
        )
    )
    published = stats.published["RG-1"]["telemetry"]
    assert published >= 12

    def telemetry():
        return _rows(gridwatch, "RG-1", limit=1000)

    wait_until(lambda: len(telemetry()) >= published, what="all simulated readings stored")
    assert len(telemetry()) == published
    cases = _get(gridwatch, "/api/v1/cases")
    assert cases["total"] == 1, cases
    (case,) = cases["items"]
    assert (case["sensor_id"], case["rule_id"], case["severity"]) == ("RG-1", "burst", "yellow")
    assert case["occurrences"] >= 9
    webhook_receiver.wait_for(1)
    time.sleep(2.0)  # anything delivered twice would arrive within this settle time
    deliveries = webhook_receiver.received
    assert [d.json["type"] for d in deliveries] == ["gridwatch.case.opened"]
    assert Counter(d.event_id for d in deliveries).most_common(1)[0][1] == 1
    assert len(webhook_receiver.attempts) == len(deliveries)
    assert webhook_receiver.rejected == []
    opened = deliveries[0].json
    assert opened["subject"] == case["id"]
    assert opened["data"]["sequence"] == 1


def test_malformed_messages_are_counted_and_the_stream_goes_on(gridwatch, mosquitto):
    topic = f"{_prefix(gridwatch)}/RG-1/telemetry"
    publish_all(
        mosquitto.host,
        mosquitto.port,
        [
            (topic, b"{this is not json"),
            (topic, {"rain_mm": "three"}),
            (topic, {"rain_mm": 1e9}),
            (f"{_prefix(gridwatch)}/GHOST-9/telemetry", {"rain_mm": 1.0}),
            (f"{_prefix(gridwatch)}/CAM-1/event", {"event": "smoke_fire", "confidence": 7}),
            (topic, {"rain_mm": 0.3, "ts": "2026-11-21T10:00:00Z"}),
        ],
    )
    readings = wait_until(lambda: _rows(gridwatch, "RG-1"), what="the good reading")
    assert [r["values"] for r in readings] == [{"rain_mm": 0.3}]
    metrics = httpx.get(gridwatch.api + "/metrics", headers=AUTH, timeout=5.0).text
    rejected = dict(
        re.findall(r'gridwatch_messages_rejected_total\{reason="(\w+)"\} (\d+)', metrics)
    )
    assert rejected == {"bad_payload": "4", "unknown_sensor": "1"}
    set_aside = (gridwatch.log_path.parent / "var" / "rejected.jsonl").read_text().splitlines()
    assert len(set_aside) == 5
    assert "confidence: 7.0 is above the maximum 1" in gridwatch.output()


def test_readings_published_while_the_gateway_is_down_are_not_lost(gridwatch, mosquitto):
    topic = f"{_prefix(gridwatch)}/RG-1/telemetry"
    publish_all(mosquitto.host, mosquitto.port, [(topic, {"rain_mm": 0.1})])
    wait_until(lambda: _rows(gridwatch, "RG-1"), what="first reading")
    assert gridwatch.stop(signal.SIGTERM) == 0
    # The broker keeps QoS 1 messages for the gateway's persistent session while it is down.
    publish_all(mosquitto.host, mosquitto.port, [(topic, {"rain_mm": 0.2})] * 50)
    gridwatch.start()

    # The store kept the first reading; the 50 queued ones arrive, each once.
    def readings():
        return _rows(gridwatch, "RG-1", limit=500)

    wait_until(lambda: len(readings()) >= 51, what="50 queued readings")
    time.sleep(1.0)
    assert [r["values"] for r in readings()] == [{"rain_mm": 0.1}] + [{"rain_mm": 0.2}] * 50


def test_registry_changes_reach_the_running_gateway(gridwatch, mosquitto):
    prefix = _prefix(gridwatch)
    new = {"id": "RG-NEW", "kind": "rain_gauge", "grid": "110101001001003", "status": "active"}
    created = httpx.post(gridwatch.api + "/api/v1/sensors", json=new, headers=AUTH, timeout=5.0)
    assert created.status_code == 201, created.text
    publish_all(mosquitto.host, mosquitto.port, [(f"{prefix}/RG-NEW/telemetry", {"rain_mm": 0.4})])
    readings = wait_until(lambda: _rows(gridwatch, "RG-NEW"), what="the new sensor's reading")
    assert readings[0]["values"] == {"rain_mm": 0.4}
    # Retired from another process (the CLI), picked up by the gateway's registry sync.
    retire = subprocess.run(
        [str(GRIDWATCH), "sensors", "retire", "RG-1"], env=gridwatch.env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert retire.returncode == 0, retire.stderr
    wait_until(
        lambda: _get(gridwatch, "/api/v1/sensors/RG-1")["status"] == "retired", what="retired"
    )

    def refused() -> bool:
        publish_all(mosquitto.host, mosquitto.port, [(f"{prefix}/RG-1/telemetry", {"rain_mm": 1})])
        time.sleep(0.3)
        return (
            'reason="sensor_retired"'
            in httpx.get(gridwatch.api + "/metrics", headers=AUTH, timeout=5.0).text
        )

    wait_until(refused, timeout=10.0, what="readings of the retired sensor refused")


def test_commissioning_proves_a_new_device_end_to_end(gridwatch, mosquitto):
    prefix = _prefix(gridwatch)
    draft = {"id": "RG-COM", "kind": "rain_gauge", "grid": "110101001001004"}
    assert (
        httpx.post(gridwatch.api + "/api/v1/sensors", json=draft, headers=AUTH).status_code == 201
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report = pool.submit(
            httpx.post,
            gridwatch.api + "/api/v1/sensors/RG-COM/commission",
            json={"wait_s": 10},
            headers=AUTH,
            timeout=20.0,
        )
        time.sleep(1.0)  # the installer presses "send now" on the device
        publish_all(
            mosquitto.host, mosquitto.port, [(f"{prefix}/RG-COM/telemetry", {"rain_mm": 9.0})]
        )
        result = report.result().json()
    assert result["status"] == "commissioning"
    assert result["green"] is True
    assert result["reading"]["values"] == {"rain_mm": 9.0}
    assert result["rules"] == [
        {
            "rule_id": "burst",
            "fires": True,
            "severity": "red",
            "title": "Rain at RG-COM: 9 mm (red)",
        }
    ]
    # The alarm opened a test case: hidden from the duty officers' list, shown to installers.
    assert _get(gridwatch, "/api/v1/cases")["total"] == 0
    test_cases = wait_until(
        lambda: _get(gridwatch, "/api/v1/cases", include_test="true")["items"], what="test case"
    )
    assert [(c["sensor_id"], c["drill"]) for c in test_cases] == [("RG-COM", True)]


def test_rules_reload_through_the_api_refuses_a_broken_file_whole(gridwatch):
    rules_dir = Path(gridwatch.env["GRIDWATCH_RULES_DIR"])
    assert [r["id"] for r in _get(gridwatch, "/api/v1/rules")["items"]] == ["burst"]
    (rules_dir / "gale.yaml").write_text(GALE.replace("clear: 10.8", "clear: 99"))
    refused = httpx.post(gridwatch.api + "/api/v1/rules/reload", headers=AUTH, timeout=10.0)
    assert refused.status_code == 422
    assert "gale.yaml" in refused.json()["detail"]
    assert [r["id"] for r in _get(gridwatch, "/api/v1/rules")["items"]] == ["burst"]
    (rules_dir / "gale.yaml").write_text(GALE)
    loaded = httpx.post(gridwatch.api + "/api/v1/rules/reload", headers=AUTH, timeout=10.0)
    assert loaded.json() == {"rules": 2}


def test_a_restart_keeps_the_alarm_state(gridwatch, mosquitto):
    topic = f"{_prefix(gridwatch)}/RG-1/telemetry"
    publish_all(mosquitto.host, mosquitto.port, [(topic, {"rain_mm": 3.5})])
    wait_until(lambda: _get(gridwatch, "/api/v1/cases")["total"] == 1, what="the case")
    assert gridwatch.stop(signal.SIGTERM) == 0
    gridwatch.start()
    publish_all(mosquitto.host, mosquitto.port, [(topic, {"rain_mm": 3.6})])
    wait_until(
        lambda: _get(gridwatch, "/api/v1/cases")["items"][0]["occurrences"] == 2,
        what="the repeat counted on the same case",
    )
    log = gridwatch.output(tail=None)
    assert log.count("alarm raised sensor=RG-1") == 1, log
    assert "alarm repeated sensor=RG-1" in log
