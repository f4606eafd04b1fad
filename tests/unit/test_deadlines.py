"""Deadline rules: matching order and patterns, wall and working clocks, warnings, the loader."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridwatch.domain.calendar import load_calendar
from gridwatch.domain.deadlines import (
    Clock,
    Deadline,
    DeadlinePolicy,
    DeadlineRule,
    DeadlineStatus,
    DueSoon,
    PolicyError,
    Stage,
    deadline,
    due_at,
    due_soon,
    load_policy,
    overdue,
    parse_duration,
    status,
)
from gridwatch.domain.severity import Severity
from gridwatch.rules.loader import DEFAULT_PACK_DIR, load_rules_dir

BEIJING = ZoneInfo("Asia/Shanghai")
CN = load_calendar()
DEFAULT = load_policy()
HOUR = timedelta(hours=1)


def bj(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)


def due(policy, category, severity, stage, start):
    return due_at(
        policy=policy,
        calendar=CN,
        category=category,
        severity=Severity(severity),
        stage=Stage(stage),
        start=start,
    )


def make(policy, category, severity, stage, start) -> Deadline:
    found = deadline(
        policy=policy,
        calendar=CN,
        category=category,
        severity=Severity(severity),
        stage=Stage(stage),
        start=start,
    )
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("dispatch", bj(2026, 10, 1, 3, 5)),
        ("handle", bj(2026, 10, 1, 3, 30)),
    ],
)
def test_red_elevator_entrapment_runs_on_the_wall_clock_even_at_night_on_a_holiday(stage, expected):
    assert due(DEFAULT, "component:0601", "red", stage, bj(2026, 10, 1, 3)) == expected


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("dispatch", bj(2026, 10, 8, 11)),  # 1.5 h on Sep 30, 2.5 h after the holiday
        ("handle", bj(2026, 10, 9, 17)),
        ("verify", bj(2026, 10, 8, 16, 30)),
    ],
)
def test_maintenance_time_is_frozen_across_national_day(stage, expected):
    assert due(DEFAULT, "maintenance:offline", "yellow", stage, bj(2026, 9, 30, 16)) == expected


def test_every_category_of_the_rule_pack_has_all_three_limits_at_every_severity():
    categories = {rule.category for rule in load_rules_dir(DEFAULT_PACK_DIR)}
    missing = [
        (category, severity, stage)
        for category in sorted(categories)
        for severity in Severity
        for stage in Stage
        if due(DEFAULT, category, severity, stage, bj(2026, 3, 16, 9)) is None
    ]
    assert missing == []


ORDERED = DeadlinePolicy(
    rules=(
        DeadlineRule(category="event:0401", severity=Severity.RED, dispatch=timedelta(minutes=1)),
        DeadlineRule(category="event:04*", dispatch=timedelta(minutes=2)),
        DeadlineRule(category="event:0401", dispatch=timedelta(minutes=3)),  # never reached
        DeadlineRule(category="component:0307", handle=timedelta(minutes=4)),
        DeadlineRule(severity=Severity.BLUE, dispatch=timedelta(minutes=5)),
        DeadlineRule(category="*", dispatch=timedelta(minutes=6)),
    )
)


@pytest.mark.parametrize(
    ("category", "severity", "minutes"),
    [
        ("event:0401", "red", 1),  # exact category and severity
        ("event:0401", "orange", 2),  # the prefix comes before the exact rule, so it wins
        ("event:0404", "red", 2),
        ("event:04", "blue", 2),  # a prefix matches itself
        ("event:0501", "blue", 5),  # severity-only rule
        ("event:0501", "red", 6),
        ("maintenance:offline", "yellow", 6),
    ],
)
def test_the_first_matching_rule_wins(category, severity, minutes):
    start = datetime(2026, 3, 16, 1, tzinfo=UTC)
    expected = start + timedelta(minutes=minutes)
    assert due(ORDERED, category, severity, "dispatch", start) == expected


@pytest.mark.parametrize(
    ("category", "severity", "stage"),
    [
        ("component:0307", "red", "dispatch"),  # the matching rule sets no dispatch limit
        ("component:0307", "red", "verify"),
        ("event:0401", "red", "handle"),
    ],
)
def test_a_stage_without_a_limit_has_no_deadline(category, severity, stage):
    assert due(ORDERED, category, severity, stage, bj(2026, 3, 16, 9)) is None


def test_no_matching_rule_means_no_deadline():
    policy = DeadlinePolicy(rules=(DeadlineRule(category="event:*", dispatch=HOUR),))
    assert due(policy, "component:0601", "red", "dispatch", bj(2026, 3, 16, 9)) is None


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        (Clock.WALL, bj(2026, 3, 13, 18)),
        (Clock.WORKING, bj(2026, 3, 16, 9)),  # the weekend does not count
    ],
)
def test_wall_and_working_clocks(clock, expected):
    policy = DeadlinePolicy(rules=(DeadlineRule(clock=clock, dispatch=HOUR),))
    result = due(policy, "event:0102", "blue", "dispatch", bj(2026, 3, 13, 17))
    assert (result, result.tzinfo) == (expected, UTC)


TEN_MINUTES = DeadlinePolicy(rules=(DeadlineRule(dispatch=timedelta(minutes=10)),))
MARGIN = DeadlinePolicy(
    rules=(
        DeadlineRule(
            dispatch=timedelta(minutes=30), due_soon=DueSoon(margin=timedelta(minutes=10))
        ),
    ),
    due_soon=DueSoon(fraction=0.5),
)


@pytest.mark.parametrize(
    ("policy", "elapsed", "expected"),
    [
        (TEN_MINUTES, timedelta(0), DeadlineStatus.ON_TIME),
        (TEN_MINUTES, timedelta(minutes=8), DeadlineStatus.ON_TIME),  # exactly 20 % left
        (TEN_MINUTES, timedelta(minutes=8, seconds=1), DeadlineStatus.DUE_SOON),
        (TEN_MINUTES, timedelta(minutes=10), DeadlineStatus.DUE_SOON),  # due, not late yet
        (TEN_MINUTES, timedelta(minutes=10, microseconds=1), DeadlineStatus.OVERDUE),
        (MARGIN, timedelta(minutes=19), DeadlineStatus.ON_TIME),  # the rule's margin wins
        (MARGIN, timedelta(minutes=21), DeadlineStatus.DUE_SOON),
        (MARGIN, timedelta(hours=5), DeadlineStatus.OVERDUE),
    ],
)
def test_wall_clock_status(policy, elapsed, expected):
    start = bj(2026, 3, 16, 9)
    found = make(policy, "event:0102", "yellow", "dispatch", start)
    now = start + elapsed
    assert (status(found, now), due_soon(found, now), overdue(found, now)) == (
        expected,
        expected is DeadlineStatus.DUE_SOON,
        expected is DeadlineStatus.OVERDUE,
    )


@pytest.mark.parametrize(
    ("now", "remaining", "expected"),
    [
        # Dispatch in 4 working hours from Friday 16:00: due Monday 11:00, warning 48 min before.
        (bj(2026, 3, 14, 12), timedelta(hours=2, minutes=30), DeadlineStatus.ON_TIME),
        (bj(2026, 3, 16, 10, 10), timedelta(minutes=50), DeadlineStatus.ON_TIME),
        (bj(2026, 3, 16, 10, 15), timedelta(minutes=45), DeadlineStatus.DUE_SOON),
        (bj(2026, 3, 16, 11, 1), -timedelta(minutes=1), DeadlineStatus.OVERDUE),
    ],
)
def test_working_clock_status_counts_only_working_time(now, remaining, expected):
    found = make(DEFAULT, "maintenance:low_battery", "blue", "dispatch", bj(2026, 3, 13, 16))
    assert found.due == bj(2026, 3, 16, 11)
    assert (found.remaining(now), status(found, now)) == (remaining, expected)


def test_a_deadline_keeps_its_inputs_in_utc():
    found = make(DEFAULT, "component:0601", "red", "handle", bj(2026, 3, 16, 9))
    assert (found.start, found.allowed, found.warn_within, found.clock) == (
        datetime(2026, 3, 16, 1, tzinfo=UTC),
        timedelta(minutes=30),
        timedelta(minutes=6),
        Clock.WALL,
    )


def test_naive_start_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        due(DEFAULT, "component:0601", "red", "handle", datetime(2026, 3, 16, 9))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("5min", timedelta(minutes=5)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (" 2d ", timedelta(days=2)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5", "5 minutes", "h", "-5m", ""])
def test_parse_duration_refuses_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("category", ["event:*04", "*:0401", "", "event:04**"])
def test_star_only_ends_a_pattern(category):
    with pytest.raises(PolicyError) as caught:
        DeadlineRule(category=category)
    assert caught.value.field == "category"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "due_soon"),
        ({"fraction": 0.2, "margin": HOUR}, "due_soon"),
        ({"fraction": 1.0}, "due_soon.fraction"),
        ({"margin": timedelta(0)}, "due_soon.margin"),
    ],
)
def test_due_soon_needs_exactly_one_sensible_setting(kwargs, field):
    with pytest.raises(PolicyError) as caught:
        DueSoon(**kwargs)
    assert caught.value.field == field


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("rules: [{category: '*', severity: purple}]", "rules.0.severity", "Input should be"),
        ("rules: [{category: '*', dispatch: 5 minutes}]", "rules.0.dispatch", "not a duration"),
        ("rules: [{category: '*', handle: 0m}]", "rules.0.handle", "not positive"),
        (
            "rules: [{category: '*'}, {category: '*', clock: working, handle: 2d}]",
            "rules.1.handle",
            "give working time in hours",
        ),
        ("rules: [{category: '*', clock: sundial}]", "rules.0.clock", "Input should be"),
        ("rules: [{category: 'event:*04'}]", "rules.0.category", "may only end the pattern"),
        ("rules: [{severity: red}]", "rules.0.category", "required"),
        ("rules: [{category: '*', dispach: 5m}]", "rules.0.dispach", "Extra inputs"),
        (
            "rules: [{category: '*', due_soon: {margin: soon}}]",
            "rules.0.due_soon.margin",
            "not a duration",
        ),
        (
            "rules: [{category: '*', due_soon: {fraction: 0.2, margin: 5m}}]",
            "rules.0.due_soon",
            "exactly one",
        ),
        ("due_soon: {fraction: 2}\nrules: []", "due_soon.fraction", "between 0 and 1"),
        ("due_soon: {}\nrules: []", "due_soon", "exactly one"),
        ("rule: []", "rules", "required"),
    ],
)
def test_loader_errors_name_the_field(tmp_path, text, field, reason):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError, match=reason) as caught:
        load_policy(path)
    assert (caught.value.field, caught.value.path) == (field, path)
    assert str(caught.value).startswith(f"{path}: {field}: ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("- a list", "must be a mapping"), ("rules: [", "not valid YAML")],
)
def test_loader_refuses_files_that_are_not_policies(tmp_path, text, reason):
    with pytest.raises(PolicyError, match=reason):
        load_policy(write(tmp_path, text))


def test_loader_names_a_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")


def test_loader_keeps_document_order_and_the_default_warning(tmp_path):
    path = write(
        tmp_path,
        "due_soon: {margin: 10m}\n"
        "rules:\n"
        "  - {category: 'event:04*', severity: red, dispatch: 5m}\n"
        "  - {category: '*', clock: working, verify: 7.5h, due_soon: {fraction: 0.5}}\n",
    )
    assert load_policy(path) == DeadlinePolicy(
        rules=(
            DeadlineRule(
                category="event:04*", severity=Severity.RED, dispatch=timedelta(minutes=5)
            ),
            DeadlineRule(
                clock=Clock.WORKING,
                verify=timedelta(hours=7, minutes=30),
                due_soon=DueSoon(fraction=0.5),
            ),
        ),
        due_soon=DueSoon(margin=timedelta(minutes=10)),
    )
