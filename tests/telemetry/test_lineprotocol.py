"""Line protocol formatting: escaping by the reference, and round trips through a real InfluxDB."""

import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import httpx
import numpy as np
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gridwatch.domain import Value
from gridwatch.gateway.telemetry.influx_v1 import InfluxV1Client, quote_identifier
from gridwatch.gateway.telemetry.lineprotocol import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    LineProtocolError,
    encode_body,
    escape_field_key,
    escape_measurement,
    escape_string,
    escape_tag,
    format_line,
    format_lines,
    series_prefix,
)
from gridwatch.gateway.telemetry.query import ReadingsQuery, Row
from gridwatch.gateway.telemetry.schema import Point, Series
from tests.servers.influxdb import InfluxDBServer, unique_database_name

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = 1_751_328_000_123_456_789  # 2025-07-01, with nanoseconds


def _series(measurement: str = "tilt", **tags: str) -> Series:
    tags.setdefault("sensor_id", "ti-1")
    return Series(
        measurement=measurement, sensor_id=tags["sensor_id"], tags=tuple(sorted(tags.items()))
    )


@pytest.mark.parametrize(
    ("escape", "raw", "written"),
    [
        pytest.param(escape_measurement, "rain gauge,v2", r"rain\ gauge\,v2", id="measurement"),
        pytest.param(escape_measurement, "a=b", "a=b", id="measurement-keeps-equals"),
        pytest.param(escape_tag, "a b,c=d", r"a\ b\,c\=d", id="tag"),
        pytest.param(escape_tag, r"C:\dir", r"C:\dir", id="tag-inner-backslash-literal"),
        pytest.param(escape_tag, '"quoted"', '"quoted"', id="tag-keeps-quotes"),
        pytest.param(escape_tag, 'a\\"b', 'a\\"b', id="tag-backslash-quote-literal"),
        pytest.param(escape_field_key, "wind speed=m/s,avg", r"wind\ speed\=m/s\,avg", id="field"),
        pytest.param(escape_string, 'say "hi" \\o/', r'"say \"hi\" \\o/"', id="string"),
        pytest.param(escape_string, "a, b=c d", '"a, b=c d"', id="string-keeps-separators"),
    ],
)
def test_escaping_follows_the_reference(escape, raw, written):
    assert escape(raw) == written


@pytest.mark.parametrize(
    ("fields", "written"),
    [
        pytest.param({"v": 0.1}, "v=0.1", id="float-repr"),
        pytest.param({"v": 1e16}, "v=1e+16", id="float-exponent"),
        pytest.param({"v": 2.0}, "v=2.0", id="float-integral-stays-float"),
        pytest.param({"v": 5e-324}, "v=5e-324", id="float-subnormal"),
        pytest.param({"v": -7}, "v=-7i", id="int"),
        pytest.param({"v": 2**63 - 1}, f"v={2**63 - 1}i", id="int64-max"),
        pytest.param({"a": True, "b": False}, "a=true,b=false", id="bools"),
        pytest.param({"s": ""}, 's=""', id="empty-string"),
        pytest.param({"v": math.nan, "w": 1.5}, "w=1.5", id="nan-left-out"),
        pytest.param({"v": -math.inf, "w": 1}, "w=1i", id="inf-left-out"),
        pytest.param({"v": 2**63, "w": 1}, "w=1i", id="int-beyond-int64-left-out"),
        pytest.param({"s": "a\nb", "w": 1}, "w=1i", id="line-feed-string-left-out"),
        pytest.param({"v": np.float64(0.25)}, "v=0.25", id="float-subclass"),
    ],
)
def test_field_values(fields: dict[str, Value], written: str):
    assert format_line((_series(), fields, T)) == f"tilt,sensor_id=ti-1 {written} {T}"


def test_str_enum_value_is_a_plain_string():
    class Door(StrEnum):
        OPEN = "open"

    assert format_line((_series(), {"door": Door.OPEN}, 1)) == 'tilt,sensor_id=ti-1 door="open" 1'


def test_prefix_omits_empty_tags_and_is_cached_per_series():
    series = _series("rain_gauge", grid="110101001001001", model="", street="x y")
    prefix = series_prefix(series)
    assert prefix == r"rain_gauge,grid=110101001001001,sensor_id=ti-1,street=x\ y"
    assert series_prefix(series) is prefix


@pytest.mark.parametrize(
    "fields", [{}, {"v": math.nan}, {"v": math.inf, "w": 2**64}], ids=["none", "nan", "all-bad"]
)
def test_point_without_writable_field_has_no_line(fields: dict[str, Value]):
    assert format_line((_series(), fields, T)) is None


@pytest.mark.parametrize(
    "series",
    [
        _series("#tilt"),
        _series(""),
        _series("tilt\\"),
        _series("tilt", model="acme\\"),
        _series("tilt", model="acme\\,x"),
        _series("tilt", model="acme\\ x"),
        _series("tilt", model="acme\\=x"),
        _series("tilt", model="two\nlines"),
        _series("tilt", model="cr\rhere"),
        _series("tilt", time="t"),
        _series("\ttilt"),
        _series("\x00tilt"),
        _series('tilt\\"x'),
    ],
    ids=[
        "comment",
        "empty-measurement",
        "measurement-trailing-backslash",
        "tag-trailing-backslash",
        "backslash-before-comma",
        "backslash-before-space",
        "backslash-before-equals",
        "line-feed",
        "carriage-return",
        "tag-key-time",
        "measurement-leading-tab",
        "measurement-leading-nul",
        "measurement-backslash-before-quote",
    ],
)
def test_unwritable_names_are_refused(series: Series):
    with pytest.raises(LineProtocolError):
        format_line((series, {"v": 1.0}, T))


@pytest.mark.parametrize("key", ["time", "", "bad\\", "a\nb", "\tk", "\x00k", 'q\\"'])
def test_unwritable_field_keys_are_refused(key: str):
    with pytest.raises(LineProtocolError):
        format_line((_series(), {key: 1.0}, T))


@pytest.mark.parametrize("time_ns", [MIN_TIME_NS - 1, MAX_TIME_NS + 1])
def test_time_outside_influxdb_range_is_refused(time_ns: int):
    with pytest.raises(LineProtocolError, match="outside"):
        format_line((_series(), {"v": 1.0}, time_ns))


def test_format_lines_leaves_out_and_hands_back_what_it_cannot_write():
    good: Point = (_series(), {"v": 1.0}, 1)
    empty: Point = (_series(), {"v": math.nan}, 2)
    bad_name: Point = (_series("tilt", model="x\\"), {"v": 1.0}, 3)
    skipped: list[Point] = []

    lines = format_lines([good, empty, bad_name, good], skipped=skipped)

    assert lines == ["tilt,sensor_id=ti-1 v=1.0 1"] * 2
    assert skipped == [empty, bad_name]
    assert format_lines([bad_name]) == []


def test_encode_body_joins_lines_and_survives_lone_surrogates():
    body = encode_body(['m s="caf\u00e9" 1', 'm s="\ud800" 2'])
    assert body == 'm s="caf\u00e9" 1\nm s="?" 2'.encode()


# --- round trips through a real InfluxDB -------------------------------------------------------

# Every character but surrogates (not Unicode scalar values) and line breaks, with the
# characters line protocol escapes drawn often.
_SPECIAL = st.sampled_from([",", "=", " ", "\\", '"', "'", "#", "\t", "\x00", "é", "中", "😀"])
_CHAR = st.one_of(_SPECIAL, st.characters(codec="utf-8", exclude_characters="\n\r"))
_NAME = st.text(_CHAR, min_size=1, max_size=10)
_VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20),
)


def _writable(name: str, escape: Callable[[str], str] = escape_tag) -> bool:
    try:
        escape(name)
    except LineProtocolError:
        return False
    return name != "time"


def _queryable(name: str, escape: Callable[[str], str] = escape_tag) -> bool:
    return _writable(name, escape) and "\x00" not in name


@st.composite
def _points(draw: st.DrawFn) -> Point:
    # Names that InfluxQL must quote to read the point back cannot hold NUL; line protocol
    # and InfluxDB take NUL, so other tags may.
    measurement = draw(_NAME.filter(lambda m: _queryable(m, escape_measurement)))
    names = _NAME.filter(_writable)
    tags = draw(st.dictionaries(names, names, max_size=3))
    tags["sensor_id"] = draw(_NAME.filter(_queryable))
    keys = _NAME.filter(lambda k: _queryable(k, escape_field_key))
    fields = draw(st.dictionaries(keys, _VALUE, min_size=1, max_size=4))
    # A point whose tag and field share a key is legal, but SELECT * renames one of them.
    assume(not tags.keys() & fields.keys())
    time_ns = draw(st.integers(min_value=MIN_TIME_NS, max_value=MAX_TIME_NS))
    series = Series(
        measurement=measurement, sensor_id=tags["sensor_id"], tags=tuple(sorted(tags.items()))
    )
    return (series, fields, time_ns)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_http() -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client for the round trips (a new one per example would dominate the time)."""
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        yield http


@pytest.mark.asyncio(loop_scope="session")
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(point=_points())
async def test_points_round_trip_through_influxdb(
    influxdb: InfluxDBServer, session_http: httpx.AsyncClient, point: Point
):
    """What format_line writes, InfluxDB stores exactly: names, tags, values, time."""
    series, fields, time_ns = point
    line = format_line(point)
    assert line is not None
    client = InfluxV1Client(url=influxdb.url, database=unique_database_name(), http=session_http)
    await client.create_database()
    try:
        await client.write(encode_body([line]), gzipped=False)

        [result] = await client.query("SELECT * FROM /.*/ GROUP BY *")
        [stored] = result["series"]
        assert stored["name"] == series.measurement
        assert stored["tags"] == dict(series.tags)
        start = EPOCH + timedelta(microseconds=time_ns // 1000)
        rows = await client.readings(
            ReadingsQuery(
                sensor_id=series.sensor_id,
                measurement=series.measurement,
                start=start,
                end=start + timedelta(microseconds=1),
                limit=10,
            )
        )
        assert rows == [Row(time=start, values=fields)]
        assert all(type(rows[0].values[k]) is type(v) for k, v in fields.items())
    finally:
        await client.query(f"DROP DATABASE {quote_identifier(client.database)}")
