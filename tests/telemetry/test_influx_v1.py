"""InfluxV1Client against a real InfluxDB 1.x, and against a recording server for odd answers."""

import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import pytest_asyncio

from gridwatch.domain import Value
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.influx_v1 import InfluxV1Client, gzip_body
from gridwatch.gateway.telemetry.lineprotocol import encode_body, format_lines
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row
from gridwatch.gateway.telemetry.schema import Point, Series
from tests.servers.influxdb import InfluxDatabase, InfluxDBServer, unique_database_name
from tests.servers.ports import free_port
from tests.servers.recording_http import RecordingHTTPServer

TIMEOUT_S = 2.0
LINES = (
    b"tilt,sensor_id=ti-1 tilt_x_deg=0.5 1700000000000000000\n"
    b"tilt,sensor_id=ti-1 wind_ms=3i 1700000000000000001"
)
# A whole number of 10 s windows since the epoch, so window starts are easy to write down.
T0 = datetime(2025, 7, 1, tzinfo=UTC)
EL = Series(
    measurement="elevator",
    sensor_id="el-1",
    tags=(("grid", "110101001001001"), ("sensor_id", "el-1")),
)
OTHER = Series(measurement="elevator", sensor_id="el-2", tags=(("sensor_id", "el-2"),))


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _point(series: Series, seconds: float, **fields: Value) -> Point:
    return (series, fields, _ns(_at(seconds)))


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
        yield client


@pytest.fixture
def client(influx_database: InfluxDatabase, http: httpx.AsyncClient) -> InfluxV1Client:
    return InfluxV1Client(url=influx_database.url, database=influx_database.name, http=http)


@pytest.fixture
def recorder() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def recorded(recorder: RecordingHTTPServer, http: httpx.AsyncClient) -> InfluxV1Client:
    return InfluxV1Client(url=recorder.url, database="gw", http=http)


async def _write(client: InfluxV1Client, *points: Point) -> None:
    await client.write(gzip_body(encode_body(format_lines(points))), gzipped=True)


async def _select(client: InfluxV1Client, influxql: str) -> list[list[object]]:
    [result] = await client.query(influxql)
    return [row for series in result.get("series", ()) for row in series["values"]]


# --- talking to a real InfluxDB ----------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzipped", "plain"])
async def test_write_then_query(client: InfluxV1Client, gzipped: bool):
    await client.write(gzip_body(LINES) if gzipped else LINES, gzipped=gzipped)

    rows = await _select(client, 'SELECT "tilt_x_deg", "wind_ms" FROM "tilt"')

    assert rows == [[1700000000000000000, 0.5, None], [1700000000000000001, None, 3]]


async def test_create_database_is_idempotent(client: InfluxV1Client):
    await client.create_database()
    await client.create_database()
    assert await client.ping() is True


async def test_missing_database_is_rejected_with_404(influxdb: InfluxDBServer, http):
    client = InfluxV1Client(url=influxdb.url, database=unique_database_name(), http=http)

    with pytest.raises(PointsRejected) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.status == 404
    assert "database not found" in caught.value.reason


async def test_partial_write_is_rejected_yet_good_lines_are_stored(client: InfluxV1Client):
    body = (
        b"tilt,sensor_id=ti-1 wind_ms=1.0 1\nnot line protocol\ntilt,sensor_id=ti-1 wind_ms=2.0 2"
    )

    with pytest.raises(PointsRejected) as caught:
        await client.write(body, gzipped=False)

    assert caught.value.status == 400
    assert caught.value.reason.startswith("partial write: unable to parse 'not line protocol'")
    assert await _select(client, 'SELECT "wind_ms" FROM "tilt"') == [[1, 1.0], [2, 2.0]]


async def test_type_conflict_with_stored_field_drops_only_that_line(client: InfluxV1Client):
    await client.write(b"tilt,sensor_id=ti-1 wind_ms=1.0 1", gzipped=False)

    with pytest.raises(PointsRejected, match=r"field type conflict.*dropped=1"):
        await client.write(
            b"tilt,sensor_id=ti-1 wind_ms=2i 2\ntilt,sensor_id=ti-1 wind_ms=3.0 3", gzipped=False
        )

    assert await _select(client, 'SELECT "wind_ms" FROM "tilt"') == [[1, 1.0], [3, 3.0]]


async def test_type_conflict_inside_a_first_batch_writes_nothing(client: InfluxV1Client):
    """InfluxDB 1.6: a batch creating a shard with one field of two types is refused whole."""
    body = b"tilt,sensor_id=ti-1 wind_ms=1.0 1\nother v=1 1\ntilt,sensor_id=ti-1 wind_ms=2i 2"

    with pytest.raises(PointsRejected) as caught:
        await client.write(body, gzipped=False)

    assert (caught.value.status, caught.value.reason) == (400, "field type conflict")
    assert await _select(client, "SELECT * FROM /.*/") == []


async def test_unreachable_url_is_unavailable(http):
    client = InfluxV1Client(url=f"http://127.0.0.1:{free_port()}", database="gw", http=http)

    with pytest.raises(StoreUnavailable) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.retry_after is None
    assert "ConnectError" in caught.value.reason
    assert await client.ping() is False


async def test_stopped_server_is_unavailable_until_it_is_back(fresh_influxdb: InfluxDBServer, http):
    client = InfluxV1Client(url=fresh_influxdb.url, database="gw", http=http)
    await client.create_database()
    fresh_influxdb.stop()

    with pytest.raises(StoreUnavailable):
        await client.write(LINES, gzipped=False)
    with pytest.raises(StoreUnavailable):
        await client.readings(_raw(limit=1))
    assert await client.ping() is False

    fresh_influxdb.start()
    await client.write(LINES, gzipped=False)
    assert await client.ping() is True


@pytest.mark.parametrize(
    ("influxql", "reason"),
    [
        pytest.param("SELEKT 1", "error parsing query", id="parse-error"),
        pytest.param('SELECT mean("s") FROM "m"', "unsupported mean iterator type", id="statement"),
    ],
)
async def test_refused_query_is_rejected(client: InfluxV1Client, influxql: str, reason: str):
    await client.write(b'm s="text" 1', gzipped=False)

    with pytest.raises(PointsRejected, match=reason) as caught:
        await client.query(influxql)

    assert caught.value.status == 400


async def test_query_on_a_missing_database_is_rejected(influxdb: InfluxDBServer, http):
    client = InfluxV1Client(url=influxdb.url, database=unique_database_name(), http=http)

    with pytest.raises(PointsRejected, match="database not found"):
        await client.query('SELECT * FROM "tilt"')


# --- odd answers, from a recording server -------------------------------------------------------


async def test_write_request_shape(recorder: RecordingHTTPServer, http):
    client = InfluxV1Client(
        url=recorder.url + "/", database="gw data", http=http, retention_policy="one week"
    )
    await client.write(LINES, gzipped=False)
    body = gzip_body(LINES)
    await client.write(body, gzipped=True)

    first, second = recorder.requests
    assert (first.method, first.path) == ("POST", "/write")
    assert first.query == {"db": ["gw data"], "precision": ["ns"], "rp": ["one week"]}
    assert first.headers["content-encoding"] == "gzip"
    assert first.body == LINES
    assert "authorization" not in first.headers
    # A gzipped batch goes out as it is: compressed once, however often it is retried.
    assert second.raw_body == body


@pytest.mark.parametrize(
    ("credentials", "authorization"),
    [
        pytest.param({"token": "t0k"}, "Token t0k", id="token"),
        pytest.param({"username": "gw", "password": "pw"}, "Basic Z3c6cHc=", id="basic"),
    ],
)
async def test_credentials(recorder: RecordingHTTPServer, http, credentials, authorization):
    client = InfluxV1Client(url=recorder.url, database="gw", http=http, **credentials)

    await client.write(LINES, gzipped=False)

    [request] = recorder.requests
    assert request.headers["authorization"] == authorization


@pytest.mark.parametrize(
    "arguments",
    [
        {"url": "127.0.0.1:8086"},
        {"database": ""},
        {"token": "t", "username": "u", "password": "p"},
        {"username": "u"},
    ],
    ids=["no-scheme", "no-database", "token-and-password", "username-alone"],
)
def test_bad_arguments_are_refused(http, arguments):
    with pytest.raises(ValueError, match="InfluxDB"):
        InfluxV1Client(
            **({"url": "http://127.0.0.1:1", "database": "gw", "http": http} | arguments)
        )


@pytest.mark.parametrize("status", [429, 503])
async def test_busy_store_is_unavailable_with_retry_after(recorder, recorded, status):
    error = json.dumps({"error": "busy"}).encode()
    recorder.answer_next(1, status=status, body=error, headers={"Retry-After": "7"})

    with pytest.raises(StoreUnavailable) as caught:
        await recorded.write(LINES, gzipped=False)

    assert caught.value.retry_after == 7.0
    assert f"answered {status}: busy" in caught.value.reason
    assert len(recorder.requests) == 1


async def test_retry_after_as_http_date(recorder, recorded):
    when = datetime.now(UTC) + timedelta(seconds=120)
    recorder.answer_next(1, status=503, headers={"Retry-After": format_datetime(when, True)})

    with pytest.raises(StoreUnavailable) as caught:
        await recorded.write(LINES, gzipped=False)

    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 504, 408, 401, 403, 307])
async def test_other_transient_answers_are_unavailable(recorder, recorded, status):
    recorder.answer_next(1, status=status, body=b'{"error": "nope"}')

    with pytest.raises(StoreUnavailable) as caught:
        await recorded.write(LINES, gzipped=False)

    assert caught.value.retry_after is None
    assert f"answered {status}: nope" in caught.value.reason


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        pytest.param(b'{"error": "unable to parse"}', {}, "unable to parse", id="json"),
        pytest.param(b"", {"X-Influxdb-Error": "from header"}, "from header", id="header"),
        pytest.param(b"<html>proxy says no</html>", {}, "<html>proxy says no</html>", id="text"),
        pytest.param(b"", {}, "Request Entity Too Large", id="reason-phrase"),
    ],
)
async def test_rejection_reason(recorder, recorded, body, headers, reason):
    recorder.answer_next(1, status=413, body=body, headers=headers)

    with pytest.raises(PointsRejected) as caught:
        await recorded.write(LINES, gzipped=False)

    assert (caught.value.status, caught.value.reason) == (413, reason)


async def test_long_reasons_are_truncated(recorder, recorded):
    recorder.answer_next(1, status=400, body=json.dumps({"error": "x" * 5000}).encode())

    with pytest.raises(PointsRejected) as caught:
        await recorded.write(LINES, gzipped=False)

    assert len(caught.value.reason) == 500
    assert caught.value.reason.endswith("…")


async def test_slow_store_times_out_as_unavailable(recorder, recorded):
    recorder.answer_next(1, status=204, delay_s=10)
    started = time.monotonic()

    with pytest.raises(StoreUnavailable, match="ReadTimeout"):
        await recorded.write(LINES, gzipped=False)

    assert time.monotonic() - started < TIMEOUT_S + 2


async def test_query_answer_without_results_is_unavailable(recorder, recorded):
    recorder.answer_next(1, status=200, body=b"<html>a proxy page</html>")

    with pytest.raises(StoreUnavailable, match="no query results"):
        await recorded.query("SHOW DATABASES")


def test_gzip_body_is_gzip_at_level_one():
    assert gzip.decompress(gzip_body(LINES)) == LINES


# --- readings(): the semantics of ReadingsQuery, in InfluxQL ----------------------------------


def _raw(*, limit: int, start: float = 0, end: float = 60) -> ReadingsQuery:
    return ReadingsQuery(
        sensor_id="el-1", measurement="elevator", start=_at(start), end=_at(end), limit=limit
    )


def _agg(
    agg: Aggregate, *, every: float | None = 10, limit: int = 100, start: float = 2, end: float = 40
) -> ReadingsQuery:
    return ReadingsQuery(
        sensor_id="el-1",
        measurement="elevator",
        start=_at(start),
        end=_at(end),
        limit=limit,
        every=timedelta(seconds=every) if every is not None else None,
        agg=agg,
    )


@pytest_asyncio.fixture
async def elevator(client: InfluxV1Client) -> InfluxV1Client:
    """el-1: floor (int), speed_ms (float), door (str), moving (bool); el-2 is noise."""
    await _write(
        client,
        _point(EL, 1, floor=1, speed_ms=0.5, door="open", moving=False),
        _point(EL, 3, floor=3, speed_ms=2.0, door="closed", moving=True),
        _point(EL, 4, floor=4),
        _point(EL, 12, floor=9007199254740993, speed_ms=1.5),
        _point(EL, 35, floor=2, speed_ms=1.0),
        _point(EL, 40, floor=7, speed_ms=7.0),
        _point(OTHER, 13, floor=100, speed_ms=100.0),
    )
    return client


async def test_raw_is_the_newest_limit_oldest_first_typed_and_without_nulls(elevator):
    rows = await elevator.readings(_raw(limit=3, start=1, end=40))

    assert rows == [
        Row(_at(4), {"floor": 4}),
        Row(_at(12), {"floor": 9007199254740993, "speed_ms": 1.5}),
        Row(_at(35), {"floor": 2, "speed_ms": 1.0}),
    ]
    assert type(rows[2].values["speed_ms"]) is float  # stored 1.0, sent as 1 in JSON


async def test_raw_returns_every_field_of_the_range(elevator):
    rows = await elevator.readings(_raw(limit=2, start=0, end=4))

    assert rows == [
        Row(_at(1), {"floor": 1, "speed_ms": 0.5, "door": "open", "moving": False}),
        Row(_at(3), {"floor": 3, "speed_ms": 2.0, "door": "closed", "moving": True}),
    ]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        pytest.param(
            Aggregate.MEAN,
            [
                {"floor": 3.5, "speed_ms": 2.0},
                {"floor": 9007199254740992.0, "speed_ms": 1.5},
                {"floor": 2.0, "speed_ms": 1.0},
            ],
            id="mean",
        ),
        pytest.param(
            Aggregate.MAX,
            [
                {"floor": 4, "speed_ms": 2.0},
                {"floor": 9007199254740993, "speed_ms": 1.5},
                {"floor": 2, "speed_ms": 1.0},
            ],
            id="max",
        ),
        pytest.param(
            Aggregate.MIN,
            [
                {"floor": 3, "speed_ms": 2.0},
                {"floor": 9007199254740993, "speed_ms": 1.5},
                {"floor": 2, "speed_ms": 1.0},
            ],
            id="min",
        ),
        pytest.param(
            Aggregate.SUM,
            [
                {"floor": 7, "speed_ms": 2.0},
                {"floor": 9007199254740993, "speed_ms": 1.5},
                {"floor": 2, "speed_ms": 1.0},
            ],
            id="sum",
        ),
        pytest.param(
            Aggregate.COUNT,
            [
                {"floor": 2, "speed_ms": 1},
                {"floor": 1, "speed_ms": 1},
                {"floor": 1, "speed_ms": 1},
            ],
            id="count",
        ),
    ],
)
async def test_windows_are_epoch_aligned_and_empty_ones_left_out(elevator, agg, expected):
    """Range 2 s..40 s in 10 s windows: the first starts at 0 s, 20 s..30 s has no points."""
    rows = await elevator.readings(_agg(agg))

    assert rows == [Row(_at(s), v) for s, v in zip([0, 10, 30], expected, strict=True)]
    # int stays int where InfluxDB computes an integer (sum, max, min of ints; counts).
    assert [{k: type(v) for k, v in row.values.items()} for row in rows] == [
        {k: type(v) for k, v in values.items()} for values in expected
    ]


async def test_aggregated_limit_keeps_the_newest_windows(elevator):
    rows = await elevator.readings(_agg(Aggregate.COUNT, limit=2, end=60))

    assert [row.time for row in rows] == [_at(30), _at(40)]


async def test_without_every_the_range_is_one_window_stamped_at_its_start(elevator):
    rows = await elevator.readings(_agg(Aggregate.SUM, every=None, start=2, end=36))

    assert rows == [Row(_at(2), {"floor": 9007199254741002, "speed_ms": 4.5})]


async def test_a_lone_selector_is_still_stamped_at_the_range_start(client: InfluxV1Client):
    """max() of one field alone would carry its point's time; the semantics say the start."""
    await _write(client, _point(EL, 5, floor=3), _point(EL, 9, floor=8))

    rows = await client.readings(_agg(Aggregate.MAX, every=None, start=0, end=10))

    assert rows == [Row(_at(0), {"floor": 8})]


async def test_aggregated_rows_leave_out_fields_without_values(client: InfluxV1Client):
    await _write(client, _point(EL, 1, floor=1, speed_ms=0.5), _point(EL, 11, floor=2))

    rows = await client.readings(_agg(Aggregate.MEAN, start=0, end=20))

    assert rows == [Row(_at(0), {"floor": 1.0, "speed_ms": 0.5}), Row(_at(10), {"floor": 2.0})]


@pytest.mark.parametrize(
    "query",
    [
        _raw(limit=0),
        _raw(limit=5, start=50, end=60),
        _raw(limit=5, start=10, end=10),
        _agg(Aggregate.COUNT, start=50, end=60),
        _agg(Aggregate.COUNT, every=None, start=50, end=60),
        ReadingsQuery(sensor_id="el-1", measurement="nothing", start=T0, end=_at(60), limit=5),
        ReadingsQuery(
            sensor_id="el-1",
            measurement="camera",
            start=T0,
            end=_at(60),
            limit=5,
            agg=Aggregate.SUM,
        ),
    ],
    ids=[
        "limit-0",
        "no-points",
        "empty-range",
        "no-windows",
        "no-points-one-window",
        "unknown-measurement",
        "no-numeric-fields",
    ],
)
async def test_nothing_to_answer_is_no_rows(elevator, query: ReadingsQuery):
    assert await elevator.readings(query) == []


async def test_readings_escape_names_and_literals(client: InfluxV1Client):
    odd = Series(measurement='rain "gauge", v2', sensor_id="x'\\y", tags=(("sensor_id", "x'\\y"),))
    await _write(client, (odd, {"rain_mm": 1.5}, _ns(_at(1))))

    query = ReadingsQuery(
        sensor_id="x'\\y", measurement='rain "gauge", v2', start=T0, end=_at(2), limit=5
    )
    assert await client.readings(query) == [Row(_at(1), {"rain_mm": 1.5})]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param(
            ReadingsQuery("el-1", "elevator", T0.replace(tzinfo=None), _at(1), 5),
            "aware",
            id="naive",
        ),
        pytest.param(
            ReadingsQuery("el-1", "elevator", T0, _at(1), 5, every=timedelta(seconds=1)),
            "needs an aggregate",
            id="every-without-agg",
        ),
        pytest.param(
            ReadingsQuery("el-1", "elevator", T0, _at(1), 5, timedelta(0), Aggregate.MEAN),
            "positive",
            id="zero-every",
        ),
        pytest.param(
            ReadingsQuery("el\x00", "elevator", T0, _at(1), 5), "NUL", id="nul-in-sensor-id"
        ),
    ],
)
async def test_bad_queries_are_value_errors(elevator, query: ReadingsQuery, message: str):
    with pytest.raises(ValueError, match=message):
        await elevator.readings(query)


async def test_readings_of_a_database_not_created_yet_are_empty(influxdb: InfluxDBServer, http):
    # The gateway creates the database at its first write; until then there is nothing to read.
    client = InfluxV1Client(url=influxdb.url, database=unique_database_name(), http=http)
    now = datetime.now(UTC)
    query = ReadingsQuery(
        sensor_id="RG-1",
        measurement="rain_gauge",
        start=now - timedelta(hours=1),
        end=now,
        limit=10,
    )
    assert await client.readings(query) == []
