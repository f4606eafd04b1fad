"""Working time on a calendar: a workweek, working hours, holidays and make-up workdays (调休)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from gridwatch.domain.datafiles import DataFileError, read_document

DEFAULT_CALENDAR_PATH = Path(__file__).parent / "calendars" / "cn.yaml"
DEFAULT_TIMEZONE = "Asia/Shanghai"
_DAY = timedelta(days=1)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class CalendarError(DataFileError):
    """A calendar that cannot be used, naming the field (and the file) at fault."""


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """One stretch of a working day, as offsets from local midnight (the end may be 24:00)."""

    start: timedelta
    end: timedelta

    @classmethod
    def parse(cls, text: str) -> "WorkingHours":
        """Hours from 'HH:MM-HH:MM', e.g. '08:30-12:00'; '24:00' ends at midnight."""
        start_text, sep, end_text = text.partition("-")
        if not sep:
            raise ValueError(f"{text!r} is not a range such as 08:30-12:00")
        return cls(_clock_offset(start_text), _clock_offset(end_text))

    def __str__(self) -> str:
        return f"{_format_offset(self.start)}-{_format_offset(self.end)}"


def _default_timezone() -> tzinfo:
    return _zone(DEFAULT_TIMEZONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkCalendar:
    """When work happens: the workweek and hours, minus holidays, plus make-up workdays."""

    hours: tuple[WorkingHours, ...] = (
        WorkingHours(timedelta(hours=8, minutes=30), timedelta(hours=12)),
        WorkingHours(timedelta(hours=13, minutes=30), timedelta(hours=17, minutes=30)),
    )
    workweek: frozenset[int] = frozenset(range(5))  # date.weekday() numbers: Monday is 0
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # weekend days worked instead (调休上班)
    tz: tzinfo = field(default_factory=_default_timezone)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.hours:
            raise CalendarError("at least one range is needed", field="hours")
        previous: WorkingHours | None = None
        for index, hours in enumerate(self.hours):
            if not timedelta(0) <= hours.start < hours.end <= _DAY:
                raise CalendarError(
                    f"{hours} is not a range within one day", field=f"hours.{index}"
                )
            if previous is not None and hours.start < previous.end:
                raise CalendarError(
                    f"{hours} starts before {previous} ends (keep them in order)",
                    field=f"hours.{index}",
                )
            previous = hours
        if not self.workweek or not self.workweek <= frozenset(range(7)):
            raise CalendarError("must name one to seven weekdays", field="workweek")
        for day in sorted(self.workdays):
            problem = _workday_problem(day, holidays=self.holidays, workweek=self.workweek)
            if problem is not None:
                raise CalendarError(problem, field="workdays")

    def is_workday(self, day: date) -> bool:
        """Whether `day` (a local date) is worked at all."""
        if day in self.workdays:
            return True
        return day.weekday() in self.workweek and day not in self.holidays

    def is_working_time(self, t: datetime) -> bool:
        """Whether the aware instant `t` falls inside working hours."""
        instant = _as_utc(t)
        first = next(self._intervals_from(instant))
        return first[0] <= instant

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The UTC instant at which `duration` of working time has passed since `start`."""
        if duration < timedelta(0):
            raise ValueError(f"duration must not be negative, got {duration}")
        instant = _as_utc(start)
        remaining = duration
        if not remaining:
            return instant
        for low, high in self._intervals_from(instant):
            begin = max(low, instant)
            if remaining <= high - begin:
                return begin + remaining
            remaining -= high - begin
        raise AssertionError("unreachable: a calendar with a workweek never runs out of hours")

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b`, negative when `b` comes first."""
        low_end, high_end = _as_utc(a), _as_utc(b)
        if high_end < low_end:
            return -self.working_time_between(b, a)
        total = timedelta(0)
        for low, high in self._intervals_from(low_end):
            if low >= high_end:
                break
            total += min(high, high_end) - max(low, low_end)
        return total

    def _intervals_from(self, instant: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals in UTC, in order, from the one containing or following `instant`."""
        # The day before too: the local date of `instant` may lag the interval it falls in.
        day = instant.astimezone(self.tz).date() - _DAY
        last_end = datetime.min.replace(tzinfo=UTC)
        while True:
            if self.is_workday(day):
                midnight = datetime.combine(day, time())  # local wall time, zone added below
                for hours in self.hours:
                    low = _wall_to_utc(midnight + hours.start, self.tz)
                    high = _wall_to_utc(midnight + hours.end, self.tz)
                    # A range touching a DST gap can map onto its neighbour; never count twice.
                    low = max(low, last_end)
                    if high <= low or high <= instant:
                        continue
                    last_end = high
                    yield low, high
            day += _DAY


def _workday_problem(
    day: date, *, holidays: frozenset[date], workweek: frozenset[int]
) -> str | None:
    if day in holidays:
        return f"{day} is also a holiday"
    if day.weekday() in workweek:
        return f"{day} is a {_WEEKDAYS[day.weekday()]}, already a workday"
    return None


def _as_utc(t: datetime) -> datetime:
    # Aware datetimes sharing a tzinfo compare and subtract as wall times, wrong across DST.
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone; pass an aware datetime")
    return t.astimezone(UTC)


def _wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _clock_offset(text: str) -> timedelta:
    hour_text, sep, minute_text = text.strip().partition(":")
    if not (sep and hour_text.isdigit() and minute_text.isdigit() and len(minute_text) == 2):
        raise ValueError(f"{text.strip()!r} is not a time such as 08:30")
    hour, minute = int(hour_text), int(minute_text)
    if minute >= 60 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 24:00)")
    return timedelta(hours=hour, minutes=minute)


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        # Hosts without /usr/share/zoneinfo (Windows, slim images) need the tzdata package.
        raise CalendarError(
            f"unknown time zone {name!r} (is the tz database or tzdata installed?)",
            field="timezone",
        ) from err


class _Holiday(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    first: date
    last: date | None = None
    workdays: list[date] = []

    @property
    def days(self) -> list[date]:
        last = self.first if self.last is None else self.last
        return [self.first + _DAY * n for n in range((last - self.first).days + 1)]


class _CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    timezone: str = DEFAULT_TIMEZONE
    workweek: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    hours: list[str] = ["08:30-12:00", "13:30-17:30"]
    holidays: list[_Holiday] = []


def load_calendar(path: Path = DEFAULT_CALENDAR_PATH) -> WorkCalendar:
    """The calendar a YAML file describes; errors name the file and the field."""
    raw = read_document(
        path, _CalendarFile, error=CalendarError, shape="a mapping of calendar fields"
    )
    try:
        return _build(raw)
    except CalendarError as err:
        raise CalendarError(err.reason, field=err.field, path=path) from err


def _build(raw: _CalendarFile) -> WorkCalendar:
    hours: list[WorkingHours] = []
    for index, text in enumerate(raw.hours):
        try:
            hours.append(WorkingHours.parse(text))
        except ValueError as err:
            raise CalendarError(str(err), field=f"hours.{index}") from err
    workweek = frozenset(_WEEKDAYS.index(day) for day in raw.workweek)
    owner: dict[date, int] = {}
    for index, holiday in enumerate(raw.holidays):
        if holiday.last is not None and holiday.last < holiday.first:
            raise CalendarError(f"{holiday.last} is before first", field=f"holidays.{index}.last")
        for day in holiday.days:
            if day in owner:
                other = raw.holidays[owner[day]].name
                raise CalendarError(f"{day} is also in {other!r}", field=f"holidays.{index}")
            owner[day] = index
    holidays = frozenset(owner)
    workdays: set[date] = set()
    for index, holiday in enumerate(raw.holidays):
        for position, day in enumerate(holiday.workdays):
            problem = _workday_problem(day, holidays=holidays, workweek=workweek)
            if problem is not None:
                raise CalendarError(problem, field=f"holidays.{index}.workdays.{position}")
            workdays.add(day)
    return WorkCalendar(
        hours=tuple(hours),
        workweek=workweek,
        holidays=holidays,
        workdays=frozenset(workdays),
        tz=_zone(raw.timezone),
        name=raw.name,
    )
