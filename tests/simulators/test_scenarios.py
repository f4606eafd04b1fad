"""Shipped scenarios load and do what they say; bad scenarios fail naming file and field."""

import itertools
from collections import deque
from pathlib import Path
from statistics import mean

import pytest

from gridwatch.simulators import (
    ScenarioError,
    SimMessage,
    iter_messages,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)

SHIPPED = ["demo", "entrapment", "leaning_billboard", "noisy_threshold", "red_rainstorm"]


def _values(messages: list[SimMessage], sensor_id: str, field: str) -> list[tuple[float, float]]:
    return [(m.t_s, m.payload[field]) for m in messages if m.sensor_id == sensor_id]


def _max_window_sum(series: list[tuple[float, float]], window_s: float) -> float:
    """Largest total of reports whose times fall in any (t - window, t]."""
    best = total = 0.0
    inside: deque[tuple[float, float]] = deque()
    for t, value in series:
        inside.append((t, value))
        total += value
        while inside[0][0] <= t - window_s:
            total -= inside.popleft()[1]
        best = max(best, total)
    return best


def _increments(totals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Counter readings to increments; a drop is a reset, so the new value is the increment."""
    previous = totals[0][1]
    result = []
    for t, value in totals[1:]:
        result.append((t, value - previous if value >= previous else value))
        previous = value
    return result


def test_shipped_scenarios_are_listed():
    assert shipped_scenarios() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_loads_and_feeds(name):
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description
    messages = list(iter_messages(scenario, until_s=600))
    assert {m.sensor_id for m in messages} >= {d.id for d in scenario.devices if d.kind != "camera"}


def test_demo_has_one_device_of_each_kind_and_runs_forever():
    demo = load_scenario("demo")
    assert [(d.id, d.kind) for d in demo.devices] == [
        ("RG-001", "rain_gauge"),
        ("BB-001", "tilt"),
        ("EL-001", "elevator"),
        ("CAM-001", "camera"),
    ]
    assert demo.device("RG-001").interval_s == 5
    assert demo.duration_s is None


def test_demo_rain_gauge_pours_within_30_s_then_eases():
    rain = _values(list(iter_messages(load_scenario("demo"), until_s=600)), "RG-001", "rain_mm")
    assert max(v for t, v in rain if t <= 30) >= 3.0
    assert sum(v for t, v in rain if t <= 135) >= 100  # a red rainstorm in minutes
    assert max(v for t, v in rain if t >= 200) <= 0.1


def test_demo_other_devices_stay_normal():
    messages = list(iter_messages(load_scenario("demo"), until_s=900))
    assert not [m for m in messages if m.sensor_id == "EL-001" and m.suffix == "event"]
    camera = [m.payload for m in messages if m.sensor_id == "CAM-001"]
    assert camera
    assert all(p["confidence"] <= 0.5 for p in camera)
    tilt = _values(messages, "BB-001", "tilt_x_deg")
    assert all(abs(x - 0.12) < 0.02 for _, x in tilt)


@pytest.mark.parametrize(
    ("sensor_id", "field", "to_increments"),
    [("RG-101", "rain_mm", list), ("RG-102", "total_mm", _increments)],
)
def test_red_rainstorm_reaches_100_mm_within_3_h(sensor_id, field, to_increments):
    messages = list(iter_messages(load_scenario("red_rainstorm")))
    series = to_increments(_values(messages, sensor_id, field))
    assert _max_window_sum(series, 3 * 3600) >= 100
    assert _max_window_sum(series, 3600) < 70  # heavy, but a plausible hourly intensity


def test_red_rainstorm_reports_every_5_minutes_plus_extra_reports():
    messages = [m for m in iter_messages(load_scenario("red_rainstorm")) if m.sensor_id == "RG-101"]
    times = [m.t_s for m in messages]
    assert set(range(0, 14401, 300)) <= set(times)
    assert len(times) > len(range(0, 14401, 300))  # threshold-triggered extras


def test_red_rainstorm_counter_resets_after_power_loss():
    scenario = load_scenario("red_rainstorm")
    totals = _values(list(iter_messages(scenario)), "RG-102", "total_mm")
    assert not [t for t, _ in totals if 6000 <= t < 6300]
    drops = [(a, b) for (_, a), (_, b) in itertools.pairwise(totals) if b < a]
    assert len(drops) == 1


def test_noisy_threshold_hovers_around_20_mm_per_hour():
    series = _values(list(iter_messages(load_scenario("noisy_threshold"))), "RG-301", "rain_mm")
    hourly = [sum(v for s, v in series if t - 3600 < s <= t) for t, _ in series if t >= 3600]
    above = [total >= 20 for total in hourly]
    crossings = sum(1 for a, b in itertools.pairwise(above) if a != b)
    assert crossings >= 4
    assert min(hourly) >= 13
    assert max(hourly) <= 27


def test_leaning_billboard_creeps_a_degree_while_wind_reaches_gale():
    messages = list(iter_messages(load_scenario("leaning_billboard")))
    tilt = _values(messages, "BB-201", "tilt_x_deg")
    first_hour = mean(x for t, x in tilt if t < 1800)
    last_half_hour = mean(x for t, x in tilt if t > 19800)
    assert 0.8 <= last_half_hour - first_hour <= 1.3
    wind = _values(messages, "BB-201", "wind_ms")
    assert mean(w for t, w in wind if t < 3600) < 6
    assert mean(w for t, w in wind if t >= 14400) >= 17.2  # force 8, gale
    neighbour = _values(messages, "BB-202", "tilt_x_deg")
    assert all(abs(x + 0.04) < 0.04 for _, x in neighbour)


def test_entrapment_stops_outside_the_door_zone_then_entraps():
    messages = list(iter_messages(load_scenario("entrapment")))
    events = [(m.t_s, m.payload["fault"]) for m in messages if m.suffix == "event"]
    assert events == [(45, "stopped_outside_door_zone"), (60, "alarm_button"), (75, "entrapment")]
    trapped = [m.payload for m in messages if m.suffix == "telemetry" and 45 < m.t_s < 1380]
    assert {(p["moving"], p["in_door_zone"], p["occupied"]) for p in trapped} == {
        (False, False, True)
    }
    modes = {m.payload["mode"] for m in messages if m.suffix == "telemetry" and m.t_s >= 1400}
    assert modes == {"inspection", "normal"}


BAD = [
    ("devices: []", "devices: a scenario needs at least one device"),
    ("devices: [{id: X, kind: lamp, interval_s: 5}]", "devices[0] (X): Input tag 'lamp'"),
    (
        "devices: [{id: RG-1, kind: rain_gauge, interval_s: 5, tip_mm: big}]",
        "devices[0] (RG-1).tip_mm: Input should be a valid number",
    ),
    (
        "devices: [{id: RG-1, kind: rain_gauge, interval_s: 5, colour: red}]",
        "devices[0] (RG-1).colour: Extra inputs are not permitted",
    ),
    ("devices: [{id: 'bad id', kind: tilt, interval_s: 5}]", "devices[0] (bad id).id: String"),
    (
        "devices: [{id: A, kind: tilt, interval_s: 5}, {id: A, kind: tilt, interval_s: 5}]",
        "devices[1].id: duplicate device id 'A'",
    ),
    (
        "devices: [{id: A, kind: tilt, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: B, action: offline}]",
        "timeline[0].device: unknown device 'B' (devices: A)",
    ),
    (
        "devices: [{id: A, kind: tilt, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: A, action: fault, fault: entrapment}]",
        "timeline[0].action: 'fault' does not apply to tilt A",
    ),
    (
        "devices: [{id: E, kind: elevator, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: E, action: fault, fault: stuck}]",
        "timeline[0].fault: Input should be 'safety_circuit_open'",
    ),
    (
        "devices: [{id: R, kind: rain_gauge, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: R, action: set, params: {rate_mm_h: -1}}]",
        "timeline[0].params.rate_mm_h: Input should be greater than or equal to 0",
    ),
    (
        "devices: [{id: R, kind: rain_gauge, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: R, action: set, params: {interval_s: 1}}]",
        "timeline[0].params: interval_s cannot be changed by a set step",
    ),
    (
        "devices: [{id: C, kind: camera, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: C, action: detect, event: smoke_fire, confidence: 1.5}]",
        "timeline[0].confidence: Input should be less than or equal to 1",
    ),
    ("devices: [{id: A, kind: tilt, interval_s: 5}\n", "line 2, column 1: invalid YAML"),
    ("- just a list", "the top level must be a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_scenarios_name_the_file_and_field(text, expected):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="bad.yaml")
    assert f"bad.yaml: {expected}" in str(caught.value)


def test_errors_are_all_reported_at_once():
    text = (
        "devices: [{id: A, kind: tilt, interval_s: 5}]\n"
        "timeline: [{at_s: 1, device: B, action: offline}, {at_s: 2, device: C, action: online}]"
    )
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="bad.yaml")
    assert len(caught.value.problems) == 2


def test_unknown_shipped_name_lists_the_known_ones():
    with pytest.raises(ScenarioError, match=r"no shipped scenario by that name.*red_rainstorm"):
        load_scenario("hurricane")


def test_missing_file_is_a_scenario_error(tmp_path: Path):
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")


def test_a_path_loads_and_names_the_scenario_after_the_file(tmp_path: Path):
    path = tmp_path / "my_test.yaml"
    path.write_text("devices: [{id: A, kind: tilt, interval_s: 5}]")
    assert load_scenario(str(path)).name == "my_test"
