"""The embedded telemetry store: durable, idempotent, pruned, and answering like InfluxQL."""

import math
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.domain import Value
from gridwatch.gateway.telemetry.embedded import EmbeddedStore, partition_length
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row, numeric_fields
from gridwatch.gateway.telemetry.schema import Point, Series

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 7, 1, tzinfo=UTC)
S = 10**9
MINUTE = 60 * S
HOUR = 3_600 * S
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1_000


def at(offset_ns: int) -> datetime:
    """T0 plus an offset, as a datetime (to the microsecond)."""
    return EPOCH + timedelta(microseconds=(ns(T0) + offset_ns) // 1_000)


def series(sensor_id: str = "EL-1", measurement: str = "elevator", **extra: str) -> Series:
    tags = {"sensor_id": sensor_id, "grid": "110101001001001", **extra}
    return Series(measurement, sensor_id, tuple(sorted(tags.items())))


def query(
    start: datetime = T0,
    end: datetime = FAR,
    *,
    limit: int = 1_000,
    every: timedelta | None = None,
    agg: Aggregate | None = None,
    sensor_id: str = "EL-1",
    measurement: str = "elevator",
) -> ReadingsQuery:
    return ReadingsQuery(sensor_id, measurement, start, end, limit, every, agg)


def typed(rows: Sequence[Row]) -> list[tuple[datetime, dict[str, tuple[type, Value]]]]:
    """Rows with each value's type beside it: 1 == 1.0 == True, but not here."""
    return [(row.time, {k: (type(v), v) for k, v in row.values.items()}) for row in rows]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(tmp_path / "telemetry.sqlite3") as opened:
        yield opened


# -- values and idempotence ------------------------------------------------------------------


def test_every_value_type_comes_back_as_written(store: EmbeddedStore) -> None:
    fields: dict[str, Value] = {
        "float": 2.5,
        "whole_float": 3.0,
        "int": 7,
        "negative_int": -(2**63),
        "largest_int": 2**63 - 1,
        "true": True,
        "false": False,
        "text": 'up ↑ "quoted" \n and a new line',
        "empty": "",
        "looks_numeric": "1",
        "looks_bool": "true",
    }
    store.write([(series(), fields, ns(T0))])
    (row,) = store.readings(query())
    assert typed([row]) == [(T0, {k: (type(v), v) for k, v in fields.items()})]


def test_what_line_protocol_cannot_carry_is_left_out(store: EmbeddedStore) -> None:
    store.write(
        [
            (series(), {"speed_ms": math.nan, "floor": 2**63, "door": "open"}, ns(T0)),
            (series(), {"speed_ms": math.inf}, ns(T0) + S),  # no field left: no point
        ]
    )
    assert typed(store.readings(query())) == [(T0, {"door": (str, "open")})]


def test_a_batch_with_an_unsupported_value_is_refused_whole(store: EmbeddedStore) -> None:
    bad: dict[str, object] = {"floor": [1, 2]}
    good: Point = (series(), {"floor": 1}, ns(T0))
    with pytest.raises(PointsRejected) as caught:
        store.write([good, (series(), bad, ns(T0) + S)])  # type: ignore[list-item]
    assert caught.value.status == 400
    assert store.readings(query()) == []
    store.write([good])  # the store is fine afterwards
    assert len(store.readings(query())) == 1


def test_a_time_beyond_int64_is_refused(store: EmbeddedStore) -> None:
    with pytest.raises(PointsRejected):
        store.write([(series(), {"floor": 1}, 2**63)])


def test_stray_values_in_a_numeric_field_are_not_aggregated(store: EmbeddedStore) -> None:
    store.write(
        [
            (series(), {"floor": 4}, ns(T0)),
            (series(), {"floor": True}, ns(T0) + S),  # a bool is not the number 1
            (series(), {"floor": "7"}, ns(T0) + 2 * S),
        ]
    )
    assert typed(store.readings(query(agg=Aggregate.SUM))) == [(T0, {"floor": (int, 4)})]
    assert typed(store.readings(query(agg=Aggregate.COUNT))) == [(T0, {"floor": (int, 1)})]


def test_same_series_and_time_overwrites_and_merges_fields(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": 1, "door": "open"}, ns(T0))])
    store.write([(series(), {"floor": 2, "speed_ms": 1.5}, ns(T0))])
    # InfluxDB's rule: the union of both field sets, the newer value winning.
    assert typed(store.readings(query())) == [
        (T0, {"floor": (int, 2), "door": (str, "open"), "speed_ms": (float, 1.5)})
    ]


def test_a_redelivered_batch_is_stored_once(store: EmbeddedStore) -> None:
    batch: list[Point] = [(series(), {"floor": n}, ns(T0) + n * S) for n in range(50)]
    store.write(batch)
    store.write(batch)
    assert len(store.readings(query())) == 50
    count = store.readings(query(agg=Aggregate.COUNT))
    assert typed(count) == [(T0, {"floor": (int, 50)})]


def test_points_of_one_batch_with_the_same_key_keep_the_last(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": 1}, ns(T0)), (series(), {"floor": 2}, ns(T0))])
    assert typed(store.readings(query())) == [(T0, {"floor": (int, 2)})]


def test_other_series_of_the_same_sensor_at_the_same_time_are_kept(store: EmbeddedStore) -> None:
    # Two events of different types at one instant are two InfluxDB series: both stay.
    door = series("EL-1", "events", type="door_stuck")
    power = series("EL-1", "events", type="power_loss")
    store.write([(door, {"count": 1}, ns(T0)), (power, {"count": 1}, ns(T0))])
    assert len(store.readings(query(measurement="events"))) == 2
    summed = store.readings(query(measurement="events", agg=Aggregate.SUM))
    assert typed(summed) == [(T0, {"count": (int, 2)})]


# -- durability ------------------------------------------------------------------------------


def test_points_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    with EmbeddedStore(path) as first:
        first.write([(series(), {"floor": 3, "moving": True}, ns(T0))])
    with EmbeddedStore(path) as second:
        assert typed(second.readings(query())) == [
            (T0, {"floor": (int, 3), "moving": (bool, True)})
        ]
        # After a reopen the catalog is known: a new field and a new partition both work.
        second.write([(series(), {"floor": 4, "mode": "fire"}, ns(T0) + 3 * 86_400 * S)])
    with EmbeddedStore(path) as third:
        rows = third.readings(query())
        assert [row.values for row in rows] == [
            {"floor": 3, "moving": True},
            {"floor": 4, "mode": "fire"},
        ]


_KILLED_WRITER = """
import sys
from pathlib import Path
from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.schema import Series

series = Series("tilt", "TI-KILL", (("sensor_id", "TI-KILL"),))
start, size = int(sys.argv[2]), int(sys.argv[3])
with EmbeddedStore(Path(sys.argv[1])) as store:
    for batch in range(1_000_000):
        first = start + batch * size
        store.write([(series, {"n": first + k}, (first + k) * 10**9) for k in range(size)])
        print(batch, flush=True)
"""


def test_every_write_that_returned_survives_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    start_s, size = ns(T0) // S, 500
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path), str(start_s), str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60
    # Kill it mid-stream: after 30 acknowledged batches, at whatever point it has reached.
    while acknowledged < 30 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged = int(line) + 1
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert acknowledged == 30, "the child did not get far enough"
    with EmbeddedStore(path) as store:
        rows = store.readings(query(sensor_id="TI-KILL", measurement="tilt", limit=10**7))
    stored = {row.values["n"] for row in rows}
    assert set(range(start_s, start_s + acknowledged * size)) <= stored


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "telemetry.sqlite3")
    store.open()
    store.close()
    with pytest.raises(StoreUnavailable):
        store.write([(series(), {"floor": 1}, ns(T0))])
    with pytest.raises(StoreUnavailable):
        store.readings(query())


def test_a_file_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreUnavailable, match="unknown telemetry format"):
        EmbeddedStore(path).open()


def test_two_writers_on_one_file_follow_each_others_schema(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    with EmbeddedStore(path) as one, EmbeddedStore(path) as other:
        one.write([(series(), {"floor": 1}, ns(T0))])
        # The other adds a field and a partition the first has not seen.
        other.write([(series(), {"floor": 2, "speed_ms": 0.5}, ns(T0) + 2 * 86_400 * S)])
        one.write([(series(), {"speed_ms": 1.0, "door": "open"}, ns(T0) + 5 * 86_400 * S)])
        other.write([(series(), {"door": "closed"}, ns(T0) + 5 * 86_400 * S + S)])
        assert [row.values for row in one.readings(query())] == [
            {"floor": 1},
            {"floor": 2, "speed_ms": 0.5},
            {"speed_ms": 1.0, "door": "open"},
            {"door": "closed"},
        ]


# -- retention -------------------------------------------------------------------------------


def test_partitions_follow_influxdbs_shard_durations() -> None:
    assert partition_length(timedelta(hours=12)) == timedelta(hours=1)
    assert partition_length(timedelta(days=7)) == timedelta(days=1)
    assert partition_length(timedelta(days=365)) == timedelta(days=7)


@pytest.mark.parametrize("retention", [timedelta(hours=3), timedelta(days=7)])
def test_prune_removes_exactly_the_points_older_than_the_retention(
    tmp_path: Path, retention: timedelta
) -> None:
    span = 3 * retention  # several partitions, and a cutoff inside one of them
    step = span // 600
    points: list[Point] = [(series(), {"floor": n}, ns(T0 + n * step)) for n in range(600)]
    now = T0 + span + timedelta(minutes=7)
    cutoff = ns(now - retention)
    with EmbeddedStore(tmp_path / "telemetry.sqlite3", retention=retention) as store:
        store.write(points)
        partitions = store.stats().partitions
        expired = sum(1 for _, _, t in points if t < cutoff)
        assert 0 < expired < len(points)
        assert store.prune(now) == expired
        assert store.prune(now) == 0
        left = store.readings(query(start=EPOCH, limit=10_000))
        assert [ns(row.time) for row in left] == [t for _, _, t in points if t >= cutoff]
        assert store.stats().partitions < partitions


def test_prune_stops_at_its_budget_and_the_next_call_carries_on(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "telemetry.sqlite3", retention=timedelta(hours=1)) as store:
        store.write([(series(), {"floor": n}, ns(T0) + n * MINUTE) for n in range(300)])
        now = T0 + timedelta(hours=5)
        assert store.prune(now, budget=timedelta(0)) == 0
        assert store.prune(now) == 240
        assert len(store.readings(query(start=EPOCH))) == 60


def test_stats_are_cheap_figures_of_the_store(store: EmbeddedStore) -> None:
    store.write([(series(f"EL-{n}"), {"floor": n}, ns(T0) + n * HOUR * 24) for n in range(3)])
    stats = store.stats()
    assert stats.series == 3
    assert stats.partitions == 3  # one day each with a 7-day retention
    assert stats.size_bytes > 0


# -- query semantics, by example ---------------------------------------------------------------


def test_raw_range_is_start_inclusive_end_exclusive(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": n}, ns(T0) + n * S) for n in range(10)])
    rows = store.readings(query(at(2 * S), at(5 * S)))
    assert [row.values["floor"] for row in rows] == [2, 3, 4]


def test_raw_gives_the_newest_points_oldest_first(store: EmbeddedStore) -> None:
    # Across partitions (one a day): the newest three are in the second day.
    store.write([(series(), {"floor": n}, ns(T0) + n * 12 * HOUR) for n in range(6)])
    rows = store.readings(query(limit=3))
    assert [row.values["floor"] for row in rows] == [3, 4, 5]
    assert [row.time for row in rows] == [T0 + timedelta(hours=12 * n) for n in (3, 4, 5)]


def test_other_sensors_and_measurements_stay_out(store: EmbeddedStore) -> None:
    store.write(
        [
            (series("EL-1"), {"floor": 1}, ns(T0)),
            (series("EL-2"), {"floor": 2}, ns(T0)),
            (series("EL-1", "tilt"), {"tilt_deg": 0.5}, ns(T0)),
        ]
    )
    assert [row.values for row in store.readings(query())] == [{"floor": 1}]
    assert store.readings(query(sensor_id="EL-9")) == []
    assert store.readings(query(measurement="rain_gauge")) == []


@pytest.mark.parametrize(
    ("agg", "floor", "speed"),
    [
        (Aggregate.MEAN, (float, 2.0), (float, 1.25)),
        (Aggregate.SUM, (int, 6), (float, 2.5)),
        (Aggregate.COUNT, (int, 3), (int, 2)),
        (Aggregate.MAX, (int, 3), (float, 2.0)),
        (Aggregate.MIN, (int, 1), (float, 0.5)),
    ],
)
def test_aggregates_have_influxdbs_result_types(
    store: EmbeddedStore, agg: Aggregate, floor: tuple[type, Value], speed: tuple[type, Value]
) -> None:
    store.write(
        [
            (series(), {"floor": 1, "speed_ms": 0.5, "door": "open", "moving": True}, ns(T0)),
            (series(), {"floor": 2, "door": "closed"}, ns(T0) + S),
            (series(), {"floor": 3, "speed_ms": 2.0}, ns(T0) + 2 * S),
        ]
    )
    # Text and bool fields are not aggregated.
    assert typed(store.readings(query(agg=agg))) == [(T0, {"floor": floor, "speed_ms": speed})]


def test_windows_align_to_the_epoch_and_empty_ones_are_left_out(store: EmbeddedStore) -> None:
    # Points at 10:01, 10:04, 10:06 and 10:21; the query starts at 10:03.
    base = ns(T0) + 10 * HOUR
    store.write([(series(), {"floor": m}, base + m * MINUTE) for m in (1, 4, 6, 21)])
    rows = store.readings(
        query(at(10 * HOUR + 3 * MINUTE), FAR, every=timedelta(minutes=5), agg=Aggregate.COUNT)
    )
    # The first window is stamped 10:00 and counts only the 10:04 point; 10:10 and 10:15 are
    # empty and left out.
    assert [(row.time, row.values) for row in rows] == [
        (at(10 * HOUR), {"floor": 1}),
        (at(10 * HOUR + 5 * MINUTE), {"floor": 1}),
        (at(10 * HOUR + 20 * MINUTE), {"floor": 1}),
    ]


def test_the_newest_windows_are_kept_oldest_first(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": n}, ns(T0) + n * HOUR) for n in range(10)])
    rows = store.readings(query(limit=3, every=timedelta(hours=2), agg=Aggregate.MAX))
    assert [(row.time, row.values) for row in rows] == [
        (T0 + timedelta(hours=4), {"floor": 5}),
        (T0 + timedelta(hours=6), {"floor": 7}),
        (T0 + timedelta(hours=8), {"floor": 9}),
    ]


def test_without_every_the_whole_range_is_one_window_stamped_start(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": n}, ns(T0) + n * HOUR) for n in range(30)])
    start = T0 + timedelta(minutes=90, microseconds=7)
    rows = store.readings(query(start, T0 + timedelta(hours=25), agg=Aggregate.SUM))
    assert typed(rows) == [(start, {"floor": (int, sum(range(2, 25)))})]


def test_a_field_absent_from_a_window_is_left_out_of_its_row(store: EmbeddedStore) -> None:
    store.write(
        [
            (series(), {"floor": 1, "speed_ms": 1.0}, ns(T0)),
            (series(), {"floor": 2}, ns(T0) + HOUR),
            (series(), {"door": "open"}, ns(T0) + 2 * HOUR),  # no numeric field: no window
        ]
    )
    for agg in Aggregate:
        rows = store.readings(query(every=timedelta(hours=1), agg=agg))
        assert [set(row.values) for row in rows] == [{"floor", "speed_ms"}, {"floor"}]


def test_a_measurement_without_numeric_fields_aggregates_to_nothing(store: EmbeddedStore) -> None:
    status = series("EL-1", "device_status")
    store.write([(status, {"online": True}, ns(T0))])
    assert store.readings(query(measurement="device_status", agg=Aggregate.COUNT)) == []
    assert [row.values for row in store.readings(query(measurement="device_status"))] == [
        {"online": True}
    ]


def test_times_before_1970_align_too(store: EmbeddedStore) -> None:
    store.write([(series(), {"floor": n}, -HOUR + n * MINUTE) for n in range(0, 60, 7)])
    rows = store.readings(
        query(EPOCH - timedelta(hours=2), EPOCH, every=timedelta(minutes=30), agg=Aggregate.COUNT)
    )
    assert [(row.time, row.values) for row in rows] == [
        (EPOCH - timedelta(hours=1), {"floor": 5}),
        (EPOCH - timedelta(minutes=30), {"floor": 4}),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        query(limit=0),
        query(T0, T0),
        query(FAR, T0),
    ],
)
def test_empty_queries_give_nothing(store: EmbeddedStore, bad: ReadingsQuery) -> None:
    store.write([(series(), {"floor": 1}, ns(T0))])
    assert store.readings(bad) == []


def test_every_needs_an_aggregate(store: EmbeddedStore) -> None:
    with pytest.raises(ValueError, match="aggregate"):
        store.readings(query(every=timedelta(minutes=5)))


# -- query semantics against a plain-Python reference ---------------------------------------


def reference(points: Sequence[Point], q: ReadingsQuery) -> list[Row]:
    """`ReadingsQuery`'s docstring, written as plainly as possible."""
    stored: dict[tuple[Series, int], dict[str, Value]] = {}
    order: dict[Series, int] = {}
    for s, fields, t in points:
        if not fields:
            continue  # a point needs a field (line protocol has no spelling for none)
        order.setdefault(s, len(order))
        stored.setdefault((s, t), {}).update(fields)  # same series and time: merged
    start, end = ns(q.start), ns(q.end)
    chosen = sorted(
        (t, order[s], fields)
        for (s, t), fields in stored.items()
        if s.sensor_id == q.sensor_id and s.measurement == q.measurement and start <= t < end
    )
    to_time = lambda t: EPOCH + timedelta(microseconds=t // 1_000)  # noqa: E731
    if q.agg is None:
        return [Row(to_time(t), fields) for t, _, fields in chosen[-q.limit :]]
    every = None if q.every is None else q.every // timedelta(microseconds=1) * 1_000
    windows: dict[int, list[dict[str, Value]]] = {}
    for t, _, fields in chosen:
        windows.setdefault(start if every is None else t - t % every, []).append(fields)
    rows = []
    for bucket in sorted(windows):
        values: dict[str, Value] = {}
        for name in numeric_fields(q.measurement):
            found = [
                f[name]
                for f in windows[bucket]
                if isinstance(f.get(name), int | float) and not isinstance(f.get(name), bool)
            ]
            if found:
                values[name] = _aggregate(q.agg, found)
        if values:
            rows.append(Row(to_time(bucket), values))
    return rows[-q.limit :]


def _aggregate(agg: Aggregate, values: list[Value]) -> Value:
    numbers = [v for v in values if isinstance(v, int | float)]
    if agg is Aggregate.COUNT:
        return len(numbers)
    if agg is Aggregate.MEAN:
        return sum(numbers) / len(numbers)
    if agg is Aggregate.SUM:
        return sum(numbers) if all(type(v) is int for v in numbers) else float(sum(numbers))
    return max(numbers) if agg is Aggregate.MAX else min(numbers)


def assert_same_rows(got: list[Row], expected: list[Row]) -> None:
    assert [row.time for row in got] == [row.time for row in expected]
    for row, want in zip(got, expected, strict=True):
        assert row.values.keys() == want.values.keys()
        for name, value in row.values.items():
            assert type(value) is type(want.values[name]), name
            if isinstance(value, float):
                # SQLite and Python may add floats in different orders.
                assert math.isclose(value, float(want.values[name]), rel_tol=1e-9, abs_tol=1e-6)
            else:
                assert value == want.values[name]


SPAN = 4 * HOUR  # several one-hour partitions (a one-day retention)
queried = [series("EL-1"), series("EL-1", model="v2")]  # a sensor whose tags changed
others = [series("EL-2")]
fields_strategy = st.fixed_dictionaries(
    {},
    optional={
        "floor": st.integers(-1_000, 1_000),
        "speed_ms": st.floats(-1e3, 1e3, allow_nan=False),
        "door": st.sampled_from(["open", "closed"]),
        "moving": st.booleans(),
    },
)
points_strategy = st.lists(
    st.tuples(
        st.sampled_from([*queried, *queried, *others]), fields_strategy, st.integers(0, SPAN)
    ),
    min_size=1,
    max_size=120,
)
offsets = st.integers(-HOUR, SPAN + HOUR)
# Half the queries cover every point, so most examples have rows to compare.
bounds_strategy = st.one_of(st.just([-HOUR, SPAN + HOUR]), st.tuples(offsets, offsets).map(sorted))
everies = st.one_of(
    st.none(),
    st.sampled_from([timedelta(seconds=1), timedelta(minutes=5), timedelta(hours=1)]),
    st.integers(1, 3 * 3_600_000_000).map(lambda us: timedelta(microseconds=us)),
)


@settings(max_examples=400)
@given(
    points=points_strategy,
    bounds=bounds_strategy,
    limit=st.integers(1, 40),
    agg=st.one_of(st.none(), st.sampled_from(Aggregate)),
    every=everies,
)
def test_queries_match_the_reference(
    points: list[tuple[Series, dict[str, Value], int]],
    bounds: list[int],
    limit: int,
    agg: Aggregate | None,
    every: timedelta | None,
) -> None:
    written = [(s, f, ns(T0) + offset) for s, f, offset in points]
    q = query(at(bounds[0]), at(bounds[1]), limit=limit, agg=agg, every=every if agg else None)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedStore(Path(tmp) / "t.sqlite3", retention=timedelta(days=1)) as store,
    ):
        # Two batches, so merges across transactions are covered as well as within one.
        middle = len(written) // 2
        store.write(written[:middle])
        store.write(written[middle:])
        got = store.readings(q)
    assert_same_rows(got, reference(written, q))


# -- concurrency -------------------------------------------------------------------------------


def test_reads_during_writes_and_prunes_do_not_fail(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    batches = 60
    seen: list[int] = []
    with EmbeddedStore(tmp_path / "telemetry.sqlite3", retention=timedelta(hours=1)) as store:

        def write() -> None:
            try:
                for batch in range(batches):
                    # Each batch moves on ten minutes: new partitions keep appearing.
                    first = ns(T0) + batch * 10 * MINUTE
                    store.write([(series(), {"floor": k}, first + k * S) for k in range(500)])
            except BaseException as err:  # noqa: BLE001 - handed to the test thread
                errors.append(err)
            finally:
                done.set()

        def prune() -> None:
            try:
                while not done.is_set():
                    # Cutoff at T0 + 3 h: drops and trims partitions the readers are reading.
                    store.prune(T0 + timedelta(hours=4))
                    time.sleep(0.01)
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

        def read() -> None:
            deadline = time.monotonic() + 60
            try:
                while not done.is_set() and time.monotonic() < deadline:
                    seen.append(len(store.readings(query(start=EPOCH, limit=100_000))))
                    store.readings(
                        query(start=EPOCH, every=timedelta(minutes=5), agg=Aggregate.MEAN)
                    )
                    store.stats()
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=f) for f in (write, prune, read, read, read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert not errors
        assert seen, "no read ran while writing"
        store.prune(T0 + timedelta(hours=4))
        left = store.readings(query(start=EPOCH, limit=100_000))
        cutoff = ns(T0) + 3 * HOUR
        expected = [
            ns(T0) + batch * 10 * MINUTE + k * S for batch in range(batches) for k in range(500)
        ]
        assert [ns(row.time) for row in left] == [t for t in expected if t >= cutoff]


def test_two_threads_writing_at_once_are_serialised(store: EmbeddedStore) -> None:
    def write(sensor: str) -> None:
        for batch in range(20):
            store.write(
                [(series(sensor), {"floor": k}, ns(T0) + (batch * 100 + k) * S) for k in range(100)]
            )

    threads = [threading.Thread(target=write, args=(f"EL-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for sensor in ("EL-1", "EL-2"):
        assert len(store.readings(query(sensor_id=sensor, limit=10_000))) == 2_000
