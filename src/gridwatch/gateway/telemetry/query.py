"""Reading telemetry back: one query shape that every backend answers the same way (pure)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gridwatch.adapters.codecs import CODECS
from gridwatch.domain import Value
from gridwatch.gateway.telemetry.schema import (
    EVENT_COUNT_FIELD,
    EVENTS_MEASUREMENT,
    RAIN_MM,
    TILT_DEG,
    measurement_for,
)


class Aggregate(StrEnum):
    """Per-window aggregates; they apply to the numeric fields of the measurement."""

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class ReadingsQuery:
    """Points of one sensor in one measurement, raw or aggregated per window.

    Semantics, identical on every backend (they are InfluxQL's):
    - the range is `start <= time < end`;
    - raw: the newest `limit` points in the range, returned oldest first, with every field;
    - aggregated: windows of `every` aligned to the Unix epoch (the whole range as one window
      starting at `start` when `every` is None); each row is stamped with its window's start;
      windows without points are left out; the newest `limit` windows, oldest first; each row
      holds the aggregate of every numeric field that has a value in that window.
    """

    sensor_id: str
    measurement: str
    start: datetime
    end: datetime
    limit: int
    every: timedelta | None = None
    agg: Aggregate | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One raw point or one aggregated window."""

    time: datetime
    values: dict[str, Value]


def numeric_fields(measurement: str) -> tuple[str, ...]:
    """The numeric fields a measurement can hold (canonical and derived), sorted."""
    names: set[str] = set()
    for (kind, channel), spec in CODECS.items():
        if measurement_for(kind, channel) != measurement:
            continue
        names.update(f.name for f in spec.fields if f.type in (int, float))
    if measurement == EVENTS_MEASUREMENT:
        names.add(EVENT_COUNT_FIELD)
    elif measurement == "tilt":
        names.add(TILT_DEG)
    elif measurement == "rain_gauge":
        names.add(RAIN_MM)
    return tuple(sorted(names))
