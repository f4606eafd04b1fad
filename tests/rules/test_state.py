"""State survives restarts (snapshot, rebuild) and rule hot swaps."""

import json

import pytest

from gridwatch.domain import Channel
from gridwatch.rules import RuleEngine, RuleFileError, SnapshotError, load_pack
from tests.rules.helpers import at, brief, engine_from, reading, run, sensor

RULES = """
rules:
  - id: storm
    title: "{sensor_id} {why}"
    category: "event:0401"
    condition:
      type: window
      field: rain_mm
      levels: [{severity: yellow, window: 1h, above: 20}, {severity: red, window: 1h, above: 40}]
  - id: offline
    title: "{sensor_id} offline"
    category: "maintenance:offline"
    maintenance: true
    condition: {type: deadman, intervals: 3}
"""
STORM = [(300.0 * i, {"rain_mm": 3.0}) for i in range(8)]  # 24 mm in 40 min


def test_snapshot_restore_neither_re_raises_nor_forgets(tmp_path):
    gauge = sensor()
    before = engine_from(tmp_path, RULES)
    assert run(before, gauge, STORM)[0] == ("raised", "yellow")
    after = engine_from(tmp_path, RULES)
    after.restore(before.snapshot())
    assert after.active_alarms() == before.active_alarms()
    # The window carried over: 18 + 24 = 42 mm in the last hour -> escalated, not raised again.
    more = [(2100.0 + 300 * i, {"rain_mm": 4.0}) for i in range(1, 7)]
    assert [t for t in run(after, gauge, more) if t[0] != "repeated"] == [("escalated", "red")]


def test_a_restored_engine_still_watches_for_silence(tmp_path):
    gauge = sensor(interval_s=60)
    before = engine_from(tmp_path, RULES)
    before.evaluate(gauge, reading(gauge, 0, {"rain_mm": 0.0}))
    after = engine_from(tmp_path, RULES)
    after.restore(before.snapshot())
    assert brief(after.tick(at(181))) == [("raised", "yellow")]


def test_restore_into_changed_rules_keeps_the_alarm_and_the_samples(tmp_path):
    gauge = sensor()
    before = engine_from(tmp_path, RULES)
    run(before, gauge, STORM)
    changed = engine_from(tmp_path, RULES.replace("above: 40", "above: 45"), "b.yaml")
    changed.restore(before.snapshot())
    assert changed.active_alarms() == {("S-1", "storm"): "yellow"}
    # Samples belong to the sensor, not the rule: the hour still holds 27 mm.
    assert run(changed, gauge, [(2700.0, {"rain_mm": 3.0})]) == [("repeated", "yellow")]


@pytest.mark.parametrize("garbage", [b"{}", b"not json", json.dumps({"version": 99}).encode()])
def test_a_bad_snapshot_is_refused(tmp_path, garbage):
    with pytest.raises(SnapshotError):
        engine_from(tmp_path, RULES).restore(garbage)


def test_rebuild_from_stored_readings_takes_alarms_as_announced(tmp_path):
    gauge = sensor()
    engine = engine_from(tmp_path, RULES)
    readings = [(gauge, reading(gauge, seconds, values)) for seconds, values in STORM]
    assert engine.rebuild(readings) == len(STORM)
    assert engine.active_alarms() == {("S-1", "storm"): "yellow"}
    assert run(engine, gauge, [(2700.0, {"rain_mm": 1.0})]) == [("repeated", "yellow")]


def test_replace_rules_keeps_unchanged_state_and_clears_removed_rules(tmp_path):
    gauge = sensor()
    engine = engine_from(tmp_path, RULES)
    run(engine, gauge, STORM)
    engine.evaluate(gauge, reading(gauge, 2500, {"status": "offline"}, channel=Channel.STATUS))
    path = tmp_path / "new.yaml"
    path.write_text(RULES.split("  - id: offline")[0])
    events = engine.replace_rules(load_pack([path]), at=at(2600))
    assert [(e.rule_id, e.transition.value) for e in events] == [("offline", "cleared")]
    more = [(2100.0 + 300 * i, {"rain_mm": 4.0}) for i in range(1, 7)]
    assert [t for t in run(engine, gauge, more) if t[0] != "repeated"] == [("escalated", "red")]


def test_a_rule_file_with_an_error_leaves_the_running_rules_alone(tmp_path):
    engine = engine_from(tmp_path, RULES)
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("above: 20", "above: twenty"))
    with pytest.raises(RuleFileError, match=r"bad\.yaml"):
        engine.replace_rules(load_pack([bad]))
    assert [rule.id for rule in engine.rules] == ["storm", "offline"]


def test_sensor_changes_rebuild_its_plan_but_keep_its_alarms(tmp_path):
    engine = engine_from(tmp_path, RULES)
    run(engine, sensor(), STORM)
    moved = sensor(tags={"site": "new"})
    assert run(engine, moved, [(2700.0, {"rain_mm": 3.0})]) == [("repeated", "yellow")]


def test_override_problems_are_reported_not_fatal(tmp_path):
    engine = engine_from(tmp_path, RULES)
    odd = sensor(thresholds={"storm": {"clear_ratio": 7}})
    assert run(engine, odd, STORM)[0] == ("raised", "yellow")
    assert "clear_ratio" in engine.problems[("S-1", "storm")]


def test_engine_accepts_a_plain_rule_list(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RULES)
    engine = RuleEngine(list(load_pack([path]).rules))
    assert run(engine, sensor(), STORM)[0] == ("raised", "yellow")
