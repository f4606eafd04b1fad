"""The threshold rule: levels, hysteresis, escalation, overrides and rule-file errors."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridwatch.domain import AlarmTransition, Channel, Reading, Sensor, SensorStatus, Severity
from gridwatch.rules import (
    DEFAULT_PACK_DIR,
    RuleEngine,
    RuleFileError,
    load_rule_files,
    load_rules_dir,
)

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
RULE_YAML = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm ({severity})"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition:
      type: threshold
      field: rain_mm
      levels: {blue: 2.0, yellow: 3.0, red: 8.0}
      clear: 0.5
"""


@pytest.fixture
def engine(tmp_path: Path) -> RuleEngine:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE_YAML)
    return RuleEngine(load_rule_files([path]))


def _sensor(**changes: object) -> Sensor:
    fields: dict[str, object] = {"id": "RG-1", "kind": "rain_gauge", "grid": "110101001001001"}
    return Sensor.model_validate(fields | changes)


def _feed(engine: RuleEngine, sensor: Sensor, values: list[float]) -> list[tuple[str, str]]:
    out = []
    for index, value in enumerate(values):
        reading = Reading(
            sensor_id=sensor.id,
            kind=sensor.kind,
            channel=Channel.TELEMETRY,
            ts=T0 + timedelta(seconds=5 * index),
            received_at=T0,
            values={"rain_mm": value},
        )
        out += [(e.transition.value, e.severity.value) for e in engine.evaluate(sensor, reading)]
    return out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.1, 1.9, 0.3], []),
        ([2.0], [("raised", "blue")]),
        ([2.5, 3.5, 9.0], [("raised", "blue"), ("escalated", "yellow"), ("escalated", "red")]),
        ([9.0, 2.1], [("raised", "red"), ("repeated", "red")]),
        ([2.5, 0.4], [("raised", "blue"), ("cleared", "blue")]),
        # Values between clear (0.5) and the lowest level (2.0) neither repeat nor clear.
        ([2.5, 1.0, 1.9, 0.6, 2.2], [("raised", "blue"), ("repeated", "blue")]),
        ([2.5, 0.2, 2.5], [("raised", "blue"), ("cleared", "blue"), ("raised", "blue")]),
    ],
)
def test_threshold_levels_and_hysteresis(engine, values, expected):
    assert _feed(engine, _sensor(), values) == expected


def test_noise_around_the_threshold_raises_once_and_never_flaps(engine):
    noisy = [1.7, 2.1, 1.8, 2.3, 1.6, 2.05, 1.95, 2.2, 1.5, 2.4] * 10
    transitions = [t for t, _ in _feed(engine, _sensor(), noisy)]
    assert transitions.count("raised") == 1
    assert "cleared" not in transitions


@pytest.mark.parametrize(
    "changes",
    [{"status": SensorStatus.MAINTENANCE}, {"status": SensorStatus.COMMISSIONING},
     {"kind": "tilt"}],
)  # fmt: skip
def test_rule_ignores_sensors_it_does_not_apply_to(engine, changes):
    assert _feed(engine, _sensor(**changes), [9.0]) == []


def test_sensor_threshold_override(engine):
    sensor = _sensor(thresholds={"burst": {"levels": {"blue": 5.0}, "clear": 1.0}})
    assert _feed(engine, sensor, [3.0, 6.0]) == [("raised", "blue")]


def test_alarm_event_carries_values_and_title(engine):
    reading = Reading("RG-1", "rain_gauge", Channel.TELEMETRY, T0, T0, {"rain_mm": 3.2})
    (event,) = engine.evaluate(_sensor(), reading)
    assert event.transition is AlarmTransition.RAISED
    assert event.severity is Severity.YELLOW
    assert event.fingerprint == "RG-1/burst"
    assert event.title == "Rain at RG-1: 3.2 mm (yellow)"
    assert event.values == {"rain_mm": 3.2}


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (("clear: 0.5", "clear: 2.5"), "clear (2.5) must be on the safe side"),
        (("yellow: 3.0", "yellow: 1.0"), "levels must grow more severe"),
        (("{value} mm", "{nonsense}"), "unknown placeholders"),
        (("field: rain_mm", "field: ''"), "condition.field"),
        (("levels: {blue: 2.0, yellow: 3.0, red: 8.0}", "levels: {purple: 2.0}"), "levels.purple"),
        (("type: threshold", "type: magic"), "condition.type"),
        (("id: burst", "id: 'Bad Id!'"), "id:"),
    ],
)
def test_rule_file_errors_name_file_rule_and_field(tmp_path, mutation, message):
    path = tmp_path / "bad.yaml"
    path.write_text(RULE_YAML.replace(*mutation))
    with pytest.raises(RuleFileError) as caught:
        load_rule_files([path])
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_rule_ids_across_files_are_refused(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(RULE_YAML)
    with pytest.raises(RuleFileError, match="duplicate id"):
        load_rules_dir(tmp_path)


@pytest.mark.parametrize("text", ["rules: [", "just a string", "rules: {}"])
def test_malformed_rule_files(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(RuleFileError, match=str(path)):
        load_rule_files([path])


def test_default_pack_loads_and_gale_levels_follow_the_warning_signals():
    (gale,) = [rule for rule in load_rules_dir(DEFAULT_PACK_DIR) if rule.id == "billboard_gale"]
    # Gusts: the strongest wind of 10 minutes, against the gale warning signal levels.
    assert gale.condition.type == "window"
    assert {(level.severity, level.window, level.above) for level in gale.condition.levels} == {
        (Severity.BLUE, 600.0, 13.9),
        (Severity.YELLOW, 600.0, 20.8),
        (Severity.ORANGE, 600.0, 28.5),
    }
