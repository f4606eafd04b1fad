"""Working-time arithmetic on the shipped Chinese calendar, its properties, and the loader."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.domain.calendar import CalendarError, WorkCalendar, WorkingHours, load_calendar

BEIJING = ZoneInfo("Asia/Shanghai")
CN = load_calendar()
ALL_DAY = (WorkingHours(timedelta(0), timedelta(days=1)),)


def bj(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)


@pytest.mark.parametrize(
    ("day", "worked"),
    [
        (date(2026, 9, 30), True),  # Wednesday before National Day
        (date(2026, 10, 1), False),
        (date(2026, 10, 7), False),
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # make-up Saturday
        (date(2026, 10, 11), False),
        (date(2026, 9, 20), True),  # make-up Sunday
        (date(2026, 1, 4), True),
        (date(2026, 2, 14), True),
        (date(2026, 2, 23), False),  # Monday inside the Spring Festival
        (date(2026, 2, 28), True),
        (date(2026, 5, 5), False),
        (date(2026, 5, 9), True),
        (date(2026, 6, 19), False),
        (date(2026, 9, 25), False),
        (date(2025, 1, 1), False),
        (date(2025, 10, 8), False),
        (date(2025, 10, 11), True),
        (date(2027, 1, 1), True),  # not published yet: an ordinary Friday
    ],
)
def test_shipped_calendar_days(day, worked):
    assert CN.is_workday(day) is worked


@pytest.mark.parametrize(
    ("hours", "due"),
    [
        # Sep 30 16:00-17:30 gives 1.5 h; Oct 1-7 are off; Oct 8 and 9 give 7.5 h each.
        (8, bj(2026, 10, 8, 16, 30)),
        (16, bj(2026, 10, 9, 17, 0)),
        (18, bj(2026, 10, 10, 10, 0)),  # the make-up Saturday counts
        (24, bj(2026, 10, 10, 17, 30)),  # ends at closing time, not the next morning
        (24.5, bj(2026, 10, 12, 9, 0)),  # Sunday Oct 11 is off again
    ],
)
def test_deadline_frozen_across_national_day(hours, due):
    assert CN.add_working_time(bj(2026, 9, 30, 16), timedelta(hours=hours)) == due


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (bj(2026, 3, 13, 17), timedelta(hours=1), bj(2026, 3, 16, 9)),  # Friday to Monday
        (bj(2026, 3, 14, 10), timedelta(minutes=30), bj(2026, 3, 16, 9)),  # from a Saturday
        (bj(2026, 3, 16, 11, 30), timedelta(hours=1), bj(2026, 3, 16, 14)),  # lunch break
        (bj(2026, 3, 16, 12, 45), timedelta(minutes=10), bj(2026, 3, 16, 13, 40)),  # in lunch
        (bj(2026, 3, 16, 6), timedelta(hours=1), bj(2026, 3, 16, 9, 30)),  # before opening
        (bj(2026, 3, 16, 20), timedelta(0), bj(2026, 3, 16, 20)),  # nothing to add
        (bj(2026, 2, 13, 17), timedelta(hours=1), bj(2026, 2, 14, 9)),  # make-up Saturday
        (bj(2026, 2, 14, 17), timedelta(hours=1), bj(2026, 2, 24, 9)),  # over Spring Festival
    ],
)
def test_add_working_time(start, duration, due):
    assert CN.add_working_time(start, duration) == due


def test_results_are_utc_whatever_zone_comes_in():
    from_utc = CN.add_working_time(datetime(2026, 3, 16, 1, tzinfo=UTC), timedelta(hours=2))
    new_york = ZoneInfo("America/New_York")
    from_new_york = CN.add_working_time(
        datetime(2026, 3, 15, 21, tzinfo=new_york), timedelta(hours=2)
    )
    assert (from_utc, from_utc.tzinfo) == (datetime(2026, 3, 16, 3, tzinfo=UTC), UTC)
    assert from_new_york == from_utc


@pytest.mark.parametrize(
    ("instant", "working"),
    [
        (bj(2026, 3, 16, 8, 30), True),  # opening time is in
        (bj(2026, 3, 16, 11, 59, 59), True),
        (bj(2026, 3, 16, 12), False),  # closing time is out
        (bj(2026, 3, 16, 13), False),
        (bj(2026, 3, 16, 17, 29), True),
        (bj(2026, 3, 14, 10), False),  # Saturday
        (bj(2026, 10, 10, 10), True),  # make-up Saturday
        (bj(2026, 10, 2, 10), False),  # holiday
        (datetime(2026, 3, 16, 2, tzinfo=UTC), True),  # 10:00 in Beijing
    ],
)
def test_is_working_time(instant, working):
    assert CN.is_working_time(instant) is working


@pytest.mark.parametrize(
    ("a", "b", "between"),
    [
        (bj(2026, 9, 30, 16), bj(2026, 10, 8, 16, 30), timedelta(hours=8)),
        (bj(2026, 10, 8, 16, 30), bj(2026, 9, 30, 16), -timedelta(hours=8)),
        (bj(2026, 10, 2), bj(2026, 10, 5), timedelta(0)),  # inside the holiday
        (bj(2026, 3, 16, 11), bj(2026, 3, 16, 14), timedelta(hours=1, minutes=30)),
        (bj(2026, 3, 13), bj(2026, 3, 20), timedelta(hours=37, minutes=30)),  # five days
    ],
)
def test_working_time_between(a, b, between):
    assert CN.working_time_between(a, b) == between


@pytest.mark.parametrize(
    "call",
    [
        lambda: CN.add_working_time(datetime(2026, 3, 16, 9), timedelta(hours=1)),
        lambda: CN.is_working_time(datetime(2026, 3, 16, 9)),
        lambda: CN.working_time_between(bj(2026, 3, 16), datetime(2026, 3, 17)),
        lambda: CN.add_working_time(bj(2026, 3, 16, 9), timedelta(seconds=-1)),
    ],
)
def test_naive_datetimes_and_negative_durations_are_refused(call):
    with pytest.raises(ValueError, match=r"time zone|negative"):
        call()


def test_shanghai_has_no_daylight_saving():
    offsets = {bj(2026, month, 15).utcoffset() for month in range(1, 13)}
    assert offsets == {timedelta(hours=8)}


@pytest.mark.parametrize(
    ("zone", "start", "due"),
    [
        # The night Berlin's clocks go forward, a day of work is 23 h of wall time.
        ("Europe/Berlin", datetime(2026, 3, 29), datetime(2026, 3, 30, 1)),
        ("Europe/Berlin", datetime(2026, 10, 25), datetime(2026, 10, 25, 23)),
        ("Asia/Shanghai", datetime(2026, 3, 29), datetime(2026, 3, 30)),
    ],
)
def test_working_time_is_elapsed_time_across_dst(zone, start, due):
    tz = ZoneInfo(zone)
    always = WorkCalendar(hours=ALL_DAY, workweek=frozenset(range(7)), tz=tz)
    result = always.add_working_time(start.replace(tzinfo=tz), timedelta(hours=24))
    assert result == due.replace(tzinfo=tz)


instants = st.datetimes(
    min_value=datetime(2024, 12, 1), max_value=datetime(2027, 1, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=200))


@given(start=instants, duration=durations)
def test_adding_then_measuring_gives_the_duration_back(start, duration):
    assert CN.working_time_between(start, CN.add_working_time(start, duration)) == duration


@given(a=instants, b=instants, duration=durations)
def test_add_working_time_is_monotonic_in_start(a, b, duration):
    early, late = sorted((a, b))
    assert CN.add_working_time(early, duration) <= CN.add_working_time(late, duration)


@given(start=instants, d1=durations, d2=durations)
def test_add_working_time_is_monotonic_in_duration(start, d1, d2):
    short, long = sorted((d1, d2))
    assert CN.add_working_time(start, short) <= CN.add_working_time(start, long)


@given(a=instants, b=instants, c=instants)
def test_working_time_between_adds_up(a, b, c):
    first, middle, last = sorted((a, b, c))
    whole = CN.working_time_between(first, last)
    assert CN.working_time_between(first, middle) + CN.working_time_between(middle, last) == whole
    assert CN.working_time_between(last, first) == -whole


@given(
    start=instants,
    duration=durations,
    zone=st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York"]),
)
def test_a_calendar_without_breaks_is_the_wall_clock(start, duration, zone):
    always = WorkCalendar(hours=ALL_DAY, workweek=frozenset(range(7)), tz=ZoneInfo(zone))
    assert always.add_working_time(start, duration) == start + duration


@given(start=instants, duration=durations.filter(bool))
def test_deadlines_land_in_working_time_or_at_a_closing_time(start, duration):
    due = CN.add_working_time(start, duration)
    just_before = due - timedelta(microseconds=1)
    assert CN.is_working_time(just_before)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (
            "holidays: [{name: May, first: 2026-05-01, last: 2026-05-05, workdays: [2026-05-03]}]",
            "holidays.0.workdays.0",
            "2026-05-03 is also a holiday",
        ),
        (
            "holidays: [{name: A, first: 2026-05-02}, {name: B, first: 2026-06-01,"
            " workdays: [2026-06-06, 2026-05-02]}]",
            "holidays.1.workdays.1",
            "also a holiday",
        ),
        (
            "holidays: [{name: A, first: 2026-05-01, workdays: [2026-05-06]}]",
            "holidays.0.workdays.0",
            "2026-05-06 is a wed, already a workday",
        ),
        (
            "holidays: [{name: A, first: 2026-05-05, last: 2026-05-01}]",
            "holidays.0.last",
            "before first",
        ),
        (
            "holidays: [{name: A, first: 2026-05-01, last: 2026-05-05},"
            " {name: B, first: 2026-05-05}]",
            "holidays.1",
            "2026-05-05 is also in 'A'",
        ),
        ("holidays: [{name: A, first: '2026-13-01'}]", "holidays.0.first", "date"),
        ("holidays: [{name: A, frist: 2026-05-01}]", "holidays.0.first", "required"),
        ('hours: ["12:00-08:30"]', "hours.0", "not a range within one day"),
        ('hours: ["08:30-12:00", "11:00-17:30"]', "hours.1", "starts before 08:30-12:00 ends"),
        ('hours: ["13:30-17:30", "08:30-12:00"]', "hours.1", "keep them in order"),
        ('hours: ["8.30-12:00"]', "hours.0", "not a time such as 08:30"),
        ('hours: ["08:30"]', "hours.0", "not a range"),
        ('hours: ["08:30-24:30"]', "hours.0", "not a time of day"),
        ("hours: []", "hours", "at least one range"),
        ("workweek: [mon, fry]", "workweek.1", "Input should be"),
        ("workweek: []", "workweek", "one to seven weekdays"),
        ("timezone: Asia/Beijing", "timezone", "unknown time zone 'Asia/Beijing'"),
        ("weekends: [sat]", "weekends", "Extra inputs"),
    ],
)
def test_loader_errors_name_the_field(tmp_path, text, field, reason):
    path = write(tmp_path, text)
    with pytest.raises(CalendarError, match=reason) as caught:
        load_calendar(path)
    assert (caught.value.field, caught.value.path) == (field, path)
    assert str(caught.value).startswith(f"{path}: {field}: ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- just\n- a list", "must be a mapping"),
        ("hours: [", "not valid YAML"),
        ("holidays: [{name: A, first: 2026-13-01}]", "not valid YAML .month must be in 1..12"),
    ],
)
def test_loader_refuses_files_that_are_not_calendars(tmp_path, text, reason):
    with pytest.raises(CalendarError, match=reason):
        load_calendar(write(tmp_path, text))


def test_loader_names_a_missing_file(tmp_path):
    with pytest.raises(CalendarError, match="cannot be read"):
        load_calendar(tmp_path / "missing.yaml")


def test_loaded_calendar_keeps_hours_and_zone():
    assert [str(hours) for hours in CN.hours] == ["08:30-12:00", "13:30-17:30"]
    assert (CN.name, CN.tz, CN.workweek) == ("cn", BEIJING, frozenset(range(5)))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workdays": frozenset({date(2026, 5, 6)})}, "workdays"),
        (
            {
                "holidays": frozenset({date(2026, 5, 9)}),
                "workdays": frozenset({date(2026, 5, 9)}),
            },
            "workdays",
        ),
        ({"workweek": frozenset({7})}, "workweek"),
        ({"hours": ()}, "hours"),
    ],
)
def test_calendars_built_in_code_are_checked_too(kwargs, field):
    with pytest.raises(CalendarError) as caught:
        WorkCalendar(**kwargs)
    assert caught.value.field == field
