"""End to end: nothing acknowledged is lost or doubled, whatever fails (InfluxDB, the gateway).

`gridwatch run` as a user starts it, a real Mosquitto, a real InfluxDB 1.x that the tests stop
and start, and SIGKILL of the gateway in the middle of a QoS 1 stream.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.process import GridwatchProcess, wait_until
from tests.e2e.publish import publish_all
from tests.servers.influxdb import InfluxDBServer, unique_database_name
from tests.servers.mosquitto import MosquittoServer
from tests.servers.ports import free_port

pytestmark = pytest.mark.slow

ADMIN_KEY = "e2e-admin-key-0123456789abcdefgh"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# Readings are stamped from a few seconds before the test starts: device time close to arrival
# time, as a healthy device's (an hour off would raise clock-skew maintenance cases).
T0_MS = 0  # set per test by the `stamped` fixture
WAIT_S = 90.0


def _sensors_file(path: Path, count: int) -> list[str]:
    ids = [f"BB-{i:03d}" for i in range(count)]
    lines = ["sensors:"] + [
        f'  - {{id: {sensor_id}, kind: tilt, grid: "110101001001001", interval_s: 600}}'
        for sensor_id in ids
    ]
    path.write_text("\n".join(lines) + "\n")
    return ids


def _payload(sequence: int) -> dict[str, object]:
    # Values that identify the message, under every alarm level (tilt deviation blue is 0.1°).
    return {
        "ts": T0_MS + sequence,
        "tilt_x_deg": (sequence % 4000) / 100_000,
        "tilt_y_deg": (sequence // 4000) / 100_000,
    }


def _expected(ids: list[str], total: int) -> dict[tuple[str, int], float]:
    return {(ids[seq % len(ids)], T0_MS + seq): (seq % 4000) / 100_000 for seq in range(total)}


class Publisher:
    """A paho QoS 1 publisher for a stream: many messages in flight, each confirmed."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"e2e-stream-{uuid.uuid4().hex[:8]}",
        )
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, messages: list[tuple[str, dict[str, object]]], *, per_s: float = 0) -> None:
        """Publish in order (paced when per_s > 0) and wait until the broker has them all."""
        infos = []
        started = time.monotonic()
        for index, (topic, payload) in enumerate(messages):
            infos.append(self.client.publish(topic, json.dumps(payload), qos=1))
            if per_s > 0:
                delay = started + index / per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        for info in infos:
            info.wait_for_publish(30.0)
            assert info.is_published(), "the broker did not acknowledge a message"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(autouse=True)
def stamped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(__name__ + ".T0_MS", (int(time.time()) - 5) * 1000)


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    client = Publisher(mosquitto)
    try:
        yield client
    finally:
        client.close()


def _gateway(
    tmp_path: Path, mosquitto: MosquittoServer, sensors: int, influx: InfluxDBServer | None
) -> tuple[GridwatchProcess, list[str], str]:
    ids = _sensors_file(tmp_path / "sensors.yaml", sensors)
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "GRIDWATCH_DATA_DIR": str(tmp_path / "var"),
        "GRIDWATCH_MQTT_URL": mosquitto.url,
        "GRIDWATCH_MQTT_TOPIC_PREFIX": prefix,
        "GRIDWATCH_MQTT_CLIENT_ID": f"gateway-{prefix}",
        "GRIDWATCH_HTTP_PORT": str(free_port()),
        "GRIDWATCH_SENSORS_FILE": str(tmp_path / "sensors.yaml"),
        "GRIDWATCH_ADMIN_KEY": ADMIN_KEY,
        "GRIDWATCH_TELEMETRY_SPOOL_MAX_BYTES": str(64 << 20),
    }
    if influx is not None:
        env |= {
            "GRIDWATCH_INFLUX_URL": influx.url,
            "GRIDWATCH_INFLUX_DATABASE": unique_database_name("gw_e2e"),
        }
    return GridwatchProcess(["run"], env=env, log_path=tmp_path / "gridwatch.log"), ids, prefix


def _metric(process: GridwatchProcess, name: str) -> float:
    text = httpx.get(process.api + "/metrics", headers=AUTH, timeout=5.0).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stored(process: GridwatchProcess, ids: list[str]) -> dict[tuple[str, int], float]:
    """Every stored point of every sensor, through the API (whichever backend is behind it)."""
    stored: dict[tuple[str, int], float] = {}
    rows_seen = 0
    for sensor_id in ids:
        page = httpx.get(
            f"{process.api}/api/v1/sensors/{sensor_id}/readings",
            headers=AUTH,
            params={"from": _iso(T0_MS - 1000), "to": _iso(T0_MS + 3_600_000), "limit": 10000},
            timeout=10.0,
        )
        page.raise_for_status()
        for row in page.json()["rows"]:
            rows_seen += 1
            at_ms = _ms(row["time"])
            stored[(sensor_id, at_ms)] = row["values"]["tilt_x_deg"]
    assert rows_seen == len(stored), "a point is stored twice"
    return stored


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def _wait_for(predicate, *, what: str, timeout: float = WAIT_S):
    return wait_until(predicate, what=what, timeout=timeout, interval=0.5)


def test_influxdb_down_for_30_s_during_a_steady_stream_loses_and_doubles_nothing(
    tmp_path, mosquitto, fresh_influxdb, publisher
):
    gateway, ids, prefix = _gateway(tmp_path, mosquitto, 20, fresh_influxdb)
    total = 2_400  # 45 s at about 53 messages a second
    messages = [(f"{prefix}/{ids[seq % 20]}/telemetry", _payload(seq)) for seq in range(total)]
    with gateway:
        streaming = threading.Thread(
            target=publisher.publish, args=(messages,), kwargs={"per_s": total / 45}
        )
        streaming.start()
        try:
            time.sleep(5)
            fresh_influxdb.stop()
            time.sleep(30)
            assert _metric(gateway, "gridwatch_telemetry_points_spooled_total") > 0
            fresh_influxdb.start()
        finally:
            streaming.join(timeout=120)
        assert not streaming.is_alive()
        expected = _expected(ids, total)
        _wait_for(
            lambda: (
                _metric(gateway, "gridwatch_telemetry_spool_batches") == 0
                and len(_stored(gateway, ids)) >= total
            ),
            what="the spool replayed and every point stored",
        )
        assert _stored(gateway, ids) == expected
        assert _metric(gateway, "gridwatch_telemetry_points_dropped_total") == 0
        assert gateway.stop() == 0, gateway.output()


@pytest.mark.parametrize("store", ["influxdb", "embedded"])
def test_sigkill_mid_stream_loses_and_doubles_nothing_acknowledged(
    tmp_path, mosquitto, fresh_influxdb, publisher, store
):
    influx = fresh_influxdb if store == "influxdb" else None
    gateway, ids, prefix = _gateway(tmp_path, mosquitto, 100, influx)
    total = 20_000
    messages = [(f"{prefix}/{ids[seq % 100]}/telemetry", _payload(seq)) for seq in range(total)]
    with gateway:
        streaming = threading.Thread(target=publisher.publish, args=(messages,))
        streaming.start()
        try:
            _wait_for(
                lambda: _metric(gateway, "gridwatch_readings_total") >= total // 4,
                what="a quarter of the stream ingested",
            )
            if influx is not None:
                # With batches in the spool when the gateway dies.
                influx.stop()
                _wait_for(
                    lambda: _metric(gateway, "gridwatch_telemetry_spool_batches") > 0,
                    what="batches in the spool",
                )
            assert gateway.process is not None
            gateway.process.kill()
            gateway.process.wait(10)
        finally:
            streaming.join(timeout=120)
        assert not streaming.is_alive()
        if influx is not None:
            influx.start()
        gateway.start(ready_path="/healthz")
        expected = _expected(ids, total)
        _wait_for(
            lambda: len(_stored(gateway, ids)) >= total, what="every acknowledged reading stored"
        )
        time.sleep(1.0)  # anything stored twice or late would show now
        assert _stored(gateway, ids) == expected
        assert gateway.stop() == 0, gateway.output()


BAD_PAYLOADS: list[object] = [
    b"{this is not json",
    b"[1, 2, 3]",
    {"tilt_x_deg": "three", "tilt_y_deg": 0.1},
    {"tilt_x_deg": 1e9, "tilt_y_deg": 0.1},
    {"tilt_y_deg": 0.1},
    {"tilt_x_deg": 0.1, "tilt_y_deg": 0.1, "ts": "yesterday"},
    {"tilt_x_deg": 0.1, "tilt_y_deg": 0.1, "ts": "2999-01-01T00:00:00Z"},
    b'{"tilt_x_deg": NaN, "tilt_y_deg": 0.1}',
]


def test_eight_bad_payloads_in_a_row_then_a_good_one_only_the_good_one_is_stored(
    tmp_path, mosquitto, influxdb
):
    gateway, ids, prefix = _gateway(tmp_path, mosquitto, 1, influxdb)
    topic = f"{prefix}/{ids[0]}/telemetry"
    with gateway:
        publish_all(
            mosquitto.host,
            mosquitto.port,
            [(topic, payload) for payload in [*BAD_PAYLOADS, _payload(7)]],
        )
        stored = _wait_for(lambda: _stored(gateway, ids), what="the good reading")
        time.sleep(1.0)
        assert _stored(gateway, ids) == stored == {(ids[0], T0_MS + 7): 0.00007}
        assert _metric(gateway, "gridwatch_messages_rejected_total") == len(BAD_PAYLOADS)
        assert gateway.stop() == 0, gateway.output()
