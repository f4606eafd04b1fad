"""Broker URLs, replay speeds, run statistics and recording files."""

import math
from pathlib import Path

import pytest

from gridwatch.simulators import (
    BrokerAddress,
    RecordingError,
    RunStats,
    load_recording,
    parse_mqtt_url,
)
from gridwatch.simulators._mqtt import backoff_s
from gridwatch.simulators._pacing import check_speed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883)),
        ("mqtt://broker", BrokerAddress("broker", 1883)),
        ("mqtts://broker.example.com", BrokerAddress("broker.example.com", 8883, tls=True)),
        ("mqtts://u%40x:p%3Aw@h:8884/", BrokerAddress("h", 8884, True, "u@x", "p:w")),
    ],
)
def test_parse_mqtt_url(url, expected):
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://h:1", "mqtt://", "mqtt://h:99999", "mqtt://h:1/topic", "127.0.0.1:1883"]
)
def test_parse_mqtt_url_rejects(url):
    with pytest.raises(ValueError, match="MQTT URL"):
        parse_mqtt_url(url)


def test_broker_address_hides_the_password():
    address = parse_mqtt_url("mqtt://user:secret@h:1")
    assert "secret" not in str(address)
    assert "secret" not in repr(address)


@pytest.mark.parametrize(
    ("speed", "expected"), [(1, 1.0), (10, 10.0), (100.0, 100.0), (math.inf, None), (None, None)]
)
def test_check_speed(speed, expected):
    assert check_speed(speed) == expected


@pytest.mark.parametrize("speed", [0, -1, math.nan, -math.inf])
def test_check_speed_rejects(speed):
    with pytest.raises(ValueError, match="speed must be > 0"):
        check_speed(speed)


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_grows_is_capped_and_jittered(attempt):
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= backoff_s(attempt) <= ceiling


def test_run_stats_counts_per_device_and_kind():
    stats = RunStats(device_kinds={"RG-1": "rain_gauge", "RG-2": "rain_gauge", "EL-1": "elevator"})
    for sensor_id, suffix in [("RG-1", "telemetry"), ("RG-2", "telemetry"), ("EL-1", "event")]:
        stats.count(sensor_id, suffix)
    stats.count("RG-1", "status")
    assert stats.total == 4
    assert stats.by_kind() == {
        "rain_gauge": {"telemetry": 2, "status": 1},
        "elevator": {"event": 1},
    }
    assert "RG-1" in stats.summary()
    assert str(stats).endswith("total 4 messages over 0.0 s of scenario time")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"topic": "a/b", "t": 0}', "3: payload: Field required"),
        ('{"topic": "a/b", "payload": "x", "t": -1}', "3: t: Input should be greater than"),
        ("not json", "3: invalid JSON: Expecting value"),
        ("[1]", "3: line: Input should be a valid dictionary"),
    ],
)
def test_recording_errors_name_the_line(tmp_path: Path, line, problem):
    path = tmp_path / "rec.jsonl"
    path.write_text('{"topic": "a/b", "payload": "x", "t": 0}\n\n' + line + "\n")
    with pytest.raises(RecordingError, match=problem):
        load_recording(path)


def test_recording_keeps_non_utf8_bytes(tmp_path: Path):
    path = tmp_path / "rec.jsonl"
    path.write_text('{"topic": "a/b", "payload": "\\udcff\\udcfe", "t": 0.5, "retain": true}\n')
    [message] = load_recording(path)
    assert message.payload.encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert message.retain
