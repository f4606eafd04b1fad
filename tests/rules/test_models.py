"""Rule files: every error names the file, the rule and the field."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.rules import DEFAULT_PACK_DIR, RuleFileError, check_overrides, load_pack
from gridwatch.rules.models import format_duration, parse_duration
from tests.rules.helpers import sensor

BASE = """
rules:
  - id: {rule_id}
    title: "t {{sensor_id}}"
    category: "{category}"
{extra}    condition:
{condition}
"""


def _write(tmp_path, condition, *, rule_id="r1", category="event:0401", extra=""):
    path = tmp_path / "rules.yaml"
    indented = "\n".join("      " + line for line in condition.strip().splitlines())
    path.write_text(
        BASE.format(rule_id=rule_id, category=category, extra=extra, condition=indented)
    )
    return path


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (
            "type: window\nfield: rain_mm\nlevels: [{severity: blue, window: 3 hours, above: 5}]",
            "condition.levels.0.window",
        ),
        (
            "type: window\nfield: rain_mm\nlevels: [{severity: blue, window: 3h}]",
            "condition.levels.0",
        ),
        (
            "type: window\nfield: v\ncounter: c\naggregate: max\n"
            "levels: [{severity: blue, window: 1h, above: 1}]",
            "condition: Value error, a counter",
        ),
        (
            "type: rate\nfield: x\nwindow: 1h\nsmooth: 45m\nlevels: {blue: 1}\nclear: 0.5",
            "smooth must be at most half",
        ),
        ("type: deviation\nfield: x\nlevels: {blue: 1}\nclear: 0.5", "needs 'deviation'"),
        (
            "type: deviation\ndeviation: {fields: [x, y], baselines: [bx]}\n"
            "levels: {blue: 1}\nclear: 0.5",
            "same length",
        ),
        ("type: count\nwhen: {event: x}\nwindow: 10m\nlevels: {blue: 3, red: 2}", "growing"),
        ("type: state\nwhen: {door: open}\nfor: 2m\nseverity: purple", "condition.severity"),
        ("type: match\nfield: fault\nseverities: {}", "condition.severities"),
        (
            "type: all\nconditions: [{type: threshold, field: a, levels: {blue: 1}, clear: 2}]",
            "condition.conditions.0: Value error, clear (2.0)",
        ),
        ("type: threshold\nfield: a\nlevels: {blue: 1}\nclear: 0\nfor: soon", "condition.for"),
    ],
)
def test_condition_errors_name_file_rule_and_field(tmp_path, condition, field):
    path = _write(tmp_path, condition)
    with pytest.raises(RuleFileError) as caught:
        load_pack([path])
    assert str(caught.value).startswith(f"{path}, rule 'r1': ")
    assert field in str(caught.value)


DEADMAN = "type: deadman"


@pytest.mark.parametrize(
    ("category", "extra", "message"),
    [
        ("event:0401", "", "must be a maintenance rule"),
        ("event:0401", "    maintenance: true\n", "only they, use a 'maintenance:"),
        ("maintenance:x", "    maintenance: true\n    inhibits: {rules: [r1]}\n", "inhibit itself"),
        (
            "maintenance:x",
            "    maintenance: true\n    inhibits: {rules: [ghost]}\n",
            "inhibits.rules: unknown rule ids ['ghost']",
        ),
    ],
)
def test_rule_level_errors(tmp_path, category, extra, message):
    path = _write(tmp_path, DEADMAN, category=category, extra=extra)
    with pytest.raises(RuleFileError, match="r1") as caught:
        load_pack([path])
    assert message in str(caught.value)


def test_inhibition_cycles_are_refused(tmp_path):
    path = tmp_path / "cycle.yaml"
    rule = (
        "  - {{id: {a}, title: t, category: 'event:1', inhibits: {{rules: [{b}]}},\n"
        "     condition: {{type: threshold, field: v, levels: {{blue: 1}}, clear: 0}}}}\n"
    )
    path.write_text("rules:\n" + rule.format(a="a", b="b") + rule.format(a="b", b="a"))
    with pytest.raises(RuleFileError, match="inhibition cycle"):
        load_pack([path])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []\nextra: 1\n", "unknown top-level keys"),
        ("rules: []\nmaintenance_windows: {}\n", "must be a list"),
        (
            "rules: []\nmaintenance_windows: [{sensors: [A], start: '2026-01-01T00:00:00Z', "
            "end: '2025-01-01T00:00:00Z'}]\n",
            "maintenance window #1: entry: Value error, end must be after start",
        ),
        (
            "rules: []\nmaintenance_windows: [{start: '2026-01-01T00:00:00Z', "
            "end: '2026-01-02T00:00:00Z'}]\n",
            "a window over every sensor",
        ),
    ],
)
def test_file_level_errors(tmp_path, text, message):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(RuleFileError) as caught:
        load_pack([path])
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("3h", 10800),
        ("1.5h", 5400),
        ("1d", 86400),
        (45, 45),
        ("250ms", 0.25),
    ],
)
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


@given(st.integers(1, 10**7))
def test_duration_text_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_check_overrides_names_the_problems():
    rules = load_pack(sorted(DEFAULT_PACK_DIR.glob("*.yaml"))).rules
    target = sensor(
        kind="tilt",
        thresholds={
            "billboard_tilt_deviation": {"levels": {"blue": 0.3}, "clear": 0.2},
            "billboard_gale": {"clear_ratio": 3},
            "nothing_here": {},
            "sensor_low_battery": "low",
        },
    )
    assert check_overrides(target, rules) == {
        "billboard_gale": "clear_ratio: Input should be less than or equal to 1",
        "nothing_here": "no such rule",
        "sensor_low_battery": "an override must be a mapping of condition fields",
    }
