"""Canonical payload codecs: JSON bytes in, a validated Reading out (pure, no I/O).

Each kind is described as data: a table of field specs per channel. A new kind is a new
table entry, not new pipeline code.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gridwatch.domain import Channel, Reading, SensorKind, Value

ELEVATOR_FAULTS = frozenset(
    {
        "safety_circuit_open", "door_close_fault", "door_open_fault",
        "stopped_outside_door_zone", "unintended_movement", "motor_runtime_limiter",
        "floor_position_lost", "cannot_restart", "top_overrun", "bottom_overrun", "entrapment",
        "overspeed", "door_open_while_moving", "alarm_button", "power_loss",
    }
)  # fmt: skip
ELEVATOR_MODES = frozenset(
    {
        "normal", "inspection", "fire_return", "firefighter", "emergency_power", "earthquake",
        "stopped", "unknown",
    }
)  # fmt: skip
CAMERA_EVENTS = frozenset(
    {
        "exposed_garbage", "overflowing_bin", "piled_materials", "out_of_store_trading",
        "mobile_vendor", "illegal_parking_motor", "illegal_parking_nonmotor", "crowd_gathering",
        "waterlogging", "smoke_fire", "missing_manhole_cover", "illegal_advertising",
        "fire_lane_blocked",
    }
)  # fmt: skip
STATUSES = frozenset({"online", "offline"})

# Readings stamped further than this from arrival are rejected: a clock this wrong would
# put the reading in the wrong rule window. Clock skew below it is a data-quality matter.
MAX_FUTURE_SKEW_S = 24 * 3600.0
# Unix seconds this large can only be milliseconds (year 5138 in seconds).
_MS_THRESHOLD = 1e11


class PayloadError(ValueError):
    """A payload that cannot be accepted; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One canonical payload field: its JSON type and allowed values."""

    name: str
    type: type[float] | type[int] | type[bool] | type[str]
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    """The fields of one kind on one channel; `one_of` lists alternatives of which one is needed."""

    fields: tuple[FieldSpec, ...]
    one_of: tuple[str, ...] = ()


CODECS: Mapping[tuple[str, Channel], PayloadSpec] = {
    (SensorKind.RAIN_GAUGE, Channel.TELEMETRY): PayloadSpec(
        fields=(
            FieldSpec("rain_mm", float, minimum=0, maximum=500),
            FieldSpec("total_mm", float, minimum=0, maximum=1e7),
            FieldSpec("precip", str, choices=frozenset({"rain", "snow"})),
            FieldSpec("battery_v", float, minimum=0, maximum=60),
            # Hydrology stations often carry a road-water depth probe beside the gauge.
            FieldSpec("water_depth_cm", float, minimum=0, maximum=1000),
        ),
        one_of=("rain_mm", "total_mm", "water_depth_cm"),
    ),
    (SensorKind.TILT, Channel.TELEMETRY): PayloadSpec(
        fields=(
            FieldSpec("tilt_x_deg", float, required=True, minimum=-90, maximum=90),
            FieldSpec("tilt_y_deg", float, required=True, minimum=-90, maximum=90),
            FieldSpec("wind_ms", float, minimum=0, maximum=120),
            FieldSpec("battery_v", float, minimum=0, maximum=60),
        ),
    ),
    (SensorKind.ELEVATOR, Channel.TELEMETRY): PayloadSpec(
        fields=(
            FieldSpec("floor", int, required=True, minimum=-20, maximum=300),
            FieldSpec("direction", str, required=True, choices=frozenset({"up", "down", "none"})),
            FieldSpec("door", str, required=True, choices=frozenset({"open", "closed"})),
            FieldSpec("moving", bool, required=True),
            FieldSpec("in_door_zone", bool, required=True),
            FieldSpec("mode", str, required=True, choices=ELEVATOR_MODES),
            FieldSpec("occupied", bool),
            FieldSpec("speed_ms", float, minimum=0, maximum=25),
        ),
    ),
    (SensorKind.ELEVATOR, Channel.EVENT): PayloadSpec(
        fields=(
            FieldSpec("fault", str, required=True, choices=ELEVATOR_FAULTS),
            FieldSpec("code", str),
        ),
    ),
    (SensorKind.CAMERA, Channel.EVENT): PayloadSpec(
        fields=(
            FieldSpec("event", str, required=True, choices=CAMERA_EVENTS),
            FieldSpec("confidence", float, required=True, minimum=0, maximum=1),
            FieldSpec("snapshot_url", str),
            FieldSpec("object_count", int, minimum=0, maximum=100_000),
        ),
    ),
}


def decode(
    *, sensor_id: str, kind: str, channel: Channel, payload: bytes, received_at: datetime
) -> Reading:
    """Decode one MQTT payload into a Reading, or raise PayloadError naming the field."""
    if channel is Channel.STATUS:
        return _decode_status(sensor_id, kind, payload, received_at)
    document = parse_json_object(payload) if (kind, channel) in CODECS else {}
    return decode_fields(
        sensor_id=sensor_id,
        kind=kind,
        channel=channel,
        fields=document,
        ts=parse_timestamp(document.get("ts"), received_at=received_at),
        received_at=received_at,
    )


def decode_fields(
    *,
    sensor_id: str,
    kind: str,
    channel: Channel,
    fields: Mapping[str, Any],
    ts: datetime,
    received_at: datetime,
) -> Reading:
    """Validate already-parsed fields (a poll's values, a payload's object) into a Reading."""
    if channel is Channel.STATUS:
        status = fields.get("status")
        if status not in STATUSES:
            raise PayloadError("status", f"must be 'online' or 'offline', not {status!r:.40}")
        values: dict[str, Value] = {"status": status}
        return Reading(sensor_id, kind, channel, ts, received_at, values)
    spec = CODECS.get((kind, channel))
    if spec is None:
        raise PayloadError("topic", f"a {kind} sensor publishes nothing on '{channel}'")
    values = {}
    for field in spec.fields:
        raw = fields.get(field.name)
        if raw is None:
            if field.required:
                raise PayloadError(field.name, "is required")
            continue
        values[field.name] = _check_field(field, raw)
    if spec.one_of and values.keys().isdisjoint(spec.one_of):
        raise PayloadError(" or ".join(spec.one_of), "one of these is required")
    return Reading(
        sensor_id=sensor_id,
        kind=kind,
        channel=channel,
        ts=ts,
        received_at=received_at,
        values=values,
    )


def _decode_status(sensor_id: str, kind: str, payload: bytes, received_at: datetime) -> Reading:
    # Devices set their last will as a bare word; a JSON object {"status": ...} is accepted too.
    text = payload.decode("utf-8", errors="replace").strip()
    ts: Any = None
    if text.startswith("{"):
        document = parse_json_object(payload)
        text, ts = str(document.get("status", "")), document.get("ts")
    if text not in STATUSES:
        raise PayloadError("status", f"must be 'online' or 'offline', not {text[:40]!r}")
    return Reading(
        sensor_id=sensor_id,
        kind=kind,
        channel=Channel.STATUS,
        ts=parse_timestamp(ts, received_at=received_at),
        received_at=received_at,
        values={"status": text},
    )


def parse_json_object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, or PayloadError."""
    # orjson: a seventh of json.loads's time per message, and it refuses what json.loads lets
    # through to fail later: NaN and Infinity literals, nesting past 1,024 levels, numbers
    # too large for a double, invalid UTF-8.
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError("payload", f"is not valid JSON ({err})") from err
    if not isinstance(document, dict):
        raise PayloadError("payload", f"must be a JSON object, not {type(document).__name__}")
    return document


def _check_field(field: FieldSpec, raw: Any) -> Value:
    # The common cases first, exact types only (bool is not int here): a finite float or an
    # int inside the field's range, a known choice, a flag. Anything else takes the full path,
    # which also names what is wrong.
    kind = type(raw)
    if kind is field.type:
        if kind is float or kind is int:
            low, high = field.minimum, field.maximum
            if raw - raw == 0 and (low is None or raw >= low) and (high is None or raw <= high):
                return raw  # type: ignore[no-any-return]
        elif kind is bool or (kind is str and field.choices is not None and raw in field.choices):
            return raw  # type: ignore[no-any-return]
    value: Value
    if field.type is bool:
        if not isinstance(raw, bool):
            raise PayloadError(field.name, f"must be true or false, not {raw!r}")
        return raw
    if field.type is str:
        # Vendor codes arrive as numbers or strings; keep them as text.
        if isinstance(raw, int) and not isinstance(raw, bool) and field.choices is None:
            raw = str(raw)
        if not isinstance(raw, str):
            raise PayloadError(field.name, f"must be a string, not {raw!r}")
        if field.choices is not None and raw not in field.choices:
            raise PayloadError(field.name, f"unknown value {raw[:60]!r}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadError(field.name, f"must be a number, not {raw!r}")
    if field.type is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise PayloadError(field.name, f"must be a whole number, not {raw!r}")
        value = int(raw)
    else:
        value = float(raw)
        if not math.isfinite(value):
            raise PayloadError(field.name, "must be finite")
    if field.minimum is not None and value < field.minimum:
        raise PayloadError(field.name, f"{value} is below the minimum {field.minimum:g}")
    if field.maximum is not None and value > field.maximum:
        raise PayloadError(field.name, f"{value} is above the maximum {field.maximum:g}")
    return value


def parse_timestamp(raw: Any, *, received_at: datetime) -> datetime:
    """Parse `ts` (RFC 3339, Unix seconds or milliseconds); arrival time when absent."""
    if raw is None:
        return received_at
    if isinstance(raw, bool):
        raise PayloadError("ts", f"must be RFC 3339 or Unix time, not {raw!r}")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or raw < 0:
            raise PayloadError("ts", f"is not a valid Unix time: {raw!r}")
        seconds = raw / 1000.0 if raw >= _MS_THRESHOLD else float(raw)
        try:
            ts = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise PayloadError("ts", f"is not a valid Unix time: {raw!r}") from err
    elif isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as err:
            raise PayloadError("ts", f"is not RFC 3339: {raw[:40]!r}") from err
        if ts.tzinfo is None:
            raise PayloadError("ts", "RFC 3339 needs a UTC offset or Z")
        ts = ts.astimezone(UTC)
    else:
        raise PayloadError("ts", f"must be RFC 3339 or Unix time, not {raw!r}")
    if (ts - received_at).total_seconds() > MAX_FUTURE_SKEW_S:
        raise PayloadError("ts", f"{ts.isoformat()} is more than a day in the future")
    return ts


def canonical_fields() -> dict[str, dict[str, frozenset[str] | None]]:
    """Every canonical field per kind with its allowed values (None: any), all channels merged."""
    table: dict[str, dict[str, frozenset[str] | None]] = {}
    for (kind, _channel), spec in CODECS.items():
        table.setdefault(str(kind), {}).update({f.name: f.choices for f in spec.fields})
    return table
