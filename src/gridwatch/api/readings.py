"""Stored readings as the API shows them: the query parameters and the answer."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import HTTPException, Query
from pydantic import BaseModel

from gridwatch.domain import Channel, Reading, Value
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row
from gridwatch.gateway.telemetry.schema import measurement_for

DEFAULT_SPAN = timedelta(hours=24)
MAX_LIMIT = 10_000
_DURATION = re.compile(r"^(\d{1,9})(ms|s|m|h|d|w)$")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


class ReadingRead(BaseModel):
    """One reading as it arrived: device time, arrival time, channel and decoded values."""

    ts: datetime
    received_at: datetime
    channel: str
    values: dict[str, Value]

    @classmethod
    def of(cls, reading: Reading) -> "ReadingRead":
        """The API view of a domain reading."""
        return cls(
            ts=reading.ts,
            received_at=reading.received_at,
            channel=reading.channel.value,
            values=reading.values,
        )


class ReadingRow(BaseModel):
    """One stored point, or one aggregated window stamped with its start."""

    time: datetime
    values: dict[str, Value]


class ReadingsPage(BaseModel):
    """Readings of one sensor from the telemetry store, oldest first."""

    sensor_id: str
    measurement: str
    start: datetime
    end: datetime
    every: str | None
    agg: Aggregate | None
    rows: list[ReadingRow]


def parse_duration(text: str, *, field: str) -> timedelta:
    """`30s`, `5m`, `1h`, `1d`, `1w` (InfluxQL's duration units), or 422 naming the field."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise HTTPException(422, f"{field}: expected a duration such as 30s, 5m, 1h or 1d")
    duration = int(match.group(1)) * _UNITS[match.group(2)]
    if duration < timedelta(seconds=1):
        raise HTTPException(422, f"{field}: windows shorter than 1s are not supported")
    return duration


class ReadingsParams(BaseModel):
    """The query string of GET /sensors/{id}/readings."""

    start: datetime | None = None
    end: datetime | None = None
    every: str | None = None
    agg: Aggregate | None = None
    limit: int = 100
    channel: Channel = Channel.TELEMETRY

    def to_query(self, *, sensor_id: str, kind: str, now: datetime) -> ReadingsQuery:
        """The store query, or 422 naming the parameter that is wrong."""
        end = _aware(self.end, "to") if self.end else now
        start = _aware(self.start, "from") if self.start else end - DEFAULT_SPAN
        if start >= end:
            raise HTTPException(422, "from: must be before to")
        every = parse_duration(self.every, field="every") if self.every else None
        if every is not None and self.agg is None:
            raise HTTPException(422, "agg: needed with every (mean, max, min, sum or count)")
        return ReadingsQuery(
            sensor_id=sensor_id,
            measurement=measurement_for(kind, self.channel),
            start=start,
            end=end,
            limit=self.limit,
            every=every,
            agg=self.agg,
        )


def readings_params(
    start: Annotated[
        datetime | None, Query(alias="from", description="RFC 3339; default to - 24h")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="RFC 3339; default now")] = None,
    every: Annotated[str | None, Query(description="window: 30s, 5m, 1h, 1d …")] = None,
    agg: Annotated[
        Aggregate | None, Query(description="per window; needs every or covers the range")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="newest rows kept")] = 100,
    channel: Annotated[
        Channel, Query(description="telemetry, event or status")
    ] = Channel.TELEMETRY,
) -> ReadingsParams:
    """The query parameters as one model (FastAPI dependency)."""
    return ReadingsParams(start=start, end=end, every=every, agg=agg, limit=limit, channel=channel)


def page_of(query: ReadingsQuery, every: str | None, rows: list[Row]) -> ReadingsPage:
    """The API answer for a query and the rows the store returned."""
    return ReadingsPage(
        sensor_id=query.sensor_id,
        measurement=query.measurement,
        start=query.start,
        end=query.end,
        every=every,
        agg=query.agg,
        rows=[ReadingRow(time=row.time, values=row.values) for row in rows],
    )


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise HTTPException(422, f"{field}: needs a UTC offset or Z (RFC 3339)")
    return value.astimezone(UTC)
