"""Canonical payload codecs: every kind's fields, and a named error for every bad input."""

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.adapters.codecs import PayloadError, decode, parse_timestamp
from gridwatch.domain import Channel

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def _decode(kind: str, channel: Channel, payload: object) -> dict[str, object]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reading = decode(sensor_id="S-1", kind=kind, channel=channel, payload=raw, received_at=NOW)
    return dict(reading.values)


@pytest.mark.parametrize(
    ("kind", "channel", "payload", "expected"),
    [
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": 0.2}, {"rain_mm": 0.2}),
        ("rain_gauge", Channel.TELEMETRY, {"total_mm": 1234, "precip": "snow"},
         {"total_mm": 1234.0, "precip": "snow"}),
        ("rain_gauge", Channel.TELEMETRY, {"water_depth_cm": 22.5}, {"water_depth_cm": 22.5}),
        ("tilt", Channel.TELEMETRY, {"tilt_x_deg": 0.1, "tilt_y_deg": -0.2, "wind_ms": 14},
         {"tilt_x_deg": 0.1, "tilt_y_deg": -0.2, "wind_ms": 14.0}),
        ("elevator", Channel.TELEMETRY,
         {"floor": 3, "direction": "up", "door": "closed", "moving": True, "in_door_zone": False,
          "mode": "normal", "speed_ms": 1.5},
         {"floor": 3, "direction": "up", "door": "closed", "moving": True, "in_door_zone": False,
          "mode": "normal", "speed_ms": 1.5}),
        ("elevator", Channel.EVENT, {"fault": "entrapment", "code": 17},
         {"fault": "entrapment", "code": "17"}),
        ("camera", Channel.EVENT,
         {"event": "exposed_garbage", "confidence": 0.91, "object_count": 2, "extra": "ignored"},
         {"event": "exposed_garbage", "confidence": 0.91, "object_count": 2}),
        ("camera", Channel.STATUS, b"offline", {"status": "offline"}),
        ("tilt", Channel.STATUS, {"status": "online"}, {"status": "online"}),
    ],
)  # fmt: skip
def test_canonical_payloads_decode(kind, channel, payload, expected):
    assert _decode(kind, channel, payload) == expected


@pytest.mark.parametrize(
    ("kind", "channel", "payload", "field", "reason"),
    [
        ("rain_gauge", Channel.TELEMETRY, b"not json", "payload", "not valid JSON"),
        ("rain_gauge", Channel.TELEMETRY, b"\xff\xfe", "payload", "not valid JSON"),
        ("rain_gauge", Channel.TELEMETRY, [1, 2], "payload", "JSON object"),
        ("rain_gauge", Channel.TELEMETRY, {}, "rain_mm or total_mm or water_depth_cm", "required"),
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": "3"}, "rain_mm", "must be a number"),
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": True}, "rain_mm", "must be a number"),
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": -1}, "rain_mm", "below the minimum"),
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": 9999}, "rain_mm", "above the maximum"),
        ("rain_gauge", Channel.TELEMETRY, {"rain_mm": 1, "precip": "hail"}, "precip", "unknown"),
        ("rain_gauge", Channel.EVENT, {"rain_mm": 1}, "topic", "publishes nothing"),
        ("tilt", Channel.TELEMETRY, {"tilt_x_deg": 0.1}, "tilt_y_deg", "required"),
        ("tilt", Channel.TELEMETRY, {"tilt_x_deg": 91, "tilt_y_deg": 0}, "tilt_x_deg", "maximum"),
        ("elevator", Channel.TELEMETRY,
         {"floor": 2.5, "direction": "up", "door": "open", "moving": False, "in_door_zone": True,
          "mode": "normal"}, "floor", "whole number"),
        ("elevator", Channel.TELEMETRY,
         {"floor": 2, "direction": "up", "door": "open", "moving": "no", "in_door_zone": True,
          "mode": "normal"}, "moving", "true or false"),
        ("elevator", Channel.EVENT, {"fault": "sneezed"}, "fault", "unknown"),
        ("camera", Channel.EVENT, {"event": "smoke_fire", "confidence": 1.5}, "confidence",
         "maximum"),
        ("camera", Channel.EVENT, {"event": "smoke_fire"}, "confidence", "required"),
        ("camera", Channel.STATUS, b"sleepy", "status", "online"),
        ("camera", Channel.EVENT, {"event": "smoke_fire", "confidence": 0.9, "ts": "yesterday"},
         "ts", "RFC 3339"),
    ],
)  # fmt: skip
def test_bad_payloads_name_the_field_and_reason(kind, channel, payload, field, reason):
    with pytest.raises(PayloadError) as caught:
        _decode(kind, channel, payload)
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, NOW),
        ("2026-07-20T07:59:00Z", NOW - timedelta(minutes=1)),
        ("2026-07-20T15:59:00+08:00", NOW - timedelta(minutes=1)),
        (NOW.timestamp() - 60, NOW - timedelta(minutes=1)),
        (int((NOW.timestamp() - 60) * 1000), NOW - timedelta(minutes=1)),
    ],
)
def test_timestamps_in_every_accepted_form(raw, expected):
    assert parse_timestamp(raw, received_at=NOW) == expected


@pytest.mark.parametrize(
    "raw", ["2026-07-20T07:59:00", True, -5, "", [2026], NOW.timestamp() + 2e5]
)
def test_bad_timestamps_are_refused(raw):
    with pytest.raises(PayloadError) as caught:
        parse_timestamp(raw, received_at=NOW)
    assert caught.value.field == "ts"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_payload_error(payload):
    with contextlib.suppress(PayloadError):
        decode(
            sensor_id="S-1",
            kind="camera",
            channel=Channel.EVENT,
            payload=payload,
            received_at=NOW,
        )


@given(st.dictionaries(st.sampled_from(["rain_mm", "total_mm", "water_depth_cm", "precip", "ts"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                 st.text(max_size=10))))  # fmt: skip
def test_arbitrary_rain_objects_decode_or_raise_payload_error(document):
    try:
        values = _decode("rain_gauge", Channel.TELEMETRY, document)
    except PayloadError:
        return
    assert {"rain_mm", "total_mm", "water_depth_cm"} & set(values)
