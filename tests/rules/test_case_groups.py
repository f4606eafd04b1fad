"""Rules of one case group fold into one case per sensor: opened once, escalated, cleared last."""

import pytest

from gridwatch.rules import RuleFileError, load_pack
from tests.rules.helpers import engine_from, reading, sensor

GROUP = """
rules:
  - id: wet
    title: "wet {sensor_id}"
    category: "event:0401"
    case_group: storm
    condition: {type: threshold, field: v, levels: {yellow: 10}, clear: 5}
  - id: soaked
    title: "soaked {sensor_id}"
    category: "event:0401"
    case_group: storm
    condition: {type: threshold, field: v, levels: {red: 20}, clear: 15}
  - id: alone
    title: "alone {sensor_id}"
    category: "event:0401"
    condition: {type: threshold, field: v, levels: {blue: 30}, clear: 5}
"""


def test_a_group_opens_one_case_escalates_with_its_worst_and_clears_with_its_last(tmp_path):
    engine = engine_from(tmp_path, GROUP)
    gauge = sensor()
    steps = [(0, 12.0), (60, 25.0), (120, 14.0), (180, 3.0)]
    seen = [
        [(e.rule_id, e.transition.value, e.severity.value, e.case_fingerprint) for e in events]
        for t, v in steps
        for events in [engine.evaluate(gauge, reading(gauge, t, {"v": v}))]
    ]
    assert seen == [
        [("wet", "raised", "yellow", "S-1/storm")],
        # `soaked` raising while `wet` is announced escalates the group's case.
        [("wet", "repeated", "yellow", "S-1/storm"), ("soaked", "escalated", "red", "S-1/storm")],
        # `soaked` clearing while `wet` still holds tells the case nothing.
        [("wet", "repeated", "yellow", "S-1/storm")],
        [("wet", "cleared", "yellow", "S-1/storm")],
    ]


def test_a_member_raising_below_the_groups_severity_is_a_repeat(tmp_path):
    engine = engine_from(tmp_path, GROUP.replace("{red: 20}, clear: 15", "{red: 8}, clear: 4"))
    gauge = sensor()
    first = engine.evaluate(gauge, reading(gauge, 0, {"v": 9.0}))
    assert [(e.rule_id, e.transition.value) for e in first] == [("soaked", "raised")]
    second = engine.evaluate(gauge, reading(gauge, 60, {"v": 11.0}))
    assert [(e.rule_id, e.transition.value) for e in second] == [
        ("wet", "repeated"),
        ("soaked", "repeated"),
    ]


def test_rules_outside_a_group_keep_their_own_case(tmp_path):
    engine = engine_from(tmp_path, GROUP)
    gauge = sensor()
    events = engine.evaluate(gauge, reading(gauge, 0, {"v": 31.0}))
    assert {(e.rule_id, e.case_fingerprint) for e in events} == {
        ("wet", "S-1/storm"),
        ("soaked", "S-1/storm"),
        ("alone", "S-1/alone"),
    }


def test_a_group_needs_one_category(tmp_path):
    path = tmp_path / "rules.yaml"
    soaked = GROUP.index("  - id: soaked")
    path.write_text(GROUP[:soaked] + GROUP[soaked:].replace("event:0401", "event:0402", 1))
    with pytest.raises(RuleFileError, match="case_group 'storm': category 'event:0402' differs"):
        load_pack([path])


def test_an_impossible_date_is_a_rule_file_error(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\nmaintenance_windows: [{start: 2026-13-01}]\n")
    with pytest.raises(RuleFileError, match="is not valid YAML"):
        load_pack([path])
