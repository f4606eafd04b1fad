"""Evaluation (考核评价): case KPIs over a period, sliced by grid level, unit, category or kind.

SQL counts and sums every group in one pass over the period's cases; the rates and the
percentile are the pure functions below, so both backends share one formula. PostgreSQL
computes p90 with `percentile_cont` in the same pass; SQLite (the demo and small
installations) sorts the durations in Python. Durations are seconds to the millisecond.
"""

import asyncio
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases.models import Case, CaseStatus
from gridwatch.domain.calendar import DEFAULT_TIMEZONE

P90 = 0.9
_CLOSED = (CaseStatus.CLOSED.value, CaseStatus.EVALUATED.value)
_ENDED = (*_CLOSED, CaseStatus.CANCELLED.value)


class GroupBy(StrEnum):
    """What the groups of a KPI report are keyed by."""

    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"
    UNIT = "unit"
    CATEGORY = "category"
    KIND = "kind"


# Leading digits of a unit-grid code: 6 for the district (GB/T 2260), +3 street, +3 community.
_PREFIX = {GroupBy.DISTRICT: 6, GroupBy.STREET: 9, GroupBy.COMMUNITY: 12}


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiQuery:
    """Cases reported in [start, end); `maintenance` None takes both queues."""

    start: datetime
    end: datetime
    group_by: GroupBy | None = None
    maintenance: bool | None = False
    top: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """What SQL counts and sums for one group; every KPI is derived from these."""

    reported: int = 0
    dispatched: int = 0
    closed: int = 0
    cancelled: int = 0
    due_to_close: int = 0
    closed_on_time: int = 0
    reworked: int = 0
    dispatch_timed: int = 0
    dispatched_in_time: int = 0
    auto_dispatched: int = 0
    auto_kept: int = 0
    overdue: int = 0
    dispatch_s_sum: float = 0.0
    dispatch_s_count: int = 0
    close_s_sum: float = 0.0
    close_s_count: int = 0


_TALLY = tuple(f.name for f in fields(Tally))


class Durations(BaseModel):
    """Mean and 90th percentile of a duration, in seconds; null without cases."""

    mean: float | None
    p90: float | None


class KpiFigures(BaseModel):
    """The KPIs of one group of cases (or of all of them)."""

    reported: int
    dispatched: int
    closed: int
    cancelled: int
    due_to_close: int
    closure_rate: float | None
    on_time_closure_rate: float | None
    rework_rate: float | None
    timely_dispatch_rate: float | None
    auto_dispatch_accuracy: float | None
    time_to_dispatch_s: Durations
    time_to_close_s: Durations
    overdue: int


class _Keyed(BaseModel):
    key: str | None


class KpiGroup(KpiFigures, _Keyed):
    """The KPIs of the cases sharing one key (null: cases without one, e.g. no grid)."""


class Hotspot(BaseModel):
    """Cases reported in one grid unit in one hour of the local day."""

    grid: str
    hour: int
    count: int


class KpiReport(BaseModel):
    """The answer of GET /api/v1/kpi."""

    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    group_by: GroupBy | None
    groups: list[KpiGroup]
    totals: KpiFigures
    hotspots: list[Hotspot]


def ratio(part: int, whole: int) -> float | None:
    """part ÷ whole, None when there is nothing to divide by."""
    return None if whole == 0 else part / whole


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's `percentile_cont`: linear between the two nearest ranks of sorted values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figures(tally: Tally, *, dispatch_p90: float | None, close_p90: float | None) -> KpiFigures:
    """The KPIs of a tally (the formulas of README "KPIs")."""
    return KpiFigures(
        reported=tally.reported,
        dispatched=tally.dispatched,
        closed=tally.closed,
        cancelled=tally.cancelled,
        due_to_close=tally.due_to_close,
        closure_rate=ratio(tally.closed, tally.due_to_close),
        on_time_closure_rate=ratio(tally.closed_on_time, tally.due_to_close),
        rework_rate=ratio(tally.reworked, tally.closed),
        timely_dispatch_rate=ratio(tally.dispatched_in_time, tally.dispatch_timed),
        auto_dispatch_accuracy=ratio(tally.auto_kept, tally.auto_dispatched),
        time_to_dispatch_s=_durations(tally.dispatch_s_sum, tally.dispatch_s_count, dispatch_p90),
        time_to_close_s=_durations(tally.close_s_sum, tally.close_s_count, close_p90),
        overdue=tally.overdue,
    )


def _durations(total: float, count: int, p90: float | None) -> Durations:
    mean = None if count == 0 else _ms(total / count)
    return Durations(mean=mean, p90=None if p90 is None else _ms(p90))


def _ms(seconds: float) -> float:
    return round(seconds, 3)


async def report(*, sessions: async_sessionmaker[AsyncSession], query: KpiQuery) -> KpiReport:
    """The KPIs of the period's city, maintenance or all cases; drills and tests never count."""
    key = _key(query.group_by)
    # The tallies and the hotspots are two scans of the same cases: on two connections the
    # database runs them at once (a year of 1M cases on PostgreSQL, 2 cores: 2.6 s -> 2.1 s).
    async with sessions() as tally_session, sessions() as hotspot_session:
        dialect = tally_session.get_bind().dialect.name
        tallying = (
            _postgresql_tallies(tally_session, query, key)
            if dialect == "postgresql"
            else _portable_tallies(tally_session, query, key)
        )
        (tallies, p90s), hotspots = await asyncio.gather(
            tallying, _hotspots(hotspot_session, query, dialect)
        )
    total_tally = tallies.pop(_TOTAL, Tally())
    groups = [
        KpiGroup(key=group, **_figures(tallies[group], p90s.get(group)).model_dump())
        for group in sorted(tallies, key=lambda k: (k is None, k or ""))
    ]
    return KpiReport(
        start=query.start,
        end=query.end,
        group_by=query.group_by,
        groups=groups,
        totals=_figures(total_tally, p90s.get(_TOTAL)),
        hotspots=hotspots,
    )


# The key of the totals among the groups; no group key is an object.
_TOTAL: Any = object()
_P90s = Mapping[Any, tuple[float | None, float | None]]


def _figures(tally: Tally, p90: tuple[float | None, float | None] | None) -> KpiFigures:
    dispatch_p90, close_p90 = p90 or (None, None)
    return figures(tally, dispatch_p90=dispatch_p90, close_p90=close_p90)


def _key(group_by: GroupBy | None) -> ColumnElement[Any] | None:
    if group_by is None:
        return None
    if group_by in _PREFIX:
        # Literal positions, not bind parameters: PostgreSQL matches GROUP BY expressions to
        # the select list textually, and two parameters never compare equal.
        digits: ColumnElement[int] = literal_column(str(_PREFIX[group_by]))
        return func.substr(Case.grid, literal_column("1"), digits)
    column: ColumnElement[Any] = getattr(Case, group_by.value)
    return column


def _population(query: KpiQuery) -> list[ColumnElement[bool]]:
    conditions = [
        Case.opened_at >= query.start,
        Case.opened_at < query.end,
        # Test cases (sensors being commissioned) are drills too: see service.case_key.
        Case.drill.is_(False),
    ]
    if query.maintenance is not None:
        conditions.append(Case.maintenance.is_(query.maintenance))
    return conditions


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        # date_part is a double; EXTRACT is numeric since PostgreSQL 14, several times slower.
        return func.date_part("epoch", later - earlier, type_=Float)
    # SQLite keeps UTC text; julianday is a double of days, good to well under a millisecond.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def _durations_of(dialect: str) -> tuple[ColumnElement[float], ColumnElement[float]]:
    closed = Case.status.in_(_CLOSED)
    to_dispatch = _seconds(dialect, Case.dispatched_at, Case.opened_at)
    # closed_at is also set by a cancellation, which is not a closure.
    to_close = case((closed, _seconds(dialect, Case.closed_at, Case.opened_at)), else_=null())
    return to_dispatch, to_close


def _tally_columns(query: KpiQuery, dialect: str) -> list[ColumnElement[Any]]:
    closed = Case.status.in_(_CLOSED)
    still_open = Case.status.not_in(_ENDED)
    dispatched = Case.dispatched_at.is_not(None)
    to_dispatch, to_close = _durations_of(dialect)
    columns: dict[str, ColumnElement[Any]] = {
        "reported": func.count(),
        "dispatched": _count(dispatched),
        "closed": _count(closed),
        "cancelled": _count(Case.status == CaseStatus.CANCELLED.value),
        "due_to_close": _count(or_(closed, and_(still_open, Case.due_at < query.end))),
        # A closed case ran late if supervision ever found it overdue.
        "closed_on_time": _count(and_(closed, Case.overdue_count == 0)),
        "reworked": _count(and_(closed, Case.rework_count > 0)),
        "dispatch_timed": _count(and_(dispatched, Case.dispatch_due_at.is_not(None))),
        "dispatched_in_time": _count(Case.dispatched_at <= Case.dispatch_due_at),
        "auto_dispatched": _count(Case.auto_dispatched.is_(True)),
        "auto_kept": _count(and_(Case.auto_dispatched.is_(True), Case.reassignments == 0)),
        "overdue": _count(and_(still_open, Case.overdue.is_(True))),
        "dispatch_s_sum": func.coalesce(func.sum(to_dispatch), 0.0),
        "dispatch_s_count": func.count(to_dispatch),
        "close_s_sum": func.coalesce(func.sum(to_close), 0.0),
        "close_s_count": func.count(to_close),
    }
    return [column.label(name) for name, column in columns.items()]


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


def _from_cases(statement: Select[Any], query: KpiQuery) -> Select[Any]:
    return statement.select_from(Case).where(*_population(query))


async def _postgresql_tallies(
    session: AsyncSession, query: KpiQuery, key: ColumnElement[Any] | None
) -> tuple[dict[Any, Tally], _P90s]:
    to_dispatch, to_close = _durations_of("postgresql")
    statement = select(
        *_tally_columns(query, "postgresql"),
        func.percentile_cont(P90).within_group(to_dispatch).label("dispatch_p90"),
        func.percentile_cont(P90).within_group(to_close).label("close_p90"),
    )
    if key is not None:
        # One scan for the groups and the totals: the () grouping set is the totals row.
        statement = statement.add_columns(
            key.label("key"), func.grouping(key).label("is_total")
        ).group_by(func.grouping_sets(tuple_(key), tuple_()))
    tallies: dict[Any, Tally] = {}
    p90s: dict[Any, tuple[float | None, float | None]] = {}
    for row in (await session.execute(_from_cases(statement, query))).mappings():
        group = _TOTAL if key is None or row["is_total"] else row["key"]
        tallies[group] = _tally(row)
        p90s[group] = (row["dispatch_p90"], row["close_p90"])
    return tallies, p90s


async def _portable_tallies(
    session: AsyncSession, query: KpiQuery, key: ColumnElement[Any] | None
) -> tuple[dict[Any, Tally], _P90s]:
    columns = _tally_columns(query, "sqlite")
    tallies: dict[Any, Tally] = {}
    total = (await session.execute(_from_cases(select(*columns), query))).mappings().one()
    tallies[_TOTAL] = _tally(total)
    if key is not None:
        grouped = _from_cases(select(key.label("key"), *columns), query).group_by(key)
        for row in (await session.execute(grouped)).mappings():
            tallies[row["key"]] = _tally(row)
    to_dispatch, to_close = _durations_of("sqlite")
    values = _from_cases(
        select(key if key is not None else null(), to_dispatch, to_close), query
    ).where(or_(to_dispatch.is_not(None), to_close.is_not(None)))
    return tallies, _sorted_p90s(await session.execute(values), grouped=key is not None)


def _sorted_p90s(rows: Iterable[tuple[Any, float | None, float | None]], *, grouped: bool) -> _P90s:
    dispatch: defaultdict[Any, list[float]] = defaultdict(list)
    close: defaultdict[Any, list[float]] = defaultdict(list)
    for group, to_dispatch, to_close in rows:
        for bucket in (_TOTAL, group) if grouped else (_TOTAL,):
            if to_dispatch is not None:
                dispatch[bucket].append(to_dispatch)
            if to_close is not None:
                close[bucket].append(to_close)
    return {
        group: (
            percentile_cont(sorted(dispatch[group]), P90),
            percentile_cont(sorted(close[group]), P90),
        )
        for group in dispatch.keys() | close.keys()
    }


def _tally(row: Mapping[str, Any]) -> Tally:
    values = {name: row[name] for name in _TALLY}
    for name in ("dispatch_s_sum", "close_s_sum"):
        values[name] = float(values[name])
    return Tally(**values)


async def _hotspots(session: AsyncSession, query: KpiQuery, dialect: str) -> list[Hotspot]:
    if query.top == 0:
        return []
    hour = _local_hour(dialect, query.start)
    count = func.count()
    statement = (
        select(Case.grid, hour, count)
        .where(*_population(query), Case.grid.is_not(None))
        .group_by(Case.grid, hour)
        .order_by(count.desc(), Case.grid, hour)
        .limit(query.top)
    )
    rows = await session.execute(statement)
    return [Hotspot(grid=grid, hour=int(at), count=n) for grid, at, n in rows]


def _local_hour(dialect: str, start: datetime) -> ColumnElement[int]:
    # The zone's offset is fixed for China (no daylight saving since 1991), so the local hour
    # is arithmetic on the UTC time, the same on both databases (SQLite has no time zones);
    # a zone with DST would be an hour off part of the year.
    offset = ZoneInfo(DEFAULT_TIMEZONE).utcoffset(start) or timedelta()
    if dialect == "postgresql":
        seconds = func.date_part("epoch", Case.opened_at, type_=Float) + offset.total_seconds()
        return cast(func.floor(seconds / 3600), Integer) % 24
    minutes = int(offset.total_seconds() // 60)
    return cast(func.strftime("%H", Case.opened_at, f"{minutes:+d} minutes"), Integer)
