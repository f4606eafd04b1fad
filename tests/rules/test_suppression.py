"""Suppression: inspection mode, maintenance windows, inhibition, escalation by another value."""

import pytest

from gridwatch.domain import Channel, Sensor, SensorStatus
from gridwatch.rules import RuleEngine, load_pack
from tests.rules.helpers import T0, at, brief, engine_from, reading, run, sensor

DEADMAN = """
rules:
  - id: offline
    title: "{sensor_id} offline"
    category: "maintenance:offline"
    maintenance: true
    condition: {type: deadman, intervals: 3, severity: yellow}
"""

BILLBOARD = """
rules:
  - id: lean
    title: "{sensor_id} {why}"
    category: "component:0307"
    condition:
      type: threshold
      field: dev
      levels: {blue: 0.1, yellow: 0.25, orange: 0.5, red: 1.0}
      clear: 0.07
    escalate_when:
      by: 1
      condition: {type: threshold, field: wind_ms, levels: {blue: 13.9}, clear: 10.8}
    inhibits: {rules: [gale], min_severity: blue}
  - id: gale
    title: "{sensor_id} gale {value}"
    category: "component:0307"
    condition: {type: threshold, field: wind_ms, levels: {blue: 13.9, yellow: 20.8}, clear: 10.8}
"""


def test_an_active_alarm_inhibits_a_lesser_one_on_the_same_sensor(tmp_path):
    engine = engine_from(tmp_path, BILLBOARD)
    board, other = sensor("BB-1", "tilt"), sensor("BB-2", "tilt")
    events = []
    for seconds, values in [(0, {"dev": 0.3}), (60, {"dev": 0.3, "wind_ms": 22.0})]:
        events += engine.evaluate(board, reading(board, seconds, values))
        events += engine.evaluate(other, reading(other, seconds, values | {"dev": 0.0}))
    by_sensor = {(e.sensor_id, e.rule_id, e.transition.value, e.severity.value) for e in events}
    # The leaning board is one alarm, escalated by the wind; the sound board gets the gale.
    assert by_sensor == {
        ("BB-1", "lean", "raised", "yellow"),
        ("BB-1", "lean", "escalated", "orange"),
        ("BB-2", "gale", "raised", "yellow"),
    }
    escalated = next(e for e in events if e.transition.value == "escalated")
    assert "while wind_ms 22 ≥ 13.9" in escalated.why


def test_an_alarm_raised_before_the_inhibition_clears_normally(tmp_path):
    engine = engine_from(tmp_path, BILLBOARD)
    board = sensor("BB-1", "tilt")
    steps = [
        (0, {"wind_ms": 15.0}),
        (60, {"dev": 0.3, "wind_ms": 15.0}),
        (120, {"dev": 0.3, "wind_ms": 5.0}),
    ]
    events = []
    for seconds, values in steps:
        events += engine.evaluate(board, reading(board, seconds, values))
    assert [(e.rule_id, e.transition.value) for e in events] == [
        ("gale", "raised"),
        ("lean", "raised"),
        ("lean", "repeated"),
        ("gale", "cleared"),
    ]


def test_a_muted_alarm_is_raised_once_the_inhibition_ends(tmp_path):
    engine = engine_from(tmp_path, BILLBOARD)
    board = sensor("BB-1", "tilt")
    steps = [
        (0, {"dev": 0.3}),
        (60, {"wind_ms": 15.0}),
        (120, {"dev": 0.0}),
        (180, {"wind_ms": 16.0}),
    ]
    events = []
    for seconds, values in steps:
        events += engine.evaluate(board, reading(board, seconds, values))
    assert [(e.rule_id, e.transition.value) for e in events] == [
        ("lean", "raised"),
        ("lean", "cleared"),
        ("gale", "raised"),
    ]


ELEVATOR = """
rules:
  - id: fault
    title: "{sensor_id} {value}"
    category: "component:0601"
    condition:
      type: match
      field: fault
      severities: {entrapment: red}
      clear_on: [{moving: true, mode: normal}]
    suppress_when: {mode: inspection}
"""


@pytest.mark.parametrize(
    ("mode", "expected"), [("normal", [("raised", "red")]), ("inspection", [])]
)
def test_an_elevator_in_inspection_raises_no_fault(tmp_path, mode, expected):
    engine = engine_from(tmp_path, ELEVATOR)
    lift = sensor(kind="elevator")
    events = engine.evaluate(lift, reading(lift, 0, {"mode": mode, "moving": False}))
    fault = reading(lift, 5, {"fault": "entrapment"}, channel=Channel.EVENT)
    assert brief(events + engine.evaluate(lift, fault)) == expected


WINDOWED = """
rules:
  - id: burst
    title: "{sensor_id} {value}"
    category: "event:0401"
    condition: {type: threshold, field: v, levels: {blue: 1}, clear: 0}
maintenance_windows:
  - {sensors: [S-1], start: "2026-07-20T08:00:00Z", end: "2026-07-20T09:00:00Z", note: works}
  - {tags: {site: underpass}, rules: [burst], start: "2026-07-20T10:00:00Z",
     end: "2026-07-20T11:00:00Z"}
"""


@pytest.mark.parametrize(
    ("target", "seconds", "expected"),
    [
        (sensor("S-1"), 600, []),
        (sensor("S-1"), 3600, [("raised", "blue")]),  # the window has ended
        (sensor("S-2"), 600, [("raised", "blue")]),
        (sensor("S-2", tags={"site": "underpass"}), 2 * 3600 + 60, []),
    ],
)
def test_scheduled_maintenance_windows_raise_nothing(tmp_path, target, seconds, expected):
    engine = engine_from(tmp_path, WINDOWED)
    assert run(engine, target, [(seconds, {"v": 2.0})]) == expected


def test_maintenance_windows_can_also_be_given_to_the_engine(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(WINDOWED.split("maintenance_windows")[0])
    pack = load_pack([path])
    from gridwatch.rules import MaintenanceWindow

    window = MaintenanceWindow(sensors=frozenset({"S-9"}), start=T0, end=at(60))
    engine = RuleEngine(pack, maintenance_windows=[window])
    assert run(engine, sensor("S-9"), [(0, {"v": 2.0})]) == []


@pytest.mark.parametrize(
    "status", [SensorStatus.MAINTENANCE, SensorStatus.COMMISSIONING, SensorStatus.DRAFT]
)
def test_sensor_status_other_than_active_raises_nothing(tmp_path, status):
    engine = engine_from(tmp_path, WINDOWED.split("maintenance_windows")[0])
    assert run(engine, sensor("S-5", status=status), [(0, {"v": 9.0})]) == []


def test_an_escalation_latches_on_readings_that_lack_the_rules_own_field(tmp_path):
    engine = engine_from(tmp_path, BILLBOARD)
    board = sensor("BB-1", "tilt")
    events = []
    for seconds, values in [(0, {"wind_ms": 15.0}), (60, {"dev": 0.3})]:
        events += engine.evaluate(board, reading(board, seconds, values))
    assert [(e.rule_id, e.transition.value, e.severity.value) for e in events] == [
        ("gale", "raised", "blue"),
        ("lean", "raised", "orange"),
    ]


def test_a_sensor_put_into_maintenance_raises_no_deadman_from_the_ticks(tmp_path):
    engine = engine_from(tmp_path, DEADMAN)
    gauge = sensor()
    engine.evaluate(gauge, reading(gauge, 0, {"rain_mm": 0.1}))
    registry = {gauge.id: gauge.model_copy(update={"status": SensorStatus.MAINTENANCE})}
    engine.sync_sensors(registry.get)
    assert engine.tick(at(3600)) == []
    # Back in service, silence counts again.
    registry[gauge.id] = gauge
    engine.sync_sensors(registry.get)
    assert brief(engine.tick(at(3600))) == [("raised", "yellow")]


def test_a_sensor_no_longer_registered_is_forgotten(tmp_path):
    engine = engine_from(tmp_path, DEADMAN)
    gauge = sensor()
    engine.evaluate(gauge, reading(gauge, 0, {"rain_mm": 0.1}))
    nothing: dict[str, Sensor] = {}
    engine.sync_sensors(nothing.get)
    assert engine.tick(at(3600)) == []


def test_commissioning_sensors_are_evaluated_when_the_policy_says_so(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(DEADMAN)
    live = frozenset({SensorStatus.ACTIVE, SensorStatus.COMMISSIONING})
    engine = RuleEngine(load_pack([path]), live=live)
    gauge = sensor(status="commissioning")
    engine.evaluate(gauge, reading(gauge, 0, {"rain_mm": 0.1}))
    assert brief(engine.tick(at(3600))) == [("raised", "yellow")]
