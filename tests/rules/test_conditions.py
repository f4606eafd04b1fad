"""Each condition kind and its edge cases, one engine per test, time passed in."""

from collections.abc import Sequence

import pytest

from gridwatch.domain import Channel, SensorStatus
from tests.rules.helpers import at, brief, engine_from, reading, run, sensor

HEADER = (
    "rules:\n  - id: r\n    title: '{sensor_id} {value} {severity}'\n    category: 'event:0401'\n"
)
MAINT = (
    "rules:\n  - id: r\n    title: '{sensor_id} {why}'\n    category: 'maintenance:x'\n"
    "    maintenance: true\n"
)


def _engine(tmp_path, condition: str, header: str = HEADER):
    return engine_from(tmp_path, header + "    condition:\n" + condition)


THRESHOLD_FOR = """\
      type: threshold
      field: depth
      levels: {yellow: 20, red: 27}
      clear: 10
      for: 2m
"""


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Held for the whole 2 minutes: raised at the reading that completes it.
        ([(0, 25), (60, 25), (120, 25)], [("raised", "yellow")]),
        # A dip below the level restarts the clock.
        ([(0, 25), (60, 5), (90, 25), (150, 25)], []),
        # Yellow held long enough, red not yet, then red held too.
        (
            [(0, 25), (120, 30), (200, 30), (240, 30)],
            [("raised", "yellow"), ("repeated", "yellow"), ("escalated", "red")],
        ),
        # Back between clear and the level: neither repeat nor clear; under clear: cleared.
        ([(0, 25), (120, 25), (130, 15), (140, 9)], [("raised", "yellow"), ("cleared", "yellow")]),
    ],
)
def test_threshold_with_for_duration(tmp_path, steps, expected):
    engine = _engine(tmp_path, THRESHOLD_FOR)
    values = [(seconds, {"depth": float(depth)}) for seconds, depth in steps]
    assert run(engine, sensor(), values) == expected


RAINSTORM = """\
      type: window
      field: rain_mm
      counter: total_mm
      filter: {field: precip, equals: rain, default: rain}
      levels:
        - {severity: blue, window: 12h, above: 50}
        - {severity: yellow, window: 6h, above: 50}
        - {severity: orange, window: 3h, above: 50}
        - {severity: red, window: 3h, above: 100}
      clear_ratio: 0.5
"""


def _reports(mm_per_hour: Sequence[float], field: str = "rain_mm", start_total: float = 0.0):
    """Hourly totals as 12 five-minute reports per hour."""
    out, total, t = [], start_total, 0.0
    for rate in mm_per_hour:
        for _ in range(12):
            t += 300
            total += rate / 12
            out.append((t, {field: rate / 12} if field == "rain_mm" else {field: total}))
    return out


@pytest.mark.parametrize(
    ("hourly", "expected"),
    [
        ([5] * 11, []),  # 55 mm only after 11 h: blue needs 50 in 12 h -> raised at hour 10
        ([4] * 12, []),  # 48 mm in 12 h: nothing
        ([9] * 6, [("raised", "yellow")]),  # 54 mm in 6 h (and in 12 h)
        ([20, 20, 20], [("raised", "orange")]),  # 60 mm in 3 h
        ([20, 40, 45], [("raised", "orange"), ("escalated", "red")]),  # 105 mm in 3 h
    ],
)
def test_rainstorm_levels_over_several_windows(tmp_path, hourly, expected):
    engine = _engine(tmp_path, RAINSTORM)
    transitions = [t for t in run(engine, sensor(), _reports(hourly)) if t[0] != "repeated"]
    if hourly == [5] * 11:
        expected = [("raised", "blue")]
    assert transitions == expected


def test_counter_and_increments_give_the_same_alarms(tmp_path):
    hourly = [20, 40, 45, 0, 0, 0, 0]
    by_increment = run(_engine(tmp_path, RAINSTORM), sensor(), _reports(hourly))
    by_counter = run(
        _engine(tmp_path, RAINSTORM), sensor(), _reports(hourly, "total_mm", start_total=1234.5)
    )
    # The counter's first report only sets the baseline, so it lags by one report at most.
    assert [t for t in by_counter if t[0] != "repeated"] == [
        t for t in by_increment if t[0] != "repeated"
    ]


def test_counter_reset_counts_the_new_value_and_never_a_negative(tmp_path):
    engine = _engine(tmp_path, RAINSTORM)
    target = sensor()
    steps = [(0, 900.0), (600, 960.0), (1200, 3.0), (1800, 50.0)]  # power loss: back to 0
    events = []
    for seconds, total in steps:
        events += engine.evaluate(target, reading(target, seconds, {"total_mm": total}))
    # 60 + 3 + 47 = 110 mm in 30 minutes: red, never driven down by the reset.
    assert brief(events) == [("raised", "orange"), ("repeated", "orange"), ("escalated", "red")]
    assert events[-1].values["sum_3h"] == pytest.approx(110.0)
    assert events[-1].window == "3h"


def test_snow_counts_for_its_own_rule_only(tmp_path):
    engine = _engine(tmp_path, RAINSTORM)
    snow = [(s, {"rain_mm": 10.0, "precip": "snow"}) for s in range(300, 3600, 300)]
    assert run(engine, sensor(), snow) == []


def test_window_clears_when_every_level_falls_under_the_ratio(tmp_path):
    engine = _engine(tmp_path, RAINSTORM)
    transitions = run(engine, sensor(), _reports([20, 20, 20] + [0] * 12))
    assert [t for t in transitions if t[0] != "repeated"] == [
        ("raised", "orange"),
        ("cleared", "orange"),
    ]


@pytest.mark.parametrize(
    ("aggregate", "values", "level", "expected"),
    [
        ("mean", [1, 2, 3, 10], "above: 4", [("raised", "blue")]),
        ("max", [1, 9, 1], "above: 8", [("raised", "blue"), ("repeated", "blue")]),
        ("min", [5, 5, 0.5], "below: 1", [("raised", "blue")]),
        ("count", [1, 1, 1, 1], "above: 4", [("raised", "blue")]),
        ("delta", [1, 2, 4], "above: 2.5", [("raised", "blue")]),
    ],
)
def test_window_aggregates(tmp_path, aggregate, values, level, expected):
    condition = f"""\
      type: window
      field: v
      aggregate: {aggregate}
      levels: [{{severity: blue, window: 10m, {level}}}]
"""
    engine = _engine(tmp_path, condition)
    steps = [(60.0 * i, {"v": float(v)}) for i, v in enumerate(values)]
    assert run(engine, sensor(), steps) == expected


def test_rate_of_change_per_hour(tmp_path):
    condition = """\
      type: rate
      field: tilt_x_deg
      window: 1h
      smooth: 15m
      levels: {blue: 0.1, red: 1.0}
      clear: 0.05
"""
    engine = _engine(tmp_path, condition)
    still = [(60.0 * m, {"tilt_x_deg": 0.2}) for m in range(61)]
    creep = [(60.0 * m, {"tilt_x_deg": 0.2 + 0.3 * (m - 60) / 60}) for m in range(61, 150)]
    transitions = run(engine, sensor(kind="tilt"), still + creep)
    assert [t for t in transitions if t[0] != "repeated"] == [("raised", "blue")]


DEVIATION = """\
      type: deviation
      deviation: {fields: [x, y], baselines: [baseline_x_deg, baseline_y_deg]}
      levels: {blue: 0.1, red: 1.0}
      clear: 0.07
"""


@pytest.mark.parametrize(
    ("calibration", "thresholds", "xy", "expected"),
    [
        ({"baseline_x_deg": 0.5, "baseline_y_deg": 0.0}, {}, (0.58, 0.06), [("raised", "blue")]),
        ({"baseline_x_deg": 0.5, "baseline_y_deg": 0.0}, {}, (0.55, 0.05), []),
        ({"baseline_x_deg": 0.0, "baseline_y_deg": 0.0}, {}, (0.6, 0.8), [("raised", "red")]),
        # The sensor's own override: this billboard is allowed more.
        (
            {"baseline_x_deg": 0.0, "baseline_y_deg": 0.0},
            {"r": {"levels": {"blue": 2.0}, "clear": 1.5}},
            (0.6, 0.8),
            [],
        ),
        ({}, {}, (5.0, 5.0), []),  # no baseline: nothing to measure against
    ],
)
def test_deviation_from_the_sensors_baseline(tmp_path, calibration, thresholds, xy, expected):
    engine = _engine(tmp_path, DEVIATION)
    target = sensor(kind="tilt", calibration=calibration, thresholds=thresholds)
    assert run(engine, target, [(0, {"x": xy[0], "y": xy[1]})]) == expected


MATCH = """\
      type: match
      field: fault
      severities: {door_close_fault: yellow, entrapment: red}
      clear_on: [{moving: true, mode: normal}]
"""


def test_match_escalates_on_a_worse_event_and_clears_when_service_resumes(tmp_path):
    engine = _engine(tmp_path, MATCH)
    lift = sensor(kind="elevator")
    events = []
    steps: list[tuple[float, dict[str, object], Channel]] = [
        (0, {"fault": "door_close_fault"}, Channel.EVENT),
        (5, {"fault": "unknown_thing"}, Channel.EVENT),
        (10, {"fault": "entrapment"}, Channel.EVENT),
        (20, {"moving": False, "mode": "normal"}, Channel.TELEMETRY),
        (30, {"moving": True, "mode": "inspection"}, Channel.TELEMETRY),
        (40, {"moving": True, "mode": "normal"}, Channel.TELEMETRY),
    ]
    for seconds, values, channel in steps:
        events += engine.evaluate(lift, reading(lift, seconds, values, channel=channel))
    assert brief(events) == [("raised", "yellow"), ("escalated", "red"), ("cleared", "red")]
    assert events[1].values["fault"] == "entrapment"


CAMERA = """\
      type: match
      field: event
      severities: {exposed_garbage: blue}
      min_confidence: 0.6
      clear_after: 30m
"""


@pytest.mark.parametrize(
    ("detections", "expected"),
    [
        ([(0, 0.5)], []),  # under the minimum confidence
        ([(0, 0.9), (600, 0.8)], [("raised", "blue"), ("repeated", "blue")]),
        ([(0, 0.9), (600, 0.3)], [("raised", "blue")]),
    ],
)
def test_camera_event_with_minimum_confidence(tmp_path, detections, expected):
    engine = _engine(tmp_path, CAMERA)
    cam = sensor(kind="camera")
    events = []
    for seconds, confidence in detections:
        values = {"event": "exposed_garbage", "confidence": confidence}
        events += engine.evaluate(cam, reading(cam, seconds, values, channel=Channel.EVENT))
    assert brief(events) == expected


def test_camera_event_clears_after_a_quiet_repeat_window(tmp_path):
    engine = _engine(tmp_path, CAMERA)
    cam = sensor(kind="camera")
    values = {"event": "exposed_garbage", "confidence": 0.9}
    raised = engine.evaluate(cam, reading(cam, 0, values, channel=Channel.EVENT))
    assert engine.tick(at(29 * 60)) == []
    assert brief(raised + engine.tick(at(30 * 60))) == [("raised", "blue"), ("cleared", "blue")]


STATE = """\
      type: state
      when: {door: open}
      unless: {mode: inspection}
      for: 2m
      severity: yellow
"""


@pytest.mark.parametrize(
    ("steps", "tick_at", "expected"),
    [
        ([(0, "open", "normal")], 119, []),
        ([(0, "open", "normal")], 120, [("raised", "yellow")]),  # raised by time alone
        ([(0, "open", "normal"), (60, "closed", "normal")], 200, []),
        ([(0, "open", "inspection")], 300, []),
        (
            [(0, "open", "normal"), (130, "open", "normal"), (140, "closed", "normal")],
            135,
            [("raised", "yellow"), ("cleared", "yellow")],
        ),
    ],
)
def test_state_held_for_longer_than_n_seconds(tmp_path, steps, tick_at, expected):
    engine = _engine(tmp_path, STATE)
    lift = sensor(kind="elevator")
    events = []
    ticked = False
    for seconds, door, mode in steps:
        if not ticked and seconds > tick_at:
            events += engine.tick(at(tick_at))
            ticked = True
        events += engine.evaluate(lift, reading(lift, seconds, {"door": door, "mode": mode}))
    if not ticked:
        events += engine.tick(at(tick_at))
    assert brief(events) == expected


COUNT = """\
      type: count
      when: {event: crowd_gathering}
      min_confidence: 0.7
      window: 10m
      levels: {yellow: 3, orange: 6}
"""


def test_count_of_events_in_a_window_rises_and_ages_out(tmp_path):
    engine = _engine(tmp_path, COUNT)
    cam = sensor(kind="camera")
    events = []
    for seconds, confidence in [(0, 0.9), (60, 0.5), (120, 0.8), (180, 0.9)]:
        values = {"event": "crowd_gathering", "confidence": confidence}
        events += engine.evaluate(cam, reading(cam, seconds, values, channel=Channel.EVENT))
    assert brief(events) == [("raised", "yellow")]
    assert engine.tick(at(700)) == []  # the first aged out: 2 left, inside the band
    assert brief(engine.tick(at(781))) == [("cleared", "yellow")]


@pytest.mark.parametrize(
    ("condition", "steps", "expected"),
    [
        (
            "{type: range, field: wind_ms, min: 0, max: 75}",
            [(0, {"wind_ms": 80.0}), (60, {"wind_ms": 10.0})],
            [("raised", "blue"), ("cleared", "blue")],
        ),
        (
            "{type: stuck, fields: [x], for: 10m, min_readings: 5}",
            [(60.0 * m, {"x": 0.25}) for m in range(12)] + [(720, {"x": 0.26})],
            [("raised", "blue"), ("repeated", "blue"), ("cleared", "blue")],
        ),
        (
            "{type: stuck, fields: [x], for: 10m, min_readings: 5}",
            [(60.0 * m, {"x": 0.25 + (m % 2) / 1000}) for m in range(30)],
            [],
        ),
    ],
)
def test_data_quality_checks_raise_maintenance_alarms(tmp_path, condition, steps, expected):
    engine = engine_from(tmp_path, MAINT + f"    condition: {condition}\n")
    target = sensor(kind="tilt")
    events = []
    for seconds, values in steps:
        events += engine.evaluate(target, reading(target, seconds, values))
    assert brief(events) == expected
    assert all(event.maintenance and event.category == "maintenance:x" for event in events)


@pytest.mark.parametrize(
    ("skews", "expected"),
    [
        ([0, 400, 200, 30], [("raised", "blue"), ("repeated", "blue"), ("cleared", "blue")]),
        ([-400], [("raised", "blue")]),
        ([100, 250], []),
    ],
)
def test_clock_skew(tmp_path, skews, expected):
    engine = engine_from(
        tmp_path, MAINT + "    condition: {type: clock_skew, above: 5m, clear: 1m}\n"
    )
    target = sensor()
    events = []
    for index, skew in enumerate(skews):
        events += engine.evaluate(target, reading(target, index * 60, {"v": 1.0}, skew_s=skew))
    assert [t for t in brief(events) if t[0] != "repeated"] == [
        t for t in expected if t[0] != "repeated"
    ]


DEADMAN = MAINT + "    condition: {type: deadman, intervals: 3, severity: yellow}\n"


def test_deadman_raises_after_k_intervals_of_silence_and_clears_on_the_next_reading(tmp_path):
    engine = engine_from(tmp_path, DEADMAN)
    target = sensor(interval_s=60)
    assert engine.evaluate(target, reading(target, 0, {"v": 1.0})) == []
    assert engine.tick(at(179)) == []
    assert brief(engine.tick(at(180))) == [("raised", "yellow")]
    assert engine.tick(at(500)) == []  # still silent: raised once, not repeated by time
    assert brief(engine.evaluate(target, reading(target, 600, {"v": 1.0}))) == [
        ("cleared", "yellow")
    ]


def test_deadman_offline_status_raises_at_once_and_online_clears(tmp_path):
    engine = engine_from(tmp_path, DEADMAN)
    target = sensor()
    offline = reading(target, 0, {"status": "offline"}, channel=Channel.STATUS)
    online = reading(target, 30, {"status": "online"}, channel=Channel.STATUS)
    assert brief(engine.evaluate(target, offline) + engine.evaluate(target, online)) == [
        ("raised", "yellow"),
        ("cleared", "yellow"),
    ]


def test_sensors_that_are_not_active_raise_nothing_not_even_offline(tmp_path):
    engine = engine_from(tmp_path, DEADMAN)
    target = sensor(status=SensorStatus.MAINTENANCE)
    assert engine.evaluate(target, reading(target, 0, {"v": 1.0})) == []
    assert engine.tick(at(10_000)) == []


COMPOSITE = """\
      type: {mode}
      conditions:
        - {{type: threshold, field: a, levels: {{blue: 10, red: 20}}, clear: 5}}
        - {{type: threshold, field: b, levels: {{yellow: 1}}, clear: 0}}
"""


@pytest.mark.parametrize(
    ("mode", "steps", "expected"),
    [
        (
            "all",
            [{"a": 12.0}, {"b": 2.0}, {"a": 25.0}, {"b": -1.0}],
            [("raised", "blue"), ("escalated", "yellow"), ("cleared", "yellow")],
        ),
        (
            "any",
            [{"a": 12.0}, {"b": 2.0}, {"a": 25.0}, {"a": 1.0}, {"b": -1.0}],
            [
                ("raised", "blue"),
                ("escalated", "yellow"),
                ("escalated", "red"),
                ("repeated", "red"),
                ("cleared", "red"),
            ],
        ),
    ],
)
def test_composite_all_and_any(tmp_path, mode, steps, expected):
    engine = _engine(tmp_path, COMPOSITE.format(mode=mode))
    assert run(engine, sensor(), [(i * 60.0, v) for i, v in enumerate(steps)]) == expected
