"""The telemetry schema: measurements, tags and derived fields (pure)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.domain import Channel, Reading, Sensor, Value
from gridwatch.gateway.telemetry.query import numeric_fields
from gridwatch.gateway.telemetry.schema import PointBuilder, rain_increment, time_ns

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def sensor(kind: str, **extra: object) -> Sensor:
    return Sensor.model_validate(
        {"id": f"{kind}-1", "kind": kind, "grid": "110101001001002", "model": "m1"} | extra
    )


def reading(
    s: Sensor, channel: Channel, values: dict[str, Value], *, seconds: float = 0
) -> Reading:
    ts = T0 + timedelta(seconds=seconds)
    return Reading(s.id, s.kind, channel, ts, ts, values)


def test_telemetry_goes_to_the_kinds_measurement_with_grid_tags():
    gauge = sensor("rain_gauge")
    series, fields, at = PointBuilder().point(
        gauge, reading(gauge, Channel.TELEMETRY, {"rain_mm": 0.2})
    )
    assert series.measurement == "rain_gauge"
    assert dict(series.tags) == {
        "sensor_id": "rain_gauge-1",
        "grid": "110101001001002",
        "community": "110101001001",
        "street": "110101001",
        "district": "110101",
        "model": "m1",
    }
    assert [key for key, _ in series.tags] == sorted(key for key, _ in series.tags)
    assert fields == {"rain_mm": 0.2}
    assert at == 1_784_534_400_000_000_000


def test_tilt_deviation_is_measured_from_the_installation_baseline():
    billboard = sensor("tilt", calibration={"baseline_x_deg": 0.5, "baseline_y_deg": -0.2})
    _, fields, _ = PointBuilder().point(
        billboard,
        reading(billboard, Channel.TELEMETRY, {"tilt_x_deg": 3.5, "tilt_y_deg": 3.8}),
    )
    assert fields["tilt_deg"] == pytest.approx(5.0)


def test_rain_increments_come_from_a_cumulative_counter_with_resets():
    gauge = sensor("rain_gauge")
    builder = PointBuilder()
    totals = [10.0, 10.4, 11.0, 0.2, 0.6]
    derived = [
        builder.point(gauge, reading(gauge, Channel.TELEMETRY, {"total_mm": t}, seconds=i))[1].get(
            "rain_mm"
        )
        for i, t in enumerate(totals)
    ]
    # The first total has nothing to compare with; after a reset the counter restarted at 0.
    assert derived == [None, pytest.approx(0.4), pytest.approx(0.6), 0.2, pytest.approx(0.4)]


def test_a_reported_increment_wins_over_the_counter():
    gauge = sensor("rain_gauge")
    builder = PointBuilder()
    builder.point(gauge, reading(gauge, Channel.TELEMETRY, {"total_mm": 5.0}))
    _, fields, _ = builder.point(
        gauge, reading(gauge, Channel.TELEMETRY, {"total_mm": 6.0, "rain_mm": 0.7}, seconds=1)
    )
    assert fields["rain_mm"] == 0.7


@pytest.mark.parametrize(
    ("kind", "values", "event_type"),
    [
        ("elevator", {"fault": "entrapment", "code": "17"}, "entrapment"),
        ("camera", {"event": "mobile_vendor", "confidence": 0.9}, "mobile_vendor"),
    ],
)
def test_events_have_their_own_measurement_tagged_by_kind_and_type(kind, values, event_type):
    device = sensor(kind)
    series, fields, _ = PointBuilder().point(device, reading(device, Channel.EVENT, values))
    tags = dict(series.tags)
    assert series.measurement == "events"
    assert (tags["kind"], tags["type"]) == (kind, event_type)
    assert fields == values | {"count": 1}


def test_status_messages_become_an_online_flag():
    gauge = sensor("rain_gauge")
    builder = PointBuilder()
    series, fields, _ = builder.point(gauge, reading(gauge, Channel.STATUS, {"status": "offline"}))
    assert (series.measurement, fields) == ("device_status", {"online": False})


def test_a_changed_sensor_gets_new_tags():
    builder = PointBuilder()
    before = sensor("rain_gauge")
    after = sensor("rain_gauge", grid="110102002003004")
    first, _, _ = builder.point(before, reading(before, Channel.TELEMETRY, {"rain_mm": 0.1}))
    again, _, _ = builder.point(before, reading(before, Channel.TELEMETRY, {"rain_mm": 0.1}))
    moved, _, _ = builder.point(after, reading(after, Channel.TELEMETRY, {"rain_mm": 0.1}))
    assert first is again
    assert dict(moved.tags)["district"] == "110102"


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 1)))
def test_time_is_exact_to_the_microsecond(ts):
    ns = time_ns(Reading("x", "rain_gauge", Channel.TELEMETRY, ts, ts, {}))
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000) == ts
    assert ns % 1000 == 0


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_rain_increment_is_never_negative(last, total):
    assert rain_increment(last, total) >= 0


def test_numeric_fields_include_the_derived_ones():
    assert "tilt_deg" in numeric_fields("tilt")
    assert "rain_mm" in numeric_fields("rain_gauge")
    assert set(numeric_fields("events")) == {"confidence", "count", "object_count"}
