"""A real InfluxDB 1.x and the embedded store answer every `ReadingsQuery` with the same rows.

The same points, built by `PointBuilder` from realistic readings, go to InfluxDB (line protocol,
gzipped, through `InfluxV1Client`) and to an `EmbeddedStore`; each query is asked of both, and
the rows must be identical: the same times to the microsecond, the same fields, the same value
types and the same values (float sums and means to their last bits: see REORDERED).
"""

import asyncio
import math
import random
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.adapters.codecs import CAMERA_EVENTS, ELEVATOR_FAULTS, ELEVATOR_MODES
from gridwatch.domain import Channel, Reading, Sensor, Value
from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.influx_v1 import InfluxV1Client, gzip_body
from gridwatch.gateway.telemetry.lineprotocol import encode_body, format_lines
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row
from gridwatch.gateway.telemetry.schema import Point, PointBuilder, Series
from tests.servers.influxdb import InfluxDatabase, InfluxDBServer, unique_database_name

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)
T0: Final = datetime(2025, 7, 1, 8, tzinfo=UTC)  # a whole hour: window starts are easy to read
SPAN: Final = timedelta(hours=2)
BATCH: Final = 5_000  # lines per /write, as the telemetry writer sends them
TIMEOUT_S: Final = 10.0
NOBODY: Final = "XX-000000"  # a sensor that never reported


def make_sensor(sensor_id: str, kind: str, **extra: object) -> Sensor:
    fields = {"id": sensor_id, "kind": kind, "grid": "110101001001002", "model": "m1"}
    return Sensor.model_validate(fields | extra)


EL_1 = make_sensor("EL-000001", "elevator")
EL_1_MOVED = make_sensor("EL-000001", "elevator", model="m2")  # re-registered: new tags
EL_2 = make_sensor("EL-000002", "elevator", grid="110101001002003")
TI_1 = make_sensor(
    "TI-000001", "tilt", calibration={"baseline_x_deg": 0.1, "baseline_y_deg": -0.05}
)
TI_2 = make_sensor("TI-000002", "tilt")
RA_1 = make_sensor("RA-000001", "rain_gauge")  # reports a cumulative total (rain_mm derived)
RA_2 = make_sensor("RA-000002", "rain_gauge", model="hydro")  # reports increments and depth
CA_1 = make_sensor("CA-000001", "camera")
CA_2 = make_sensor("CA-000002", "camera")
# (sensor id, measurement) pairs the fixed queries ask about; the last two hold no points.
QUERIED: Final = [
    (EL_1.id, "elevator"),
    (EL_2.id, "elevator"),
    (EL_1.id, "events"),
    (TI_1.id, "tilt"),
    (RA_1.id, "rain_gauge"),
    (RA_2.id, "rain_gauge"),
    (CA_1.id, "events"),
    (TI_1.id, "elevator"),
    (NOBODY, "tilt"),
]


# -- realistic readings ------------------------------------------------------------------------


def elevator_values(rng: random.Random) -> dict[str, Value]:
    moving = rng.random() < 0.5
    values: dict[str, Value] = {
        "floor": rng.randint(-2, 30),
        "direction": rng.choice(["up", "down"]) if moving else "none",
        "door": "closed" if moving or rng.random() < 0.7 else "open",
        "moving": moving,
        "in_door_zone": not moving,
        "mode": "normal",
    }
    if rng.random() < 0.7:  # older controllers send no speed
        values["speed_ms"] = rng.choice([0.0, 1.0, 2.0, round(rng.uniform(0.1, 2.5), 2)])
    if rng.random() < 0.5:
        values["occupied"] = rng.random() < 0.5
    return values


def tilt_values(rng: random.Random) -> dict[str, Value]:
    values: dict[str, Value] = {
        "tilt_x_deg": round(0.1 + rng.gauss(0, 0.05), 4),
        "tilt_y_deg": round(-0.05 + rng.gauss(0, 0.05), 4),
    }
    if rng.random() < 0.7:
        values["wind_ms"] = round(max(0.0, rng.gauss(6, 2.5)), 1)
    if rng.random() < 0.2:
        values["battery_v"] = round(rng.uniform(3.4, 3.7), 2)
    return values


def fault_values(rng: random.Random) -> dict[str, Value]:
    values: dict[str, Value] = {"fault": rng.choice(sorted(ELEVATOR_FAULTS))}
    if rng.random() < 0.5:
        values["code"] = f"E{rng.randint(1, 99):02d}"
    return values


def camera_values(rng: random.Random) -> dict[str, Value]:
    values: dict[str, Value] = {
        "event": rng.choice(sorted(CAMERA_EVENTS)[:3]),  # few types: several series per camera
        "confidence": round(rng.uniform(0.3, 0.99), 2),
    }
    if rng.random() < 0.4:
        values["object_count"] = rng.randint(1, 40)
    return values


def city_readings(seed: int) -> list[tuple[Sensor, Reading]]:
    """Two hours of a small city, in arrival order; device times have sub-second parts."""
    rng = random.Random(seed)
    out: list[tuple[Sensor, Reading]] = []

    def report(sensor: Sensor, channel: Channel, ts: datetime, values: dict[str, Value]) -> None:
        out.append((sensor, Reading(sensor.id, sensor.kind, channel, ts, ts, values)))

    def every(step: timedelta) -> list[datetime]:
        """One time per step over the span, each late by up to a second."""
        return [T0 + step * i + rng.randrange(1_000_000) * MICROSECOND for i in range(SPAN // step)]

    def anytime(within: timedelta) -> datetime:
        return T0 + rng.randrange(within // MICROSECOND) * MICROSECOND

    for ts in every(timedelta(seconds=10)):
        # EL-000001 is re-registered half-way with another model: a second series of its own.
        report(
            EL_1 if ts < T0 + SPAN / 2 else EL_1_MOVED, Channel.TELEMETRY, ts, elevator_values(rng)
        )
        report(EL_2, Channel.TELEMETRY, ts, elevator_values(rng))  # the same times: no matter
    for ts in every(timedelta(minutes=1)):
        report(TI_1, Channel.TELEMETRY, ts, tilt_values(rng))
        report(TI_2, Channel.TELEMETRY, ts, tilt_values(rng))
    total = 1_234.5
    for index, ts in enumerate(every(timedelta(minutes=5))):
        # A power loss an hour in resets the counter.
        total = 0.2 if index == 12 else round(total + rng.choice([0.0, 0.0, 0.2, 0.4, 1.4]), 1)
        report(RA_1, Channel.TELEMETRY, ts, {"total_mm": total})
        values: dict[str, Value] = {"rain_mm": rng.choice([0.0, 0.2, 0.6, 1.8])}
        if index % 3 == 0:
            values |= {"water_depth_cm": round(rng.uniform(0, 12), 1), "precip": "rain"}
        report(RA_2, Channel.TELEMETRY, ts, values)
    for _ in range(40):
        report(rng.choice([CA_1, CA_2]), Channel.EVENT, anytime(SPAN), camera_values(rng))
    for _ in range(6):
        report(rng.choice([EL_1, EL_2]), Channel.EVENT, anytime(SPAN / 2), fault_values(rng))
    out.sort(key=lambda pair: pair[1].received_at)
    return out


def build_points(readings: Sequence[tuple[Sensor, Reading]]) -> list[Point]:
    builder = PointBuilder()
    return [builder.point(sensor, reading) for sensor, reading in readings]


CITY: Final = build_points(city_readings(seed=20250701))


def as_time(ns: int) -> datetime:
    return EPOCH + ns // 1_000 * MICROSECOND


def times_of(points: Sequence[Point], sensor_id: str, measurement: str) -> list[datetime]:
    return sorted(
        as_time(t) for s, _, t in points if (s.sensor_id, s.measurement) == (sensor_id, measurement)
    )


# -- both backends -----------------------------------------------------------------------------


# Float sums and means may differ in their last bits, and only there: InfluxDB adds in the
# query's time order (newest first: readings() asks ORDER BY time DESC) and, across series or
# shards, combines per-series partial results (a mean is then the mean of per-series means
# weighted by their counts); SQLite adds partition by partition, oldest first within each.
# Measured on CITY: at most 2.4 ULP apart. Times, fields, types, integers, max, min, count and
# raw values must be identical.
REORDERED: Final = frozenset({Aggregate.SUM, Aggregate.MEAN})
REL_TOL: Final = 1e-12
ABS_TOL: Final = 1e-9  # tilts of either sign can cancel: the error is relative to the inputs


def typed(rows: Sequence[Row]) -> list[tuple[datetime, dict[str, tuple[type, Value]]]]:
    """Rows with each value's type beside it: 1 == 1.0 == True, but not here."""
    return [(row.time, {k: (type(v), v) for k, v in row.values.items()}) for row in rows]


def assert_same_rows(got: list[Row], expected: list[Row], query: ReadingsQuery) -> None:
    """Identical rows, but for float sums and means within rounding (see REORDERED)."""
    if query.agg not in REORDERED:
        assert typed(got) == typed(expected), query
        return
    shape = [(r.time, {k: type(v) for k, v in r.values.items()}) for r in got]
    assert shape == [(r.time, {k: type(v) for k, v in r.values.items()}) for r in expected], query
    for row, want in zip(got, expected, strict=True):
        for name, value in row.values.items():
            other = want.values[name]
            assert isinstance(value, float | int)
            assert isinstance(other, float | int)
            close = math.isclose(value, other, rel_tol=REL_TOL, abs_tol=ABS_TOL)
            assert close if type(value) is float else value == other, (query, row.time, name)


@dataclass(frozen=True, slots=True)
class Backends:
    """The same points in a real InfluxDB database and in an embedded store."""

    influx: InfluxV1Client
    embedded: EmbeddedStore

    async def write(self, points: Sequence[Point]) -> None:
        """Write the points to both, in the writer's batches."""
        for offset in range(0, len(points), BATCH):
            batch = points[offset : offset + BATCH]
            await self.influx.write(gzip_body(encode_body(format_lines(batch))), gzipped=True)
            self.embedded.write(batch)

    async def agree(self, query: ReadingsQuery) -> list[Row]:
        """Ask both; fail unless their rows are identical; the rows."""
        expected = await self.influx.readings(query)
        got = await asyncio.to_thread(self.embedded.readings, query)
        assert_same_rows(got, expected, query)
        return expected


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
        yield client


@pytest.fixture
def backends(
    influx_database: InfluxDatabase, http: httpx.AsyncClient, tmp_path: Path
) -> Iterator[Backends]:
    influx = InfluxV1Client(url=influx_database.url, database=influx_database.name, http=http)
    # A one-day retention makes one-hour partitions: windows and ranges cross them.
    with EmbeddedStore(tmp_path / "telemetry.sqlite3", retention=timedelta(days=1)) as store:
        yield Backends(influx, store)


@pytest_asyncio.fixture
async def city(backends: Backends) -> Backends:
    await backends.write(CITY)
    return backends


# -- raw queries -------------------------------------------------------------------------------

RANGES: Final = {
    "everything": (T0 - timedelta(hours=1), T0 + SPAN + timedelta(hours=1)),
    "first-minute": (T0, T0 + timedelta(minutes=1)),
    "unaligned": (T0 + timedelta(minutes=13, seconds=27.25), T0 + timedelta(minutes=71.5)),
    "across-the-hour": (
        T0 + timedelta(minutes=59, seconds=50),
        T0 + timedelta(hours=1, seconds=25),
    ),
    "before-the-points": (T0 - timedelta(hours=1), T0 - timedelta(seconds=1)),
    "after-the-points": (T0 + SPAN + timedelta(seconds=1), T0 + SPAN + timedelta(hours=1)),
    "empty": (T0 + timedelta(minutes=10), T0 + timedelta(minutes=10)),
    "reversed": (T0 + timedelta(minutes=20), T0 + timedelta(minutes=10)),
}
LIMITS: Final = (1, 7, 100, 100_000)


@pytest.mark.parametrize(("start", "end"), RANGES.values(), ids=RANGES.keys())
async def test_raw_queries_agree(city: Backends, start: datetime, end: datetime):
    for sensor_id, measurement in QUERIED:
        for limit in LIMITS:
            await city.agree(ReadingsQuery(sensor_id, measurement, start, end, limit))


async def test_raw_rows_hold_every_field_of_their_point(city: Backends):
    rows = await city.agree(ReadingsQuery(EL_1.id, "elevator", T0, T0 + SPAN, 100_000))

    # Both backends gave this; make sure it is the city, not two empty answers.
    assert [row.time for row in rows] == times_of(CITY, EL_1.id, "elevator")
    assert {type(row.values["floor"]) for row in rows} == {int}
    assert {type(row.values.get("speed_ms", 0.0)) for row in rows} == {float}
    assert 0 < sum("speed_ms" in row.values for row in rows) < len(rows)


async def test_range_edges_are_start_inclusive_end_exclusive(city: Backends):
    times = times_of(CITY, EL_2.id, "elevator")
    start, end = times[10], times[20]

    raw = await city.agree(ReadingsQuery(EL_2.id, "elevator", start, end, 100))
    one_window = await city.agree(
        ReadingsQuery(EL_2.id, "elevator", start, end, 100, agg=Aggregate.COUNT)
    )

    assert [row.time for row in raw] == times[10:20]
    assert one_window == [Row(start, {"floor": 10, "speed_ms": raw_count(raw, "speed_ms")})]


def raw_count(rows: Sequence[Row], name: str) -> int:
    return sum(name in row.values for row in rows)


async def test_a_query_sees_only_its_own_sensor(city: Backends):
    mine = await city.agree(ReadingsQuery(EL_2.id, "elevator", T0, T0 + SPAN, 100_000))
    counted = await city.agree(
        ReadingsQuery(EL_2.id, "elevator", T0, T0 + SPAN, 10, agg=Aggregate.COUNT)
    )

    assert len(mine) == len(times_of(CITY, EL_2.id, "elevator"))
    assert counted[0].values["floor"] == len(mine)
    assert await city.agree(ReadingsQuery(TI_1.id, "elevator", T0, T0 + SPAN, 10)) == []


# -- aggregated queries ------------------------------------------------------------------------

WINDOWS: Final = {
    "one-window": None,
    "1s": timedelta(seconds=1),
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
}
AGGREGATE_RANGES: Final = {
    # Starts before the first point and off every window boundary: the first window begins
    # before the range and before any point.
    "from-before-the-first-point": (T0 - timedelta(minutes=7, seconds=3.25), T0 + SPAN),
    **{
        name: RANGES[name]
        for name in ("unaligned", "across-the-hour", "before-the-points", "empty", "reversed")
    },
}


@pytest.mark.parametrize("every", WINDOWS.values(), ids=WINDOWS.keys())
@pytest.mark.parametrize("agg", Aggregate)
async def test_aggregates_agree(city: Backends, agg: Aggregate, every: timedelta | None):
    answered = 0
    for sensor_id, measurement in QUERIED:
        for start, end in AGGREGATE_RANGES.values():
            for limit in (3, 100_000):
                query = ReadingsQuery(sensor_id, measurement, start, end, limit, every, agg)
                answered += len(await city.agree(query))

    assert answered > 0


async def test_windows_split_exactly_at_their_boundaries(backends: Backends):
    """Points 1 µs either side of a window boundary land in different windows."""
    boundary = T0 + timedelta(minutes=5)
    values: dict[str, Value] = {
        "direction": "none",
        "door": "open",
        "moving": False,
        "in_door_zone": True,
        "mode": "normal",
        "speed_ms": 0.5,
    }
    readings = [
        (EL_1, Reading(EL_1.id, EL_1.kind, Channel.TELEMETRY, ts, ts, values | {"floor": floor}))
        for ts, floor in ((boundary - MICROSECOND, 3), (boundary, 4), (boundary + MICROSECOND, 5))
    ]
    points = build_points(readings)
    await backends.write(points)

    rows = await backends.agree(
        ReadingsQuery(EL_1.id, "elevator", T0, T0 + SPAN, 10, timedelta(minutes=5), Aggregate.SUM)
    )
    edge = await backends.agree(
        ReadingsQuery(EL_1.id, "elevator", boundary, boundary + MICROSECOND, 10)
    )

    assert rows == [
        Row(T0, {"floor": 3, "speed_ms": 0.5}),
        Row(boundary, {"floor": 9, "speed_ms": 1.0}),
    ]
    assert [row.time for row in edge] == [boundary]


async def test_the_limit_counts_windows_not_fields(backends: Backends):
    """A field missing from the newest windows does not bring back older windows of its own.

    InfluxDB applies LIMIT to each aggregate separately: asked for the newest two minutes, it
    also answers battery_v's newest minute, the first; the client keeps the newest `limit`.
    """
    sent: list[tuple[int, dict[str, Value]]] = [
        (0, {"tilt_x_deg": 3.0, "tilt_y_deg": 4.0, "battery_v": 3.6}),
        (1, {"tilt_x_deg": 3.0, "tilt_y_deg": 4.0}),
        (2, {"tilt_x_deg": 6.0, "tilt_y_deg": 8.0}),
        (3, {"tilt_x_deg": 6.0, "tilt_y_deg": 8.0}),
    ]
    readings = [
        (TI_2, Reading(TI_2.id, TI_2.kind, Channel.TELEMETRY, ts, ts, values))
        for ts, values in ((T0 + timedelta(minutes=minute), values) for minute, values in sent)
    ]
    await backends.write(build_points(readings))

    rows = await backends.agree(
        ReadingsQuery(TI_2.id, "tilt", T0, T0 + SPAN, 2, timedelta(minutes=1), Aggregate.MAX)
    )

    newest: dict[str, Value] = {"tilt_x_deg": 6.0, "tilt_y_deg": 8.0, "tilt_deg": 10.0}
    assert rows == [Row(T0 + timedelta(minutes=m), newest) for m in (2, 3)]


# -- random points, random queries -------------------------------------------------------------

SPAN_US: Final = SPAN // MICROSECOND
POOL: Final = [
    (EL_1, Channel.TELEMETRY),
    (EL_1_MOVED, Channel.TELEMETRY),
    (EL_2, Channel.TELEMETRY),
    (EL_1, Channel.EVENT),
    (TI_1, Channel.TELEMETRY),
    (RA_1, Channel.TELEMETRY),
    (CA_1, Channel.EVENT),
]
speeds = st.floats(0, 25, allow_nan=False)
degrees = st.floats(-90, 90, allow_nan=False)
VALUE_STRATEGIES: Final[dict[tuple[str, Channel], st.SearchStrategy[dict[str, Value]]]] = {
    ("elevator", Channel.TELEMETRY): st.fixed_dictionaries(
        {
            "floor": st.integers(-20, 300),
            "direction": st.sampled_from(["up", "down", "none"]),
            "door": st.sampled_from(["open", "closed"]),
            "moving": st.booleans(),
            "in_door_zone": st.booleans(),
            "mode": st.sampled_from(sorted(ELEVATOR_MODES)),
        },
        optional={"occupied": st.booleans(), "speed_ms": speeds},
    ),
    ("elevator", Channel.EVENT): st.fixed_dictionaries(
        {"fault": st.sampled_from(sorted(ELEVATOR_FAULTS))},
        optional={"code": st.text("E0123456789", min_size=1, max_size=4)},
    ),
    ("tilt", Channel.TELEMETRY): st.fixed_dictionaries(
        {"tilt_x_deg": degrees, "tilt_y_deg": degrees},
        optional={"wind_ms": st.floats(0, 120), "battery_v": st.floats(0, 60)},
    ),
    ("rain_gauge", Channel.TELEMETRY): st.fixed_dictionaries(
        {},
        optional={
            "rain_mm": st.floats(0, 500),
            "total_mm": st.floats(0, 1e7),
            "water_depth_cm": st.floats(0, 1000),
            "precip": st.sampled_from(["rain", "snow"]),
        },
    ),
    ("camera", Channel.EVENT): st.fixed_dictionaries(
        {"event": st.sampled_from(sorted(CAMERA_EVENTS)[:3]), "confidence": st.floats(0, 1)},
        optional={"object_count": st.integers(0, 100_000)},
    ),
}
# Any microsecond, or whole seconds near the start, so points share times and sit on window
# boundaries.
offsets_us = st.one_of(
    st.integers(0, SPAN_US), st.integers(0, 120).map(lambda seconds: seconds * 1_000_000)
)


# (index into POOL, µs after T0, payload values): short to print when an example fails.
Sent = tuple[int, int, dict[str, Value]]


@st.composite
def sent_strategy(draw: st.DrawFn) -> Sent:
    index = draw(st.integers(0, len(POOL) - 1))
    sensor, channel = POOL[index]
    return (index, draw(offsets_us), draw(VALUE_STRATEGIES[(str(sensor.kind), channel)]))


def received(sent: Sequence[Sent]) -> list[tuple[Sensor, Reading]]:
    out = []
    for index, offset, values in sent:
        sensor, channel = POOL[index]
        ts = T0 + offset * MICROSECOND
        out.append((sensor, Reading(sensor.id, sensor.kind, channel, ts, ts, values)))
    return out


def without_cross_series_ties(points: Sequence[Point]) -> list[Point]:
    """Points, less those at the time of a point of another series of the same sensor.

    Which of two such points comes first is left open by `ReadingsQuery`: InfluxDB takes them
    in its merge heap's order (seen: neither by series key nor by write order, and not the
    same for ORDER BY time ASC and DESC), so a raw limit cutting between them keeps either.
    Devices do not send two points of one measurement in the same microsecond.
    """
    first: dict[tuple[str, str, int], Series] = {}
    for series, _, t in points:
        first.setdefault((series.sensor_id, series.measurement, t), series)
    return [p for p in points if first[(p[0].sensor_id, p[0].measurement, p[2])] is p[0]]


bounds_us = st.integers(-3_600_000_000, SPAN_US + 3_600_000_000)
queries_strategy = st.builds(
    lambda target, bounds, limit, agg, every: ReadingsQuery(
        target[0],
        target[1],
        T0 + bounds[0] * MICROSECOND,
        T0 + bounds[1] * MICROSECOND,
        limit,
        every if agg is not None else None,
        agg,
    ),
    st.sampled_from([(s.id, "events" if c is Channel.EVENT else str(s.kind)) for s, c in POOL]),
    # Half the queries cover every point, so most examples have rows to compare.
    st.one_of(st.just((-1, SPAN_US + 1)), st.tuples(bounds_us, bounds_us).map(sorted)),
    st.integers(1, 50),
    st.one_of(st.none(), st.sampled_from(Aggregate)),
    st.one_of(
        st.none(),
        st.sampled_from(list(WINDOWS.values())),
        st.integers(100_000, 3 * 3_600_000_000).map(lambda us: us * MICROSECOND),
    ),
)


@settings(max_examples=40)
@given(
    sent=st.lists(sent_strategy(), min_size=1, max_size=80),
    queries=st.lists(queries_strategy, min_size=1, max_size=4),
)
def test_random_points_and_queries_agree(
    influxdb: InfluxDBServer, sent: list[Sent], queries: list[ReadingsQuery]
):
    points = without_cross_series_ties(build_points(received(sent)))
    # A database of each example's own, as influx_database gives each test.
    database = InfluxDatabase(url=influxdb.url, name=unique_database_name())
    influxdb.create_database(database.name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_compare(database, Path(tmp), points, queries))
    finally:
        influxdb.drop_database(database.name)


async def _compare(
    database: InfluxDatabase, directory: Path, points: list[Point], queries: list[ReadingsQuery]
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as http:
        influx = InfluxV1Client(url=database.url, database=database.name, http=http)
        with EmbeddedStore(directory / "t.sqlite3", retention=timedelta(days=1)) as store:
            both = Backends(influx, store)
            # Two writes, so points merge across requests as well as within one.
            middle = len(points) // 2
            await both.write(points[:middle])
            await both.write(points[middle:])
            for query in queries:
                await both.agree(query)
