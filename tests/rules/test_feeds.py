"""The shipped feeds replayed through the default pack: exactly these alarms, and no others."""

import json
from pathlib import Path

import pytest

from gridwatch.domain import AlarmTransition, Channel
from gridwatch.rules import DEFAULT_PACK_DIR, load_pack_dir
from gridwatch.rules.feeds import FeedError, load_sensors, read_feed
from gridwatch.rules.replay import check_rule_files, format_alarms, replay, replay_feed

FEEDS = Path(__file__).resolve().parents[2] / "src" / "gridwatch" / "rules" / "feeds"

EXPECTED = {
    "red_rainstorm": [
        # One case per gauge (case group `rainstorm`): opened by the short heavy rain,
        # escalated by the rainstorm signal; the short heavy rain ending clears nothing.
        ("01:08", "RG-101", "short_heavy_rain", "raised", "yellow"),
        ("01:11", "RG-102", "short_heavy_rain", "raised", "yellow"),
        ("01:39", "RG-101", "rainstorm", "escalated", "orange"),
        # RG-102 loses power: its last will says offline, it is back 5 minutes later.
        ("01:40", "RG-102", "sensor_offline", "raised", "yellow"),
        ("01:45", "RG-102", "sensor_offline", "cleared", "yellow"),
        # Its counter restarted at zero; the reset is detected, the storm still counts.
        ("01:46", "RG-102", "rainstorm", "escalated", "orange"),
        ("02:35", "RG-101", "rainstorm", "escalated", "red"),
        ("02:41", "RG-102", "rainstorm", "escalated", "red"),
    ],
    "leaning_billboard": [
        # BB-201 leans: one alarm, escalating with the deviation and, in the gale, a level
        # more; its gale and tilt-rate alarms are inhibited. BB-202 next door gets the gale.
        ("01:05", "BB-201", "billboard_tilt_deviation", "raised", "blue"),
        ("01:55", "BB-201", "billboard_tilt_deviation", "escalated", "yellow"),
        ("02:01", "BB-201", "billboard_tilt_deviation", "escalated", "orange"),
        ("02:04", "BB-202", "billboard_gale", "raised", "blue"),
        ("03:06", "BB-202", "billboard_gale", "escalated", "yellow"),
        ("03:11", "BB-201", "billboard_tilt_deviation", "escalated", "red"),
    ],
    "entrapment": [
        # One case for the elevator: stopped outside the door zone, then the entrapment;
        # the telemetry-derived state alarm is inhibited, inspection raises nothing.
        ("00:00", "EL-201", "elevator_fault", "raised", "orange"),
        ("00:01", "EL-201", "elevator_fault", "escalated", "red"),
        ("00:28", "EL-201", "elevator_fault", "cleared", "red"),
    ],
    "noisy_threshold": [
        # The hourly total wanders 16..25 mm around the 20 mm level for hours: raised once,
        # never cleared and raised again (it is a real rainstorm too, 50 mm in 3 h).
        ("00:55", "RG-301", "short_heavy_rain", "raised", "yellow"),
        ("02:25", "RG-301", "rainstorm", "escalated", "orange"),
    ],
    # A jittery inclinometer swaying in a breeze and a drizzle gauge: must raise nothing.
    "noisy_quiet": [],
}


@pytest.fixture(scope="module")
def pack():
    return load_pack_dir(DEFAULT_PACK_DIR)


@pytest.fixture(scope="module")
def sensors():
    return load_sensors(FEEDS / "sensors.yaml")


@pytest.mark.parametrize("name", ["red_rainstorm", "noisy_threshold"])
def test_one_storm_at_one_gauge_is_one_case(pack, sensors, name):
    alarms = replay(pack, sensors, FEEDS / f"{name}.jsonl").alarms
    city = [a for a in alarms if not a.maintenance]
    gauges = {a.sensor_id for a in city}
    assert {a.case_fingerprint for a in city} == {f"{g}/rainstorm" for g in gauges}
    # Both signals reach the one case, so its evidence names every rule that fired.
    for gauge in gauges:
        assert {a.rule_id for a in city if a.sensor_id == gauge} == {
            "short_heavy_rain",
            "rainstorm",
        }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feed_raises_exactly_the_expected_alarms(pack, sensors, name):
    result = replay(pack, sensors, FEEDS / f"{name}.jsonl")
    assert result.unknown_sensors == set()
    changes = [
        (f"{a.at:%H:%M}", a.sensor_id, a.rule_id, a.transition.value, a.severity.value)
        for a in result.alarms
        if a.transition is not AlarmTransition.REPEATED
    ]
    assert changes == EXPECTED[name]
    # Every alarm says why and carries the values behind it.
    assert all(alarm.why and alarm.values for alarm in result.alarms)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_feeds_are_small(name):
    assert (FEEDS / f"{name}.jsonl").stat().st_size < 300 * 1024


def test_maintenance_alarms_are_marked(pack, sensors):
    alarms = replay_feed(pack, sensors, FEEDS / "red_rainstorm.jsonl")
    offline = [a for a in alarms if a.rule_id == "sensor_offline"]
    assert offline
    assert all(a.maintenance and a.category == "maintenance:offline" for a in offline)
    assert not any(a.maintenance for a in alarms if a.rule_id == "rainstorm")


def test_format_alarms_prints_times_and_why(pack, sensors):
    text = format_alarms(replay_feed(pack, sensors, FEEDS / "entrapment.jsonl"))
    assert text.splitlines()[1] == (
        "2025-01-01 00:01:15Z  escalated red    city  EL-201/elevator_fault  "
        "fault = entrapment (red)"
    )


def test_simulator_recordings_are_read_too(tmp_path):
    lines = [
        {"topic": "gridwatch/RG-1/telemetry", "payload": '{"rain_mm": 1.5}', "t": 2.5},
        {"topic": "gridwatch/RG-1/status", "payload": "offline", "t": 3.0, "retain": True},
        {"topic": "city/gw/RG-1/event", "payload": '{"ts": 1750000000000, "x": "y"}', "t": 4},
    ]
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    readings = [item.reading for item in read_feed(path)]
    assert [(r.channel, r.values) for r in readings] == [
        (Channel.TELEMETRY, {"rain_mm": 1.5}),
        (Channel.STATUS, {"status": "offline"}),
        (Channel.EVENT, {"x": "y"}),
    ]
    assert readings[0].ts.second == 2
    assert readings[2].ts.year == 2025


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"sensor_id": "A", "ts": "yesterday"}', "Invalid isoformat"),
        ('{"sensor_id": "A", "ts": "2025-01-01T00:00:00"}', "without a zone"),
        ('{"sensor_id": "A", "ts": 1, "channel": "radio"}', "radio"),
        ("[1, 2]", "JSON object"),
        ('{"topic": "nope", "payload": "{}"}', "prefix/sensor_id/channel"),
    ],
)
def test_bad_feed_lines_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sensor_id": "A", "ts": 0}\n' + line + "\n")
    with pytest.raises(FeedError, match=f"bad.jsonl:2: .*{message}"):
        list(read_feed(path))


def test_check_rule_files_reports_each_file_and_the_set(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text((DEFAULT_PACK_DIR / "gale.yaml").read_text())
    twin = tmp_path / "twin.yaml"
    twin.write_text(good.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: x, title: t, category: c, condition: {type: nope}}\n")
    assert check_rule_files(sorted(DEFAULT_PACK_DIR.glob("*.yaml"))).ok
    alone = check_rule_files([good, bad])
    assert not alone.ok
    assert alone.lines()[1].startswith(f"{bad}: ERROR")
    assert "condition.type" in alone.lines()[1]
    together = check_rule_files([good, twin])
    assert [item.error for item in together.files] == [None, None]
    assert together.error is not None
    assert "duplicate id" in together.error


def test_every_default_rule_is_in_the_readme_table(pack):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    camera = [rule.id for rule in pack.rules if rule.id.startswith("camera_")]
    undocumented = [rule.id for rule in pack.rules if f"`{rule.id}`" not in readme]
    assert undocumented == [], "every default rule belongs in the README's table"
    assert len(camera) == 13
