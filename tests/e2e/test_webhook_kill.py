"""End to end: gridwatch SIGKILLed while webhooks are in flight, restarted on the same database.

The receiver answers the first process slowly, so deliveries are in flight when it is killed.
Their leases outlive the process; the restarted one sends them again once the leases run out
(`GRIDWATCH_WEBHOOK_LEASE_S`, set short here).
"""

import signal
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.process import ADMIN_KEY, GridwatchProcess, service_env, wait_until
from tests.e2e.publish import publish_all
from tests.servers.webhook_receiver import Delivery

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SENSOR_IDS = ("RG-1", "RG-2", "RG-3", "RG-4")
SENSORS = "sensors:\n" + "".join(
    f'  - {{id: {sensor_id}, kind: rain_gauge, grid: "110101001001001", interval_s: 5}}\n'
    for sensor_id in SENSOR_IDS
)
RULES = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm ({severity})"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2, yellow: 3, red: 8}, clear: 0.5}
"""
# Each reading is one event of the gauge's case: opened (blue), escalated (yellow), escalated
# (red), alarm_cleared.
READINGS = (2.5, 3.5, 9.0, 0.1)
EVENTS = len(SENSOR_IDS) * len(READINGS)
# The shortest lease the service takes: above its 10 s webhook timeout.
LEASE_S = 11.0
SLOW_S = 2.0  # how long the receiver takes to answer the first process
# The first process is killed while its latest delivery is surely unanswered.
IN_FLIGHT_S = SLOW_S / 2


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
        GRIDWATCH_WEBHOOK_LEASE_S=str(LEASE_S),
        GRIDWATCH_WEBHOOK_SECRET=webhook_secret,
    )
    with GridwatchProcess(["run"], env=env, log_path=tmp_path / "gridwatch.log") as process:
        yield process
        assert process.stop() == 0, process.output()


def _queued_events(process):
    """Every case event in the dispatch queue's order (the pull API: the outbox's own view)."""
    response = httpx.get(
        process.api + "/api/v1/dispatch/events", params={"limit": 1000}, headers=AUTH, timeout=5
    )
    response.raise_for_status()
    return [item["event"] for item in response.json()["events"]]


def _in_flight(receiver):
    """The receiver has a delivery it has not answered yet."""
    attempts = receiver.attempts
    now = datetime.now(UTC)
    return bool(attempts) and now - attempts[-1].arrived_at < timedelta(seconds=IN_FLIGHT_S)


def _first_arrivals(deliveries: list[Delivery]) -> list[Delivery]:
    """What an idempotent receiver accepts: the first delivery of each webhook-id."""
    seen: set[str | None] = set()
    accepted = []
    for delivery in deliveries:
        if delivery.event_id not in seen:
            seen.add(delivery.event_id)
            accepted.append(delivery)
    return accepted


def test_a_kill_mid_delivery_loses_nothing_and_keeps_each_case_in_order(
    gridwatch, mosquitto, webhook_receiver
):
    webhook_receiver.respond_with(*[200] * EVENTS, delay=SLOW_S)
    prefix = gridwatch.env["GRIDWATCH_MQTT_TOPIC_PREFIX"]
    publish_all(
        mosquitto.host,
        mosquitto.port,
        [
            (f"{prefix}/{sensor_id}/telemetry", {"rain_mm": rain_mm})
            for rain_mm in READINGS
            for sensor_id in SENSOR_IDS
        ],
    )

    def written():
        found = _queued_events(gridwatch)
        return found if len(found) >= EVENTS else None

    events = wait_until(written, what=f"{EVENTS} case events written")
    wait_until(lambda: _in_flight(webhook_receiver), what="a delivery in flight", interval=0.05)
    assert gridwatch.stop(signal.SIGKILL) == -signal.SIGKILL
    # Nothing more can arrive from the dead process; forget its slow answers, keep its arrivals.
    before_kill = webhook_receiver.attempts
    webhook_receiver.clear()
    gridwatch.start()

    expected = {event["id"] for event in events}

    def delivered():
        got = {d.event_id for d in before_kill + webhook_receiver.attempts if d.status == 200}
        return expected <= got

    # The deliveries in flight at the kill wait for their leases to run out.
    wait_until(delivered, what="every event delivered after the restart", timeout=LEASE_S + 30)
    after_restart = webhook_receiver.attempts

    arrivals = [d for d in before_kill + after_restart if d.status == 200]
    assert all(d.verified for d in before_kill + after_restart)
    accepted = _first_arrivals(arrivals)
    assert sorted(str(d.event_id) for d in accepted) == sorted(expected)
    sequences: dict[str, list[int]] = defaultdict(list)
    for delivery in accepted:
        sequences[delivery.json["subject"]].append(delivery.json["data"]["sequence"])
    assert sorted(sequences.values()) == [list(range(1, len(READINGS) + 1))] * len(SENSOR_IDS)
    # The kill was mid-delivery: what was in flight then was sent again after the restart.
    in_flight = {d.event_id for d in before_kill} & {d.event_id for d in after_restart}
    assert in_flight, "no delivery in flight at the kill was sent again"
    # The restarted process sends each event once: a duplicate would show within a second.
    time.sleep(1.0)
    assert len(_first_arrivals(webhook_receiver.attempts)) == len(webhook_receiver.attempts)
