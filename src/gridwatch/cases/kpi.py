"""Evaluation (考核评价): case KPIs over a period, sliced by grid level, unit, category or kind.

The database counts the period's cases per group and status and, on PostgreSQL, returns each
group and status's durations in the same statement, as float8[] in binary; a second statement,
on a second connection at the same time, finds the hotspots. The formulas are the pure
functions below, shared by both backends: `tally` adds a group's statuses up (the totals add
every group's up) and `durations` takes the mean and PostgreSQL's `percentile_cont`, the latter
by selection rather than a sort. SQLite, for the demo and small installations, returns the
durations as rows. Durations are seconds to the millisecond.
"""

import asyncio
import math
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    and_,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases.models import Case, CaseStatus
from gridwatch.domain.calendar import DEFAULT_TIMEZONE

P90 = 0.9
_CLOSED = (CaseStatus.CLOSED.value, CaseStatus.EVALUATED.value)
_ENDED = (*_CLOSED, CaseStatus.CANCELLED.value)

Seconds = npt.NDArray[np.float64]
_Select = Select[*tuple[Any, ...]]


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
# Migration 0008 keeps PostgreSQL statistics on each prefix, so it plans for the real number of
# groups (a few hundred streets, not a tenth of the cases).
_PREFIX = {GroupBy.DISTRICT: 6, GroupBy.STREET: 9, GroupBy.COMMUNITY: 12}


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiQuery:
    """Cases reported in [start, end); `maintenance` None takes both queues."""

    start: datetime
    end: datetime
    group_by: GroupBy | None = None
    maintenance: bool | None = False
    top: int = 20


_NO_SECONDS: Seconds = np.empty(0, dtype=np.float64)
_NO_SECONDS.flags.writeable = False


def _no_seconds() -> Seconds:
    return _NO_SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCases:
    """What the database gives for one group's cases in one status: counts and durations."""

    status: str
    cases: int = 0
    dispatched: int = 0
    due_before_end: int = 0
    never_overdue: int = 0
    reworked: int = 0
    dispatch_timed: int = 0
    dispatched_in_time: int = 0
    auto_dispatched: int = 0
    auto_kept: int = 0
    flagged_overdue: int = 0
    # Seconds from opened_at to dispatched_at, and to closed_at, of the cases that have one.
    to_dispatch_s: Seconds = field(default_factory=_no_seconds)
    to_close_s: Seconds = field(default_factory=_no_seconds)


_COUNTED = (
    "cases", "dispatched", "due_before_end", "never_overdue", "reworked", "dispatch_timed",
    "dispatched_in_time", "auto_dispatched", "auto_kept", "flagged_overdue",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """The counts the KPIs of one group are derived from."""

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


# Below this many values Python's sort beats numpy's per-call overhead (a report by grid unit
# has tens of thousands of groups of a few cases).
_FEW = 64


def percentile_cont(values: Sequence[float] | Seconds, fraction: float) -> float | None:
    """PostgreSQL's `percentile_cont`: linear between the two nearest ranks of the values."""
    if len(values) == 0:
        return None
    position = (len(values) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if len(values) <= _FEW:
        ordered = sorted(_floats(values))
        first, second = ordered[low], ordered[high]
    else:
        # Selection puts the two ranks where a sort would, in linear time.
        ranked = np.partition(np.asarray(values, dtype=np.float64), (low, high))
        first, second = float(ranked[low]), float(ranked[high])
    return first + (second - first) * (position - low)


def _floats(values: Sequence[float] | Seconds) -> list[float]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def total(values: Sequence[float] | Seconds) -> float:
    """The sum of durations: correctly rounded for a few, pairwise for many."""
    if len(values) <= _FEW:
        # Correctly rounded: what SQL's running sum gives whenever it loses nothing on the way
        # (always for two values), not a millisecond off at a half-millisecond mean.
        return math.fsum(_floats(values))
    # Pairwise: a few ulps off at worst, far below the millisecond a mean is rounded to.
    return float(np.sum(np.asarray(values, dtype=np.float64)))


def durations(values: Sequence[float] | Seconds) -> Durations:
    """Mean and p90 of durations in seconds (in any order), to the millisecond."""
    p90 = percentile_cont(values, P90)
    if p90 is None:
        return Durations(mean=None, p90=None)
    return Durations(mean=_ms(total(values) / len(values)), p90=_ms(p90))


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def tally(statuses: Iterable[StatusCases]) -> Tally:
    """A group's counts from its cases per status (the formulas of README "KPIs")."""
    reported = dispatched = timed = in_time = auto = kept = 0
    closed = on_time = reworked = cancelled = due_open = overdue = 0
    for cases in statuses:
        reported += cases.cases
        dispatched += cases.dispatched
        timed += cases.dispatch_timed
        in_time += cases.dispatched_in_time
        auto += cases.auto_dispatched
        kept += cases.auto_kept
        if cases.status in _CLOSED:
            closed += cases.cases
            # A closed case ran late if supervision ever found it overdue.
            on_time += cases.never_overdue
            reworked += cases.reworked
        elif cases.status == CaseStatus.CANCELLED.value:
            cancelled += cases.cases
        else:
            due_open += cases.due_before_end
            overdue += cases.flagged_overdue
    return Tally(
        reported=reported,
        dispatched=dispatched,
        closed=closed,
        cancelled=cancelled,
        due_to_close=closed + due_open,
        closed_on_time=on_time,
        reworked=reworked,
        dispatch_timed=timed,
        dispatched_in_time=in_time,
        auto_dispatched=auto,
        auto_kept=kept,
        overdue=overdue,
    )


def figures(tally: Tally, *, to_dispatch: Durations, to_close: Durations) -> KpiFigures:
    """The KPIs of a tally and its durations (the formulas of README "KPIs")."""
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
        time_to_dispatch_s=to_dispatch,
        time_to_close_s=to_close,
        overdue=tally.overdue,
    )


def kpis(statuses: Sequence[StatusCases]) -> KpiFigures:
    """The KPIs of a group of cases from its cases per status (README "KPIs")."""
    # closed_at is also set by a cancellation, which is not a closure.
    closed = [status for status in statuses if status.status in _CLOSED]
    return figures(
        tally(statuses),
        to_dispatch=durations(_joined([status.to_dispatch_s for status in statuses])),
        to_close=durations(_joined([status.to_close_s for status in closed])),
    )


def _joined(arrays: Sequence[Seconds]) -> Seconds:
    if len(arrays) <= 1:
        return arrays[0] if arrays else _NO_SECONDS
    return np.concatenate(arrays)


# PostgreSQL's binary array (array_send): dimensions, a has-NULLs flag, the element type's OID,
# each dimension's length and lower bound, then each element's byte count and bytes; big-endian.
_FLOAT8_OID = 701
_ARRAY_HEAD = struct.Struct(">iii")
_DIMENSION = struct.Struct(">ii")
_FLOAT8_ELEMENT = np.dtype([("size", ">i4"), ("value", ">f8")])


def float8_array(data: bytes | None) -> Seconds:
    """The values of a one-dimensional float8[] without NULLs, as array_send gives it."""
    if data is None:
        return _NO_SECONDS
    dimensions, has_nulls, element_type = _ARRAY_HEAD.unpack_from(data)
    if dimensions == 0:
        return _NO_SECONDS
    length, _ = _DIMENSION.unpack_from(data, _ARRAY_HEAD.size)
    start = _ARRAY_HEAD.size + _DIMENSION.size
    expected = start + length * _FLOAT8_ELEMENT.itemsize
    if (dimensions, has_nulls, element_type, len(data)) != (1, 0, _FLOAT8_OID, expected):
        raise ValueError(
            f"not a float8[] of one dimension without NULLs: {dimensions} dimension(s), "
            f"NULLs {bool(has_nulls)}, element type {element_type}, {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=_FLOAT8_ELEMENT, offset=start)["value"].astype(np.float64)


async def report(*, sessions: async_sessionmaker[AsyncSession], query: KpiQuery) -> KpiReport:
    """The KPIs of the period's city, maintenance or all cases; drills and tests never count."""
    # The cases and the hotspots are two scans of the same rows: on two connections the
    # database runs them at once.
    async with sessions() as counting, sessions() as spotting:
        dialect = counting.get_bind().dialect.name
        statement = statements(query, dialect)
        # Both finish before either session closes: closing one while the other query is
        # still running (its peer failed first) is an error of its own, and hides the cause.
        counted, spotted = await asyncio.gather(
            _statuses(counting, statement),
            _hotspots(spotting, statement["hotspots"], query.top),
            return_exceptions=True,
        )
    if isinstance(counted, BaseException):
        raise counted
    if isinstance(spotted, BaseException):
        raise spotted
    by_key, hotspots = counted, spotted
    groups = [
        # dict(), not model_dump(): the durations stay models, validated once.
        KpiGroup(key=key, **dict(kpis(by_key[key])))
        for key in (() if query.group_by is None else sorted(by_key, key=_null_last))
    ]
    return KpiReport(
        start=query.start,
        end=query.end,
        group_by=query.group_by,
        groups=groups,
        totals=kpis([status for statuses in by_key.values() for status in statuses]),
        hotspots=hotspots,
    )


def statements(query: KpiQuery, dialect: str) -> dict[str, _Select]:
    """The statements of a report by name (the benchmark EXPLAINs them)."""
    key = _key(query.group_by)
    named = {"cases": _cases_statement(query, key, dialect)}
    if dialect != "postgresql":
        named["durations"] = _durations_statement(query, key, dialect)
    return named | {"hotspots": _hotspots_statement(query, dialect)}


def _null_last(key: str | None) -> tuple[bool, str]:
    return key is None, key or ""


def _key(group_by: GroupBy | None) -> ColumnElement[Any] | None:
    if group_by is None:
        return None
    if group_by in _PREFIX:
        # Literal positions, not bind parameters: PostgreSQL matches GROUP BY expressions to
        # the select list (and to statistics) textually; two parameters never compare equal.
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


def _by_status(statement: _Select, query: KpiQuery, key: ColumnElement[Any] | None) -> _Select:
    # Without a key every row is in the one group None, which is then the totals.
    keyed = statement.add_columns((null() if key is None else key).label("key"), Case.status)
    grouping = [Case.status] if key is None else [key, Case.status]
    return keyed.where(*_population(query)).group_by(*grouping)


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        # date_part is a double; EXTRACT is numeric since PostgreSQL 14, several times slower.
        return func.date_part("epoch", later - earlier, type_=Float)
    # SQLite keeps UTC text; julianday is a double of days, good to well under a millisecond.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def _cases_statement(query: KpiQuery, key: ColumnElement[Any] | None, dialect: str) -> _Select:
    # Counted per status, `tally` tells closed from open: no status test per case, and SQL
    # without one is cheaper (a million cases in a year).
    dispatched = Case.dispatched_at.is_not(None)
    auto = Case.auto_dispatched.is_(True)
    columns: dict[str, ColumnElement[Any]] = {
        "cases": func.count(),
        "dispatched": func.count(Case.dispatched_at),
        "due_before_end": _count(Case.due_at < query.end),
        "never_overdue": _count(Case.overdue_count == 0),
        "reworked": _count(Case.rework_count > 0),
        "dispatch_timed": _count(and_(dispatched, Case.dispatch_due_at.is_not(None))),
        "dispatched_in_time": _count(Case.dispatched_at <= Case.dispatch_due_at),
        "auto_dispatched": _count(auto),
        "auto_kept": _count(and_(auto, Case.reassignments == 0)),
        "flagged_overdue": _count(Case.overdue.is_(True)),
    }
    if dialect == "postgresql":
        # Each group's durations as one float8[] in binary, unsorted: a million come as a few
        # bytes objects, not a million rows or Python floats, and PostgreSQL sorts none.
        to_dispatch = _seconds(dialect, Case.dispatched_at, Case.opened_at)
        to_close = _seconds(dialect, Case.closed_at, Case.opened_at)
        columns["to_dispatch_s"] = _binary(func.array_agg(to_dispatch).filter(dispatched))
        columns["to_close_s"] = _binary(
            func.array_agg(to_close).filter(Case.closed_at.is_not(None))
        )
    labelled = [column.label(name) for name, column in columns.items()]
    return _by_status(select(*labelled), query, key)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


def _binary(array: ColumnElement[Any]) -> ColumnElement[bytes]:
    return func.array_send(array, type_=LargeBinary)


def _durations_statement(query: KpiQuery, key: ColumnElement[Any] | None, dialect: str) -> _Select:
    # SQLite's durations, a row a case (the demo and small installations: a few thousand).
    return (
        select(
            (null() if key is None else key).label("key"),
            Case.status,
            _seconds(dialect, Case.dispatched_at, Case.opened_at),
            _seconds(dialect, Case.closed_at, Case.opened_at),
        )
        .where(*_population(query))
        .where(or_(Case.dispatched_at.is_not(None), Case.closed_at.is_not(None)))
    )


async def _statuses(
    session: AsyncSession, statement: dict[str, _Select]
) -> dict[Any, list[StatusCases]]:
    """Each group's cases per status, with their durations."""
    rows = (await session.execute(statement["cases"])).mappings()
    by_key: defaultdict[Any, list[StatusCases]] = defaultdict(list)
    if "durations" not in statement:  # PostgreSQL: the durations came as arrays
        for row in rows:
            by_key[row["key"]].append(
                StatusCases(
                    status=row["status"],
                    **{name: row[name] for name in _COUNTED},
                    to_dispatch_s=float8_array(row["to_dispatch_s"]),
                    to_close_s=float8_array(row["to_close_s"]),
                )
            )
        return by_key
    counted = {(row["key"], row["status"]): {name: row[name] for name in _COUNTED} for row in rows}
    dispatch: defaultdict[tuple[Any, str], list[float]] = defaultdict(list)
    close: defaultdict[tuple[Any, str], list[float]] = defaultdict(list)
    for key, status, to_dispatch, to_close in await session.execute(statement["durations"]):
        if to_dispatch is not None:
            dispatch[key, status].append(to_dispatch)
        if to_close is not None:
            close[key, status].append(to_close)
    for (key, status), counts in counted.items():
        by_key[key].append(
            StatusCases(
                status=status,
                **counts,
                to_dispatch_s=np.array(dispatch[key, status], dtype=np.float64),
                to_close_s=np.array(close[key, status], dtype=np.float64),
            )
        )
    return by_key


def _hotspots_statement(query: KpiQuery, dialect: str) -> _Select:
    hour = _local_hour(dialect, query.start)
    count = func.count()
    return (
        select(Case.grid, hour, count)
        .where(*_population(query), Case.grid.is_not(None))
        .group_by(Case.grid, hour)
        .order_by(count.desc(), Case.grid, hour)
        .limit(query.top)
    )


async def _hotspots(session: AsyncSession, statement: _Select, top: int) -> list[Hotspot]:
    if top == 0:
        return []
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
