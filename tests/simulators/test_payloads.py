"""Pure tests of the feed engine: canonical payloads, time stamps, determinism, steps."""

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from gridwatch.simulators import (
    Scenario,
    SimMessage,
    StatusChange,
    format_ts,
    iter_feed,
    iter_messages,
    parse_scenario,
)
from gridwatch.simulators._names import CAMERA_EVENTS, ELEVATOR_FAULTS, ELEVATOR_MODES

START = datetime(2025, 6, 1, 8, tzinfo=UTC)
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Canonical telemetry fields per device of all_kinds.yaml: name -> allowed JSON types.
TELEMETRY = {
    "RG-1": {"ts": str, "rain_mm": float, "precip": str},
    "RG-2": {"ts": str, "total_mm": float, "precip": str},
    "BB-1": {
        "ts": str,
        "tilt_x_deg": float,
        "tilt_y_deg": float,
        "wind_ms": float,
        "battery_v": float,
    },
    "EL-1": {
        "ts": str,
        "floor": int,
        "direction": str,
        "door": str,
        "moving": bool,
        "in_door_zone": bool,
        "mode": str,
        "occupied": bool,
        "speed_ms": float,
    },
}
EVENTS = {
    "EL-1": {"ts": str, "fault": str, "code": str},
    "CAM-1": {
        "ts": str,
        "event": str,
        "confidence": float,
        "snapshot_url": str,
        "object_count": int,
    },
}
ENUMS = {
    "direction": {"up", "down", "none"},
    "door": {"open", "closed"},
    "mode": set(ELEVATOR_MODES),
    "fault": set(ELEVATOR_FAULTS),
    "event": set(CAMERA_EVENTS),
    "precip": {"rain", "snow"},
}


def _feed(scenario: Scenario, seed: int = 0) -> list[SimMessage]:
    return list(iter_messages(scenario, seed=seed, start=START))


def _of(messages: list[SimMessage], sensor_id: str, suffix: str) -> list[SimMessage]:
    return [m for m in messages if m.sensor_id == sensor_id and m.suffix == suffix]


@pytest.mark.parametrize(
    ("sensor_id", "suffix", "fields"),
    [
        *((sensor_id, "telemetry", fields) for sensor_id, fields in TELEMETRY.items()),
        *((sensor_id, "event", fields) for sensor_id, fields in EVENTS.items()),
    ],
)
def test_payloads_carry_exactly_the_canonical_fields(all_kinds, sensor_id, suffix, fields):
    messages = _of(_feed(all_kinds), sensor_id, suffix)
    assert messages
    for message in messages:
        assert set(message.payload) == set(fields)
        for name, value in message.payload.items():
            # bool is an int in Python; the wire types must not be confused either way.
            assert type(value) is fields[name], (name, value)
            assert value in ENUMS.get(name, {value})


def test_payloads_are_json_objects_that_round_trip(all_kinds):
    for message in _feed(all_kinds):
        assert json.loads(message.encode()) == message.payload
        assert message.topic() == f"gridwatch/{message.sensor_id}/{message.suffix}"
        assert message.topic("city/a") == f"city/a/{message.sensor_id}/{message.suffix}"


def test_ts_is_rfc3339_utc_milliseconds_in_scenario_time(all_kinds):
    for message in _feed(all_kinds):
        assert RFC3339_MS.match(message.payload["ts"])
        stamped = datetime.fromisoformat(message.payload["ts"].replace("Z", "+00:00"))
        assert stamped == START + timedelta(seconds=message.t_s)


@pytest.mark.parametrize(
    ("t_s", "expected"),
    [
        (0, "2025-06-01T08:00:00.000Z"),
        (0.0015, "2025-06-01T08:00:00.002Z"),
        (3600 * 25 + 0.25, "2025-06-02T09:00:00.250Z"),
    ],
)
def test_format_ts(t_s, expected):
    assert format_ts(START, t_s) == expected


def test_start_defaults_to_the_scenario_start(all_kinds):
    first = next(iter_messages(all_kinds))
    assert first.payload["ts"] == "2025-06-01T08:00:00.000Z"


def test_feed_is_in_time_order_and_bounded(all_kinds):
    times = [item.t_s for item in iter_feed(all_kinds, until_s=60)]
    assert times == sorted(times)
    assert times[-1] == 60


def test_same_seed_same_feed_other_seed_other_noise(all_kinds):
    assert _feed(all_kinds, seed=7) == _feed(all_kinds, seed=7)
    assert _feed(all_kinds, seed=7) != _feed(all_kinds, seed=8)


def test_a_device_stream_does_not_depend_on_the_others(all_kinds):
    alone = all_kinds.model_copy(update={"devices": (all_kinds.device("BB-1"),), "timeline": ()})
    with_others = _of(list(iter_messages(all_kinds, until_s=40)), "BB-1", "telemetry")
    assert _of(list(iter_messages(alone, until_s=40)), "BB-1", "telemetry") == with_others


def test_offline_device_is_silent_and_its_changes_are_in_the_feed(all_kinds):
    feed = list(iter_feed(all_kinds, start=START))
    changes = [item for item in feed if isinstance(item, StatusChange)]
    assert changes == [StatusChange("BB-1", False, 50.0), StatusChange("BB-1", True, 80.0)]
    times = [m.t_s for m in _of(_feed(all_kinds), "BB-1", "telemetry")]
    assert times == [0, 10, 20, 30, 40, 80, 90, 100, 110, 120]


def test_rain_step_shapes_reports_after_it(all_kinds):
    rain = {m.t_s: m.payload["rain_mm"] for m in _of(_feed(all_kinds), "RG-1", "telemetry")}
    # 60 mm/h is 0.083 mm per 5 s; 4 mm per report from 20 s on, in whole 0.2 mm tips.
    assert all(rain[t] <= 0.4 for t in (0, 5, 10, 15, 20))
    assert all(rain[t] >= 2.0 for t in range(25, 121, 5))
    assert all(round(v / 0.2, 6).is_integer() for v in rain.values())


def test_counter_grows_then_resets_on_power_loss(all_kinds):
    totals = [(m.t_s, m.payload["total_mm"]) for m in _of(_feed(all_kinds), "RG-2", "telemetry")]
    before = [v for t, v in totals if t < 70]
    after = [v for t, v in totals if t >= 70]
    assert before == sorted(before)
    assert before[0] == 50.0
    assert before[-1] > 50.0
    assert after[0] < 1.0
    assert after == sorted(after)


def test_elevator_fault_events_use_vendor_codes(all_kinds):
    events = [m.payload for m in _of(_feed(all_kinds), "EL-1", "event")]
    assert [(e["fault"], e["code"]) for e in events] == [
        ("stopped_outside_door_zone", "E04"),
        ("entrapment", "0x2A"),
    ]


def test_elevator_stalls_outside_the_door_zone_until_released(all_kinds):
    telemetry = _of(_feed(all_kinds), "EL-1", "telemetry")
    stalled = [m.payload for m in telemetry if 40 < m.t_s < 90]
    assert stalled
    assert {(p["moving"], p["in_door_zone"], p["door"], p["direction"]) for p in stalled} == {
        (False, False, "closed", "none")
    }
    assert all(p["occupied"] for p in stalled if p["ts"] > "2025-06-01T08:01:00")
    released = [m.payload for m in telemetry if m.t_s > 100]
    assert any(p["door"] == "open" and p["in_door_zone"] for p in released)


def test_elevator_trip_cycle_is_physically_consistent():
    scenario = parse_scenario(
        "devices: [{id: EL-9, kind: elevator, interval_s: 1, lowest_floor: -2, highest_floor: 30}]"
    )
    telemetry = [m.payload for m in iter_messages(scenario, until_s=3600)]
    assert all(-2 <= p["floor"] <= 30 for p in telemetry)
    assert all((p["direction"] != "none") == p["moving"] for p in telemetry)
    assert all(p["door"] == "closed" for p in telemetry if p["moving"])
    assert all(p["in_door_zone"] for p in telemetry if p["door"] == "open")
    assert all((p["speed_ms"] > 0) == p["moving"] for p in telemetry)
    assert len({p["floor"] for p in telemetry}) > 10
    moves = sum(1 for a, b in itertools.pairwise(telemetry) if a["floor"] != b["floor"])
    assert moves > 100


def test_camera_detection_and_background(all_kinds):
    events = [m.payload for m in _of(_feed(all_kinds), "CAM-1", "event")]
    scripted = [e for e in events if e["event"] == "exposed_garbage"]
    assert scripted == [
        {
            "ts": "2025-06-01T08:00:30.000Z",
            "event": "exposed_garbage",
            "confidence": 0.92,
            "snapshot_url": "https://snapshots.example.invalid/CAM-1/20250601T080030000Z.jpg",
            "object_count": 1,
        }
    ]
    background = [e for e in events if e["event"] != "exposed_garbage"]
    assert background
    assert all(0.2 <= e["confidence"] <= 0.5 for e in background)


def test_tilt_creeps_at_the_drift_rate():
    scenario = parse_scenario(
        "devices: [{id: BB-9, kind: tilt, interval_s: 600, baseline_x_deg: 0.1,"
        " drift_x_deg_h: 0.25, noise_deg: 0}]"
    )
    x = [m.payload["tilt_x_deg"] for m in iter_messages(scenario, until_s=4 * 3600)]
    assert x[0] == 0.1
    assert x[-1] == pytest.approx(1.1, abs=1e-4)
    assert all("wind_ms" not in m.payload for m in iter_messages(scenario, until_s=600))


def test_repeating_timeline_recurs():
    scenario = parse_scenario(
        """
        repeat_every_s: 100
        devices: [{id: CAM-9, kind: camera, interval_s: 50}]
        timeline: [{at_s: 10, device: CAM-9, action: detect, event: smoke_fire, confidence: 0.8}]
        """
    )
    assert [m.t_s for m in iter_messages(scenario, until_s=350)] == [10, 110, 210, 310]


def test_endless_scenario_feeds_lazily(all_kinds):
    endless = all_kinds.model_copy(update={"duration_s": None})
    feed = iter_messages(endless)
    assert len([next(feed) for _ in range(5000)]) == 5000
